"""Synthesis assets: evidence chains over the snapshot, back-translated candidate questions, verified hard queries.

`evidence_chains` -> `candidate_questions` -> `hard_queries` (+ `hard_queries_rejected` beside it). The chains file
pins the snapshot and the seed; the later stages read both from it, so a run never mixes snapshots. Model calls
are greedy with that seed and prompts depend only on the chains: a re-run, or a run resumed after a crash, is
served from the generation layer's response cache.
"""

import base64
import json
from pathlib import Path

import dagster as dg

from assets.ingest import md_table as _md_table
from assets.llm_resource import LLMResource
from assets.simulator import SimulatorResource, snapshot
from pipeline.synthesis import chains as ch
from pipeline.synthesis import questions as q

CHAINS_FILE = "evidence_chains.jsonl"
CANDIDATES_FILE = "candidate_questions.jsonl"


class EvidenceChainsConfig(dg.Config):
    count: int = 60
    """Chains to build (each becomes one candidate question)."""
    hop_mix: dict[str, float] = {"1": 0.15, "2": 0.4, "3": 0.3, "4": 0.15}
    """Share of chains per hop count (1-4)."""
    seed: int = 0
    """Seeds the chains and every model call after them."""
    branch: int = 3
    """Backlinks tried per step of the walk back."""


class CandidateQuestionsConfig(dg.Config):
    max_tokens: int = 200
    """Token budget of one back-translation reply (the question and aliases)."""
    quote_words: int = 8
    """Length of the literal quotes the prompt offers per page."""
    chunk_size: int = 32
    """Requests per engine call; each finished chunk is in the response cache (what a crash can lose)."""


class HardQueriesConfig(dg.Config):
    top_k: int = 10
    """Hard: the answer page is not among the simulator's top-k for the question, nor the answer in their snippets."""
    rank_depth: int = 100
    judge_max_tokens: int = 32
    closed_book_max_tokens: int = 24
    min_judge_f1: float = 0.6
    """The judge's answer agrees with gold at this token F1 (more than half of a two-token answer)."""
    dedupe_jaccard: float = 0.7
    eval_fraction: float = 0.1


def _simulator(resource: SimulatorResource, snapshot_path: str):
    """The simulator over the chains' snapshot (a remote one when the resource points at a server)."""
    if resource.base_url:
        return resource.get_client()
    from pipeline.simulator.tools import shared_simulator

    return shared_simulator(snapshot_path)


def _hops_md(rows: list[dict]) -> dict:
    counts = {}
    for r in rows:
        counts[str(r["hops"])] = counts.get(str(r["hops"]), 0) + 1
    return dict(sorted(counts.items()))


@dg.asset(
    deps=[snapshot],
    group_name="synthesis",
    kinds={"duckdb"},
    description="Evidence chains: an answer fact on a page and a 1-4 hop walk back over clicked links to a start "
                "page, each hop justified by its link sentence (JSONL in <data dir>/synthesis/hard_queries).",
)
def evidence_chains(context: dg.AssetExecutionContext, config: EvidenceChainsConfig,
                    simulator: SimulatorResource) -> dg.MaterializeResult:
    snap = simulator.get_snapshot()
    chain_config = ch.ChainConfig(count=config.count, hop_mix={int(k): v for k, v in config.hop_mix.items()},
                                  seed=config.seed, branch=config.branch)
    graph = ch.load_graph(snap.path / "snapshot.duckdb")
    chains, rejections = ch.build_chains(graph, chain_config, snapshot_id=snap.id)
    meta = {"snapshot_id": snap.id, "snapshot_path": str(snap.path), "seed": config.seed,
            "config": ch.config_dict(chain_config), "rejections": dict(rejections)}
    path = q.write_jsonl(q.work_dir() / CHAINS_FILE, chains, meta)
    context.log.info(f"{len(chains)} chains from snapshot {snap.id} ({dict(rejections)})")
    sample = [{"hops": c["hops"], "answer": c["answer"], "kind": c["answer_kind"],
               "path": " -> ".join(s["title"] for s in c["chain"])} for c in chains[:5]]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "snapshot_id": snap.id,
        "chains": len(chains),
        "dagster/row_count": len(chains),
        "hops": dg.MetadataValue.json(_hops_md(chains)),
        "answer_kinds": dg.MetadataValue.json({k: sum(c["answer_kind"] == k for c in chains) for k in ch.ANSWER_KINDS}),
        "skipped_answer_pages": dg.MetadataValue.json(dict(rejections)),
        "sample": dg.MetadataValue.md(_md_table(sample)) if sample else "",
    })


@dg.asset_check(asset=evidence_chains, description="; ".join(ch.CHAIN_CHECKS.values()))
def evidence_chains_contracts(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta, chains = q.read_jsonl(q.work_dir() / CHAINS_FILE)
    found = ch.check_chains(chains, Path(meta["snapshot_path"]) / "snapshot.duckdb")
    return dg.AssetCheckResult(passed=all(n == 0 for n, _ in found.values()),
                               metadata={name: dg.MetadataValue.json({"violations": n, "examples": ex})
                                         for name, (n, ex) in found.items()})


@dg.asset(
    deps=[evidence_chains],
    group_name="synthesis",
    kinds={"python"},
    description="One candidate question per evidence chain, back-translated by the model from obfuscated clues "
                "(JSON: question, aliases; the answer and evidence are the chain's), with the raw model text kept.",
)
def candidate_questions(context: dg.AssetExecutionContext, config: CandidateQuestionsConfig,
                        simulator: SimulatorResource, llm: LLMResource) -> dg.MaterializeResult:
    meta, chains = q.read_jsonl(q.work_dir() / CHAINS_FILE)
    sim = _simulator(simulator, meta["snapshot_path"])
    qconfig = q.QuestionConfig(seed=meta["seed"], question_max_tokens=config.max_tokens,
                               quote_words=config.quote_words, chunk_size=config.chunk_size)
    candidates, stats = q.generate_candidates(
        chains, q.simulator_texts(sim), llm, qconfig,
        progress=lambda done, total: context.log.info(f"{done}/{total} candidates generated"))
    model = llm.model_id()
    path = q.write_jsonl(q.work_dir() / CANDIDATES_FILE, candidates,
                         {**meta, "model": model, "prompt_version": q.PROMPT_VERSION, "prompt_hash": q.PROMPT_HASH,
                          "question_config": q.describe_config(qconfig)})
    context.log.info(f"{len(candidates)} candidates, generation errors {stats['generation_errors']}")
    sample = [{"draft": c["draft"], "raw": c["raw_text"]} for c in candidates[:3]]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "candidates": len(candidates),
        "dagster/row_count": len(candidates),
        "generation_errors": dg.MetadataValue.json(stats["generation_errors"]),
        "model": model,
        "prompt_version": q.PROMPT_VERSION,
        "prompt_hash": q.PROMPT_HASH,
        "llm_usage": dg.MetadataValue.json(stats["llm_usage"]),
        "sample": dg.MetadataValue.md(_md_table(sample)) if sample else "",
    })


@dg.asset(
    deps=[candidate_questions],
    group_name="synthesis",
    kinds={"parquet"},
    description="Verified hard multi-hop questions with gold answers (answerable from the evidence, not found by one "
                "search, not answered closed-book, unique), exported to <data dir>/datasets/hard_queries; every "
                "rejected candidate with its reason to hard_queries_rejected.",
)
def hard_queries(context: dg.AssetExecutionContext, config: HardQueriesConfig, simulator: SimulatorResource,
                 llm: LLMResource) -> dg.MaterializeResult:
    meta, candidates = q.read_jsonl(q.work_dir() / CANDIDATES_FILE)
    sim = _simulator(simulator, meta["snapshot_path"])
    qconfig = q.QuestionConfig(**{**meta["question_config"], "top_k": config.top_k, "rank_depth": config.rank_depth,
                                  "judge_max_tokens": config.judge_max_tokens,
                                  "closed_book_max_tokens": config.closed_book_max_tokens,
                                  "min_judge_f1": config.min_judge_f1, "dedupe_jaccard": config.dedupe_jaccard,
                                  "eval_fraction": config.eval_fraction})
    accepted, rejected, stats = q.verify_candidates(candidates, sim, llm, qconfig, model=meta["model"],
                                                    snapshot_id=meta["snapshot_id"])
    provenance = {"snapshot_id": meta["snapshot_id"], "snapshot_path": meta["snapshot_path"], "model": meta["model"],
                  "prompt_version": q.PROMPT_VERSION,
                  "prompt_hash": q.PROMPT_HASH, "seed": meta["seed"],
                  "config": {**q.describe_config(qconfig), "hop_mix": meta["config"]["hop_mix"]},
                  "stats": stats}
    written = q.export_hard_queries(accepted, rejected, stats, provenance, q.datasets_dir())
    plot = q.plot_summary(accepted, rejected, q.work_dir() / "hard_queries_summary.png")
    image = base64.b64encode(plot.read_bytes()).decode("ascii")
    tokens = sum(c.get("prompt_tokens", 0) + c.get("completion_tokens", 0) for c in candidates) + \
        stats["llm_usage"]["prompt_tokens"] + stats["llm_usage"]["completion_tokens"]
    sample = ([{"question": r["question"], "answer": r["answer"], "hops": r["hops"], "difficulty": r["difficulty"]}
               for r in accepted[:5]] or
              [{"reason": r["reason"], "question": r["question"], "answer": r["answer"]} for r in rejected[:5]])
    context.log.info(f"{len(accepted)} of {len(candidates)} verified; rejections {stats['rejections']}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(written["hard_queries"]["path"]),
        "rejected_path": dg.MetadataValue.path(written["hard_queries_rejected"]["path"]),
        "dagster/row_count": len(accepted),
        "candidates": len(candidates),
        "verified": len(accepted),
        "yield": stats["yield"],
        "rejections": dg.MetadataValue.json(stats["rejections"]),
        "rows_by_split": dg.MetadataValue.json(written["hard_queries"]["rows_by_split"]),
        "hops": dg.MetadataValue.json(_hops_md(accepted)),
        "summary_plot": dg.MetadataValue.path(str(plot)),
        "summary": dg.MetadataValue.md(f"![hard queries](data:image/png;base64,{image})"),
        "sample": dg.MetadataValue.md(_md_table(sample)) if sample else "",
        "llm_usage": dg.MetadataValue.json(llm.usage()),
        "verification_usage": dg.MetadataValue.json(stats["llm_usage"]),
        "tokens_per_verified": round(tokens / len(accepted), 1) if accepted else None,
        "snapshot_id": meta["snapshot_id"],
        "model": meta["model"],
        "prompt_version": q.PROMPT_VERSION,
        "prompt_hash": q.PROMPT_HASH,
    })


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(name=name, asset=hard_queries, description=promise)
           for name, promise in q.CHECKS.items()],
    name="hard_queries_contracts",
)
def hard_queries_contracts(simulator: SimulatorResource):
    """The dataset's contracts, re-checked from the exported Parquet files against the snapshot it names."""
    out = q.datasets_dir() / "hard_queries"
    rows = q.read_dataset_rows(out)
    provenance = json.loads((out / "provenance.json").read_text())
    sim = _simulator(simulator, provenance["snapshot_path"])
    config = provenance.get("config", {})
    found = q.check_hard_queries(rows, sim, eval_fraction=config.get("eval_fraction", 0.1),
                                 dedupe_jaccard=config.get("dedupe_jaccard", 0.7))
    for name, (bad, examples) in found.items():
        yield dg.AssetCheckResult(asset_key=hard_queries.key, check_name=name, passed=bad == 0,
                                  metadata={"violations": bad, "rows": len(rows),
                                            "examples": dg.MetadataValue.json(examples)})
