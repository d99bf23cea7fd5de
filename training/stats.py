"""Intervals of the evaluation's figures: every rate and mean it reports comes with a count and a 95% interval."""

from __future__ import annotations

import math
from typing import Any, Sequence


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% by default); (0, 0) for no trials."""
    if not n:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def interval(values: Sequence[float], binary: bool = False, z: float = 1.96) -> dict[str, Any]:
    """Mean, count and 95% interval of per-item values: Wilson's for 0/1 values, else the normal approximation
    (mean +- z * sd / sqrt(n)), clipped to the values' range. [mean, mean] for one item, [0, 0] for none."""
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "ci95": [0.0, 0.0]}
    mean = sum(values) / n
    if binary:
        return {"n": n, "mean": round(mean, 4), "ci95": list(wilson_interval(round(sum(values)), n, z))}
    if n == 1:
        return {"n": 1, "mean": round(mean, 4), "ci95": [round(mean, 4)] * 2}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    lo, hi = max(min(values), mean - half), min(max(values), mean + half)
    return {"n": n, "mean": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)]}
