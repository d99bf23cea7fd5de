"""Human navigation from the Wikispeedia game: paths read, back-clicks resolved, figures per (start, target) pair.

A game file is Wikispeedia's TSV (`#` comments): `paths_unfinished.tsv` (hashedIp, timestamp, duration, path,
target, type: `timeout` or `restart`, the player gave up) or `paths_finished.tsv` (hashedIp, timestamp, duration,
path, rating: the path ends on the target). Articles are percent-encoded and `;`-separated; `<` is a back-click.
`resolve_back_clicks` turns a click sequence into the path of pages the player kept (a `<` pops the page it
left), which is the path one could replay by following links only.

Two kinds of pair come out of the games:
- `game`: the pair the player was given. Attempts, give-ups and path lengths per pair (`GamePair`). The
  sample ships only unfinished games, so there every game pair has a give-up rate of 1.0 and no human success.
- `walk`: where a player actually went, in hindsight: the resolved path from its first to its last page is a
  successful human navigation of that pair, however the game ended; these are the human demonstrations.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote

BACK = "<"


def resolve_back_clicks(clicks: Iterable[str]) -> list[str]:
    """The pages a player kept: each `<` removes the page it went back from (never the first page)."""
    path: list[str] = []
    for page in clicks:
        if page == BACK:
            if len(path) > 1:
                path.pop()
        else:
            path.append(page)
    return path


def wiki_title(encoded: str) -> str:
    """A Wikispeedia article name as the snapshot's `wiki_title`: decoded, spaces as `_`, first letter upper."""
    title = unquote(encoded).replace(" ", "_")
    return title[:1].upper() + title[1:]


@dataclass
class GameRecord:
    clicks: list[str]
    """The click sequence as played (Wikispeedia names, `<` kept)."""
    target: str
    finished: bool
    quit_type: str = ""

    @property
    def path(self) -> list[str]:
        return resolve_back_clicks(self.clicks)

    @property
    def back_clicks(self) -> int:
        return sum(1 for c in self.clicks if c == BACK)


def read_games(path: str | Path) -> Iterator[GameRecord]:
    """Records of a Wikispeedia paths file (finished or unfinished: told apart by the column count)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 6:  # unfinished: ..., path, target, type
                clicks = [wiki_title(c) if c != BACK else c for c in cols[3].split(";") if c]
                yield GameRecord(clicks, wiki_title(cols[4]), False, cols[5])
            elif len(cols) == 5:  # finished: ..., path, rating
                clicks = [wiki_title(c) if c != BACK else c for c in cols[3].split(";") if c]
                if clicks:
                    yield GameRecord(clicks, clicks[-1], True)


@dataclass
class PairStats:
    """What people did on one (start, target) pair; lengths are links followed on the resolved path."""

    attempts: int = 0
    successes: int = 0
    lengths_success: list[int] = field(default_factory=list)
    lengths_all: list[int] = field(default_factory=list)
    back_clicks: int = 0
    paths: list[list[str]] = field(default_factory=list)
    """Resolved successful paths, kept for demonstrations."""
    assigned: bool = True
    """The pair was set by the game (False for walks: nobody set it, so nobody gave up on it)."""

    def figures(self) -> dict:
        med = (lambda xs: float(statistics.median(xs)) if xs else None)
        return {"human_attempts": self.attempts, "human_successes": self.successes,
                "human_give_up_rate": (round(1 - self.successes / self.attempts, 4)
                                       if self.attempts and self.assigned else None),
                "human_median_length": med(self.lengths_success), "human_median_clicks": med(self.lengths_all),
                "human_back_clicks": self.back_clicks}


def pair_stats(records: Iterable[GameRecord], max_paths: int = 5) -> tuple[dict, dict]:
    """(game pairs, walk pairs): `{(start, target): PairStats}` by Wikispeedia title.

    A game pair counts every attempt at it (success when finished). A walk pair is the resolved path of any game
    from its first to its last page, when those differ; each walk is a success of that pair."""
    games: dict[tuple[str, str], PairStats] = defaultdict(PairStats)
    walks: dict[tuple[str, str], PairStats] = defaultdict(lambda: PairStats(assigned=False))
    for rec in records:
        path = rec.path
        if not path:
            continue
        g = games[(path[0], rec.target)]
        g.attempts += 1
        g.successes += rec.finished
        g.lengths_all.append(len(path) - 1)
        g.back_clicks += rec.back_clicks
        if rec.finished:
            g.lengths_success.append(len(path) - 1)
            if len(g.paths) < max_paths:
                g.paths.append(path)
        if len(path) >= 2 and path[-1] != path[0] and not rec.finished:
            w = walks[(path[0], path[-1])]
            w.attempts += 1
            w.successes += 1
            w.lengths_success.append(len(path) - 1)
            w.lengths_all.append(len(path) - 1)
            w.back_clicks += rec.back_clicks
            if len(w.paths) < max_paths:
                w.paths.append(path)
    return dict(games), dict(walks)
