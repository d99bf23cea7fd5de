"""The DuckDB store: raw partitions as ingested, and the deduplicated page store built from them.

Raw tables hold one partition per input file (`warc_pages`, `warc_links`, `warc_redirects`,
`clickstream`, plus `rejects` and `partition_stats`). A partition is always replaced whole inside
one transaction (delete, then insert), so a re-run or a backfill never duplicates rows and a run
that fails half-way leaves the previous version of the partition in place.

Derived tables are rebuilt whole from the raw ones:
- `pages`: one row per distinct page. Per URL the latest 2xx capture is kept; across URLs, pages
  with the same content hash are one page, and the copy that wins is the earliest capture (then
  the shortest URL, then the URL's sort order); the others become `url_aliases`.
- `url_aliases`: URLs that lead to a page without being its URL (`duplicate_content`, `redirect`).
- `link_graph`: page -> page edges resolved from outlinks (through aliases and redirects), with
  anchor text, the sentence around the link, and the clickstream's navigation count.

One writer at a time (DuckDB's rule for a file): the store's lock file (`<store>.lock`, `flock`: exclusive for a
writer, shared for readers) is the queue, for Dagster runs, the CLI and scripts alike. The kernel releases it
when its holder dies, `kill -9` and OOM included, so a killed writer never wedges the next one (a Dagster pool
slot would stay taken by the dead run). A writer waits for the lock as long as it takes (`write_timeout_s`),
saying who holds it; the wait is an ordinary sleep, so SIGTERM and Ctrl-C stop it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

# Raw tables by source: what `replace_partition` deletes and rewrites for one partition.
RAW_SCHEMAS: dict[str, pa.Schema] = {
    "warc_pages": pa.schema([
        ("partition", pa.string()), ("record_id", pa.string()), ("record_offset", pa.int64()),
        ("url", pa.string()), ("warc_date", pa.timestamp("us", tz="UTC")), ("http_status", pa.int32()),
        ("content_type", pa.string()), ("charset", pa.string()), ("charset_source", pa.string()),
        ("title", pa.string()), ("text", pa.string()), ("published", pa.string()), ("language", pa.string()),
        ("payload_bytes", pa.int64()), ("content_hash", pa.string()), ("from_revisit", pa.bool_()),
    ]),
    "warc_links": pa.schema([
        ("partition", pa.string()), ("src_record_id", pa.string()), ("src_url", pa.string()),
        ("dst_url", pa.string()), ("anchor", pa.string()), ("context", pa.string()), ("ordinal", pa.int32()),
    ]),
    "warc_redirects": pa.schema([
        ("partition", pa.string()), ("record_id", pa.string()), ("url", pa.string()), ("location", pa.string()),
        ("http_status", pa.int32()), ("warc_date", pa.timestamp("us", tz="UTC")),
    ]),
    "clickstream": pa.schema([
        ("partition", pa.string()), ("lang", pa.string()), ("prev", pa.string()), ("curr", pa.string()),
        ("type", pa.string()), ("n", pa.int64()),
    ]),
}
SOURCE_TABLES = {"warc": ("warc_pages", "warc_links", "warc_redirects"), "clickstream": ("clickstream",)}

_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.bool_(): "BOOLEAN",
                 pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}
_DDL = [
    *(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{f.name} {_DUCKDB_TYPES[f.type]}' for f in schema)})"
      for name, schema in RAW_SCHEMAS.items()),
    "CREATE TABLE IF NOT EXISTS rejects (source VARCHAR, partition VARCHAR, reason VARCHAR, detail VARCHAR, location VARCHAR)",
    "CREATE TABLE IF NOT EXISTS partition_stats (source VARCHAR, partition VARCHAR, stat VARCHAR, value DOUBLE)",
]

_FLUSH_ROWS = 20_000

# The raw partitions as their last ingest counted them; timings are left out, so re-ingesting an unchanged file
# gives the same rows. `{db}` is "" for the store itself, or "src." where it is attached under that name.
PARTITIONS_SQL = ("SELECT source, partition, stat, value FROM {db}partition_stats "
                  "WHERE stat <> 'seconds' ORDER BY ALL")


def partitions_signature(rows: Iterable[tuple]) -> dict[str, Any]:
    """A digest of `PARTITIONS_SQL`'s rows and the number of partitions per source: what changes when new or
    different input was ingested (a snapshot records it; the refresh schedule compares it with the store's)."""
    rows = [list(r) for r in rows]
    blob = json.dumps(rows, separators=(",", ":"), default=str)
    return {"signature": hashlib.sha256(blob.encode()).hexdigest(),
            "partitions": dict(sorted(Counter(source for source, partition in {(r[0], r[1]) for r in rows}).items()))}


class PartitionWriter:
    """Buffers the rows of one partition and writes them inside the open transaction."""

    def __init__(self, con, source: str, partition: str):
        self._con = con
        self.source = source
        self.partition = partition
        self._buffers: dict[str, list[dict]] = {t: [] for t in SOURCE_TABLES[source]}
        self.rows_written: Counter = Counter()
        self.rejects: Counter = Counter()
        self._reject_rows: list[tuple] = []
        self.stats: dict[str, float] = {}

    def add(self, table: str, row: dict) -> None:
        buf = self._buffers[table]
        buf.append({"partition": self.partition, **row})
        if len(buf) >= _FLUSH_ROWS:
            self._flush(table)

    def reject(self, reason: str, detail: str = "", location: str = "") -> None:
        self.rejects[reason] += 1
        self._reject_rows.append((self.source, self.partition, reason, detail[:2000], location))

    def _flush(self, table: str) -> None:
        rows = self._buffers[table]
        if not rows:
            return
        arrow = pa.Table.from_pylist(rows, schema=RAW_SCHEMAS[table])
        self._con.register("_incoming", arrow)
        try:
            self._con.execute(f"INSERT INTO {table} SELECT * FROM _incoming")
        finally:
            self._con.unregister("_incoming")
        self.rows_written[table] += len(rows)
        rows.clear()

    def _finish(self) -> None:
        for table in self._buffers:
            self._flush(table)
        if self._reject_rows:
            self._con.executemany("INSERT INTO rejects VALUES (?, ?, ?, ?, ?)", self._reject_rows)
        stats = {**self.stats, **{f"rejected_{k}": v for k, v in self.rejects.items()}}
        if stats:
            self._con.executemany(
                "INSERT INTO partition_stats VALUES (?, ?, ?, ?)",
                [(self.source, self.partition, k, float(v)) for k, v in sorted(stats.items())],
            )


def refuse_in_worker_bootstrap(what: str) -> None:
    """Fail fast where a multiprocessing worker is re-running the calling script's top level.

    The extraction pool's workers (forkserver/spawn) import the main module again; a script that calls the ingest
    API at top level without an `if __name__ == "__main__":` guard would start an ingest inside every worker,
    which then waits for the store the parent holds, and every page times out. Raised in the worker; the parent
    sees the workers die and stops with the same message (see `pipeline.ingest.extract`).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(MAIN_GUARD_MESSAGE.format(what=what))


MAIN_GUARD_MESSAGE = (
    "{what} was called while a worker process was importing the main module: the script that calls websim's ingest "
    "API runs again in each extraction worker. Put the calls under `if __name__ == \"__main__\":` (see README, "
    "\"Ingest from a script\").")


class Store:
    """The DuckDB file at `path`. Open connections through `connect()`; they are closed on exit.

    `lock_timeout_s` bounds a reader's wait for a writer; `write_timeout_s` a writer's wait for the store (None: as
    long as it takes, like a queue). `on_wait(message)` hears who holds the store while a writer waits (at the start,
    then every `wait_report_s`).
    """

    def __init__(self, path: str | Path, lock_timeout_s: float = 600.0, *, write_timeout_s: float | None = None,
                 on_wait: Callable[[str], None] | None = None, wait_report_s: float = 60.0):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.write_timeout_s = write_timeout_s
        self.on_wait = on_wait
        self.wait_report_s = wait_report_s

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Hold the store's lock (shared: beside other readers; else alone) without opening it."""
        # DuckDB refuses a second process outright while one writes (readers included), and a writer while any
        # process reads: a lock file (shared for readers, exclusive for a writer) turns two runs, a CLI next to the
        # UI, or an asset check reading beside a writing step into a queue.
        refuse_in_worker_bootstrap("the store")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            limit = self.lock_timeout_s if shared else self.write_timeout_s
            started = time.monotonic()
            next_report = started
            while True:
                try:
                    fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - started
                    if limit is not None and waited > limit:
                        raise TimeoutError(f"store {self.path} is locked by another "
                                           f"{'writer' if shared else 'process'} for more than "
                                           f"{limit:.0f} s ({self.holder() or 'holder unknown'})") from None
                    if self.on_wait is not None and not shared and time.monotonic() >= next_report:
                        self.on_wait(f"waiting for the store {self.path}: locked by "
                                     f"{self.holder() or 'a reader'} ({waited:.0f} s so far)")
                        next_report += self.wait_report_s
                    time.sleep(0.2)  # an ordinary sleep: SIGTERM / Ctrl-C end the wait
            if self.on_wait is not None and not shared and next_report > started:
                self.on_wait(f"got the store {self.path} after {time.monotonic() - started:.1f} s")
            try:
                if not shared:  # who holds it, for those who wait (never trusted for anything else)
                    fh.seek(0)
                    fh.truncate()
                    fh.write(f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:300]}\n")
                    fh.flush()
                yield
            finally:
                if not shared:
                    with contextlib.suppress(OSError):
                        fh.seek(0)
                        fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)

    _lock = locked

    def holder(self) -> str:
        """What the last writer wrote into the lock file: its pid, host and command line ("" if none)."""
        try:
            return self.lock_path.read_text(errors="replace").strip()[:400]
        except OSError:
            return ""

    def lock_held(self) -> bool:
        """Whether a writer holds the store's lock now."""
        lock = self.path.with_name(self.path.name + ".lock")
        if not lock.exists():
            return False
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        """A connection; it holds the store's lock (shared when read-only) until it is closed."""
        import duckdb

        if read_only and not self.path.exists():
            raise FileNotFoundError(f"no store at {self.path}: ingest something first")
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._lock(shared=read_only))
            con = duckdb.connect(str(self.path), read_only=read_only)
            stack.callback(con.close)
            if not read_only:
                for ddl in _DDL:
                    con.execute(ddl)
            yield con

    @contextlib.contextmanager
    def partition_writer(self, source: str, partition: str) -> Iterator[PartitionWriter]:
        """Replace `partition` of `source` whole: all or nothing, whatever was there before is gone."""
        if source not in SOURCE_TABLES:
            raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCE_TABLES)}")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for table in SOURCE_TABLES[source]:
                    con.execute(f"DELETE FROM {table} WHERE partition = ?", [partition])
                con.execute("DELETE FROM rejects WHERE source = ? AND partition = ?", [source, partition])
                con.execute("DELETE FROM partition_stats WHERE source = ? AND partition = ?", [source, partition])
                writer = PartitionWriter(con, source, partition)
                yield writer
                writer._finish()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def drop_partition(self, source: str, partition: str) -> None:
        """Remove a partition's rows (the input file is gone)."""
        with self.partition_writer(source, partition):
            pass
        with self.connect() as con:
            con.execute("DELETE FROM partition_stats WHERE source = ? AND partition = ?", [source, partition])

    def partitions_signature(self) -> dict[str, Any] | None:
        """`partitions_signature` of what is ingested now; None while there is no store file."""
        if not self.path.exists():
            return None
        with self.connect(read_only=True) as con:
            return partitions_signature(con.execute(PARTITIONS_SQL.format(db="")).fetchall())

    def partitions(self, source: str) -> list[str]:
        table = SOURCE_TABLES[source][0]
        with self.connect() as con:
            return [r[0] for r in con.execute(f"SELECT DISTINCT partition FROM {table} ORDER BY 1").fetchall()]

    # ---- derived tables -------------------------------------------------------------------

    def build_pages(self) -> dict[str, int]:
        """Rebuild `pages` and `url_aliases` from all WARC partitions and clickstream counts."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute(_BUILD_PAGES_SQL)
            con.execute(_BUILD_ALIASES_SQL)
            con.execute("COMMIT")
            return _one_row(con, """
                SELECT
                  (SELECT count(*) FROM warc_pages) AS captures,
                  (SELECT count(*) FROM warc_pages WHERE NOT (http_status BETWEEN 200 AND 299)) AS non_2xx_captures,
                  (SELECT count(DISTINCT url) FROM warc_pages WHERE http_status BETWEEN 200 AND 299) AS distinct_urls,
                  (SELECT count(*) FROM pages) AS pages,
                  (SELECT count(*) FROM url_aliases WHERE reason = 'duplicate_content') AS duplicate_content_aliases,
                  (SELECT count(*) FROM url_aliases WHERE reason = 'redirect') AS redirect_aliases,
                  (SELECT count(*) FROM pages WHERE wiki_title IS NOT NULL) AS wikipedia_pages,
                  (SELECT count(*) FROM pages WHERE clicks_in > 0) AS pages_with_clicks
            """)

    def build_link_graph(self) -> dict[str, int]:
        """Rebuild `link_graph` from the outlinks of the pages' winning captures."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute(_BUILD_LINK_GRAPH_SQL)
            con.execute("COMMIT")
            return _one_row(con, """
                WITH src AS (
                  SELECT l.dst_url FROM pages p
                  JOIN warc_links l ON l.partition = p.partition AND l.src_record_id = p.record_id
                )
                SELECT
                  (SELECT count(*) FROM src) AS outlinks,
                  (SELECT count(*) FROM src WHERE dst_url IN (SELECT url FROM pages)
                     OR dst_url IN (SELECT url FROM url_aliases)) AS outlinks_resolved,
                  (SELECT count(*) FROM link_graph) AS edges,
                  (SELECT count(*) FROM link_graph WHERE clicks > 0) AS edges_with_clicks,
                  (SELECT coalesce(sum(clicks), 0) FROM link_graph) AS clicks_on_edges
            """)

    def counts(self) -> dict[str, int]:
        """Row counts of every table (derived ones only once built)."""
        with self.connect() as con:
            names = [r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
            return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}

    def contract_violations(self, table: str) -> dict[str, tuple[int, str]]:
        """For each data contract of `table` (see CONTRACTS): (rows violating it, what it promises)."""
        with self.connect(read_only=True) as con:
            return {name: (int(con.execute(sql).fetchone()[0]), promise)
                    for name, (sql, promise) in CONTRACTS[table].items()}

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        """Run a read query; rows as dicts (parameterised: pass values in `params`)."""
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]


def _one_row(con, sql: str) -> dict[str, int]:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return {c: int(v or 0) for c, v in zip(cols, cur.fetchone())}


# A capture per URL (the latest 2xx), then one page per content hash (the earliest capture wins).
_BUILD_PAGES_SQL = r"""
CREATE OR REPLACE TABLE pages AS
WITH latest AS (
  SELECT * FROM warc_pages
  WHERE http_status BETWEEN 200 AND 299 AND content_hash IS NOT NULL
  QUALIFY row_number() OVER (
    PARTITION BY url ORDER BY warc_date DESC NULLS LAST, from_revisit, partition, record_id) = 1
),
winners AS (
  SELECT * FROM latest
  QUALIFY row_number() OVER (
    PARTITION BY content_hash ORDER BY warc_date NULLS LAST, length(url), url) = 1
),
wiki AS (
  SELECT *,
    regexp_extract(url, '^https?://([a-z][a-z0-9-]*)\.(?:m\.)?wikipedia\.org/wiki/', 1) AS _lang,
    regexp_extract(url, '^https?://[^/]+/wiki/([^?]+)', 1) AS _raw_title
  FROM winners
),
titled AS (
  SELECT * EXCLUDE (_lang, _raw_title),
    nullif(_lang, '') AS wiki_lang,
    CASE WHEN _lang <> '' AND _raw_title <> '' THEN
      upper(left(replace(url_decode(_raw_title), ' ', '_'), 1)) || substr(replace(url_decode(_raw_title), ' ', '_'), 2)
    END AS wiki_title
  FROM wiki
),
traffic AS (
  SELECT lang, curr AS title,
    sum(n) AS clicks_in,
    sum(n) FILTER (WHERE type = 'link') AS clicks_in_link,
    sum(n) FILTER (WHERE prev = 'other-search') AS clicks_in_search
  FROM clickstream GROUP BY ALL
)
SELECT
  CAST(row_number() OVER (ORDER BY t.url) AS INTEGER) AS page_id,
  t.url,
  regexp_extract(t.url, '^https?://([^/:]+)', 1) AS host,
  t.title, t.text, t.published, t.language, t.warc_date, t.http_status, t.content_type,
  t.content_hash, length(t.text) AS n_chars, t.partition, t.record_id,
  t.wiki_lang, t.wiki_title,
  coalesce(tr.clicks_in, 0) AS clicks_in,
  coalesce(tr.clicks_in_link, 0) AS clicks_in_link,
  coalesce(tr.clicks_in_search, 0) AS clicks_in_search
FROM titled t
LEFT JOIN traffic tr ON tr.lang = t.wiki_lang AND tr.title = t.wiki_title
ORDER BY page_id
"""

_BUILD_ALIASES_SQL = r"""
CREATE OR REPLACE TABLE url_aliases AS
WITH latest AS (
  SELECT url, content_hash FROM warc_pages
  WHERE http_status BETWEEN 200 AND 299 AND content_hash IS NOT NULL
  QUALIFY row_number() OVER (
    PARTITION BY url ORDER BY warc_date DESC NULLS LAST, from_revisit, partition, record_id) = 1
),
dup AS (
  SELECT l.url, p.page_id, 'duplicate_content' AS reason, p.url AS target_url, 301 AS http_status
  FROM latest l JOIN pages p ON p.content_hash = l.content_hash
  WHERE l.url <> p.url
),
-- a redirect whose source is not itself a page; its target is a page or a duplicate of one
redir AS (
  SELECT r.url, coalesce(p.page_id, d.page_id) AS page_id, 'redirect' AS reason,
         r.location AS target_url, any_value(r.http_status) AS http_status
  FROM warc_redirects r
  LEFT JOIN pages p ON p.url = r.location
  LEFT JOIN dup d ON d.url = r.location
  WHERE r.url NOT IN (SELECT url FROM pages) AND r.url NOT IN (SELECT url FROM dup)
    AND coalesce(p.page_id, d.page_id) IS NOT NULL AND r.url <> r.location
  GROUP BY r.url, coalesce(p.page_id, d.page_id), r.location
  QUALIFY row_number() OVER (PARTITION BY r.url ORDER BY r.location) = 1
)
SELECT * FROM dup UNION ALL SELECT * FROM redir
ORDER BY url
"""

_BUILD_LINK_GRAPH_SQL = r"""
CREATE OR REPLACE TABLE link_graph AS
WITH src AS (
  SELECT p.page_id AS src_id, l.dst_url, l.anchor, l.context, l.ordinal
  FROM pages p JOIN warc_links l ON l.partition = p.partition AND l.src_record_id = p.record_id
),
resolved AS (
  SELECT s.src_id, coalesce(d.page_id, a.page_id) AS dst_id, s.anchor, s.context, s.ordinal
  FROM src s
  LEFT JOIN pages d ON d.url = s.dst_url
  LEFT JOIN url_aliases a ON a.url = s.dst_url
),
edges AS (
  SELECT src_id, dst_id,
    arg_min(anchor, ordinal) AS anchor,
    -- the first occurrence whose sentence is known justifies the edge
    coalesce(arg_min(context, ordinal) FILTER (WHERE context <> ''), '') AS context,
    CAST(count(*) AS INTEGER) AS n_links,
    CAST(min(ordinal) AS INTEGER) AS first_ordinal
  FROM resolved
  WHERE dst_id IS NOT NULL AND dst_id <> src_id
  GROUP BY src_id, dst_id
),
clicks AS (
  SELECT lang, prev, curr, sum(n) AS n FROM clickstream WHERE type = 'link' GROUP BY ALL
)
SELECT e.*, coalesce(c.n, 0) AS clicks
FROM edges e
JOIN pages ps ON ps.page_id = e.src_id
JOIN pages pd ON pd.page_id = e.dst_id
LEFT JOIN clicks c ON c.lang = ps.wiki_lang AND c.prev = ps.wiki_title AND c.curr = pd.wiki_title
ORDER BY e.src_id, e.first_ordinal
"""


# The promises later stages rely on; each query counts the rows that break one.
CONTRACTS: dict[str, dict[str, tuple[str, str]]] = {
    "pages": {
        "unique_url": ("SELECT count(*) - count(DISTINCT url) FROM pages", "one page per URL"),
        "unique_content": ("SELECT count(*) - count(DISTINCT content_hash) FROM pages",
                           "exact duplicates are one page"),
        "has_text": ("SELECT count(*) FROM pages WHERE text IS NULL OR length(trim(text)) = 0",
                     "every page has extracted text"),
        "status_2xx": ("SELECT count(*) FROM pages WHERE NOT (http_status BETWEEN 200 AND 299)",
                       "pages are successful captures"),
        "aliases_resolve": ("SELECT count(*) FROM url_aliases a ANTI JOIN pages p ON p.page_id = a.page_id",
                            "every alias leads to a page"),
        "aliases_are_not_pages": ("SELECT count(*) FROM url_aliases a SEMI JOIN pages p ON p.url = a.url",
                                  "an alias is never a page's own URL"),
    },
    "link_graph": {
        "endpoints_exist": ("""SELECT count(*) FROM link_graph g
                               WHERE g.src_id NOT IN (SELECT page_id FROM pages)
                                  OR g.dst_id NOT IN (SELECT page_id FROM pages)""",
                            "both ends of every edge are pages"),
        "unique_edges": ("SELECT count(*) - count(DISTINCT (src_id, dst_id)) FROM link_graph", "one row per edge"),
        "no_self_loops": ("SELECT count(*) FROM link_graph WHERE src_id = dst_id", "no page links to itself"),
        "clicks_non_negative": ("SELECT count(*) FROM link_graph WHERE clicks < 0", "navigation counts are >= 0"),
    },
}
