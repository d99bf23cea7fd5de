"""Full-text search over a snapshot's pages: BM25 indexes (tantivy, bm25s) and query-centred snippets.

An index maps a query to ranked `(page_id, score)` pairs and nothing else: titles, URLs and texts
come from the snapshot's page files, so both engines are served and compared through the same code.

- `tantivy` (default): Rust, on-disk and memory-mapped, BM25 (k1=1.2, b=0.75, fixed by tantivy) summed
  over a `title` and a `body` field, top-k by block-max WAND, searches release the GIL. Measured on the
  Wikispeedia corpus it ranks a page first for its own title more often than bm25s (0.998 vs 0.927) with
  the same recall@10 for sentence queries, at 2x bm25s's single-query throughput (benchmarks/bench_simulator.py).
- `bm25s`: numpy sparse matrix of precomputed BM25 scores, one field (title + text); k1 and b configurable.
  Kept as the reference the benchmark compares against, and as a fallback.
- tantivy in shards (`IndexConfig(shards=N)`, pipeline.simulator.index_shards): N indexes over a split of the
  pages, built in N processes and searched together with the statistics of all pages (same pages and scores as one
  index); `open_index` tells the two layouts apart by the index's meta file.

DuckDB's own FTS extension is not an option here: extensions are downloaded at run time (no network
on the build machines) and the `duckdb-extension-fts` wheel on PyPI (1.5.5) does not match duckdb 2.0.1.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

INDEX_KINDS = ("tantivy", "bm25s")
META_FILE = "index_meta.json"

# English function words (NLTK's list without contractions): pronouns, auxiliaries, wh-words,
# prepositions. They are in most pages, so they cost the most to score and rank nothing; dropping them
# keeps natural-language questions ("Which city was ... ?") cheap on a large corpus. A query made only
# of them keeps them (see `query_terms`). The list an index was built with is stored beside it.
STOPWORDS = frozenset("""a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so some
such than that the their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your yours yourself
yourselves""".split())

# What a token is, for queries and snippets alike: runs of letters and digits (tantivy's `simple`
# tokenizer splits on everything else, underscores included).
_TOKEN = re.compile(r"[^\W_]+")
MAX_QUERY_TERMS = 64
MAX_SHARDS = 1024


@dataclass(frozen=True)
class IndexConfig:
    """How a snapshot's search index is built (recorded in the index folder and the manifest)."""

    kind: str = "tantivy"
    stopwords: bool = True
    """Drop English stop words (STOPWORDS) from documents and queries."""
    stemming: bool = False
    """English stemming (tantivy only). Off: it lost 2.6 points of sentence recall@10 on Wikispeedia."""
    title_boost: float = 1.0
    """Weight of the title field against the body (tantivy only); 2.0 lost 2.6 points of sentence recall."""
    k1: float = 1.2
    """BM25 k1 (bm25s only; tantivy's is fixed at 1.2)."""
    b: float = 0.75
    """BM25 b (bm25s only; tantivy's is fixed at 0.75)."""
    writer_heap_mb: int = 1024
    """Indexing memory, split between the threads; more memory, fewer segments to search."""
    threads: int = 0
    """Indexing threads (0: the machine's cores, at most 8), split between the shards."""
    shards: int = 1
    """Independent tantivy indexes the pages are split between (by a hash of page_id), built in parallel processes
    and searched together with the statistics of all pages, so that scores are those of one index
    (pipeline.simulator.index_shards). 1: one index, as before."""

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; expected one of {INDEX_KINDS}")
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"index shards must be an integer from 1 to {MAX_SHARDS}, got {self.shards!r}")
        if self.shards > 1 and self.kind != "tantivy":
            raise ValueError(f"index shards are a tantivy feature; the {self.kind} index is one file set (shards=1)")


@dataclass
class IndexStats:
    kind: str
    docs: int
    bytes: int
    seconds: float
    config: dict = field(default_factory=dict)
    cpu_s: float = 0.0
    """CPU time of the build: this process's threads and the shard processes it started."""
    shards: list[dict] = field(default_factory=list)
    """Per shard (shards > 1): its folder, documents, seconds and CPU seconds."""


def query_terms(query: str, stopwords: bool | frozenset[str] = True) -> list[str]:
    """The distinct lower-cased terms of `query`, stop words dropped unless nothing else is left."""
    return list(_query_terms(query, stopwords))


@functools.lru_cache(maxsize=8192)  # a search reads them twice (the index, the snippets); rollouts repeat queries
def _query_terms(query: str, stopwords: bool | frozenset[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tok in _TOKEN.findall(query.lower()):
        if len(seen) >= MAX_QUERY_TERMS:
            break
        seen.setdefault(tok, None)
    terms = tuple(seen)
    if stopwords:
        stop = STOPWORDS if stopwords is True else stopwords
        content = tuple(t for t in terms if t not in stop)
        return content or terms
    return terms


def indexed_query_terms(query: str, stopwords: frozenset[str] | bool) -> list[str]:
    """`query_terms` of `query` that an index built without `stopwords` can match."""
    terms = query_terms(query, stopwords)
    if stopwords:
        # A query of stop words only ("what is it", "to be or not to be") keeps them (see `query_terms`), but
        # this index dropped them from every page: nothing can match, and tantivy's parser rejects a query
        # its analyzer empties ("Only excluding terms given"). No results, not an error.
        terms = [t for t in terms if t not in stopwords]
    return terms


class SearchIndex(Protocol):
    kind: str

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Best `k` pages for `query` as (page_id, score), best first."""
        ...


# ---- tantivy ---------------------------------------------------------------------------------

def tantivy_analyzer(config: IndexConfig, stopwords: frozenset[str] = STOPWORDS):
    import tantivy

    builder = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
               .filter(tantivy.Filter.remove_long(40))
               .filter(tantivy.Filter.lowercase()))
    if config.stopwords and stopwords:
        builder = builder.filter(tantivy.Filter.custom_stopword(sorted(stopwords)))
    if config.stemming:
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def tantivy_schema():
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("page_id", stored=False, indexed=False, fast=True)
    sb.add_text_field("title", stored=False, tokenizer_name="websim")
    sb.add_text_field("body", stored=False, tokenizer_name="websim")
    return sb.build()


class TantivyIndex:
    kind = "tantivy"

    def __init__(self, path: Path, config: IndexConfig, stopwords: frozenset[str] = STOPWORDS):
        import tantivy

        self._index = tantivy.Index.open(str(path))
        self._index.register_tokenizer("websim", tantivy_analyzer(config, stopwords))
        self._searcher = self._index.searcher()  # the index never changes: one searcher for all calls
        self._boosts = {"title": config.title_boost} if config.title_boost != 1.0 else {}
        self._stopwords = stopwords if config.stopwords else False

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        # Only plain terms reach tantivy's query parser: no field names, operators or phrase syntax
        # from the agent's text, and lower case so that "AND"/"OR"/"NOT" are words, not operators.
        terms = indexed_query_terms(query, self._stopwords)
        if not terms:
            return []
        try:
            q = self._index.parse_query(" ".join(terms), ["title", "body"], field_boosts=self._boosts)
        except ValueError:  # a query the analyzer empties some other way: it matches nothing
            return []
        hits = self._searcher.search(q, k, count=False).hits
        if not hits:
            return []
        page_ids = self._searcher.fast_field_values("page_id", [addr for _, addr in hits])
        return [(pid, float(score)) for pid, (score, _) in zip(page_ids, hits)]


def indexing_threads(config: IndexConfig) -> int:
    return config.threads or min(os.cpu_count() or 1, 8)


def build_tantivy(path: Path, docs: Iterable[tuple[int, str, str]], config: IndexConfig,
                  threads: int | None = None, heap_bytes: int | None = None) -> int:
    """Write the tantivy index of `docs` into the folder `path`; returns the number of documents."""
    import tantivy

    index = tantivy.Index(tantivy_schema(), path=str(path))
    index.register_tokenizer("websim", tantivy_analyzer(config))
    threads = threads or indexing_threads(config)
    heap = heap_bytes or config.writer_heap_mb * 1_000_000
    writer = index.writer(max(heap, 15_000_000 * threads), threads)  # tantivy wants >= 15 MB a thread
    n = 0
    for page_id, title, text in docs:
        writer.add_document(tantivy.Document(page_id=int(page_id), title=title or "", body=text or ""))
        n += 1
    writer.commit()
    writer.wait_merging_threads()
    return n


# ---- bm25s -----------------------------------------------------------------------------------

class Bm25sIndex:
    kind = "bm25s"

    def __init__(self, path: Path, config: IndexConfig, stopwords: frozenset[str] = STOPWORDS):
        import bm25s
        import numpy as np

        self._np = np
        self._bm25 = bm25s.BM25.load(str(path / "bm25s"), mmap=True)
        self._page_ids = np.load(path / "page_ids.npy")
        self._stopwords = stopwords if config.stopwords else False

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        np = self._np
        ids = self._bm25.get_tokens_ids(query_terms(query, self._stopwords))
        if not ids:
            return []
        scores = self._bm25.get_scores_from_ids(ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self._page_ids[i]), float(scores[i])) for i in top if scores[i] > 0]


def _build_bm25s(path: Path, docs: Iterable[tuple[int, str, str]], config: IndexConfig) -> int:
    import bm25s
    import numpy as np

    page_ids: list[int] = []
    # Token ids, not strings: a list of ints that share one object per term is ~8 bytes a token.
    vocab: dict[str, int] = {}
    corpus: list[list[int]] = []
    for page_id, title, text in docs:
        page_ids.append(int(page_id))
        corpus.append([vocab.setdefault(t, len(vocab)) for t in _TOKEN.findall(f"{title}\n{text}".lower())
                       if not (config.stopwords and t in STOPWORDS)])
    bm25 = bm25s.BM25(k1=config.k1, b=config.b)
    bm25.index((corpus, vocab), show_progress=False)
    del corpus
    bm25.save(str(path / "bm25s"))
    np.save(path / "page_ids.npy", np.asarray(page_ids, dtype=np.int64))
    return len(page_ids)


# ---- building and opening --------------------------------------------------------------------

def build_index(path: str | Path, docs: Iterable[tuple[int, str, str]], config: IndexConfig = IndexConfig()) -> IndexStats:
    """Build the index of `docs` ((page_id, title, text), any order) into the empty folder `path`."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    shards: list[dict] = []
    if config.shards > 1:
        from pipeline.simulator.index_shards import build_shards

        shards = build_shards(path, docs, config)
        n = sum(shard["docs"] for shard in shards)
    else:
        n = (build_tantivy if config.kind == "tantivy" else _build_bm25s)(path, docs, config)
    stats = IndexStats(config.kind, n, 0, round(time.perf_counter() - started, 3), asdict(config),
                       round(_cpu_seconds() - cpu_started, 3), shards)
    meta = {**asdict(stats), "stopword_list": sorted(STOPWORDS) if config.stopwords else []}
    (path / META_FILE).write_text(json.dumps(meta, indent=2))
    stats.bytes = dir_bytes(path)
    return stats


def open_index(path: str | Path) -> SearchIndex:
    """Open the index in `path` with the analyzer and settings it was built with (one index or shards)."""
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    config = IndexConfig(**meta["config"])  # an index from before `shards` existed is one index
    stopwords = frozenset(meta.get("stopword_list", STOPWORDS if config.stopwords else ()))
    if config.shards > 1:
        from pipeline.simulator.index_shards import ShardedTantivyIndex

        dirs = [shard["dir"] for shard in meta.get("shards", [])]
        if len(dirs) != config.shards:
            raise ValueError(f"{path / META_FILE} promises {config.shards} shards and lists {len(dirs)}")
        return ShardedTantivyIndex(path, config, stopwords, dirs)
    return (TantivyIndex(path, config, stopwords) if config.kind == "tantivy"
            else Bm25sIndex(path, config, stopwords))


def _cpu_seconds() -> float:
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---- snippets --------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_CANDIDATES_PER_TERM = 16  # occurrences of one term looked at; enough to place a window
_FIRST_SCAN_CHARS = 6_000  # look here first: most pages answer early, and scanning is the cost
_SCAN_CHARS = 200_000  # a snippet never comes from further than this


def _lower_same_length(text: str) -> str:
    low = text.lower()
    if len(low) == len(text):
        return low
    # "İ" (and a few rarer letters) grow when lower-cased; offsets into `low` must stay offsets into `text`.
    low = text.replace("İ", "I").lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _term_positions(low: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """(offset, term number) of each term at the start of a word, ending at most 3 letters later (plurals)."""
    hits = []
    n = len(low)
    for ti, term in enumerate(terms):
        start = 0
        for _ in range(_CANDIDATES_PER_TERM):
            p = low.find(term, start)
            if p < 0:
                break
            start = p + len(term)
            if p > 0 and low[p - 1].isalnum():
                continue
            end = start
            while end < n and end - start <= 3 and low[end].isalnum():
                end += 1
            if end - start <= 3:
                hits.append((p, ti))
    hits.sort()
    return hits


def make_snippet(text: str, terms: Sequence[str], max_chars: int = 200) -> str:
    """The passage of `text` (at most `max_chars`) that holds the most distinct `terms`.

    Whitespace is collapsed; "…" marks a cut. No term found: the start of the text.
    """
    if not text or max_chars <= 0:
        return ""
    # One-letter terms ("s" of "'s") match everywhere and say nothing about where the answer is.
    terms = [t for t in terms if len(t) > 1] or [t for t in terms if t]
    hits: list[tuple[int, int]] = []
    if terms:
        hits = _term_positions(_lower_same_length(text[:_FIRST_SCAN_CHARS]), terms)
        # Scanning is the cost (every term, every character): the rest of the page only when its start
        # holds no term at all. A window further down with more terms is the price of that.
        if not hits and len(text) > _FIRST_SCAN_CHARS:
            hits = _term_positions(_lower_same_length(text[:_SCAN_CHARS]), terms)
    start = 0
    if hits:
        # Two pointers over the hits: the window of max_chars with the most distinct terms, then the earliest.
        best_count, best_first = 0, hits[0][0]
        counts: dict[int, int] = {}
        j = 0
        span = max(max_chars * 3 // 4, 1)
        for i, (p, ti) in enumerate(hits):
            counts[ti] = counts.get(ti, 0) + 1
            while p - hits[j][0] > span:
                tj = hits[j][1]
                counts[tj] -= 1
                if not counts[tj]:
                    del counts[tj]
                j += 1
            if len(counts) > best_count:
                best_count, best_first = len(counts), hits[j][0]
        # Some context before the first hit, starting at a word (or sentence) boundary.
        start = max(0, best_first - max_chars // 5)
        sentence = max(text.rfind(". ", start, best_first), text.rfind("\n", start, best_first))
        if sentence >= 0:
            start = sentence + 1
        elif start > 0:
            space = text.find(" ", start, best_first)
            start = space + 1 if space >= 0 else start
    # Cut at a word boundary; the raw slice is a bit longer than max_chars to survive collapsing whitespace.
    chunk = _SPACE.sub(" ", text[start:start + max_chars * 2]).strip()
    cut = len(chunk) > max_chars or start + max_chars * 2 < len(text)
    if len(chunk) > max_chars:
        chunk = chunk[:max_chars]
        space = chunk.rfind(" ")
        if space > max_chars // 2:
            chunk = chunk[:space]
    return ("…" if start > 0 else "") + chunk.rstrip(" ,;:") + ("…" if cut else "")
