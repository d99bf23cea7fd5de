"""Rewards and grades of navigation rollouts (reach a target article by following links), in TRL's reward contract.

A navigation rollout opens the task's start page with `open_url`, then moves with `follow_link`; what it did is read
from the chat itself (each tool message carries the page's `URL:` line), so the same reading serves TRL completions,
agent-loop trajectories and SFT traces. `read_navigation(completion, start_url, target_url)`:

- `reached`: a `follow_link` landed on the target page (answering its title without being there does not count);
- `moves`: links followed that opened a page;
- `invalid_moves`: a `follow_link` that failed (no such link, no page open), a `search` call, an `open_url` of any
  page but the start page or the page already open (a jump, not a link), or a call that refused.

Rewards (`f(completions, **kwargs) -> list[float | None]`, None on rows whose `task_kind` is not "navigation"):
`navigation_reached_reward` (1/0), `navigation_efficiency_reward` (shortest / moves when reached, else 0) and
`navigation_invalid_moves_reward` (-0.25 per invalid move, down to -1). `grade_navigation` gives the evaluation's
figures: success rate with its Wilson 95% interval, efficiency vs the shortest path and vs the human median,
invalid moves per task, success per difficulty level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from training.rewards import as_messages
from training.stats import interval, wilson_interval

NAVIGATION_KIND = "navigation"
_URL_LINE = re.compile(r"^URL: (\S+)$", re.M)


@dataclass
class NavigationRollout:
    reached: bool = False
    moves: int = 0
    invalid_moves: int = 0
    path: list[str] | None = None


def read_navigation(completion: Any, start_url: str, target_url: str) -> NavigationRollout:
    """What a rollout did on the link graph (see the module docstring)."""
    r = NavigationRollout(path=[])
    current: str | None = None
    pending: list[dict] = []
    for msg in as_messages(completion):
        if msg.get("role") == "assistant":
            pending = [tc.get("function", tc) for tc in msg.get("tool_calls") or [] if isinstance(tc, dict)]
            continue
        if msg.get("role") != "tool" or not pending:
            continue
        name = pending.pop(0).get("name")
        content = str(msg.get("content") or "")
        m = None if content.startswith("Error") else _URL_LINE.search(content)
        url = m.group(1) if m else None
        if name == "answer":
            continue
        if name == "open_url" and url is not None and (url == current or (current is None and url == start_url)):
            current = url
            if not r.path:
                r.path.append(url)
            continue
        if name == "follow_link" and url is not None and current is not None:
            current = url
            r.moves += 1
            r.path.append(url)
            r.reached = r.reached or url == target_url
            continue
        r.invalid_moves += 1
        if name == "open_url" and url is not None:
            current = url  # a jump: the rollout stands there, but getting there was not by a link
    return r


def _rows(completions: Sequence[Any], kwargs: Mapping[str, Any]):
    n = len(completions)
    col = (lambda k: list(kwargs.get(k)) if kwargs.get(k) is not None else [None] * n)
    kinds, starts, targets, shortest = col("task_kind"), col("start_url"), col("target_url"), \
        col("shortest_path_length")
    for i, completion in enumerate(completions):
        if kinds[i] != NAVIGATION_KIND or not targets[i]:
            yield None, None
        else:
            yield read_navigation(completion, starts[i] or "", targets[i]), shortest[i]


def navigation_reached_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """1 when a followed link reached the target page, else 0."""
    return [None if r is None else float(r.reached) for r, _ in _rows(completions, kwargs)]


def navigation_efficiency_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Shortest path length / links followed, when the target was reached (else 0)."""
    return [None if r is None else (min(1.0, (d or r.moves) / r.moves) if r.reached and r.moves else 0.0)
            for r, d in _rows(completions, kwargs)]


def navigation_invalid_moves_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """-0.25 per invalid move (failed link, search, jump), down to -1."""
    return [None if r is None else max(-1.0, -0.25 * r.invalid_moves) for r, _ in _rows(completions, kwargs)]


NAVIGATION_REWARDS = [navigation_reached_reward, navigation_efficiency_reward, navigation_invalid_moves_reward]
NAVIGATION_REWARD_WEIGHTS = [1.0, 0.5, 0.25]


def grade_navigation(completions: Sequence[Any], tasks: Sequence[Mapping[str, Any]]
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, one row per task) of navigation rollouts: success, efficiency, invalid moves."""
    rows = []
    for completion, task in zip(completions, tasks):
        r = read_navigation(completion, task["start_url"], task["target_url"])
        shortest, human = task.get("shortest_path_length"), task.get("human_median_length")
        rows.append({"id": task["id"], "difficulty": task.get("difficulty"), "reached": r.reached,
                     "moves": r.moves, "invalid_moves": r.invalid_moves, "shortest": shortest,
                     "human_median_length": human, "path": r.path,
                     "efficiency_vs_shortest": round(shortest / r.moves, 4) if r.reached and r.moves else None,
                     "efficiency_vs_human": round(human / r.moves, 4) if r.reached and r.moves and human else None})
    n = len(rows)
    wins = sum(r["reached"] for r in rows)
    mean = (lambda xs: round(sum(xs) / len(xs), 4) if xs else None)
    by_level = {}
    for level in sorted({r["difficulty"] for r in rows if r["difficulty"]}):
        part = [r for r in rows if r["difficulty"] == level]
        by_level[level] = {"tasks": len(part), "success_rate": mean([float(r["reached"]) for r in part])}
    summary = {
        "tasks": n, "success_rate": round(wins / n, 4) if n else 0.0, "success_ci95": list(wilson_interval(wins, n)),
        "efficiency_vs_shortest": mean([r["efficiency_vs_shortest"] for r in rows
                                        if r["efficiency_vs_shortest"] is not None]),
        "reached": wins,
        "efficiency_ci95": interval([r["efficiency_vs_shortest"] for r in rows
                                     if r["efficiency_vs_shortest"] is not None])["ci95"],
        "efficiency_vs_human": mean([r["efficiency_vs_human"] for r in rows if r["efficiency_vs_human"] is not None]),
        "invalid_moves_per_task": mean([float(r["invalid_moves"]) for r in rows]) or 0.0,
        "moves_per_task": mean([float(r["moves"]) for r in rows]) or 0.0,
        "by_difficulty": by_level,
    }
    return summary, rows
