#!/usr/bin/env bash
# Debian packages the checks need beyond Python: promtool (package
# prometheus) for the alert rules. Installed only when missing, and only
# where apt-get can run (as root); elsewhere it says what to install.
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install these Debian packages for the full checks: ${missing[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}
