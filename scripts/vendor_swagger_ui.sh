#!/usr/bin/env bash
# Vendors Swagger UI (the npm package swagger-ui-dist, pinned below) into
# gateway/web/assets/swagger-ui/, which the gateway sidecar serves for /docs.
# Only the files the page loads are kept (the prebuilt bundle, its CSS) with
# their licences. Run it to move to another release, and commit the result;
# the gateway needs no network and no Node.js at run time.
set -euo pipefail
VERSION=5.35.0
cd "$(dirname "$0")/.."
dest=gateway/web/assets/swagger-ui
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar xzf "swagger-ui-dist-$VERSION.tgz")
test "$(node -p "require('$work/package/package.json').version")" = "$VERSION"
rm -rf "$dest" && mkdir -p "$dest"
for f in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE; do
    cp "$work/package/$f" "$dest/$f"
done
# Source maps are not shipped: the bundle's trailing reference would make
# browsers' developer tools ask for a file that is not there.
sed -i '/^\/\/# sourceMappingURL=/d' "$dest/swagger-ui-bundle.js"
sed -i 's#/\*\# sourceMappingURL=[^*]*\*/##' "$dest/swagger-ui.css"
echo "swagger-ui-dist $VERSION (npm), vendored by scripts/vendor_swagger_ui.sh" > "$dest/VERSION"
echo "vendored swagger-ui-dist $VERSION into $dest"
