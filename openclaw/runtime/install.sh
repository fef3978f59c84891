#!/usr/bin/env bash
# Installs Node 24 and the pinned OpenClaw beside the project for the OpenClaw tests.
# Node 24 comes first (from the `node` package) because OpenClaw's install scripts and its
# native optional packages (engines: node >= 22) are only taken when npm itself runs on it.
set -euo pipefail
cd "$(dirname "$0")"
binding=node_modules/@openclaw/fs-safe-linux-x64-gnu
if [ -x node_modules/.bin/openclaw ] && [ -x node_modules/.bin/node ] \
  && { [ "$(uname -m)" != x86_64 ] || [ -d "$binding" ]; }; then
  exit 0
fi
npm install --no-audit --no-fund --ignore-scripts --loglevel=error
npm rebuild node --loglevel=error
PATH="$PWD/node_modules/.bin:$PATH" npm install --no-audit --no-fund --loglevel=error
PATH="$PWD/node_modules/.bin:$PATH" node_modules/.bin/openclaw --version
