"""Difficulty on the field's own measures, computed for every candidate that passes the rules.

- **Independent BM25** (bm25s over the snapshot's pages, title + text, the question as the query; not the
  simulator's tantivy index): the answer page's rank, and the evidence pages' recall@5 / @100 (BrowseComp-Plus
  reports BM25 evidence recall@5 of 1.2% for BrowseComp). `BM25Ranker` indexes once per run.
- **Clickstream**: the surprisal of each hop a searcher takes, `-log2 P(click dst | src)` with add-one smoothing
  over the source page's links (`(clicks(src->dst) + 1) / (clicks_out(src) + outlinks(src))`), and the answer
  page's share of arrivals that came from a search engine (`clicks_in_search / clicks_in`: a page people reach
  by searching is easier to reach by searching).
- `difficulty`: one 0-1 score from these (weights in the docstring), for ordering and histograms.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from pipeline.synthesis.questions.graph import ClueGraph


class BM25Ranker:
    """bm25s over (page_id, title, text) rows; `rank(query, depth)` -> page ids, best first."""

    def __init__(self, docs: Iterable[tuple[int, str, str]], k1: float = 1.2, b: float = 0.75):
        import bm25s
        import numpy as np

        ids, texts = [], []
        for pid, title, text in docs:
            ids.append(pid)
            texts.append(f"{title}\n{text}")
        self._np = np
        self._ids = np.asarray(ids, dtype=np.int64)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def rank_many(self, queries: Sequence[str], depth: int = 100) -> list[list[int]]:
        import bm25s

        if not queries:
            return []
        depth = min(depth, len(self._ids))
        tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        docs, scores = self._bm25.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
        return [[int(self._ids[d]) for d, s in zip(row, srow) if s > 0] for row, srow in zip(docs, scores)]


def rank_of(ranked: Sequence[int], page_id: int) -> int | None:
    """1-based rank of `page_id` in `ranked`, None when absent."""
    try:
        return list(ranked).index(page_id) + 1
    except ValueError:
        return None


def recall_at(ranked: Sequence[int], relevant: Iterable[int], k: int) -> float:
    rel = set(relevant)
    return round(len(rel & set(ranked[:k])) / len(rel), 4) if rel else 0.0


def hop_surprisal(g: ClueGraph, src: int, dst: int) -> float:
    """-log2 of the smoothed probability that a reader of `src` clicks through to `dst`."""
    out = g.out.get(src, set())
    clicks = g.edges.get((src, dst), {}).get("clicks", 0)
    total = sum(g.edges.get((src, d), {}).get("clicks", 0) for d in out)
    p = (clicks + 1) / (total + max(len(out), 1))
    return round(-math.log2(p), 4)


def search_arrival_share(g: ClueGraph, page_id: int) -> float | None:
    """Share of the page's clickstream arrivals that came from a search engine (None: no arrivals recorded)."""
    t = g.traffic.get(page_id) or {}
    if not t.get("clicks_in"):
        return None
    return round(t.get("clicks_in_search", 0) / t["clicks_in"], 4)


def difficulty(hops: int, bm25_rank: int | None, depth: int, evidence_recall_5: float, surprisal: float,
               min_clue_candidates: int) -> float:
    """0-1: hops (0.25), how deep independent BM25 ranks the answer page (0.3), evidence BM25 misses at 5 (0.2),
    the mean hop surprisal in bits scaled at 10 (0.15), and how many pages the most selective clue still admits
    (0.1, log-scaled at 100)."""
    hop_score = (min(max(hops, 1), 4) - 1) / 3
    rank_score = 1.0 if bm25_rank is None else min(1.0, math.log(bm25_rank) / math.log(max(depth, 2)))
    clue_score = min(1.0, math.log(max(min_clue_candidates, 1)) / math.log(100))
    score = (0.25 * hop_score + 0.3 * rank_score + 0.2 * (1 - evidence_recall_5)
             + 0.15 * min(1.0, surprisal / 10) + 0.1 * clue_score)
    return round(max(0.0, min(1.0, score)), 4)
