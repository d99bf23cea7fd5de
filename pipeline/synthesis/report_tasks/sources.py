"""Report tasks: reading candidate pages and their link neighbourhood from a snapshot (read-only SQL), and
selecting the long, structured, English prose pages that qualify as sources (with a reason for every drop)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.synthesis.chunking import PageProfile, profile_text
from pipeline.synthesis.report_tasks.config import SourceCriteria

# Candidates: long pages, a seeded sample per host (md5 is stable across DuckDB versions, `hash` is not).
_CANDIDATES_SQL = """
SELECT page_id, url, host, title, text
FROM pages
WHERE text IS NOT NULL AND length(text) >= $min_chars
QUALIFY row_number() OVER (PARTITION BY host ORDER BY md5($seed || url)) <= $per_host
ORDER BY md5($seed || url)
"""
# Neighbours worth grouping with a candidate: its most-clicked (then most-linked) long outlinks whose link sits
# in the page's main text (the sentence around it was extracted with it): navigation links relate nothing.
_NEIGHBOUR_EDGES_SQL = """
SELECT g.src_id, g.dst_id, g.n_links, g.clicks
FROM link_graph g JOIN pages d ON d.page_id = g.dst_id JOIN pages s ON s.page_id = g.src_id
WHERE list_contains($ids, g.src_id) AND length(d.text) >= $min_chars
  AND g.context <> '' AND contains(s.text, g.context)
QUALIFY row_number() OVER (PARTITION BY g.src_id ORDER BY g.clicks DESC, g.n_links DESC, md5($seed || d.url))
        <= $per_page
"""
# Every edge among the pages in hand: what makes a distractor page unrelated.
_EDGES_AMONG_SQL = """
SELECT src_id, dst_id, n_links, clicks FROM link_graph
WHERE list_contains($ids, src_id) AND list_contains($ids, dst_id)
"""
_PAGES_BY_ID_SQL = "SELECT page_id, url, host, title, text FROM pages WHERE list_contains($ids, page_id)"
_TEXTS_BY_URL_SQL = "SELECT url, text FROM pages WHERE list_contains($urls, url)"


@dataclass
class SourceRows:
    pages: list[dict]
    edges: list[dict]


def _rows(con, sql: str, params: dict) -> list[dict]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def read_sources(db_path: str | Path, *, seed: int = 0, min_chars: int = 3000, per_host: int = 200,
                 neighbours_per_page: int = 3) -> SourceRows:
    """Candidate pages (up to `per_host` per host), their best-linked long neighbours, and the edges among them.

    `db_path` is a snapshot's `snapshot.duckdb` or the store: any DuckDB file with `pages` and `link_graph`.
    Opened read-only.
    """
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        base = {"seed": str(seed), "min_chars": min_chars}
        pages = _rows(con, _CANDIDATES_SQL, {**base, "per_host": per_host})
        ids = [p["page_id"] for p in pages]
        has_links = bool(con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'link_graph'").fetchone()[0])
        edges: list[dict] = []
        if has_links and ids and neighbours_per_page > 0:
            edges = _rows(con, _NEIGHBOUR_EDGES_SQL, {**base, "ids": ids, "per_page": neighbours_per_page})
            known = set(ids)
            extra = sorted({e["dst_id"] for e in edges} - known)
            if extra:
                pages += _rows(con, _PAGES_BY_ID_SQL, {"ids": extra})
            all_ids = [p["page_id"] for p in pages]
            seen = {(e["src_id"], e["dst_id"]) for e in edges}
            edges += [e for e in _rows(con, _EDGES_AMONG_SQL, {"ids": all_ids}) if (e["src_id"], e["dst_id"]) not in seen]
    return SourceRows(pages=pages, edges=edges)


def read_texts(db_path: str | Path, urls: Iterable[str]) -> dict[str, str]:
    """The stored text of each URL (for checks that re-read the source independently of the build)."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        return {r["url"]: r["text"] for r in _rows(con, _TEXTS_BY_URL_SQL, {"urls": sorted(set(urls))})}


_CATEGORY = re.compile(r"Related subjects:\s*([^\n]+)")


def page_category(text: str) -> str | None:
    """The subject category a page states ("Related subjects: Countries" in Wikipedia for Schools), if any."""
    m = _CATEGORY.search((text or "")[:2000])
    return " ".join(m.group(1).split()).casefold() if m else None


def source_rejection(profile: PageProfile, criteria: SourceCriteria) -> str | None:
    """Why a page is not a source (None: it is one)."""
    if profile.n_chars < criteria.min_chars:
        return "page_too_short"
    if profile.stopword_share < criteria.min_stopword_share:
        return "page_not_english_prose"
    if profile.prose_share < criteria.min_prose_share:
        return "page_not_prose"
    if profile.n_prose_paragraphs < criteria.min_prose_paragraphs:
        return "page_few_paragraphs"
    if profile.n_headings < criteria.min_headings:
        return "page_few_sections"
    return None


def order_key(seed: int, url: str) -> str:
    """The seeded sort key of a URL: the same order on every run with that seed."""
    return hashlib.md5(f"{seed}{url}".encode("utf-8")).hexdigest()


def select_sources(pages: Iterable[dict], criteria: SourceCriteria = SourceCriteria(), seed: int = 0
                   ) -> tuple[list[dict], Counter]:
    """Pages that qualify as sources, in a seeded order that alternates between hosts; rejections by reason."""
    rejected: Counter = Counter()
    by_host: dict[str, list[dict]] = defaultdict(list)
    seen_urls: set[str] = set()
    for page in pages:
        if page["url"] in seen_urls:
            continue
        seen_urls.add(page["url"])
        reason = source_rejection(profile_text(page.get("text") or ""), criteria)
        if reason:
            rejected[reason] += 1
        else:
            by_host[page.get("host") or ""].append(page)
    queues = [sorted(ps, key=lambda p: order_key(seed, p["url"])) for _, ps in sorted(by_host.items())]
    ordered = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    return ordered, rejected


def display_titles(pages: Sequence[dict]) -> dict[str, str]:
    """A title per URL that names the page: its own title, unless several pages of its host share that title
    ("Blogs"), then the first line of its text when that is short (the page's heading, as extracted)."""
    shared = Counter((p.get("host"), p.get("title")) for p in pages)
    out = {}
    for p in pages:
        title = (p.get("title") or "").strip()
        first = (p.get("text") or "").lstrip().split("\n", 1)[0].strip()
        if (not title or shared[(p.get("host"), p.get("title"))] > 1) and 0 < len(first) <= 100:
            title = first
        out[p["url"]] = title
    return out
