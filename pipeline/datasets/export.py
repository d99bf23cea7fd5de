"""Writing a synthesised dataset: one Arrow table out as Parquet, an on-disk HF dataset and JSONL, with a card.

Layout of `out_dir` (replaced whole: built beside it, then swapped in, so a reader never sees half a dataset
and a re-run never mixes two):

    README.md            the dataset card (YAML header that the Hub and `load_dataset` understand)
    provenance.json      what made it: snapshot, model, prompt versions, seed, config, counts, time
    data/<split>.parquet one file per split  -> load_dataset("parquet", data_dir=...)  or  load_dataset(out_dir)
    hf/                  DatasetDict.save_to_disk  -> datasets.load_from_disk(out_dir / "hf")
    jsonl/<split>.jsonl  one JSON object per line
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def export_dataset(table: pa.Table, out_dir: str | Path, *, card: str, provenance: dict[str, Any],
                   split_column: str = "split", extra_files: dict[str, bytes] | None = None,
                   hf: Callable[[pa.Table], pa.Table] | None = None,
                   jsonl: Callable[[dict], dict] | None = None) -> dict[str, Any]:
    """Write `table` split by `split_column` in every format (plus `extra_files`, name -> bytes, such as plots);
    returns paths and rows per split. `hf` maps a split's table to the one saved under `hf/` (the same rows with
    other Arrow types, such as JSON values that `datasets` decodes); `jsonl` maps a row before it is written."""
    import datasets

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        splits = sorted(set(table.column(split_column).to_pylist())) if table.num_rows else ["train"]
        parts = {s: table.filter(pc.equal(table.column(split_column), s)) for s in splits}
        (tmp / "data").mkdir()
        (tmp / "jsonl").mkdir()
        for name, part in parts.items():
            pq.write_table(part, tmp / "data" / f"{name}.parquet")
            with open(tmp / "jsonl" / f"{name}.jsonl", "w", encoding="utf-8") as fh:
                for row in part.to_pylist():
                    fh.write(json.dumps(jsonl(row) if jsonl else row, ensure_ascii=False, default=str) + "\n")
        datasets.DatasetDict({name: datasets.Dataset(pa_table(hf(part) if hf else part))
                              for name, part in parts.items()}).save_to_disk(str(tmp / "hf"))
        counts = {name: part.num_rows for name, part in parts.items()}
        (tmp / "provenance.json").write_text(json.dumps({**provenance, "rows_by_split": counts}, indent=2,
                                                        ensure_ascii=False, default=str) + "\n")
        (tmp / "README.md").write_text(card, encoding="utf-8")
        for name, blob in (extra_files or {}).items():
            (tmp / name).write_bytes(blob)
        swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "path": str(out_dir),
        "rows_by_split": counts,
        "parquet": {s: str(out_dir / "data" / f"{s}.parquet") for s in parts},
        "jsonl": {s: str(out_dir / "jsonl" / f"{s}.jsonl") for s in parts},
        "hf": str(out_dir / "hf"),
        "files": {name: str(out_dir / name) for name in extra_files or {}},
    }


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` by the finished folder `tmp` (renames: a reader sees the old folder or the new one)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pa_table(table: pa.Table):
    """An Arrow table as the `datasets` library's in-memory table (keeps nested types exactly)."""
    from datasets.table import InMemoryTable

    return InMemoryTable(table)


def yaml_header(*, licenses: list[str], splits: list[str], pretty_name: str, tags: list[str],
                task_categories: list[str], size: int) -> str:
    """A dataset-card YAML header (Hub metadata, and `configs` so `load_dataset(folder)` finds the Parquet files)."""
    size_cat = ("n<1K" if size < 1_000 else "1K<n<10K" if size < 10_000 else "10K<n<100K" if size < 100_000
                else "100K<n<1M")
    lines = ["---", f"pretty_name: {pretty_name}", "language:", "- en", "license:"]
    lines += [f"- {lic}" for lic in licenses] or ["- other"]
    lines += ["task_categories:"] + [f"- {t}" for t in task_categories]
    lines += ["tags:"] + [f"- {t}" for t in tags]
    lines += ["size_categories:", f"- {size_cat}", "configs:", "- config_name: default", "  data_files:"]
    for s in splits:
        lines += [f"  - split: {s}", f"    path: data/{s}.parquet"]
    lines.append("---")
    return "\n".join(lines)
