#!/usr/bin/env bash
# Idempotent: the official OpenAI JavaScript SDK (npm `openai`, pinned by
# tests/e2e/js/package-lock.json) for the JS client tests (tests/e2e/test_js_sdk.py).
set -euo pipefail
cd "$(dirname "$0")/../tests/e2e/js"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "js-client.sh: Node.js and npm are needed for tests/e2e/test_js_sdk.py" >&2
  exit 1
fi
stamp=node_modules/.installed-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --silent
  cp package-lock.json "$stamp"
fi
