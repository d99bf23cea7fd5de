"""The simulated web: search, fetch, links and sitemap over one snapshot, in process.

`Simulator(snapshot)` memory-maps the snapshot's serving files (`serve/*.arrow`) and opens its search
index; nothing else is loaded, so opening is fast and many processes can serve one snapshot while
the operating system shares its pages between them. Every operation is read-only and thread-safe.

Requested URLs go through `pipeline.ingest.urls.normalize_url`, exactly as links did at ingest. A URL that
the store knows as a redirect answers 301 with `location`; a URL whose content is an exact duplicate
of another page answers 200 with the canonical page's content and says which page that is
(`canonical_url`, headers `content-location` and `link: <...>; rel="canonical"`): the crawl saw 200 at
that URL, deduplication is the store's storage choice and must not add a hop the site never made.

Simulated latency and failures are off by default; when on, they are drawn per trajectory from a
seeded generator (the n-th call of a trajectory always gets the same draw), and a failed call returns
a 503 response, never an exception. Invalid arguments raise `InvalidRequest` (a `ValueError`).

The response types and argument checks (`responses`), the serving-file lookups (`page_files`) and the
HTTP client (`http_client`) are their own modules; their public names are re-exported here.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from datetime import timezone
from concurrent.futures import ThreadPoolExecutor
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Callable

from pipeline.ingest.urls import normalize_url
from pipeline.simulator.calllog import CallLog
# The response types, argument checks and the HTTP client are part of this module's API (one import for callers).
from pipeline.simulator.http_client import HttpSimulator  # noqa: F401
from pipeline.simulator.page_files import PAGE_COLUMNS, PageFiles  # noqa: F401
from pipeline.simulator.responses import (  # noqa: F401
    MAX_FIND_CONTEXT,
    MAX_FIND_MATCHES,
    MAX_FIND_TEXT_CHARS,
    MAX_K,
    MAX_LINKS_LIMIT,
    MAX_OFFSET,
    MAX_READ_CHARS,
    READ_CHARS,
    FindMatch,
    FindResponse,
    ReadResponse,
    MAX_QUERY_CHARS,
    MAX_SITEMAP_LIMIT,
    MAX_SNIPPET_CHARS,
    MAX_URL_CHARS,
    RESPONSE_TYPES,
    FetchResponse,
    InvalidRequest,
    Link,
    LinksResponse,
    SearchResponse,
    SearchResult,
    SitemapEntry,
    SitemapResponse,
    check_int,
    check_text,
)
from pipeline.simulator.search_index import STOPWORDS, make_snippet, open_index, query_terms
from pipeline.simulator.snapshot import INDEX_DIR, SERVE_DIR, Snapshot, resolve_snapshot
from pipeline.simulator.snippets import SnippetMap

_SEARCH_COLUMNS = ("url", "title", "text")


def round_score(x: float) -> float:
    """`round(x, 4)`, exactly, in a third of its time (a search rounds every result's score).

    `round(x, 4)` is the double nearest the decimal x rounded half-even to 4 places. Here x * 10000 is rounded
    half-even to an integer k and k / 10000 (one correctly rounded division) is that same double, whenever the
    product's rounding error cannot have moved it across a half: always for the scores of a float32 engine (a
    24-bit mantissa times 10000 = 2**4 * 625 is exact in a double), else unless it lands within a tiny margin of
    a half, where `round` itself answers (below 2**22 the product is off by under 1e-9; negative scores too, for
    the sign of a zero).
    """
    y = x * 10000.0
    if 0.0 < y < 4194304.0:
        k = round(y)
        if abs(abs(y - k) - 0.5) > 1e-9:
            return k / 10000.0
    return round(x, 4)


# ---- failure and latency knobs ----------------------------------------------------------------

class _Chaos:
    """Seeded latency and failure draws; the n-th call of a trajectory always gets the same draw."""

    def __init__(self, latency_ms: float, jitter_ms: float, failure_rate: float, seed: int):
        self.latency_ms, self.jitter_ms, self.failure_rate, self.seed = latency_ms, jitter_ms, failure_rate, seed
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def draw(self, session: str | None, trajectory: str | None) -> tuple[float, bool]:
        key = f"{session or ''}\x1f{trajectory or ''}"
        with self._lock:
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
            if len(self._counts) > 1_000_000:  # a long-lived server: forget old trajectories
                self._counts.clear()
        rng = random.Random(f"{self.seed}\x1f{key}\x1f{n}")
        delay_ms = self.latency_ms + (rng.random() * self.jitter_ms if self.jitter_ms else 0.0)
        failed = self.failure_rate > 0 and rng.random() < self.failure_rate
        return delay_ms / 1000.0, failed


# ---- the simulator ---------------------------------------------------------------------------

class Simulator:
    """Search, fetch, links and sitemap over one snapshot (a folder, an id, or None for the latest)."""

    def __init__(
        self,
        snapshot: str | Path | Snapshot | None = None,
        *,
        snapshots_root: str | Path | None = None,
        default_k: int = 10,
        max_k: int = MAX_K,
        snippet_chars: int = 200,
        latency_ms: float = 0.0,
        latency_jitter_ms: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        cache_size: int = 4096,
        call_log: CallLog | bool | None = None,
    ):
        import numpy as np

        self.snapshot = snapshot if isinstance(snapshot, Snapshot) else resolve_snapshot(snapshot, snapshots_root)
        self.snapshot_id = self.snapshot.id
        self.files = PageFiles(self.snapshot)
        self.index = open_index(self.snapshot.path / INDEX_DIR)
        serve_dir = self.snapshot.path / SERVE_DIR
        self._snippet_map = (SnippetMap(serve_dir, self.files.page_bytes, *self.files.page_spans["text"],
                                        spans=self.files.spans)
                             if SnippetMap.exists(serve_dir) else None)
        self._np = np
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.default_k = check_int("default_k", default_k, 1, max_k)
        self.max_k = max_k
        self.snippet_chars = check_int("snippet_chars", snippet_chars, 0, MAX_SNIPPET_CHARS)
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate}")
        if latency_ms < 0 or latency_jitter_ms < 0:
            raise ValueError("latency_ms and latency_jitter_ms must be >= 0")
        self._chaos = (_Chaos(latency_ms, latency_jitter_ms, failure_rate, seed)
                       if latency_ms or latency_jitter_ms or failure_rate else None)
        if call_log is True:
            call_log = CallLog(self.snapshot.log_dir, self.snapshot_id)
        self.call_log: CallLog | None = call_log or None
        self._base_headers = {"x-websim-snapshot": self.snapshot_id}
        cached = functools.lru_cache(maxsize=cache_size) if cache_size else (lambda f: f)
        self._fetch_normalised = cached(self._fetch_normalised_uncached)
        self._search_cached = cached(self._search_uncached)
        self._normalize = functools.lru_cache(maxsize=cache_size or 1)(normalize_url) if cache_size else normalize_url
        self._ops: dict[str, Callable[..., Any]] = {
            "search": self._search, "fetch": self._fetch, "links": self._links, "sitemap": self._sitemap,
            "read": self._read, "find": self._find}

    # -- public API ------------------------------------------------------------------------

    def search(self, query: str, k: int | None = None, *, snippet_chars: int | None = None,
               session: str | None = None, trajectory: str | None = None) -> SearchResponse:
        """Ranked pages for `query`: url, title, a snippet around the query terms, BM25 score."""
        return self.call("search", {"query": query, "k": k, "snippet_chars": snippet_chars},
                         session=session, trajectory=trajectory)[0]

    def fetch(self, url: str, *, session: str | None = None, trajectory: str | None = None) -> FetchResponse:
        """The page at `url` as an HTTP-like response: 200 (text, outlinks), 301 (location), 404, or 400."""
        return self.call("fetch", {"url": url}, session=session, trajectory=trajectory)[0]

    def links(self, url: str, *, backlinks: bool = False, limit: int = 500, session: str | None = None,
              trajectory: str | None = None) -> LinksResponse:
        """Outlinks of the page at `url` (anchor text, clickstream counts), and its backlinks if asked."""
        return self.call("links", {"url": url, "backlinks": backlinks, "limit": limit},
                         session=session, trajectory=trajectory)[0]

    def sitemap(self, host: str, prefix: str = "", offset: int = 0, limit: int = 100, *,
                session: str | None = None, trajectory: str | None = None) -> SitemapResponse:
        """The pages of `host` sorted by path (with titles), from `offset`, at most `limit`, under `prefix`."""
        return self.call("sitemap", {"host": host, "prefix": prefix, "offset": offset, "limit": limit},
                         session=session, trajectory=trajectory)[0]

    def read(self, url: str, offset: int = 0, max_chars: int | None = None, *, session: str | None = None,
             trajectory: str | None = None) -> ReadResponse:
        """Characters [offset, offset + max_chars) of the page at `url` (redirects followed), with `next_offset`."""
        return self.call("read", {"url": url, "offset": offset, "max_chars": max_chars},
                         session=session, trajectory=trajectory)[0]

    def find(self, url: str, text: str, *, max_matches: int | None = None, context_chars: int | None = None,
             session: str | None = None, trajectory: str | None = None) -> FindResponse:
        """Where `text` occurs in the page at `url` (case and whitespace ignored): offsets to `read` at, with context."""
        return self.call("find", {"url": url, "text": text, "max_matches": max_matches,
                                  "context_chars": context_chars}, session=session, trajectory=trajectory)[0]

    def access_pages(self, urls: list[str], *, session: str | None = None,
                     trajectory: str | None = None) -> tuple[list[dict | None], float]:
        """ASearcher's `/access`: for each URL its page {"url", "title", "contents", "id"} (redirects followed), or None
        where this web has none (or the URL is not one); and the simulated delay to wait (not slept)."""
        if not isinstance(urls, (list, tuple)):
            raise InvalidRequest("urls must be a list of strings")
        pages: list[dict | None] = []
        delay = 0.0
        for url in urls:
            resp, d = self._resolved(url, session, trajectory)
            delay += d
            pages.append({"url": resp.final_url, "title": resp.title, "contents": resp.text, "id": str(resp.page_id)}
                         if resp is not None and resp.status == 200 else None)
        return pages, delay

    def hosts(self) -> list[dict]:
        """Every host in the snapshot with its number of pages, by name."""
        return [{"host": h, "pages": b - a} for h, (a, b) in sorted(self.files.hosts.items())]

    def search_many(self, queries: list[str], k: int | None = None, *, snippet_chars: int | None = None,
                    session: str | None = None, trajectory: str | None = None,
                    threads: int | None = None) -> list[SearchResponse]:
        """`search` for each of `queries` (a trainer's step at once), answers in the same order.

        The queries are split between `threads` threads (default: the machine's cores); the index search and the
        snippets release the GIL. An invalid query raises `InvalidRequest` before any is searched. With simulated
        latency, the batch sleeps the sum of its calls' delays (the queries one after another, as over HTTP).
        """
        if not isinstance(queries, (list, tuple)):
            raise InvalidRequest("queries must be a list of strings")
        for query in queries:
            check_text("query", query, MAX_QUERY_CHARS)
        args = [{"query": q, "k": k, "snippet_chars": snippet_chars} for q in queries]
        answers = self._map_calls("search", args, session, trajectory, threads)
        delay = sum(d for _, d in answers)
        if delay > 0:
            time.sleep(delay)
        return [resp for resp, _ in answers]

    def _map_calls(self, op: str, args: list[dict], session: str | None, trajectory: str | None,
                   threads: int | None = None) -> list[tuple[Any, float]]:
        """`call(op, a, sleep=False)` for each `a` of `args`, split between threads; (response, delay) in order."""
        n_threads = max(1, min(threads or os.cpu_count() or 1, len(args) // 8 or 1))
        run = lambda part: [self.call(op, a, session=session, trajectory=trajectory, sleep=False)  # noqa: E731
                            for a in part]
        if n_threads == 1:
            return run(args)
        with self._pool_lock:
            if self._pool is None or self._pool._max_workers < n_threads:
                self._pool = ThreadPoolExecutor(max_workers=max(n_threads, os.cpu_count() or 1),
                                                thread_name_prefix="websim-search")
        size = -(-len(args) // n_threads)
        futures = [self._pool.submit(run, args[i:i + size]) for i in range(0, len(args), size)]
        return [answer for f in futures for answer in f.result()]

    def retrieve(self, queries: list[str], topk: int = 3, return_scores: bool = True, *,
                 passage_chars: int = 600, session: str | None = None, trajectory: str | None = None) -> dict:
        """Search-R1's retrieval-server answer: {"result": [[{"document": {...}, "score": s}, ...], ...]}.

        A document is {"id", "title", "text", "contents", "url"} with `contents` = '"Title"\\ntext', the
        format of Search-R1's corpora; `text` is the best passage of the page (about 100 words). A blank query
        gets no documents (a model may emit "<search></search>").
        """
        topk = 3 if topk is None else topk  # null and absent agree, as over HTTP
        result, delay = self.retrieve_lists(queries, topk, return_scores, passage_chars=passage_chars,
                                            session=session, trajectory=trajectory)
        if delay > 0:
            time.sleep(delay)
        return {"result": result}

    def retrieve_lists(self, queries: list[str], topk: int, return_scores: bool, *, passage_chars: int = 600,
                       session: str | None = None, trajectory: str | None = None) -> tuple[list[list[dict]], float]:
        """`retrieve`'s result lists and the simulated delay to wait (not slept: the HTTP server awaits it)."""
        if not isinstance(queries, (list, tuple)):
            raise InvalidRequest("queries must be a list of strings")
        for query in queries:
            check_text("query", query, MAX_QUERY_CHARS, allow_empty=True)
        todo = [i for i, q in enumerate(queries) if q.strip()]
        answers = self._map_calls("search", [{"query": queries[i], "k": topk, "snippet_chars": passage_chars}
                                             for i in todo], session, trajectory)
        result: list[list[dict]] = [[] for _ in queries]
        for i, (resp, _) in zip(todo, answers):
            result[i] = search_r1_documents(resp, return_scores)
        return result, sum(d for _, d in answers)

    def page_count(self) -> int:
        return self.files.num_pages

    def close(self) -> None:
        if self.call_log is not None:
            self.call_log.flush()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- dispatch: chaos, timing, logging ---------------------------------------------------

    def call(self, op: str, args: dict[str, Any], *, session: str | None = None, trajectory: str | None = None,
             sleep: bool = True) -> tuple[Any, float]:
        """Run operation `op` with `args`; returns (response, simulated delay in seconds).

        With `sleep` the delay is slept here; an async server passes False and awaits it instead.
        """
        fn = self._ops.get(op)
        if fn is None:
            raise InvalidRequest(f"unknown operation {op!r}")
        started = time.perf_counter()
        delay, failed = self._chaos.draw(session, trajectory) if self._chaos else (0.0, False)
        resp, error, status = None, None, 500
        try:
            resp = _failure(op, args) if failed else fn(**args)
        except InvalidRequest as exc:
            error, status = str(exc), 400
            raise
        except Exception as exc:
            error = f"internal error: {exc!r}"
            raise
        finally:
            if self.call_log is not None:
                latency_ms = (time.perf_counter() - started) * 1000.0
                if resp is None:
                    self.call_log.record(op, args, session=session, trajectory=trajectory, status=status,
                                         latency_ms=latency_ms, delay_ms=delay * 1000.0, error=error)
                else:
                    ids, urls = _result_refs(resp)
                    self.call_log.record(op, args, session=session, trajectory=trajectory, status=resp.status,
                                         latency_ms=latency_ms, delay_ms=delay * 1000.0, result_ids=ids,
                                         result_urls=urls, error=resp.error)
        if sleep and delay > 0:
            time.sleep(delay)
        return resp, delay

    # -- operations ------------------------------------------------------------------------

    def _search(self, query: Any, k: Any = None, snippet_chars: Any = None) -> SearchResponse:
        query = check_text("query", query, MAX_QUERY_CHARS)
        k = self.default_k if k is None else check_int("k", k, 1, self.max_k)
        snippet_chars = (self.snippet_chars if snippet_chars is None
                         else check_int("snippet_chars", snippet_chars, 0, MAX_SNIPPET_CHARS))
        return self._search_cached(query, k, snippet_chars)

    def _search_uncached(self, query: str, k: int, snippet_chars: int) -> SearchResponse:
        hits = self.index.search(query, k)
        if not hits:
            return SearchResponse(200, query, [])
        pids, scores = zip(*hits)
        rows = self.files.rows_of(pids)
        ranks = range(1, len(hits) + 1)
        if None in rows:  # a page the index has and the page files do not: left out, the ranks keep their gaps
            kept = [i for i, row in enumerate(rows) if row is not None]
            ranks, pids, scores, rows = ([seq[i] for i in kept] for seq in (ranks, pids, scores, rows))
        rows = self._np.array(rows, dtype=self._np.int64)
        # STOPWORDS, not True: the same terms, and the index (built with that list) has just parsed the query
        # under this cache key.
        urls, titles, snippets = self._result_fields(rows, query_terms(query, STOPWORDS), snippet_chars)
        return SearchResponse(200, query, list(map(SearchResult, ranks, urls, titles, snippets,
                                                   list(map(round_score, scores)), pids)))

    def _result_fields(self, rows, terms: list[str], max_chars: int) -> tuple[list[str], list[str], list[str]]:
        """The urls, titles and snippets of page rows `rows`."""
        if self._snippet_map is not None:
            fields = self._snippet_map.records(rows, terms, max_chars)
            if fields is not None:
                return fields
        urls, titles = self.files.urls_titles(rows)
        if not max_chars:
            return urls, titles, [""] * len(rows)
        if self._snippet_map is not None:
            return urls, titles, self._snippet_map.snippets(rows, terms, max_chars)
        # A format-1 snapshot has no term map: scan the texts (slower, the same kind of snippet).
        return urls, titles, [make_snippet(text, terms, max_chars) for text in self.files.strings(rows.tolist(), "text")]

    def _fetch(self, url: Any) -> FetchResponse:
        url = check_text("url", url, MAX_URL_CHARS)
        norm = self._normalize(url)
        if norm is None:
            return FetchResponse(400, url, dict(self._base_headers), error="not an absolute http(s) URL")
        return self._fetch_normalised(norm)

    def _fetch_normalised_uncached(self, url: str) -> FetchResponse:
        entry = self.files.lookup_url(url)
        if entry is None:
            return FetchResponse(404, url, {"content-type": "text/plain; charset=utf-8", **self._base_headers},
                                 error="not found in this snapshot")
        if entry["reason"] == "redirect":
            status = entry["http_status"] if 300 <= (entry["http_status"] or 0) < 400 else 301
            return FetchResponse(status, url, {"location": entry["target_url"], "content-length": "0",
                                               **self._base_headers})
        page = self.files.page(entry["page_id"])
        if page is None:  # an alias to a page that is not there: the store's contracts forbid it
            return FetchResponse(404, url, dict(self._base_headers), error="not found in this snapshot")
        headers = {"content-type": "text/plain; charset=utf-8", "content-length": str(page["n_bytes"]),
                   **self._base_headers, "x-websim-page-id": str(page["page_id"])}
        if page["warc_date"] is not None:
            headers["last-modified"] = format_datetime(page["warc_date"].astimezone(timezone.utc), usegmt=True)
        canonical = None
        if entry["reason"] == "duplicate_content":
            canonical = page["url"]
            headers["content-location"] = canonical
            headers["link"] = f'<{canonical}>; rel="canonical"'
        return FetchResponse(200, url, headers, final_url=page["url"], canonical_url=canonical, title=page["title"],
                             text=page["text"], outlinks=self._outlinks(page["page_id"], 1_000_000)[0],
                             page_id=page["page_id"])

    def _resolved(self, url: Any, session: str | None = None, trajectory: str | None = None,
                  ) -> tuple[FetchResponse | None, float]:
        """Fetch `url` following simulated redirects (5 hops at most), each hop a logged call; None for a URL that is
        not one (wrong type, empty, binary)."""
        delay = 0.0
        for _ in range(6):
            try:
                resp, d = self.call("fetch", {"url": url}, session=session, trajectory=trajectory, sleep=False)
            except InvalidRequest:
                return None, delay
            delay += d
            if resp.status not in (301, 302, 303, 307, 308) or "location" not in resp.headers:
                return resp, delay
            url = resp.headers["location"]
        return resp, delay

    def _page_for(self, url: Any) -> FetchResponse:
        """The page at `url` for reading tools, redirects followed (an invalid URL raises InvalidRequest)."""
        url = check_text("url", url, MAX_URL_CHARS)
        for _ in range(6):
            resp = self._fetch(url)
            if resp.status not in (301, 302, 303, 307, 308) or "location" not in resp.headers:
                return resp
            url = resp.headers["location"]
        return resp

    def _read(self, url: Any, offset: Any = 0, max_chars: Any = None) -> ReadResponse:
        offset = check_int("offset", offset, 0, MAX_OFFSET)
        max_chars = READ_CHARS if max_chars is None else check_int("max_chars", max_chars, 1, MAX_READ_CHARS)
        page = self._page_for(url)
        if page.status != 200:
            return ReadResponse(page.status, page.url, error=page.error)
        text = page.text[offset:offset + max_chars]
        end = offset + len(text)
        return ReadResponse(200, page.url, page.final_url, page.title, offset, text, len(page.text),
                            end if end < len(page.text) else None, page.page_id)

    def _find(self, url: Any, text: Any, max_matches: Any = None, context_chars: Any = None) -> FindResponse:
        import re

        text = check_text("text", text, MAX_FIND_TEXT_CHARS)
        max_matches = 10 if max_matches is None else check_int("max_matches", max_matches, 1, MAX_FIND_MATCHES)
        context = 100 if context_chars is None else check_int("context_chars", context_chars, 0, MAX_FIND_CONTEXT)
        page = self._page_for(url)
        if page.status != 200:
            return FindResponse(page.status, page.url, text, error=page.error)
        # Case-insensitive, and any run of whitespace matches any other: a phrase copied from a snippet is found.
        pattern = re.compile(r"\s+".join(re.escape(w) for w in text.split()), re.IGNORECASE)
        body = page.text
        matches, total = [], 0
        for m in pattern.finditer(body):
            total += 1
            if len(matches) < max_matches:
                a, b = max(0, m.start() - context), min(len(body), m.end() + context)
                snippet = ("…" if a > 0 else "") + " ".join(body[a:b].split()) + ("…" if b < len(body) else "")
                matches.append(FindMatch(m.start(), snippet))
        return FindResponse(200, page.url, text, page.final_url, page.title, total, matches, page.page_id)

    def _outlinks(self, page_id: int, limit: int) -> tuple[list[Link], int]:
        rows, total = self.files.outlinks(page_id, limit)
        meta = self.files.meta([r["dst_id"] for r in rows])
        links = [Link(m["url"], m["title"], r["anchor"] or "", int(r["clicks"] or 0), r["dst_id"])
                 for r in rows if (m := meta.get(r["dst_id"])) is not None]
        return links, total

    def _links(self, url: Any, backlinks: Any = False, limit: Any = 500) -> LinksResponse:
        url = check_text("url", url, MAX_URL_CHARS)
        if not isinstance(backlinks, bool):
            raise InvalidRequest("backlinks must be true or false")
        limit = check_int("limit", limit, 1, MAX_LINKS_LIMIT)
        norm = self._normalize(url)
        if norm is None:
            return LinksResponse(400, url, error="not an absolute http(s) URL")
        entry = self.files.lookup_url(norm)
        if entry is None:
            return LinksResponse(404, norm, error="not found in this snapshot")
        # Links belong to the page a redirect or a duplicate URL leads to.
        page_id = entry["page_id"]
        outlinks, n_out = self._outlinks(page_id, limit)
        resp = LinksResponse(200, self.files.meta([page_id])[page_id]["url"], page_id, outlinks, n_outlinks=n_out)
        if backlinks:
            rows, resp.n_backlinks = self.files.backlinks_of(page_id, limit)
            meta = self.files.meta([r["src_id"] for r in rows])
            resp.backlinks = [Link(m["url"], m["title"], r["anchor"] or "", int(r["clicks"] or 0), r["src_id"])
                              for r in rows if (m := meta.get(r["src_id"])) is not None]
        else:
            resp.n_backlinks = self.files.count_backlinks(page_id)
        return resp

    def _sitemap(self, host: Any, prefix: Any = "", offset: Any = 0, limit: Any = 100) -> SitemapResponse:
        host = check_text("host", host, 1024)
        prefix = check_text("prefix", prefix, MAX_URL_CHARS, allow_empty=True)
        offset = check_int("offset", offset, 0, 10**12)
        limit = check_int("limit", limit, 1, MAX_SITEMAP_LIMIT)
        host, prefix = _host_and_prefix(host.strip(), prefix.strip())
        if host is None:
            return SitemapResponse(400, "", prefix or "", error="not a host name or URL")
        span = self.files.sitemap_range(host, prefix)
        if span is None:
            return SitemapResponse(404, host, prefix, offset=offset, limit=limit, error="no pages of this host")
        a, b = span
        start = min(a + offset, b)
        stop = min(start + limit, b)
        entries = [SitemapEntry(r["url"], r["path"], r["title"]) for r in self.files.sitemap_rows(start, stop)]
        return SitemapResponse(200, host, prefix, total=b - a, offset=offset, limit=limit, entries=entries,
                               next_offset=stop - a if stop < b else None)


def search_r1_documents(resp: SearchResponse, return_scores: bool) -> list[dict]:
    """Search results as Search-R1's retriever returns them: {"id", "contents": '"Title"\\ntext', ...} documents,
    wrapped as {"document": ..., "score": ...} when scores are asked for."""
    docs = []
    for r in resp.results:
        doc = {"id": str(r.page_id), "title": r.title, "text": r.snippet, "contents": f'"{r.title}"\n{r.snippet}',
               "url": r.url}
        docs.append({"document": doc, "score": r.score} if return_scores else doc)
    return docs


def _host_and_prefix(host: str, prefix: str) -> tuple[str | None, str]:
    """A host (or any URL of it) and a path prefix, normalised like URLs at ingest."""
    if "://" in host:
        norm = normalize_url(host)
        if norm is None:
            return None, prefix
        scheme_host, _, path = norm.partition("://")[2].partition("/")
        host_only = scheme_host.split(":")[0]
        if not prefix and path:
            prefix = "/" + path
        host = host_only
    norm = normalize_url(f"http://{host}/")
    if norm is None or "/" in host or "?" in host:
        return None, prefix
    host = norm[len("http://"):].rstrip("/").split(":")[0]
    if prefix and prefix not in ("/",):
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        p = normalize_url(f"http://{host}{prefix}")
        if p is not None:
            prefix = p[len(f"http://{host}"):]
    return host, prefix


def _failure(op: str, args: dict) -> Any:
    err = "simulated failure (503 Service Unavailable): retry"
    if op == "search":
        return SearchResponse(503, str(args.get("query", "")), error=err)
    if op == "fetch":
        return FetchResponse(503, str(args.get("url", "")), {"retry-after": "1"}, error=err)
    if op == "links":
        return LinksResponse(503, str(args.get("url", "")), error=err)
    if op == "read":
        return ReadResponse(503, str(args.get("url", "")), error=err)
    if op == "find":
        return FindResponse(503, str(args.get("url", "")), str(args.get("text", "")), error=err)
    return SitemapResponse(503, str(args.get("host", "")), error=err)


def _result_refs(resp: Any) -> tuple[list[int], list[str]]:
    if isinstance(resp, SearchResponse):
        return [r.page_id for r in resp.results], [r.url for r in resp.results]
    if isinstance(resp, FetchResponse):
        if resp.page_id is not None:
            return [resp.page_id], [resp.final_url or resp.url]
        return [], [resp.headers["location"]] if "location" in resp.headers else []
    if isinstance(resp, LinksResponse):
        return [link.page_id for link in resp.outlinks], []
    if isinstance(resp, SitemapResponse):
        return [], [e.url for e in resp.entries]
    if isinstance(resp, (ReadResponse, FindResponse)) and resp.page_id is not None:
        return [resp.page_id], [resp.final_url or resp.url]
    return [], []


# ---- quality check ---------------------------------------------------------------------------

def title_self_retrieval(sim: Simulator, sample: int = 500, k: int = 10, seed: int = 0) -> dict:
    """How often a page, searched by its own title, comes first / in the top `k` (a sample of pages).

    Pages whose title is empty or shared with another page are left out: no engine can tell those apart.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    started = time.perf_counter()
    table = sim.files.pages.table
    titles = table.column("title")
    counts = pc.value_counts(titles)
    unique = pc.filter(counts.field("values"), pc.equal(counts.field("counts"), 1))
    unique = pc.filter(unique, pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(unique)), 0))
    mask = pc.is_in(titles, value_set=unique)
    candidates = pc.indices_nonzero(pa.chunked_array([mask.combine_chunks()])).to_pylist() if len(mask) else []
    chosen = sorted(random.Random(seed).sample(candidates, min(sample, len(candidates))))
    rows = table.select(["page_id", "title"]).take(chosen).to_pylist() if chosen else []
    hit1 = hitk = 0
    for row in rows:
        ids = [pid for pid, _ in sim.index.search(row["title"], k)]
        hit1 += bool(ids) and ids[0] == row["page_id"]
        hitk += row["page_id"] in ids
    n = len(rows)
    return {"sampled": n, "k": k, "hit_at_1": round(hit1 / n, 4) if n else 0.0,
            "hit_at_k": round(hitk / n, 4) if n else 0.0,
            "ambiguous_titles_skipped": table.num_rows - len(candidates),
            "seconds": round(time.perf_counter() - started, 3)}
