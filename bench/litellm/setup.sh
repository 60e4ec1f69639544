#!/usr/bin/env bash
# Idempotent: LiteLLM's proxy (a pinned PyPI release) in its own environment (.venv-litellm,
# git-ignored), for bench.gateway_overhead's side-by-side runs. Its own dependencies never
# touch the gateway's .venv. LiteLLM's database mode (virtual keys, PostgreSQL spend tracking)
# also needs `prisma generate`, which downloads Prisma's query engine binary from Prisma's own
# server (not PyPI or npm): where that host is unreachable, as on this project's machines,
# only LiteLLM's no-database mode runs (bench.gateway_overhead records why).
set -euo pipefail
cd "$(dirname "$0")/../.."

LVENV=${LVENV:-.venv-litellm}
PYTHON=${PYTHON:-python3}
# 1.108.0: the newest release whose pinned companions (litellm-proxy-extras, litellm-enterprise)
# the package registry this project uses has; 1.108.1-1.110.2 pin ones it lacks.
PIN="litellm[proxy]==1.108.0"
STAMP="$LVENV/.litellm-installed"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PIN" ]; then
  exit 0
fi
if [ ! -x "$LVENV/bin/python" ]; then
  "$PYTHON" -m venv "$LVENV"
fi
if [ ! -x "$LVENV/bin/uv" ]; then
  "$LVENV/bin/pip" install --quiet uv
fi
"$LVENV/bin/uv" pip install --python "$LVENV/bin/python" "$PIN" prisma
echo "$PIN" > "$STAMP"
