"""What the CPU computes natively, for choosing an engine's dtype on CPU machines.

bfloat16 matrix products are fast only where the CPU has bf16 instructions (AVX-512 BF16, AMX) or at least
AVX-512, which oneDNN uses to convert on the fly. On an AVX2-only CPU (AMD Zen 2/3, older Intel) oneDNN has no
bf16 matmul, vLLM CPU falls back to plain torch linear layers and transformers to slow reference kernels:
float32 is then several times faster (`benchmarks/bench_llm.py --dtype`). Read from `/proc/cpuinfo` (Linux);
elsewhere nothing is known and float32 is the safe choice.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "avx512f"})
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of the first CPU in `cpuinfo` (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_dtype(flags: frozenset[str] | None = None) -> str:
    """"bfloat16" where the CPU has bf16 or AVX-512 instructions, else "float32"."""
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if flags & BF16_FLAGS else "float32"


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 itself (AVX-512 BF16, AMX), where training under bf16 autocast is faster
    than float32 (an SFT step of the embedded model: 1.9x with 2 threads); with AVX-512 alone oneDNN converts on
    the fly and the gain is unmeasured, so training stays float32 there."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & NATIVE_BF16_FLAGS)


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """`dtype` as given, except "auto": bfloat16 on an accelerator, `cpu_dtype()` on the CPU."""
    if dtype != "auto":
        return dtype
    return cpu_dtype() if device == "cpu" else "bfloat16"
