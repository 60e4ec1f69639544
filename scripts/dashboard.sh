#!/usr/bin/env bash
# Idempotent: vendors the dashboard's plotting library (uPlot, from npm) into
# gateway/observability/static/vendor. The built files are small and committed; this
# rebuilds them from dashboard/package-lock.json (CI runs it through setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../dashboard"

if ! command -v npm >/dev/null 2>&1; then
  echo "dashboard.sh: npm not found; keeping the committed vendor files" >&2
  exit 0
fi
STAMP=node_modules/.llm-gateway-dashboard
want=$(sha256sum package-lock.json build.mjs | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  npm ci --no-audit --no-fund --silent
  npm run --silent build
  echo "$want" > "$STAMP"
fi
