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
"""

from __future__ import annotations

import bisect
import functools
import random
import re
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Callable

from pipeline.simulator.calllog import CallLog
from pipeline.simulator.search_index import make_snippet, open_index, query_terms
from pipeline.simulator.snapshot import INDEX_DIR, Snapshot, resolve_snapshot, url_key
from pipeline.ingest.urls import normalize_url

MAX_QUERY_CHARS = 2048
MAX_URL_CHARS = 8192
MAX_K = 100
MAX_SNIPPET_CHARS = 5000
MAX_SITEMAP_LIMIT = 1000
# Control characters other than tab, newline and carriage return, and lone surrogates: binary junk.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class InvalidRequest(ValueError):
    """An argument no call can succeed with (wrong type, out of range, empty, binary)."""


# ---- responses -------------------------------------------------------------------------------

class _Response:
    """Plain data with `to_dict()` / `from_dict()` for JSON (the HTTP server and client)."""

    __slots__ = ()

    def to_dict(self) -> dict:
        out = {}
        for name in _field_names(type(self)):
            v = getattr(self, name)
            if v.__class__ is list and v and isinstance(v[0], _Response):
                v = [x.to_dict() for x in v]
            out[name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict):
        kwargs = {}
        for name in _field_names(cls):
            if name not in d:
                continue
            v = d[name]
            item = _ITEM_TYPES.get((cls.__name__, name))
            if item is not None and v is not None:
                v = [item.from_dict(x) for x in v]
            kwargs[name] = v
        return cls(**kwargs)


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass(slots=True)
class SearchResult(_Response):
    rank: int
    url: str
    title: str
    snippet: str
    score: float
    page_id: int


@dataclass(slots=True)
class SearchResponse(_Response):
    status: int
    query: str
    results: list[SearchResult] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class Link(_Response):
    url: str
    title: str
    anchor: str
    clicks: int
    page_id: int


@dataclass(slots=True)
class FetchResponse(_Response):
    status: int
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    final_url: str | None = None
    """The page's own URL when status is 200 (differs from `url` for a duplicate)."""
    canonical_url: str | None = None
    """Set when `url` is a duplicate of another page: the page whose content this is."""
    title: str = ""
    text: str = ""
    outlinks: list[Link] = field(default_factory=list)
    page_id: int | None = None
    error: str | None = None


@dataclass(slots=True)
class LinksResponse(_Response):
    status: int
    url: str
    page_id: int | None = None
    outlinks: list[Link] = field(default_factory=list)
    backlinks: list[Link] | None = None
    n_outlinks: int = 0
    n_backlinks: int = 0
    error: str | None = None


@dataclass(slots=True)
class SitemapEntry(_Response):
    url: str
    path: str
    title: str


@dataclass(slots=True)
class SitemapResponse(_Response):
    status: int
    host: str
    prefix: str = ""
    total: int = 0
    offset: int = 0
    limit: int = 0
    entries: list[SitemapEntry] = field(default_factory=list)
    next_offset: int | None = None
    error: str | None = None


_ITEM_TYPES = {("SearchResponse", "results"): SearchResult, ("FetchResponse", "outlinks"): Link,
               ("LinksResponse", "outlinks"): Link, ("LinksResponse", "backlinks"): Link,
               ("SitemapResponse", "entries"): SitemapEntry}
RESPONSE_TYPES = {"search": SearchResponse, "fetch": FetchResponse, "links": LinksResponse, "sitemap": SitemapResponse}


# ---- argument checks (shared with the HTTP server) --------------------------------------------

def check_text(name: str, value: Any, max_chars: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > max_chars:
        raise InvalidRequest(f"{name} is longer than {max_chars} characters")
    if _CONTROL.search(value):
        raise InvalidRequest(f"{name} contains control characters or unpaired surrogates (binary data?)")
    if not allow_empty and not value.strip():
        raise InvalidRequest(f"{name} is empty")
    return value


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


# ---- the snapshot's serving files --------------------------------------------------------------

class _ArrowFile:
    """A memory-mapped Arrow IPC file: zero-copy, shared between processes by the page cache."""

    def __init__(self, path: Path):
        import pyarrow as pa

        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        self.table = reader.read_all()
        self.num_rows = self.table.num_rows
        # Every column is chunked the same way (one chunk per record batch): find the chunk once.
        self._starts = [0]
        for batch_rows in (len(c) for c in (self.table.column(0).chunks if self.table.num_columns else [])):
            self._starts.append(self._starts[-1] + batch_rows)
        self._chunks = {name: self.table.column(name).chunks for name in self.table.column_names}

    def get(self, row: int, columns: tuple[str, ...]) -> dict:
        """One row's `columns` as Python values (a few microseconds each; no copy of other columns)."""
        c = bisect.bisect_right(self._starts, row) - 1
        i = row - self._starts[c]
        return {name: self._chunks[name][c][i].as_py() for name in columns}

    def numpy(self, column: str):
        import numpy as np

        col = self.table.column(column)
        return np.concatenate([c.to_numpy(zero_copy_only=False) for c in col.chunks]) if col.num_chunks else np.array([])

    def rows(self, start: int, stop: int, columns: list[str] | None = None) -> list[dict]:
        t = self.table if columns is None else self.table.select(columns)
        return t.slice(start, max(stop - start, 0)).to_pylist()


PAGE_COLUMNS = ("page_id", "url", "host", "title", "warc_date", "content_type", "n_bytes", "clicks_in", "text")
_SEARCH_COLUMNS = ("url", "title", "text")
_URL_COLUMNS = ("url", "page_id", "reason", "http_status", "target_url")
_META_COLUMNS = ("page_id", "url", "title")


class PageFiles:
    """Lookups over a snapshot's `serve/*.arrow` files (see `pipeline.simulator.snapshot`)."""

    def __init__(self, snapshot: Snapshot):
        import numpy as np

        self._np = np
        self.pages = _ArrowFile(snapshot.file("pages"))
        self.urls = _ArrowFile(snapshot.file("urls"))
        self.links = _ArrowFile(snapshot.file("links"))
        self.backlinks = _ArrowFile(snapshot.file("backlinks"))
        self.sitemap = _ArrowFile(snapshot.file("sitemap"))
        self._page_ids = self.pages.numpy("page_id")
        n = len(self._page_ids)
        # page ids are 1..n in the store; anything else falls back to a binary search.
        self._dense = bool(n == 0 or (self._page_ids[0] == 1 and self._page_ids[-1] == n))
        self._url_keys = self.urls.numpy("key")
        self._url_col = self.urls.table.column("url")
        self._link_src = self.links.numpy("src_id")
        self._backlink_dst = self.backlinks.numpy("dst_id")
        self._sitemap_paths = self.sitemap.table.column("path")
        self._sitemap_view = self.sitemap.table.select(["url", "path", "title"])
        hosts = _ArrowFile(snapshot.file("hosts")).table.to_pylist()
        self.hosts = {h["host"]: (h["start"], h["start"] + h["n_pages"]) for h in hosts}

    @property
    def num_pages(self) -> int:
        return len(self._page_ids)

    def row_of(self, page_id: int) -> int | None:
        if self._dense:
            return page_id - 1 if 1 <= page_id <= len(self._page_ids) else None
        i = int(self._np.searchsorted(self._page_ids, self._page_ids.dtype.type(page_id)))
        return i if i < len(self._page_ids) and self._page_ids[i] == page_id else None

    def page(self, page_id: int, columns: tuple[str, ...] = PAGE_COLUMNS) -> dict | None:
        row = self.row_of(page_id)
        return None if row is None else self.pages.get(row, columns)

    def meta(self, page_ids: list[int]) -> dict[int, dict]:
        """page_id -> {page_id, url, title} for many pages (row by row: `take` would concatenate chunks)."""
        out = {}
        for pid in page_ids:
            row = self.row_of(pid)
            if row is not None and pid not in out:
                out[pid] = self.pages.get(row, _META_COLUMNS)
        return out

    def lookup_url(self, url: str) -> dict | None:
        """The urls row of a normalised URL: {url, page_id, reason ('' for a page), http_status, target_url}."""
        key = self._np.uint64(url_key(url))  # a Python int would make numpy convert the whole array
        i = int(self._np.searchsorted(self._url_keys, key))
        n = len(self._url_keys)
        while i < n and self._url_keys[i] == key:
            if self._url_col[i].as_py() == url:
                return self.urls.get(i, _URL_COLUMNS)
            i += 1
        return None

    def outlinks(self, page_id: int, limit: int) -> tuple[list[dict], int]:
        a, b = self._range(self._link_src, page_id)
        return self.links.rows(a, min(b, a + limit)), b - a

    def backlinks_of(self, page_id: int, limit: int) -> tuple[list[dict], int]:
        a, b = self._range(self._backlink_dst, page_id)
        return self.backlinks.rows(a, min(b, a + limit)), b - a

    def count_backlinks(self, page_id: int) -> int:
        a, b = self._range(self._backlink_dst, page_id)
        return b - a

    def _range(self, sorted_ids, page_id: int) -> tuple[int, int]:
        key = sorted_ids.dtype.type(page_id)  # same dtype as the array: no conversion of the array
        return int(sorted_ids.searchsorted(key, "left")), int(sorted_ids.searchsorted(key, "right"))

    def sitemap_range(self, host: str, prefix: str) -> tuple[int, int] | None:
        """Rows [a, b) of `sitemap` for `host` whose path starts with `prefix`; None for an unknown host."""
        if host not in self.hosts:
            return None
        a, b = self.hosts[host]
        if prefix in ("", "/"):
            return a, b
        paths = _ColumnView(self._sitemap_paths)
        lo = bisect.bisect_left(paths, prefix, a, b)
        last = ord(prefix[-1])
        if last >= 0x10FFFF:  # no character sorts after it: every path from lo on that starts with the prefix
            hi = lo
            while hi < b and paths[hi].startswith(prefix):
                hi += 1
            return lo, hi
        hi = bisect.bisect_left(paths, prefix[:-1] + chr(last + 1), lo, b)
        return lo, hi

    def sitemap_rows(self, a: int, b: int) -> list[dict]:
        return self._sitemap_view.slice(a, max(b - a, 0)).to_pylist()


class _ColumnView:
    """A read-only sequence over an Arrow column, for `bisect`."""

    def __init__(self, column):
        self._col = column

    def __len__(self) -> int:
        return len(self._col)

    def __getitem__(self, i: int):
        return self._col[i].as_py()


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
        self.snapshot = snapshot if isinstance(snapshot, Snapshot) else resolve_snapshot(snapshot, snapshots_root)
        self.snapshot_id = self.snapshot.id
        self.files = PageFiles(self.snapshot)
        self.index = open_index(self.snapshot.path / INDEX_DIR)
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
            "search": self._search, "fetch": self._fetch, "links": self._links, "sitemap": self._sitemap}

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

    def hosts(self) -> list[dict]:
        """Every host in the snapshot with its number of pages, by name."""
        return [{"host": h, "pages": b - a} for h, (a, b) in sorted(self.files.hosts.items())]

    def retrieve(self, queries: list[str], topk: int = 3, return_scores: bool = True, *,
                 passage_chars: int = 600, session: str | None = None, trajectory: str | None = None) -> dict:
        """Search-R1's retrieval-server answer: {"result": [[{"document": {...}, "score": s}, ...], ...]}.

        A document is {"id", "title", "text", "contents", "url"} with `contents` = '"Title"\\ntext', the
        format of Search-R1's corpora; `text` is the best passage of the page (about 100 words).
        """
        out = []
        topk = 3 if topk is None else topk  # null and absent agree, as over HTTP
        for q in queries:
            resp = self.search(q, topk, snippet_chars=passage_chars, session=session, trajectory=trajectory)
            out.append(search_r1_documents(resp, return_scores))
        return {"result": out}

    def page_count(self) -> int:
        return self.files.num_pages

    def close(self) -> None:
        if self.call_log is not None:
            self.call_log.flush()

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
        terms = query_terms(query)
        results = []
        for rank, (page_id, score) in enumerate(hits, 1):
            page = self.files.page(page_id, _SEARCH_COLUMNS)
            if page is None:
                continue
            snippet = make_snippet(page["text"], terms, snippet_chars) if snippet_chars else ""
            results.append(SearchResult(rank, page["url"], page["title"], snippet, round(score, 4), page_id))
        return SearchResponse(200, query, results)

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
        limit = check_int("limit", limit, 1, 100_000)
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
    return [], []


# ---- the same API over HTTP --------------------------------------------------------------------

class HttpSimulator:
    """A client of `pipeline.simulator.server` with the Simulator's methods and response types."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, session: str | None = None,
                 trajectory: str | None = None):
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {}
        if session:
            headers["X-Websim-Session"] = session
        if trajectory:
            headers["X-Websim-Trajectory"] = trajectory
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def _post(self, path: str, body: dict, session: str | None, trajectory: str | None) -> dict:
        body = {k: v for k, v in body.items() if v is not None}
        if session:
            body["session"] = session
        if trajectory:
            body["trajectory"] = trajectory
        r = self._client.post(path, json=body)
        if r.status_code == 400:
            data = r.json()
            if set(data) <= {"error", "status"}:  # the request itself was invalid, as in-process
                raise InvalidRequest(data.get("error", r.text))
            return data  # a simulated 400 (not a URL, not a host): a response, as in-process
        r.raise_for_status()
        return r.json()

    def search(self, query: str, k: int | None = None, *, snippet_chars: int | None = None,
               session: str | None = None, trajectory: str | None = None) -> SearchResponse:
        return SearchResponse.from_dict(self._post("/search", {"query": query, "k": k, "snippet_chars": snippet_chars},
                                                   session, trajectory))

    def fetch(self, url: str, *, session: str | None = None, trajectory: str | None = None) -> FetchResponse:
        return FetchResponse.from_dict(self._post("/fetch", {"url": url}, session, trajectory))

    def links(self, url: str, *, backlinks: bool = False, limit: int = 500, session: str | None = None,
              trajectory: str | None = None) -> LinksResponse:
        return LinksResponse.from_dict(self._post("/links", {"url": url, "backlinks": backlinks, "limit": limit},
                                                  session, trajectory))

    def sitemap(self, host: str, prefix: str = "", offset: int = 0, limit: int = 100, *,
                session: str | None = None, trajectory: str | None = None) -> SitemapResponse:
        return SitemapResponse.from_dict(self._post(
            "/sitemap", {"host": host, "prefix": prefix, "offset": offset, "limit": limit}, session, trajectory))

    def retrieve(self, queries: list[str], topk: int = 3, return_scores: bool = True) -> dict:
        return self._post("/retrieve", {"queries": queries, "topk": topk, "return_scores": return_scores}, None, None)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "HttpSimulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
