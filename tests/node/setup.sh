#!/bin/sh
# Installs the OpenAI Node SDK pinned in tests/node/package-lock.json into
# tests/node/node_modules. Idempotent: does nothing when that version is already there.
set -eu
cd "$(dirname "$0")"
if node -e '
  const lock = require("./package-lock.json").packages["node_modules/openai"].version;
  process.exit(require("./node_modules/openai/package.json").version === lock ? 0 : 1);
' 2>/dev/null; then
  exit 0
fi
npm ci --no-audit --no-fund
