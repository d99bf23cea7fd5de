"""Reading the datasets websim exports (`export_dataset` layout: `data/<split>.parquet` beside the card)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def split_path(dataset_dir: str | Path, split: str) -> Path:
    return Path(dataset_dir) / "data" / f"{split}.parquet"


def read_split(dataset_dir: str | Path, split: str = "train", columns: Sequence[str] | None = None) -> list[dict]:
    """The rows of one split of a dataset folder (only `columns`, if given); [] when the split is absent."""
    import pyarrow.parquet as pq

    path = split_path(dataset_dir, split)
    return pq.read_table(path, columns=list(columns) if columns else None).to_pylist() if path.is_file() else []
