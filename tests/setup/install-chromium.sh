#!/usr/bin/env bash
# Debian's chromium for the gallery test (tests/batch/test_gallery.py); `make test` runs this.
# No root: install_chromium.py fetches chromium and the libraries this machine lacks from its
# Debian mirror (indexes and .debs checked as apt checks them) and unpacks them into
# .cache/chromium, whose bin/chromium runs it. A second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
browser=.cache/chromium/bin/chromium
[ -x "$browser" ] && exit 0
"${PYTHON:-python3}" tests/setup/install_chromium.py
"$browser" --version
