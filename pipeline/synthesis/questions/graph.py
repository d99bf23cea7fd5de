"""The snapshot as sets: what each clue of a question admits, computed exactly.

`ClueGraph` holds, for every page of a snapshot: its links (out and in, from `link_graph`), what it is (its
`Definition`: kind and description, from `parse.definitions`), and the words of its text. A clue is a set:

- `kind(k)`: the pages whose defining sentence makes them a `k` ("composer");
- `linked_from(p)`: the pages that page `p` links to (what the simulator's `links(url)` lists);
- `described(d)`: the pages whose text has every content word of the description `d` (a superset of the pages
  the description fits: a page the description was taken from always has its words);

and a question's answer set is the intersection of its clues, with a described page replaced by every page the
description admits (`union over p in described(d) of linked_from(p)`). A question is kept only when that set is
exactly its answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.synthesis.questions.parse import DEFAULT_PARSER, KIND_GROUPS, Definition, definitions, key_terms

_PAGES_SQL = "SELECT page_id, url, title, text FROM pages WHERE title <> '' ORDER BY page_id"
_LINKS_SQL = "SELECT src_id, dst_id, anchor, context, clicks FROM link_graph WHERE src_id <> dst_id"
_TRAFFIC_SQL = "SELECT page_id, clicks_in, clicks_in_search, clicks_out FROM page_traffic"
_WORD = re.compile(r"[^\W_]+")
_HEAD_CHARS = 6000  # the defining sentence is in the lead: no need to split a whole long page


@dataclass
class ClueGraph:
    pages: dict[int, dict]
    out: dict[int, set[int]]
    inn: dict[int, set[int]]
    edges: dict[tuple[int, int], dict]
    """(src, dst) -> anchor, context sentence, clicks."""
    defs: dict[int, Definition]
    words: dict[int, frozenset[str]] = field(repr=False, default_factory=dict)
    traffic: dict[int, dict] = field(default_factory=dict)
    kinds: dict[str, set[int]] = field(default_factory=dict)

    mentions: dict[int, set[int]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)
    """Pages whose kind is unknown (no defining sentence could be read): any kind clue may fit them."""

    def __post_init__(self) -> None:
        for pid, d in self.defs.items():
            self.kinds.setdefault(KIND_GROUPS.get(d.kind, d.kind), set()).add(pid)
        self.unknown = set(self.pages) - set(self.defs)
        self.names = {pid: re.sub(r"\s*\([^)]*\)\s*$", "", p["title"]) for pid, p in self.pages.items()}
        for (src, dst), e in self.edges.items():
            name = self.names[dst].lower()
            if e["context"] and name and name in e["context"].lower():
                self.mentions.setdefault(src, set()).add(dst)

    # -- clue sets -------------------------------------------------------------------------------------------
    def kind(self, k: str) -> set[int]:
        """Pages defined as a `k` or as a thing of its group ("nation" -> every country, nation, kingdom...)."""
        return self.kinds.get(KIND_GROUPS.get(k, k), set())

    def may_be(self, k: str) -> set[int]:
        """Pages a reader could take for a `k`: those of its kind and those whose kind is unknown."""
        return self.kind(k) | self.unknown

    def linked_from(self, page_id: int) -> set[int]:
        """Every page that `page_id` links to (in its text or its navigation boxes): what `links(url)` shows."""
        return self.out.get(page_id, set())

    def mentioned_by(self, page_id: int) -> set[int]:
        """Pages `page_id` links to from a sentence that names them (a quote can cite that sentence)."""
        return self.mentions.get(page_id, set())

    def described(self, description: str) -> set[int]:
        """Pages whose text has every content word of `description`."""
        terms = [t for t in key_terms(description) if t]
        if not terms:
            return set(self.pages)
        return {pid for pid, w in self.words.items() if all(t in w for t in terms)}

    # -- page facts --------------------------------------------------------------------------------------------
    def text(self, page_id: int) -> str:
        return self.pages[page_id]["text"]

    def url(self, page_id: int) -> str:
        return self.pages[page_id]["url"]

    def title(self, page_id: int) -> str:
        return self.pages[page_id]["title"]


def _words(text: str) -> frozenset[str]:
    from pipeline.text.lexical import normalize

    return frozenset(_WORD.findall(normalize(text)))


def load_clue_graph(db_path: str | Path, *, parser: str = DEFAULT_PARSER, page_ids: Iterable[int] | None = None,
                    index_words: bool = True, progress=None) -> ClueGraph:
    """The clue graph of a snapshot's `snapshot.duckdb` (read-only). `page_ids` limits which pages get parsed
    definitions (all pages keep their links and words, so every clue set is still computed over the whole
    snapshot). `index_words=False` skips the word index that only description clues need (verification)."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        pages = {pid: {"page_id": pid, "url": url, "title": title, "text": text or ""}
                 for pid, url, title, text in con.execute(_PAGES_SQL).fetchall()}
        links = con.execute(_LINKS_SQL).fetchall()
        try:
            traffic = {r[0]: {"clicks_in": int(r[1] or 0), "clicks_in_search": int(r[2] or 0),
                              "clicks_out": int(r[3] or 0)} for r in con.execute(_TRAFFIC_SQL).fetchall()}
        except duckdb.Error:  # a store without the traffic table
            traffic = {}
    out: dict[int, set[int]] = {}
    inn: dict[int, set[int]] = {}
    edges: dict[tuple[int, int], dict] = {}
    for src, dst, anchor, context, clicks in links:
        if src in pages and dst in pages:
            out.setdefault(src, set()).add(dst)
            inn.setdefault(dst, set()).add(src)
            edges[(src, dst)] = {"anchor": anchor or "", "context": context or "", "clicks": int(clicks or 0)}
    todo = sorted(pages) if page_ids is None else sorted(set(page_ids) & set(pages))
    if progress:
        progress(f"parsing the defining sentences of {len(todo)} pages")
    parsed = definitions([(pages[p]["title"], pages[p]["text"][:_HEAD_CHARS]) for p in todo], parser)
    defs = {p: d for p, d in zip(todo, parsed) if d is not None}
    if progress:
        progress(f"{len(defs)} of {len(todo)} pages define what they are; indexing page words")
    words = {pid: _words(p["text"]) for pid, p in pages.items()} if index_words else {}
    return ClueGraph(pages, out, inn, edges, defs, words, traffic)


def hand_made_graph(pages: Sequence[tuple[str, str, str, str]], links: Sequence[tuple[str, str]]) -> ClueGraph:
    """A clue graph from (title, kind, description, text) rows and (src title, dst title) links: for tests and
    for reasoning about uniqueness on small examples."""
    ids = {title: i for i, (title, *_rest) in enumerate(pages, 1)}
    page_rows = {ids[t]: {"page_id": ids[t], "url": f"https://example.org/wiki/{t.replace(' ', '_')}", "title": t,
                          "text": text} for t, _k, _d, text in pages}
    defs = {ids[t]: Definition(k, k, d, f"{t} is {d}.") for t, k, d, _text in pages if k}
    out: dict[int, set[int]] = {}
    inn: dict[int, set[int]] = {}
    edges = {}
    for a, b in links:
        out.setdefault(ids[a], set()).add(ids[b])
        inn.setdefault(ids[b], set()).add(ids[a])
        edges[(ids[a], ids[b])] = {"anchor": b, "context": "", "clicks": 0}
    words = {pid: _words(p["text"]) for pid, p in page_rows.items()}
    return ClueGraph(page_rows, out, inn, edges, defs, words, {})
