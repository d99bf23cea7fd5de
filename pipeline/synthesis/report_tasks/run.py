"""Report tasks, one run: snapshot in, dataset folder out (Parquet, HF, JSONL, card, provenance, plot)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.synthesis.chunking import CountTokens
from pipeline.synthesis.report_tasks.build import BuildResult, build_report_tasks
from pipeline.synthesis.report_tasks.card import report_card
from pipeline.synthesis.report_tasks.checks import check_tasks
from pipeline.synthesis.report_tasks.config import PROMPT_VERSIONS, ReportTaskConfig
from pipeline.synthesis.report_tasks.schema import describe_config, task_table
from pipeline.synthesis.report_tasks.sources import read_sources, read_texts

def chunk_histogram_png(chunk_tokens: Sequence[int], budget: int) -> bytes:
    """A PNG histogram of chunk lengths in tokens, with the budget marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    try:
        ax.hist(list(chunk_tokens) or [0], bins=min(40, max(5, budget // 8)), range=(0, budget), color="#4c72b0")
        ax.axvline(budget, color="#c44e52", linestyle="--", label=f"budget {budget}")
        ax.set_xlabel("tokens per chunk")
        ax.set_ylabel("chunks")
        ax.set_title(f"{len(chunk_tokens)} chunks of the pages used")
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


@dataclass
class ReportDatasetRun:
    result: BuildResult
    export: dict[str, Any]
    checks: dict[str, tuple[int, list[str]]]
    provenance: dict[str, Any]
    histogram_png: bytes


def make_report_dataset(db_path: str | Path, out_dir: str | Path, *, snapshot_id: str, config: ReportTaskConfig,
                        count_tokens: CountTokens, tokenizer_name: str, llm=None, per_host: int = 200,
                        log: Callable[[str], None] | None = None) -> ReportDatasetRun:
    """Read sources from `db_path`, build the tasks, check them against the source text as stored, and export the
    dataset (Parquet, HF, JSONL, card, provenance, chunk-length plot) to `out_dir` (replaced whole)."""
    from datetime import datetime, timezone

    from pipeline.datasets.export import export_dataset

    started = time.perf_counter()
    src = read_sources(db_path, seed=config.seed, min_chars=config.criteria.min_chars, per_host=per_host,
                       neighbours_per_page=max(0, config.max_sources_per_task + 1))
    read_s = time.perf_counter() - started
    result = build_report_tasks(src.pages, src.edges, count_tokens=count_tokens, config=config, llm=llm,
                                snapshot_id=snapshot_id, tokenizer_name=tokenizer_name, log=log)
    urls = {c["url"] for r in result.rows for c in r["chunks"]}
    checks = check_tasks(result.rows, read_texts(db_path, urls), config.eval_fraction)
    result.stats["seconds_read"] = round(read_s, 2)
    provenance = {
        "dataset": "websim report tasks",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "snapshot_id": snapshot_id,
        "source_db": str(db_path),
        "model": getattr(llm, "model_id", None),
        "tokenizer": tokenizer_name,
        "prompt_versions": PROMPT_VERSIONS,
        "seed": config.seed,
        "config": describe_config(config),
        "counts": {k: v for k, v in result.stats.items() if k != "chunk_tokens"},
        "rejections": dict(sorted(result.rejections.items())),
        "checks": {name: bad for name, (bad, _) in checks.items()},
        "code": "pipeline/synthesis/report_tasks/, training/rewards_report.py",
    }
    png = chunk_histogram_png(result.stats["chunk_tokens"], config.chunk_max_tokens)
    export = export_dataset(task_table(result.rows), out_dir, card=report_card(result.rows, result, provenance),
                            provenance=provenance, extra_files={"chunk_tokens.png": png})
    result.stats["seconds_total"] = round(time.perf_counter() - started, 2)
    return ReportDatasetRun(result=result, export=export, checks=checks, provenance=provenance, histogram_png=png)
