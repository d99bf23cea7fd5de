"""Synthesis assets: report-writing tasks (reorder, synthesise, analyse_merge) from the latest snapshot."""


import base64
import json
from pathlib import Path

import dagster as dg

from assets.llm_resource import LLMResource
from assets.plots import inline_bars, numeric
from assets.resources import PathsResource
from assets.simulator import SimulatorResource, snapshot
from pipeline.synthesis.report_tasks import CHECKS, TASK_KINDS, ReportTaskConfig, SourceCriteria, make_report_dataset
from pipeline.simulator.snapshot import DUCKDB_FILE


class ReportTasksConfig(dg.Config):
    n_reorder: int = 20
    """Reorder tasks to make."""
    n_synthesise: int = 20
    """Synthesise (cited report) tasks to make."""
    n_analyse_merge: int = 20
    """Analyse-then-merge (notes, then summary) tasks to make."""
    chunk_max_tokens: int = 192
    """Token budget of one chunk (the tokenizer's tokens)."""
    chunk_min_tokens: int = 48
    chunks_per_task: int = 6
    """Source chunks per task; distractors come on top."""
    distractors: int = 1
    """Distractor chunks from unrelated pages per synthesise / analyse_merge task."""
    max_sources_per_task: int = 2
    """Pages one synthesise / analyse_merge task draws from (the anchor and pages it links to)."""
    max_pages_per_host: int = 200
    """Candidate source pages read per host (a seeded sample)."""
    min_chars: int = 3000
    seed: int = 0
    eval_fraction: float = 0.1
    with_references: bool = True
    """Ask the teacher model for reference answers (kept for SFT, marked model-written)."""
    key_points_max_tokens: int = 192
    reference_max_tokens: int = 384
    tokenizer: str = ""
    """Tokenizer (model folder, name or .gguf file) that measures chunk budgets; empty: the embedded model's."""
    output_dir: str = ""
    """Empty: `<data dir>/datasets/report_tasks/<snapshot id>`."""


def _source_db(simulator: SimulatorResource) -> tuple[Path, str]:
    """The snapshot's database: tasks are made from an immutable snapshot, never from the live store."""
    try:
        snap = simulator.get_snapshot()
    except FileNotFoundError as exc:
        raise dg.Failure(f"no snapshot to make report tasks from ({exc}): materialize `snapshot` first") from exc
    return snap.path / DUCKDB_FILE, snap.id


def _md_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _sample_md(rows: list[dict]) -> str:
    row = next((r for r in rows if r["task_kind"] == "synthesise"), rows[0] if rows else None)
    if row is None:
        return "(no tasks)"
    prompt = row["prompt"][-1]["content"]
    return (f"**{row['task_kind']}** `{row['task_id']}` ({row['split']}) from {', '.join(row['source_urls'])}\n\n"
            f"```\n{prompt[:1500]}{' ...' if len(prompt) > 1500 else ''}\n```\n\n**gold answer**\n\n```\n"
            f"{row['gold_answer'][:1200]}\n```\n\n**reference** ({row['reference_source']}, scores "
            f"{json.dumps(row['reference_scores'])})\n\n```\n{(row['reference'] or '')[:1200]}\n```")


@dg.asset(
    deps=[snapshot],
    group_name="synthesis",
    kinds={"parquet", "duckdb"},
    check_specs=[dg.AssetCheckSpec(name, asset="report_tasks", description=promise) for name, promise in CHECKS.items()],
    description="Report-writing tasks for research agents from long, structured snapshot pages: reorder shuffled "
                "chunks, synthesise a cited report (with distractors), analyse-then-merge. Gold from the source "
                "structure and teacher key points verified by literal quotes; Parquet + HF dataset + JSONL + card.",
)
def report_tasks(context: dg.AssetExecutionContext, config: ReportTasksConfig, llm: LLMResource,
                 simulator: SimulatorResource, paths: PathsResource) -> dg.MaterializeResult:
    from pipeline.llm.model_setup import ensure_embedded_model
    from pipeline.synthesis.report_tasks import load_tokenizer, tokenizer_counter

    db_path, snapshot_id = _source_db(simulator)
    tokenizer_path = config.tokenizer or str(ensure_embedded_model(llm.data_dir or None))
    out_dir = Path(config.output_dir) if config.output_dir else paths.dataset_dir("report_tasks") / snapshot_id
    context.log.info(f"report tasks from {db_path} (snapshot {snapshot_id}) into {out_dir}")
    run = make_report_dataset(db_path, out_dir, snapshot_id=snapshot_id, config=_task_config(config),
                              count_tokens=tokenizer_counter(load_tokenizer(tokenizer_path)),
                              tokenizer_name=Path(tokenizer_path).name, llm=llm.get_backend(),
                              per_host=config.max_pages_per_host, log=context.log.info)
    context.log.info(f"{len(run.result.rows)} tasks {run.result.stats['tasks_by_kind']}, "
                     f"rejections {dict(run.result.rejections)}")
    checks = [dg.AssetCheckResult(check_name=name, passed=bad == 0, metadata={"violations": bad,
                                                                              "examples": dg.MetadataValue.json(ex)})
              for name, (bad, ex) in run.checks.items()]
    return dg.MaterializeResult(metadata=_metadata(run, snapshot_id, llm.usage(), config.chunk_max_tokens),
                                check_results=checks)


def _task_config(config: ReportTasksConfig) -> ReportTaskConfig:
    fields = set(ReportTaskConfig.__dataclass_fields__) - {"criteria"}
    return ReportTaskConfig(**{k: v for k, v in config.model_dump().items() if k in fields},
                            criteria=SourceCriteria(min_chars=config.min_chars))


def chunk_tokens_plot(chunk_tokens: list[int], budget: int, bins: int = 24) -> dg.MetadataValue:
    """Chunk sizes against the token budget, as bars that render on the asset page."""
    counts = [0] * bins
    for n in chunk_tokens:
        counts[min(bins - 1, max(0, n) * bins // max(1, budget))] += 1
    caption = (f"{len(chunk_tokens)} chunks, 0 to {budget} tokens in {bins} bins"
               + (f", median {sorted(chunk_tokens)[len(chunk_tokens) // 2]}" if chunk_tokens else ""))
    return inline_bars(counts, "chunk tokens", caption)


def _metadata(run, snapshot_id: str, usage: dict, budget: int) -> dict:
    stats, rows = run.result.stats, run.result.rows
    kp = stats["key_point_chunks"]
    return {
        "path": dg.MetadataValue.path(run.export["path"]), "snapshot_id": snapshot_id, "dagster/row_count": len(rows),
        **{f"tasks_{kind}": stats["tasks_by_kind"].get(kind, 0) for kind in TASK_KINDS},
        "tasks_by_split": dg.MetadataValue.json(stats["tasks_by_split"]),
        "rejections": dg.MetadataValue.json(dict(sorted(run.result.rejections.items()))),
        "sources": stats["sources"], "chunks": stats["chunks"], "key_points": stats["key_points"],
        "key_point_chunks": dg.MetadataValue.json(stats["key_point_chunks"]),
        "references": dg.MetadataValue.json(stats["references"]),
        "chunk_tokens": chunk_tokens_plot(stats.get("chunk_tokens") or [], budget),
        "chunk_tokens_histogram": dg.MetadataValue.md(_md_image(run.histogram_png, "chunk tokens")),
        **numeric({"key_points_verified": int(kp.get("verified_points", 0)),
                   "key_point_extractive_fallback": int(kp.get("extractive_fallback", 0)),
                   "json_repaired": int(stats["llm_usage"].get("json_repaired", 0)),
                   "llm_retries": int(stats["llm_usage"].get("retries", 0))}),
        "chunk_tokens_plot": dg.MetadataValue.path(run.export["files"]["chunk_tokens.png"]),
        "sample_task": dg.MetadataValue.md(_sample_md(rows)),
        "model": usage.get("backend", "") + ":" + (run.provenance["model"] or ""),
        "llm_usage": dg.MetadataValue.json(stats["llm_usage"]),
        "prompt_tokens": int(stats["llm_usage"].get("prompt_tokens", 0)),
        "completion_tokens": int(stats["llm_usage"].get("completion_tokens", 0)),
        "seconds": stats["seconds_total"],
        "dataset_card": dg.MetadataValue.path(str(Path(run.export["path"]) / "README.md")),
    }
