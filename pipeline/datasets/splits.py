"""The train/eval split rule every synthesised dataset shares.

A row's split depends only on a key that names what it was made from (a source URL, or a sorted set of them),
never on run order, row count or a random draw: the same source lands in the same split in every run, on
every machine, and adding sources never moves an existing one.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Literal

Split = Literal["train", "eval"]
_BUCKETS = 10_000


def split_of(key: str, eval_fraction: float = 0.1) -> Split:
    """"eval" for about `eval_fraction` of keys, "train" for the rest: sha256(key) into 10,000 buckets."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % _BUCKETS
    return "eval" if bucket < round(eval_fraction * _BUCKETS) else "train"


def split_key(urls: Iterable[str]) -> str:
    """The key of a row made from several sources: their distinct URLs, sorted, one per line."""
    return "\n".join(sorted(set(urls)))
