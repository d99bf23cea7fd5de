"""Lookups over a snapshot's serving files (`serve/*.arrow`, written by `pipeline.simulator.snapshot`): pages by id,
URLs by key, out- and backlinks by page, sitemap ranges by host and path prefix. Memory-mapped and zero-copy, so
many processes can share one snapshot's pages through the operating system's page cache."""

from __future__ import annotations

import bisect
from pathlib import Path

from pipeline.simulator.snapshot import Snapshot, url_key

class _ArrowFile:
    """A memory-mapped Arrow IPC file: zero-copy, shared between processes by the page cache."""

    def __init__(self, path: Path):
        import pyarrow as pa

        source = pa.memory_map(str(path), "r")
        self._whole = source.read_buffer(source.size())  # the whole file, zero-copy: the base of `spans`
        source.seek(0)
        self.table = pa.ipc.open_file(source).read_all()
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

    def bytes(self):
        """The whole file as a read-only numpy uint8 array (no copy)."""
        import numpy as np

        return np.frombuffer(self._whole, dtype=np.uint8)

    def spans(self, column: str):
        """(start, end) byte offsets into `bytes()` of every row's UTF-8 value of string `column` (int64 arrays)."""
        import numpy as np

        starts, ends = [], []
        for chunk in self.table.column(column).chunks:
            _, offsets, data = chunk.buffers()
            width = np.int64 if chunk.type in ("large_string", "large_binary") else np.int32
            off = np.frombuffer(offsets, dtype=width)[chunk.offset:chunk.offset + len(chunk) + 1].astype(np.int64)
            base = (data.address - self._whole.address) if data is not None else 0
            starts.append(off[:-1] + base)
            ends.append(off[1:] + base)
        if not starts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(starts), np.concatenate(ends)

    def rows(self, start: int, stop: int, columns: list[str] | None = None) -> list[dict]:
        t = self.table if columns is None else self.table.select(columns)
        return t.slice(start, max(stop - start, 0)).to_pylist()


PAGE_COLUMNS = ("page_id", "url", "host", "title", "warc_date", "content_type", "n_bytes", "clicks_in", "text")
_URL_COLUMNS = ("url", "page_id", "reason", "http_status", "target_url")
_META_COLUMNS = ("page_id", "url", "title")
_SPAN_COLUMNS = ("url", "title", "text")


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
        # Page strings straight from the mapped file, for the search hot path (no Arrow scalar per value).
        self.page_bytes = self.pages.bytes()
        # (url start, url end, title start, title end, text start, text end) per row: a search's results are
        # gathered from it in one compiled call (`SnippetMap.records`); `page_spans` are its columns.
        self.spans = np.stack([a for name in _SPAN_COLUMNS for a in self.pages.spans(name)], axis=1)
        self.page_spans = {name: (self.spans[:, 2 * i], self.spans[:, 2 * i + 1])
                           for i, name in enumerate(_SPAN_COLUMNS)}
        self._page_buf = memoryview(self.page_bytes)
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

    def strings(self, rows: list[int], column: str) -> list[str]:
        """The values of string `column` ("url", "title", "text") at page rows `rows`."""
        starts, ends = self.page_spans[column]
        buf = self._page_buf
        return [str(buf[a:b], "utf-8") for a, b in zip(starts[rows].tolist(), ends[rows].tolist())]

    def urls_titles(self, rows) -> tuple[list[str], list[str]]:
        """The urls and titles of page rows `rows` (an int64 array)."""
        buf = self._page_buf
        urls, titles = [], []
        for a, b, c, d in self.spans[rows, :4].tolist():
            urls.append(str(buf[a:b], "utf-8"))
            titles.append(str(buf[c:d], "utf-8"))
        return urls, titles

    def rows_of(self, page_ids: list[int]) -> list[int | None]:
        if self._dense:
            n = len(self._page_ids)
            return [pid - 1 if 1 <= pid <= n else None for pid in page_ids]
        return [self.row_of(pid) for pid in page_ids]

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
