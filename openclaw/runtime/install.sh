#!/usr/bin/env bash
# Installs Node 24 and the pinned OpenClaw beside the project for the OpenClaw tests.
# Two steps: OpenClaw's install script needs Node 24 on PATH, which the `node` package provides.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x node_modules/.bin/openclaw ] && [ -x node_modules/.bin/node ]; then exit 0; fi
npm install --no-audit --no-fund --ignore-scripts --loglevel=error
npm rebuild node --loglevel=error
PATH="$PWD/node_modules/.bin:$PATH" npm rebuild openclaw --loglevel=error
PATH="$PWD/node_modules/.bin:$PATH" node_modules/.bin/openclaw --version
