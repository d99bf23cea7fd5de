"""The report-task verifiers (`pipeline.synthesis.report_tasks.scoring`) as TRL reward functions.

Every reward has TRL's signature `f(completions, **kwargs) -> list[float | None]`: dataset columns arrive as
keyword lists (`task_kind`, `gold_order`, `chunks`, `key_points`, ...), a completion is a string or a chat
(`[{"role": "assistant", "content": ...}]`), and a row of a task kind the reward does not grade gets None (TRL
ignores it for that row). `REPORT_REWARDS` and `REPORT_REWARD_WEIGHTS` plug into `GRPOTrainer(reward_funcs=...,
args=GRPOConfig(reward_weights=...))`.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable, Sequence

from pipeline.synthesis.report_tasks.answers import gold_answer
from pipeline.synthesis.report_tasks.scoring import (
    citation_score,
    completion_text,
    coverage_score,
    distractor_score,
    format_score,
    graded_body,
    notes_score,
    order_score,
    score_completion,
)

__all__ = ["REPORT_REWARDS", "REPORT_REWARD_WEIGHTS", "citation_reward", "report_reward_sanity", "report_variants", "coverage_reward", "distractor_reward",
           "format_reward", "notes_reward", "order_reward", "score_completion"]


# ---- TRL reward functions ------------------------------------------------------------------------------------------

def _rows(completions: Sequence[Any], kwargs: dict, needed: Sequence[str]):
    n = len(completions)
    kinds = kwargs.get("task_kind") or [None] * n
    columns = {k: kwargs.get(k) or [None] * n for k in needed}
    for i, completion in enumerate(completions):
        yield kinds[i], completion_text(completion), {k: columns[k][i] for k in needed}


def order_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Reorder: max(0, Kendall tau) over the listed chunk ids x share of ids listed."""
    return [order_score(text, cols["gold_order"] or []) if kind == "reorder" else None
            for kind, text, cols in _rows(completions, kwargs, ["gold_order"])]


def coverage_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Synthesise / analyse_merge: share of gold key points covered by a report sentence."""
    return [coverage_score(graded_body(text, kind), cols["key_points"] or []) if kind in ("synthesise", "analyse_merge")
            else None for kind, text, cols in _rows(completions, kwargs, ["key_points"])]


def citation_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Synthesise / analyse_merge: share of sentences with existing, lexically supporting citations."""
    return [citation_score(graded_body(text, kind), cols["chunks"] or []) if kind in ("synthesise", "analyse_merge")
            else None for kind, text, cols in _rows(completions, kwargs, ["chunks"])]


def distractor_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Synthesise / analyse_merge: 1 - share of distractor chunks cited or copied from."""
    return [distractor_score(graded_body(text, kind), cols["chunks"] or [], cols["distractor_ids"] or [])
            if kind in ("synthesise", "analyse_merge") else None
            for kind, text, cols in _rows(completions, kwargs, ["chunks", "distractor_ids"])]


def notes_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Analyse_merge: per-chunk notes that cover the chunk's key points (off-topic chunks flagged as such)."""
    return [notes_score(text, cols["chunks"] or [], cols["key_points"] or [], cols["distractor_ids"] or [])
            if kind == "analyse_merge" else None
            for kind, text, cols in _rows(completions, kwargs, ["chunks", "key_points", "distractor_ids"])]


def format_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Every kind: the answer format of its prompt and its length bounds."""
    return [format_score(text, kind, cols["chunk_ids"] or [], cols["min_words"] or 0, cols["max_words"] or 0)
            if kind in ("reorder", "synthesise", "analyse_merge") else None
            for kind, text, cols in _rows(completions, kwargs, ["chunk_ids", "min_words", "max_words"])]


REPORT_REWARDS: list[Callable[..., list[float | None]]] = [
    order_reward, coverage_reward, citation_reward, distractor_reward, notes_reward, format_reward]
REPORT_REWARD_WEIGHTS = [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]


# ---- sanity: gold high; shuffled, fabricated and over-cited low -----------------------------------------------------

_CITATION_GROUP = re.compile(r"(?:\[C\d{1,4}(?:,\s*C\d{1,4})*\])+")


def recite(text: str, cites: Callable[[list[str]], list[str]]) -> str:
    """`text` with every run of citation brackets replaced by `[id]...` of `cites(ids it cited)`."""
    return _CITATION_GROUP.sub(lambda m: "".join(f"[{i}]" for i in cites(re.findall(r"C\d{1,4}", m.group(0)))), text)


def report_variants(row: dict, other: dict | None) -> dict[str, str]:
    """Literal answers to one task: `gold`; `shuffled` (reorder: the gold order reversed; reports: each citation
    moved to the next chunk id); `over_cited` (reports: every fragment cited everywhere); `fabricated` (another
    task's gold, its ids renamed onto this task's: right format, wrong content)."""
    gold = gold_answer(row)
    ids = list(row["chunk_ids"])
    if row["task_kind"] == "reorder":
        out = {"gold": gold, "shuffled": ", ".join(reversed(row["gold_order"]))}
    else:
        nxt = {c: ids[(k + 1) % len(ids)] for k, c in enumerate(ids)}
        out = {"gold": gold, "shuffled": recite(gold, lambda cited: [nxt.get(c, c) for c in cited]),
               "over_cited": recite(gold, lambda cited: ids)}
    if other is not None and other["task_kind"] == row["task_kind"] and other.get("task_id") != row.get("task_id"):
        rename = dict(zip(other["chunk_ids"], ids))
        out["fabricated"] = re.sub(r"\bC\d{1,4}\b", lambda m: rename.get(m.group(0), ids[0]), gold_answer(other))
    return out


def report_totals(texts: Sequence[str], rows: Sequence[dict]) -> tuple[list[float], list[float | None]]:
    """Per answer: the weighted report reward over its best possible value, and the citation reward alone."""
    columns = {k: [r.get(k) for r in rows] for k in ("task_kind", "chunk_ids", "chunks", "gold_order",
                                                      "distractor_ids", "key_points", "min_words", "max_words")}
    outputs = [f(list(texts), **columns) for f in REPORT_REWARDS]
    totals = []
    for i in range(len(texts)):
        pairs = [(w, out[i]) for out, w in zip(outputs, REPORT_REWARD_WEIGHTS) if out[i] is not None]
        best = sum(w for w, _ in pairs) or 1.0
        totals.append(round(sum(w * v for w, v in pairs) / best, 4))
    return totals, outputs[REPORT_REWARDS.index(citation_reward)]


def report_reward_sanity(rows: Sequence[dict], *, sample: int = 32, seed: int = 0, gold_min: float = 0.8,
                         wrong_max: float = 0.4, citation_max: float = 0.5) -> dict[str, Any]:
    """The report rewards on literal answers to a sample of tasks (`report_variants`). Passes when the mean gold
    total is >= `gold_min`, gold beats every other variant on every task, the mean fabricated total and the mean
    shuffled reorder total are <= `wrong_max`, and the shuffled and over-cited reports' citation rewards are
    <= `citation_max` (their text is the gold's, so only the citations tell them apart)."""
    rng = random.Random(seed)
    rows = sorted(rows, key=lambda r: str(r.get("task_id")))
    picked = rng.sample(rows, min(sample, len(rows))) if rows else []
    by_kind: dict[str, list[dict]] = {}
    for r in rows:
        by_kind.setdefault(r["task_kind"], []).append(r)
    totals: dict[str, list[float]] = {}
    citations: dict[str, list[float]] = {}
    losers, examples = [], []
    for row in picked:
        others = [o for o in by_kind[row["task_kind"]] if o.get("task_id") != row.get("task_id")]
        variants = report_variants(row, rng.choice(others) if others else None)
        scored, cites = report_totals(list(variants.values()), [row] * len(variants))
        got = dict(zip(variants, scored))
        kind = "reorder" if row["task_kind"] == "reorder" else "report"
        for name, value, cite in zip(variants, scored, cites):
            totals.setdefault(f"{kind}_{name}", []).append(value)
            if cite is not None:
                citations.setdefault(name, []).append(cite)
        if any(v >= got["gold"] for name, v in got.items() if name != "gold"):
            losers.append(str(row.get("task_id")))
        if len(examples) < 6:
            examples.append({"task_id": row.get("task_id"), "task_kind": row["task_kind"], **got})
    mean = (lambda xs: round(sum(xs) / len(xs), 4))
    means = {name: mean(v) for name, v in sorted(totals.items())}
    cite_means = {name: mean(v) for name, v in sorted(citations.items())}
    gold = mean(totals.get("reorder_gold", []) + totals.get("report_gold", [])) if picked else 0.0
    fabricated = totals.get("reorder_fabricated", []) + totals.get("report_fabricated", [])
    passed = (bool(picked) and gold >= gold_min and not losers
              and (not fabricated or mean(fabricated) <= wrong_max)
              and means.get("reorder_shuffled", 0.0) <= wrong_max
              and all(cite_means.get(n, 0.0) <= citation_max for n in ("shuffled", "over_cited")))
    return {"passed": passed, "sampled": len(picked), "mean_gold": gold, "mean_total": means,
            "mean_citation_reward": cite_means, "gold_min": gold_min, "wrong_max": wrong_max,
            "citation_max": citation_max, "gold_not_above_others": losers[:10], "examples": examples}
