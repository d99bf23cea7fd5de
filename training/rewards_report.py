"""The report-task verifiers (`pipeline.synthesis.report_tasks.scoring`) as TRL reward functions.

Every reward has TRL's signature `f(completions, **kwargs) -> list[float | None]`: dataset columns arrive as
keyword lists (`task_kind`, `gold_order`, `chunks`, `key_points`, ...), a completion is a string or a chat
(`[{"role": "assistant", "content": ...}]`), and a row of a task kind the reward does not grade gets None (TRL
ignores it for that row). `REPORT_REWARDS` and `REPORT_REWARD_WEIGHTS` plug into `GRPOTrainer(reward_funcs=...,
args=GRPOConfig(reward_weights=...))`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

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

__all__ = ["REPORT_REWARDS", "REPORT_REWARD_WEIGHTS", "citation_reward", "coverage_reward", "distractor_reward",
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
