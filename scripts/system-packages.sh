#!/usr/bin/env bash
# Debian packages the checks need beyond Python: promtool (package
# prometheus) for the alert rules, and chromium with chromium-driver for the
# browser tests (tests/integration/test_browser.py, which fail under CI=true
# without them). Installed only when missing, and only where apt-get can run
# (as root); elsewhere it says what to install.
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install these Debian packages for the full checks: ${missing[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Quiet unless it fails: then apt's own output says why.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() { apt-get install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1; }
install || { apt-get update >"$log" 2>&1 && install; } || { cat "$log" >&2; exit 1; }
echo "installed: ${missing[*]}"
