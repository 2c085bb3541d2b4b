#!/usr/bin/env bash
# Runs buf (from the npm registry, pinned) against protos/: `scripts/buf.sh lint`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.75.0
TOOLS=.tools
if [ ! -x "$TOOLS/node_modules/.bin/buf" ] || [ "$("$TOOLS/node_modules/.bin/buf" --version)" != "$BUF_VERSION" ]; then
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
# google/api/*.proto imports, from the same wheel the code generator uses.
GOOGLEAPIS=$(.venv/bin/python -c 'import google.api, pathlib; print(pathlib.Path(google.api.__path__[0]).parent.parent)')
rm -rf "$TOOLS/googleapis" && mkdir -p "$TOOLS/googleapis/google"
cp -r "$GOOGLEAPIS/google/api" "$TOOLS/googleapis/google/api"
find "$TOOLS/googleapis" -type f ! -name '*.proto' -delete
exec "$TOOLS/node_modules/.bin/buf" "$@" protos
