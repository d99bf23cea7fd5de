"""The snapshot's link graph for navigation gold: shortest paths (BFS over `link_graph`), the pages one step closer,
and the clickstream's view of a path (each hop's click probability, the surprisal of the most-clicked shortest path).

`LinkGraph.from_snapshot(db)` reads `pages` (id, url, title, Wikipedia title, the opening of the text) and
`link_graph` (src_id, dst_id, clicks) once into plain lists; everything after is pure Python over page ids.
A hop's click probability is `clicks(u -> v) / clicks out of u` (None where u has no clicks out); its surprisal,
for ranking, uses add-one smoothing over u's outlinks so that an unclicked link costs more than a clicked one
but never infinitely much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

LEAD_CHARS = 1500
"""Characters of each page's text kept for its defining sentence."""


@dataclass
class LinkGraph:
    """Pages and links of a snapshot, by page id."""

    url: dict[int, str]
    title: dict[int, str]
    lead: dict[int, str]
    out: dict[int, dict[int, int]]
    """src -> {dst: clicks}."""
    into: dict[int, list[int]] = field(default_factory=dict)
    by_url: dict[str, int] = field(default_factory=dict)
    by_wiki_title: dict[str, int] = field(default_factory=dict)
    clicks_out: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.into:
            for src, dsts in self.out.items():
                for dst in dsts:
                    self.into.setdefault(dst, []).append(src)
        self.by_url = self.by_url or {u: i for i, u in self.url.items()}
        self.clicks_out = {src: sum(d.values()) for src, d in self.out.items()}

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str, int]], titles: dict[str, str] | None = None,
                   leads: dict[str, str] | None = None) -> "LinkGraph":
        """A graph from (src url, dst url, clicks) triples (tests, hand-made graphs); ids in order of appearance."""
        ids: dict[str, int] = {}
        out: dict[int, dict[int, int]] = {}
        for src, dst, clicks in edges:
            s, d = ids.setdefault(src, len(ids)), ids.setdefault(dst, len(ids))
            out.setdefault(s, {})[d] = int(clicks)
        for u in (titles or {}):
            ids.setdefault(u, len(ids))
        url = {i: u for u, i in ids.items()}
        graph = cls(url=url, title={i: (titles or {}).get(u, u.rsplit("/", 1)[-1]) for i, u in url.items()},
                    lead={i: (leads or {}).get(u, "") for i, u in url.items()}, out=out)
        graph.by_wiki_title = {u.rsplit("/", 1)[-1]: i for u, i in ids.items()}
        return graph

    @classmethod
    def from_snapshot(cls, db_path: str | Path) -> "LinkGraph":
        """The graph of a snapshot's `snapshot.duckdb` (or of the store while no snapshot exists)."""
        import duckdb

        con = duckdb.connect(str(db_path), read_only=True)
        try:
            pages = con.execute(f"SELECT page_id, url, title, coalesce(wiki_title, ''), left(text, {LEAD_CHARS}) "
                                "FROM pages").fetchall()
            edges = con.execute("SELECT src_id, dst_id, coalesce(clicks, 0) FROM link_graph "
                                "WHERE src_id <> dst_id").fetchall()
        finally:
            con.close()
        out: dict[int, dict[int, int]] = {}
        for src, dst, clicks in edges:
            out.setdefault(src, {})[dst] = int(clicks)
        graph = cls(url={p[0]: p[1] for p in pages}, title={p[0]: p[2] for p in pages},
                    lead={p[0]: p[4] or "" for p in pages}, out=out)
        graph.by_wiki_title = {p[3]: p[0] for p in pages if p[3]}
        return graph

    # ---- shortest paths --------------------------------------------------------------------------------------------

    def distances_to(self, target: int, max_depth: int | None = None) -> dict[int, int]:
        """Links-to-follow from every page that reaches `target` (BFS over reversed links), up to `max_depth`."""
        dist = {target: 0}
        frontier = [target]
        depth = 0
        while frontier and (max_depth is None or depth < max_depth):
            depth += 1
            nxt = []
            for v in frontier:
                for u in self.into.get(v, ()):
                    if u not in dist:
                        dist[u] = depth
                        nxt.append(u)
            frontier = nxt
        return dist

    def closer(self, page: int, dist: dict[int, int]) -> list[int]:
        """Outlinks of `page` one step closer to the target of `dist` (sorted by clicks, then id)."""
        d = dist.get(page)
        if d is None or d == 0:
            return []
        return sorted((v for v in self.out.get(page, {}) if dist.get(v) == d - 1),
                      key=lambda v: (-self.out[page][v], v))

    def hop_surprisal(self, u: int, v: int) -> float:
        """-log2 of the add-one-smoothed click probability of u -> v (bits)."""
        links = self.out.get(u, {})
        return -math.log2((links.get(v, 0) + 1) / (self.clicks_out.get(u, 0) + len(links)))

    def hop_probability(self, u: int, v: int) -> float | None:
        """clicks(u -> v) / clicks out of u; None where u has no clicks (the clickstream says nothing)."""
        total = self.clicks_out.get(u, 0)
        return round(self.out.get(u, {}).get(v, 0) / total, 6) if total else None

    def best_path(self, start: int, dist: dict[int, int]) -> list[int] | None:
        """The shortest path from `start` to the target of `dist` that people click most (least total surprisal);
        ties broken by page id, so it is deterministic. None when `start` does not reach the target."""
        if start not in dist:
            return None
        best: dict[int, tuple[float, list[int]]] = {}

        def solve(u: int) -> tuple[float, list[int]]:
            if dist[u] == 0:
                return 0.0, [u]
            if u not in best:
                options = []
                for v in self.closer(u, dist):
                    cost, rest = solve(v)
                    options.append((cost + self.hop_surprisal(u, v), rest[0], rest))
                cost, _, rest = min(options)
                best[u] = (cost, [u] + rest)
            return best[u]

        return solve(start)[1]

    def path_surprisal(self, path: Sequence[int]) -> float:
        return sum(self.hop_surprisal(u, v) for u, v in zip(path, path[1:]))

    def is_path(self, path: Sequence[int]) -> bool:
        """Every consecutive pair of `path` is a link of the snapshot."""
        return all(v in self.out.get(u, {}) for u, v in zip(path, path[1:]))
