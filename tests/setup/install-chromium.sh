#!/usr/bin/env bash
# Debian's chromium for the gallery test (tests/batch/test_gallery.py); `make test` runs this.
set -euo pipefail
command -v chromium >/dev/null && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium >/dev/null \
  || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends chromium >/dev/null; }
chromium --version
