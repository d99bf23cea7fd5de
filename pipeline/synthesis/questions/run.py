"""The three synthesis steps as file-to-file functions, one per asset: seeds -> candidates -> dataset.

Every step writes its records whole (`write_jsonl`, atomic) in a folder of the snapshot it was made on
(`work_dir(snapshot_id=...)`), with a meta line that names the snapshot, the seed and the settings; the next step
reads both from it, so a run never mixes snapshots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from pipeline.synthesis.questions import dataset as ds
from pipeline.synthesis.questions.difficulty import BM25Ranker
from pipeline.synthesis.questions.families import FamilyConfig, build_seeds, config_dict
from pipeline.synthesis.questions.graph import load_clue_graph
from pipeline.synthesis.questions.polish import POLISH_HASH, POLISH_VERSION, PolishConfig, model_id_of, polish_questions
from pipeline.synthesis.questions.verify import PROMPT_HASH, PROMPT_VERSION, VerifyConfig, describe_config, verify_candidates

SEEDS_FILE = "question_seeds.jsonl"
CANDIDATES_FILE = "candidate_questions.jsonl"
Log = Callable[[str], None]


def make_seeds(snapshot, config: FamilyConfig, out_dir: Path | None = None, log: Log = print) -> tuple[Path, list, dict]:
    """Structured seeds of every family over `snapshot`; returns (file, seeds, meta)."""
    started = time.perf_counter()
    graph = load_clue_graph(snapshot.path / "snapshot.duckdb", parser=config.parser, progress=log)
    seeds, rejections = build_seeds(graph, config, progress=log)
    meta = {"snapshot_id": snapshot.id, "snapshot_path": str(snapshot.path), "seed": config.seed,
            "config": config_dict(config), "seed_rejections": rejections,
            "definitions": len(graph.defs), "pages": len(graph.pages),
            "seconds": round(time.perf_counter() - started, 1)}
    path = ds.write_jsonl((out_dir or ds.work_dir(snapshot_id=snapshot.id)) / SEEDS_FILE, seeds, meta)
    log(f"{len(seeds)} seeds from snapshot {snapshot.id} in {meta['seconds']} s; not built: {rejections}")
    return path, seeds, meta


def make_candidates(seeds_path: Path, llm, config: PolishConfig, log: Log = print) -> tuple[Path, list, dict]:
    """Best-of-n polish of every seed; returns (file beside the seeds, candidates, meta)."""
    meta, seeds = ds.read_jsonl(seeds_path)
    candidates, stats = polish_questions(seeds, llm, PolishConfig(**{**config.__dict__, "seed": meta["seed"]}),
                               progress=lambda done, total: log(f"{done}/{total} questions polished"))
    meta = {**meta, "model": model_id_of(llm), "polish_version": POLISH_VERSION, "polish_hash": POLISH_HASH,
            "polish": {**config.__dict__}, "polish_stats": stats}
    path = ds.write_jsonl(Path(seeds_path).with_name(CANDIDATES_FILE), candidates, meta)
    log(f"{len(candidates)} candidates; {stats['rewrites_kept']} rewrites kept")
    return path, candidates, meta


def make_dataset(candidates_path: Path, sim, llm, config: VerifyConfig, datasets_root: Path, log: Log = print
                 ) -> dict:
    """Verify every candidate, export `hard_queries` + `hard_queries_rejected`; returns a summary."""
    meta, candidates = ds.read_jsonl(candidates_path)
    config = VerifyConfig(**{**config.__dict__, "seed": meta["seed"]})
    graph = load_clue_graph(Path(meta["snapshot_path"]) / "snapshot.duckdb", page_ids=[], index_words=False)
    log("indexing the snapshot with bm25s (independent of the simulator's index)")
    ranker = BM25Ranker((pid, p["title"], p["text"]) for pid, p in graph.pages.items())
    accepted, rejected, stats = verify_candidates(candidates, sim, llm, graph, ranker, config, model=meta["model"],
                                       snapshot_id=meta["snapshot_id"], progress=log)
    stats["seed_rejections"] = meta.get("seed_rejections", {})
    provenance = {"snapshot_id": meta["snapshot_id"], "snapshot_path": meta["snapshot_path"], "model": meta["model"],
                  "prompt_version": PROMPT_VERSION, "prompt_hash": PROMPT_HASH, "polish_version": meta["polish_version"],
                  "polish_hash": meta["polish_hash"], "seed": meta["seed"],
                  "config": {**describe_config(config), **meta["polish"], "families": meta["config"]},
                  "stats": stats}
    written = ds.export_hard_queries(accepted, rejected, stats, provenance, datasets_root)
    plot = ds.plot_summary(accepted, rejected, Path(candidates_path).with_name("hard_queries_summary.png"))
    log(f"{len(accepted)} of {len(candidates)} verified; rejections {stats['rejections']}; judge {stats['judge']}")
    return {"accepted": accepted, "rejected": rejected, "stats": stats, "written": written, "plot": plot,
            "provenance": provenance}
