"""Report tasks: the Arrow schema of a task row, and the rows as a table."""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import pyarrow as pa

from pipeline.synthesis.report_tasks.config import ReportTaskConfig

_S, _I32, _I64, _F64, _B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
CHUNK_TYPE = pa.struct([("chunk_id", _S), ("source_chunk_id", _S), ("url", _S), ("title", _S), ("position", _I32),
                        ("char_start", _I64), ("char_end", _I64), ("section", _S), ("text", _S),
                        ("n_tokens", _I32), ("is_distractor", _B)])
SCORE_NAMES = ("order", "coverage", "citations", "distractors", "notes", "format")
TASK_SCHEMA = pa.schema([
    ("task_id", _S), ("task_kind", _S), ("split", _S),
    ("prompt", pa.list_(pa.struct([("role", _S), ("content", _S)]))),
    ("chunk_ids", pa.list_(_S)), ("chunks", pa.list_(CHUNK_TYPE)),
    ("gold_order", pa.list_(_S)), ("distractor_ids", pa.list_(_S)),
    ("source_urls", pa.list_(_S)), ("source_titles", pa.list_(_S)),
    ("outline", pa.list_(pa.struct([("url", _S), ("title", _S), ("sections", pa.list_(
        pa.struct([("heading", _S), ("chunk_ids", pa.list_(_S))])))]))),
    ("key_points", pa.list_(pa.struct([("chunk_id", _S), ("point", _S), ("quote", _S), ("source", _S)]))),
    ("notes", pa.list_(pa.struct([("chunk_id", _S), ("note", _S)]))),
    ("min_words", _I32), ("max_words", _I32),
    ("gold_answer", _S), ("reference", _S), ("reference_source", _S),
    ("reference_scores", pa.struct([(n, _F64) for n in SCORE_NAMES])),
    ("split_key", _S), ("snapshot_id", _S), ("model", _S), ("prompt_version", _S), ("seed", _I64),
    ("tokenizer", _S), ("chunk_max_tokens", _I32),
])


def task_table(rows: Sequence[dict]) -> pa.Table:
    """The rows as an Arrow table with `TASK_SCHEMA` (columns in schema order, extra keys ignored)."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in TASK_SCHEMA} for r in rows], schema=TASK_SCHEMA)


def describe_config(config: ReportTaskConfig) -> dict:
    return asdict(config)
