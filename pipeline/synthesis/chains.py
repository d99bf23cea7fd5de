"""Evidence chains: an answer fact on one page, and a path of real links people follow that leads to it.

A chain is what a hard multi-hop question is written from (`pipeline.synthesis.questions`): a start page, 1-4 link hops,
and an answer page holding a short fact (a year, date, number, name or place). Every hop is an edge of the
snapshot's `link_graph` whose anchor sentence (`context`) occurs literally in the source page and mentions the
next page (its anchor text or title): that sentence is the hop's justification, the chain's `quote`. On the
answer page the quote is the sentence that states the fact.

1. `extract_facts(text, title)`: candidate facts, found by regexes in prose sentences (dates, years, numbers
   with a unit or noun, capitalised multi-word names); each keeps its sentence.
2. `load_graph(db)`: pages and the qualifying backlinks of every page, from a snapshot's `snapshot.duckdb`.
3. `build_chains(graph, config)`: answer pages in a seeded order weighted by incoming clicks; per page a fact and
   a target hop count (the hop mix), then a walk back over backlinks, preferring edges with clickstream traffic
   and edges whose sentence names the next page's title. Pages are never repeated on a chain.
4. `check_chains(chains, db)`: the contracts (hops are edges, quotes occur in their pages, facts on the page).

Deterministic: every choice comes from an RNG seeded by (seed, answer page URL), and pages are visited in the
order of a seeded hash of their URL, so a chain does not change when other pages come and go.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from pipeline.text.lexical import STOPWORDS, split_sentences, tokens
from pipeline.text.patterns import DATE, MONTHS, NUMBER, SENTENCE_STARTERS, YEAR

ANSWER_KINDS = ("date", "year", "number", "name", "place")
DEFAULT_HOP_MIX = {1: 0.15, 2: 0.4, 3: 0.3, 4: 0.15}

_CONNECTORS = r"(?:of|de|da|del|della|di|von|van|der|den|du|la|le|y|the)"
_NAME = re.compile(
    rf"\b[A-Z][\w'’\-]*[a-z][\w'’\-]*(?:\s+(?:{_CONNECTORS}\s+)?[A-Z][\w'’\-]*[a-z][\w'’\-]*)+")
_PLACE_CUE = re.compile(r"\b(?:in|at|near|from|born in|capital of|city of)\s+$")
_NOT_NAMES = frozenset(f"{MONTHS}|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday".split("|"))
_BOILERPLATE = ("Wikipedia Selection", "Related subjects", "CAPTION", "SOS Children", "Enlarge")


@dataclass(frozen=True)
class Fact:
    """A short answer stated in `sentence` (answer == sentence[start:end])."""

    answer: str
    kind: str
    sentence: str
    start: int
    end: int


@dataclass(frozen=True)
class ChainConfig:
    count: int = 20
    """Chains to build."""
    hop_mix: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_HOP_MIX))
    """Share of chains per hop count (1-4); a chain whose target length cannot be walked is skipped."""
    seed: int = 0
    branch: int = 3
    """Backlinks tried per step of the walk (best first, by a seeded draw weighted by clicks and title mention)."""
    min_context_words: int = 6
    max_context_chars: int = 400
    max_pages: int = 5000
    """Answer pages tried at most before giving up on `count`."""
    kinds: tuple[str, ...] = ANSWER_KINDS
    """Answer kinds allowed."""


# ---- facts -------------------------------------------------------------------------------------------------------


def is_prose_sentence(sentence: str, min_words: int = 6, max_chars: int = 400) -> bool:
    """A sentence of running text: long enough, no table or caption residue, with function words, ends like one."""
    s = sentence.strip()
    if len(s) > max_chars or "|" in s or "__" in s or any(b in s for b in _BOILERPLATE):
        return False
    words = tokens(s)
    if len(words) < min_words or not s[-1] in ".!?\"')":
        return False
    return sum(w in STOPWORDS for w in words) / len(words) >= 0.2


def _title_words(title: str) -> set[str]:
    return {t for t in tokens(re.sub(r"\s*\(.*?\)\s*", " ", title)) if t not in STOPWORDS}


def extract_facts(text: str, title: str = "", kinds: Sequence[str] = ANSWER_KINDS) -> list[Fact]:
    """Candidate answer facts in the prose sentences of a page, in text order, at most one per (answer, kind).

    Facts that name the page itself (any content word of its title), list items and names cut short ("World
    War" of "World War I") are left out: they answer nothing, or answer it ambiguously.
    """
    lines = (text or "").split("\n")
    if lines and title and lines[0].strip() == title.strip():
        lines = lines[1:]
    own = _title_words(title)
    # Words the page also writes in lower case are common words, not names ("Philosopher Friedrich Nietzsche").
    common = set(re.findall(r"\b[a-z]+\b", text or ""))
    facts: list[Fact] = []
    seen: set[tuple[str, str]] = set()
    for sentence in split_sentences("\n".join(lines)):
        if not is_prose_sentence(sentence, min_words=8, max_chars=300):
            continue
        found: list[Fact] = []
        taken: list[tuple[int, int]] = []
        for m in DATE.finditer(sentence):
            found.append(Fact(m.group(0), "date", sentence, m.start(), m.end()))
            taken.append(m.span())
        for m in YEAR.finditer(sentence):
            if not any(a <= m.start() < b for a, b in taken):
                found.append(Fact(m.group(1), "year", sentence, m.start(1), m.end(1)))
        for m in NUMBER.finditer(sentence):
            value = m.group(1)
            before = sentence[:m.start()].split()[-1:]
            if (any(a <= m.start() < b for a, b in taken) or YEAR.fullmatch(value)
                    or float(value.replace(",", "")) < 10 or (before and before[0][:1].isupper())):
                continue  # part of a date, a year, too small, or part of a name ("Canon 331", "Apollo 11")
            found.append(Fact(m.group(0), "number", sentence, m.start(), m.end()))
        for m in _NAME.finditer(sentence):
            name, start = m.group(0), m.start()
            first, _, rest = name.partition(" ")
            if start == 0 and (first in SENTENCE_STARTERS or first.casefold() in common):
                name, start = rest, start + len(first) + 1
                if " " not in name or not name[:1].isupper():
                    continue
            name = re.sub(r"['’]s?$", "", name)
            words = name.split()
            if len(words) < 2 or any(w in _NOT_NAMES or w in SENTENCE_STARTERS for w in (words[0], words[-1])):
                continue
            after = sentence[start + len(name):]
            if re.match(r"\s+(?:[A-Z0-9]|(?:and|of|de|la)\s+[A-Z])|[-–]\w", after) or re.search(r"['’]s\s", name):
                continue  # cut short ("World War" of "World War I", "Serr" of "Serr-e Ney") or a possessive phrase
            if re.search(r",\s*$", sentence[:start]) and re.match(r"\s*,", after):
                continue  # an item of a list
            kind = "place" if _PLACE_CUE.search(sentence[:start]) else "name"
            found.append(Fact(name, kind, sentence, start, start + len(name)))
        for fact in found:
            key = (fact.answer.casefold(), fact.kind)
            if fact.kind not in kinds or key in seen or own & set(tokens(fact.answer)):
                continue
            seen.add(key)
            facts.append(fact)
    return facts


# ---- the graph ---------------------------------------------------------------------------------------------------

_PAGES_SQL = "SELECT page_id, url, title, host, clicks_in FROM pages WHERE title <> '' ORDER BY page_id"
# Edges whose sentence is known, occurs in the source page as stored, and names the target (anchor or title).
_EDGES_SQL = """
SELECT g.src_id, g.dst_id, g.anchor, g.context, g.clicks,
       contains(lower(g.context), lower(d.title)) AS mentions_title
FROM link_graph g JOIN pages s ON s.page_id = g.src_id JOIN pages d ON d.page_id = g.dst_id
WHERE g.context <> '' AND length(g.context) <= $max_chars AND d.title <> '' AND s.title <> ''
  AND contains(s.text, g.context)
  AND (contains(lower(g.context), lower(g.anchor)) OR contains(lower(g.context), lower(d.title)))
ORDER BY g.dst_id, g.src_id
"""
_TEXTS_SQL = "SELECT page_id, text FROM pages WHERE list_contains($ids, page_id)"
_OUTLINKS_SQL = "SELECT dst_id, anchor FROM link_graph WHERE src_id = $id ORDER BY first_ordinal, dst_id"


@dataclass(frozen=True)
class Edge:
    src_id: int
    dst_id: int
    anchor: str
    context: str
    clicks: int
    mentions_title: bool


@dataclass
class LinkGraph:
    """Pages (id -> url, title, host, clicks_in), qualifying backlinks per page, and a text reader."""

    db_path: Path
    pages: dict[int, dict]
    backlinks: dict[int, list[Edge]]
    _texts: dict[int, str] = field(default_factory=dict, repr=False)

    def texts(self, page_ids: Iterable[int]) -> dict[int, str]:
        """Page texts by id (read from the database once, then kept)."""
        import duckdb

        missing = sorted(set(page_ids) - set(self._texts))
        if missing:
            with duckdb.connect(str(self.db_path), read_only=True) as con:
                for pid, text in con.execute(_TEXTS_SQL, {"ids": missing}).fetchall():
                    self._texts[pid] = text or ""
        return {pid: self._texts.get(pid, "") for pid in page_ids}

    def outlinks(self, page_id: int) -> list[tuple[int, str]]:
        """(target page id, anchor text) of every link on a page."""
        import duckdb

        with duckdb.connect(str(self.db_path), read_only=True) as con:
            return [(d, a or "") for d, a in con.execute(_OUTLINKS_SQL, {"id": page_id}).fetchall() if d in self.pages]


def load_graph(db_path: str | Path, *, min_context_words: int = 6, max_context_chars: int = 400) -> LinkGraph:
    """The pages and qualifying backlinks of a snapshot's `snapshot.duckdb` (or a store), read-only."""
    import duckdb

    db_path = Path(db_path)
    with duckdb.connect(str(db_path), read_only=True) as con:
        pages = {r[0]: {"page_id": r[0], "url": r[1], "title": r[2], "host": r[3], "clicks_in": int(r[4] or 0)}
                 for r in con.execute(_PAGES_SQL).fetchall()}
        rows = con.execute(_EDGES_SQL, {"max_chars": max_context_chars}).fetchall()
    backlinks: dict[int, list[Edge]] = {}
    for src, dst, anchor, context, clicks, mentions in rows:
        if src in pages and dst in pages and is_prose_sentence(context, min_context_words, max_context_chars):
            edge = Edge(src, dst, anchor or "", context, int(clicks or 0), bool(mentions))
            backlinks.setdefault(dst, []).append(edge)
    return LinkGraph(db_path, pages, backlinks)


# ---- chains ------------------------------------------------------------------------------------------------------


def rng_for(seed: int, *parts: str) -> random.Random:
    """An RNG that depends only on the seed and the given parts (never on run order)."""
    return random.Random(hashlib.sha256("\x1f".join([str(seed), *parts]).encode("utf-8")).digest())


def _order_key(seed: int, url: str, weight: float) -> float:
    """Efraimidis-Spirakis key: sorting by it descending is a weighted sample without replacement."""
    u = rng_for(seed, "answer-page", url).random() or 1e-12
    return math.log(u) / weight


def edge_weight(edge: Edge) -> float:
    """How strongly a walk prefers an edge: clickstream traffic, then a sentence that names the next page."""
    return (1.0 + math.log1p(edge.clicks)) * (2.0 if edge.mentions_title else 1.0)


def _predecessors(graph: LinkGraph, page_id: int, rng: random.Random, exclude: set[int], branch: int) -> list[Edge]:
    edges = [e for e in graph.backlinks.get(page_id, ()) if e.src_id not in exclude]
    keyed = sorted(edges, key=lambda e: (math.log(rng.random() or 1e-12) / edge_weight(e), e.src_id), reverse=True)
    return keyed[:branch]


def _walk_back(graph: LinkGraph, answer_id: int, hops: int, rng: random.Random, branch: int) -> list[Edge] | None:
    """Edges start -> ... -> answer page, `hops` long, found depth-first over the best `branch` backlinks."""

    def dfs(page_id: int, path: list[Edge], on_path: set[int]) -> list[Edge] | None:
        if len(path) == hops:
            return path
        for edge in _predecessors(graph, page_id, rng, on_path, branch):
            found = dfs(edge.src_id, [edge, *path], on_path | {edge.src_id})
            if found is not None:
                return found
        return None

    return dfs(answer_id, [], {answer_id})


def _target_hops(hop_mix: dict[int, float], rng: random.Random) -> int:
    items = sorted((int(h), float(w)) for h, w in hop_mix.items() if float(w) > 0)
    if not items or any(not 1 <= h <= 4 for h, _ in items):
        raise ValueError(f"hop_mix needs hop counts in 1..4 with positive weights, got {hop_mix}")
    return rng.choices([h for h, _ in items], weights=[w for _, w in items])[0]


def chain_id(seed: int, urls: Sequence[str], answer: str) -> str:
    return hashlib.sha256("\x1f".join([str(seed), *urls, answer]).encode("utf-8")).hexdigest()[:16]


def build_chains(graph: LinkGraph, config: ChainConfig = ChainConfig(), snapshot_id: str = ""
                 ) -> tuple[list[dict], Counter]:
    """Up to `config.count` chains (dicts, see `chain_row`), and counts of why answer pages gave none."""
    rejections: Counter = Counter()
    candidates = [pid for pid in graph.backlinks if pid in graph.pages]
    order = sorted(candidates, key=lambda pid: (
        -_order_key(config.seed, graph.pages[pid]["url"], 1.0 + math.log1p(graph.pages[pid]["clicks_in"])),
        graph.pages[pid]["url"]))
    order = order[:config.max_pages]
    chains: list[dict] = []
    for start in range(0, len(order), 64):
        if len(chains) >= config.count:
            break
        batch = order[start:start + 64]
        texts = graph.texts(batch)
        for pid in batch:
            if len(chains) >= config.count:
                break
            page = graph.pages[pid]
            rng = rng_for(config.seed, "chain", page["url"])
            facts = extract_facts(texts[pid], page["title"], config.kinds)
            if not facts:
                rejections["no_fact"] += 1
                continue
            kind = rng.choice(sorted({f.kind for f in facts}))
            fact = rng.choice([f for f in facts if f.kind == kind])
            hops = _target_hops(config.hop_mix, rng)
            path = _walk_back(graph, pid, hops, rng, config.branch)
            if path is None:
                rejections[f"no_path_{hops}_hops"] += 1
                continue
            chains.append(chain_row(graph, path, fact, config.seed, snapshot_id))
    if len(chains) < config.count:
        rejections["short_of_count"] += config.count - len(chains)
    return chains, rejections


def chain_row(graph: LinkGraph, path: Sequence[Edge], fact: Fact, seed: int, snapshot_id: str = "") -> dict:
    """A chain as a plain record: `chain` lists the pages start -> answer with the quote that justifies each."""
    ids = [path[0].src_id, *(e.dst_id for e in path)]
    pages = [graph.pages[i] for i in ids]
    chain = [{"url": p["url"], "title": p["title"], "quote": e.context} for p, e in zip(pages, path)]
    chain.append({"url": pages[-1]["url"], "title": pages[-1]["title"], "quote": fact.sentence})
    urls = [p["url"] for p in pages]
    # Names in the answer sentence that are pages of their own: the question can describe them by their role.
    named = []
    for dst, anchor in graph.outlinks(ids[-1]):
        target = graph.pages[dst]
        if dst in ids or target["url"] in {n["url"] for n in named}:
            continue
        for name in (anchor, target["title"]):
            if len(name) > 3 and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", fact.sentence) and \
                    name.casefold() not in fact.answer.casefold() and fact.answer.casefold() not in name.casefold():
                named.append({"name": name, "url": target["url"], "title": target["title"]})
                break
    return {
        "chain_id": chain_id(seed, urls, fact.answer),
        "hops": len(path),
        "chain": chain,
        "anchors": [e.anchor for e in path],
        "answer_links": named,
        "clicks": [e.clicks for e in path],
        "answer": fact.answer,
        "answer_kind": fact.kind,
        "answer_sentence": fact.sentence,
        "start_url": urls[0],
        "answer_url": urls[-1],
        "seed": seed,
        "snapshot_id": snapshot_id,
    }


# ---- contracts ---------------------------------------------------------------------------------------------------

CHAIN_CHECKS = {
    "hops_are_edges": "every hop of a chain is an edge of the snapshot's link_graph",
    "quotes_in_pages": "every quote occurs literally in its page's text; the last one states the answer",
    "hop_quotes_mention_next": "every hop's quote names the next page (its anchor text or title)",
}


def check_chains(chains: Sequence[dict], db_path: str | Path) -> dict[str, tuple[int, list[str]]]:
    """For each contract in CHAIN_CHECKS: (chains violating it, a few examples of why), checked against the db."""
    import duckdb

    bad: dict[str, list[str]] = {name: [] for name in CHAIN_CHECKS}
    urls = sorted({p["url"] for c in chains for p in c["chain"]})
    with duckdb.connect(str(db_path), read_only=True) as con:
        pages = {r[0]: (r[1], r[2]) for r in con.execute(
            "SELECT url, page_id, text FROM pages WHERE list_contains($urls, url)", {"urls": urls}).fetchall()}
        ids = sorted({pid for pid, _ in pages.values()})
        edges = {(s, d): a for s, d, a in con.execute(
            "SELECT src_id, dst_id, anchor FROM link_graph "
            "WHERE list_contains($ids, src_id) AND list_contains($ids, dst_id)",
            {"ids": ids}).fetchall()}
    for c in chains:
        cid, steps = c["chain_id"], c["chain"]
        for a, b in zip(steps, steps[1:]):
            key = (pages.get(a["url"], (None,))[0], pages.get(b["url"], (None,))[0])
            if key not in edges:
                bad["hops_are_edges"].append(f"{cid}: no edge {a['url']} -> {b['url']}")
                break
            quote = a["quote"].casefold()
            if (edges[key] or "\x00").casefold() not in quote and b["title"].casefold() not in quote:
                bad["hop_quotes_mention_next"].append(f"{cid}: quote on {a['url']} does not name {b['title']!r}")
                break
        for step in steps:
            text = pages.get(step["url"], (None, None))[1]
            if text is None or step["quote"] not in text:
                bad["quotes_in_pages"].append(f"{cid}: quote not in {step['url']}")
                break
        else:
            if c["answer"] not in steps[-1]["quote"]:
                bad["quotes_in_pages"].append(f"{cid}: answer {c['answer']!r} not in the answer sentence")
    return {name: (len(v), v[:5]) for name, v in bad.items()}


def config_dict(config: ChainConfig) -> dict[str, Any]:
    out = asdict(config)
    out["hop_mix"] = {str(k): v for k, v in config.hop_mix.items()}
    out["kinds"] = list(config.kinds)
    return out
