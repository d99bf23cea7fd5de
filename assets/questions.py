"""Synthesis assets: structured question seeds over the snapshot, polished candidates, verified hard queries.

`evidence_chains` (the structured seeds: each an answer computed on the graph, its evidence pages and clue sets)
-> `candidate_questions` (best-of-n polish by the model) -> `hard_queries` (+ `hard_queries_rejected`). Each step
records the file it wrote in its materialization metadata (`path`), in a folder of the snapshot it was made on;
the next step reads that file, so a run never mixes snapshots. A re-run, or a run resumed after a crash, is
served from the generation layer's response cache.
"""

import enum
import json
from pathlib import Path

import dagster as dg

from assets.handoffs import json_metadata, latest_path, md_image
from assets.ingest import md_table
from assets.llm_resource import LLMResource
from assets.plots import inline_bars, numeric
from assets.resources import PathsResource
from assets.simulator import SimulatorResource, snapshot
from pipeline.synthesis import questions as q
from pipeline.synthesis.questions import run


class EvidenceChainsConfig(dg.Config):
    count: int = 120
    """Structured questions to build, shared between the families by `family_mix`."""
    family_mix: dict[str, float] = {"shared_link": 0.5, "linked_fact": 0.5}
    seed: int = 0
    """Seeds the build and every model call after it."""
    max_description_pages: int = 5
    """A described page's description may fit at most this many pages (all of them count for uniqueness)."""
    parser: str = q.FamilyConfig.parser
    """spaCy pipeline (package name or folder) that reads the defining sentences."""


class CandidateQuestionsConfig(dg.Config):
    samples: int = 2
    """Rewrites sampled per question (0: keep the structured questions as they are)."""
    temperature: float = 0.7
    max_tokens: int = 96
    chunk_size: int = 64
    """Questions per engine call; each finished chunk is in the response cache (what a crash can lose)."""


class JudgeGate(str, enum.Enum):
    auto = "auto"
    always = "always"
    never = "never"


class HardQueriesConfig(dg.Config):
    top_k: int = 10
    """Hard: the answer page is not among the simulator's top-k for the question, nor the answer in their snippets."""
    rank_depth: int = 100
    judge_gate: JudgeGate = JudgeGate.auto
    """auto: the judge gates only when it agrees with the graph-proven answers at >= judge_min_agreement."""
    judge_min_agreement: float = 0.8
    min_judge_f1: float = 0.6
    dedupe_jaccard: float = 0.7
    eval_fraction: float = 0.1


def _upstream(context, asset, name: str) -> Path:
    path = latest_path(context.instance, asset.key, "path")
    if path is None or not path.is_file():
        raise dg.Failure(f"no {name} file ({path}): materialize {asset.key.to_user_string()} first")
    return path


def _simulator(resource: SimulatorResource, snapshot_path: str):
    """The simulator over the seeds' snapshot (a remote one when the resource points at a server)."""
    from pipeline.simulator.tools import shared_simulator

    return resource.get_client() if resource.base_url else shared_simulator(snapshot_path)


@dg.asset(deps=[snapshot], group_name="synthesis", kinds={"duckdb"},
          description="Structured question seeds: an answer computed on the snapshot graph (a page both described "
                      "pages mention, or a year its page states), the clue sets that make it unique, the evidence.")
def evidence_chains(context: dg.AssetExecutionContext, config: EvidenceChainsConfig,
                    simulator: SimulatorResource, paths: PathsResource) -> dg.MaterializeResult:
    cfg = q.FamilyConfig(count=config.count, family_mix=tuple(config.family_mix.items()), seed=config.seed,
                         max_description_pages=config.max_description_pages, parser=config.parser)
    snap = simulator.get_snapshot()
    path, seeds, meta = run.make_seeds(snap, cfg, q.work_dir(paths.root(), snap.id), log=context.log.info)
    sample = [{"family": s["family"], "question": s["template_question"], "answer": s["answer"],
               "clue candidates": [c["candidates"] for c in s["clues"]]} for s in seeds[:5]]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)), "dagster/row_count": len(seeds), "snapshot_id": meta["snapshot_id"],
        "families": dg.MetadataValue.json({f: sum(s["family"] == f for s in seeds) for f in q.FAMILIES}),
        **numeric({f"seeds_{f}": sum(s["family"] == f for s in seeds) for f in q.FAMILIES}),
        "not_built": dg.MetadataValue.json(meta["seed_rejections"]), "pages_defined": meta["definitions"],
        "sample": dg.MetadataValue.md(md_table(sample)) if sample else "",
    })


@dg.asset_check(asset=evidence_chains, description="every seed's clues admit exactly one answer on the graph")
def evidence_chains_contracts(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    _, seeds = q.read_jsonl(_upstream(context, evidence_chains, "seeds"))
    bad = [s["seed_id"] for s in seeds if s["answer_candidates"] != 1 or not s["evidence"]]
    return dg.AssetCheckResult(passed=not bad, metadata={"seeds": len(seeds), "violations": len(bad),
                                                         "examples": dg.MetadataValue.json(bad[:5])})


@dg.asset(deps=[evidence_chains], group_name="synthesis", kinds={"python"},
          description="Candidate questions: each seed's structured question, or the model's first rewrite (best of "
                      "n) that passes every rule and keeps every clue; `writer` says which.")
def candidate_questions(context: dg.AssetExecutionContext, config: CandidateQuestionsConfig,
                        llm: LLMResource) -> dg.MaterializeResult:
    cfg = q.PolishConfig(samples=config.samples, temperature=config.temperature, max_tokens=config.max_tokens,
                         chunk_size=config.chunk_size)
    path, cands, meta = run.make_candidates(_upstream(context, evidence_chains, "seeds"), llm, cfg,
                                            log=context.log.info)
    sample = [{"writer": c["writer"], "question": c["question"], "rewrites": " | ".join(c["rewrites"])[:300]}
              for c in cands[:4]]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)), "dagster/row_count": len(cands), "model": meta["model"],
        **json_metadata(meta["polish_stats"]), "llm_usage": dg.MetadataValue.json(llm.usage()),
        "rewrite_keep_rate": dg.MetadataValue.float(
            round(meta["polish_stats"].get("rewrites_kept", 0) / len(cands), 4) if cands else 0.0),
        "sample": dg.MetadataValue.md(md_table(sample)) if sample else "",
    })


@dg.asset(deps=[candidate_questions], group_name="synthesis", kinds={"parquet"},
          description="Verified hard questions with unique gold answers (form gate, unique on the graph, evidence "
                      "served, hard for one search, not closed-book), exported to `<data dir>/datasets/hard_queries`.")
def hard_queries(context: dg.AssetExecutionContext, config: HardQueriesConfig, simulator: SimulatorResource,
                 llm: LLMResource, paths: PathsResource) -> dg.MaterializeResult:
    cands_path = _upstream(context, candidate_questions, "candidates")
    meta, _ = q.read_jsonl(cands_path)
    vcfg = q.VerifyConfig(**{**config.model_dump(), "judge_gate": JudgeGate(config.judge_gate).value})
    out = run.make_dataset(cands_path, _simulator(simulator, meta["snapshot_path"]), llm, vcfg,
                           paths.root() / "datasets", log=context.log.info)
    stats, accepted = out["stats"], out["accepted"]
    sample = [{"question": r["question"], "answer": r["answer"], "family": r["family"], "bm25 rank":
               r["bm25_answer_rank"]} for r in accepted[:5]]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(out["written"]["hard_queries"]["path"]),
        "rejected_path": dg.MetadataValue.path(out["written"]["hard_queries_rejected"]["path"]),
        "dagster/row_count": len(accepted), "verified": len(accepted), "yield": stats["yield"],
        **json_metadata({k: stats[k] for k in ("rejections", "by_family", "judge", "bm25")}),
        "rows_by_split": dg.MetadataValue.json(out["written"]["hard_queries"]["rows_by_split"]),
        **numeric(_headline_numbers(stats, out["written"]["hard_queries"]["rows_by_split"])),
        "outcomes": _outcomes_plot(stats),
        "summary": dg.MetadataValue.md(md_image(out["plot"].read_bytes(), "hard queries")),
        "sample": dg.MetadataValue.md(md_table(sample)) if sample else "", "snapshot_id": meta["snapshot_id"],
    })


def _headline_numbers(stats: dict, rows_by_split: dict) -> dict:
    """The figures worth a chart across runs, as top-level numbers (Dagster plots numeric metadata only)."""
    judge, bm25 = stats.get("judge") or {}, stats.get("bm25") or {}
    out = {"candidates": stats.get("candidates", 0), "rejected": stats.get("rejected", 0),
           "train_rows": rows_by_split.get("train", 0), "eval_rows": rows_by_split.get("eval", 0)}
    if judge.get("agreement") is not None:
        out["judge_agreement"] = float(judge["agreement"])
    for key in ("answer_in_top10", "evidence_recall_at_5", "evidence_recall_at_100"):
        if bm25.get(key) is not None:
            out[f"bm25_{key}"] = float(bm25[key])
    return out


def _outcomes_plot(stats: dict) -> dg.MetadataValue:
    """Verified first, then each rejection reason, as bars that render on the asset page."""
    outcomes = {"verified": stats.get("verified", 0), **dict(sorted((stats.get("rejections") or {}).items(),
                                                                    key=lambda kv: -kv[1]))}
    caption = ", ".join(f"{k} {v}" for k, v in list(outcomes.items())[:6])
    return inline_bars(list(outcomes.values()), "candidates by outcome", f"candidates by outcome: {caption}")


@dg.multi_asset_check(specs=[dg.AssetCheckSpec(name=name, asset=hard_queries, description=promise)
                             for name, promise in q.CHECKS.items()], name="hard_queries_contracts")
def hard_queries_contracts(simulator: SimulatorResource, paths: PathsResource):
    """The dataset's contracts, re-checked from the exported Parquet files against the snapshot it names."""
    out = paths.dataset_dir("hard_queries")
    rows = q.read_dataset_rows(out)
    provenance = json.loads((out / "provenance.json").read_text())
    config = provenance.get("config", {})
    found = q.check_hard_queries(rows, _simulator(simulator, provenance["snapshot_path"]),
                                 eval_fraction=config.get("eval_fraction", 0.1),
                                 dedupe_jaccard=config.get("dedupe_jaccard", 0.7))
    for name, (bad, examples) in found.items():
        yield dg.AssetCheckResult(asset_key=hard_queries.key, check_name=name, passed=bad == 0,
                                  metadata={"violations": bad, "rows": len(rows),
                                            "examples": dg.MetadataValue.json(examples)})
