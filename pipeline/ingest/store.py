"""The store: every ingest partition as immutable Parquet files of its own, and the page store built from them all.

Layout (`Store("store.duckdb")`; the partitions live beside the built store, in `store.parts/`):

    store.parts/FORMAT
    store.parts/warc/<file name>/v000002/   warc_pages, warc_links, warc_redirects, rejects, partition_stats .parquet
    store.parts/clickstream/<file name>/v000001/   clickstream, rejects, partition_stats .parquet
    store.parts/.locks/                     one lock file per partition, one for builds
    store.duckdb                            pages, url_aliases, link_graph and the partition_stats they came from

**Partitions** (`partition_writer`): a run writes its partition's files into a hidden temporary folder next to the
versions (`.tmp-<host>-<pid>-<id>/`), then renames the folder to the next version number: until the rename nothing
of it is visible, after it all of it is, so a run killed at any point (`kill -9`, OOM) leaves the previous version
as the partition. Readers take the highest version of each partition; the one before it is kept (a build that
listed it can finish), older ones are deleted by the next write. Partitions share no file, so any number of them
ingest at once, in processes or on machines that see the same folder; two writers of the *same* partition queue
on its lock file (`filelock`, a `flock` the kernel releases when its holder dies), which also makes it safe for the
writer to delete what a dead writer left.

**Builds** (`build_pages`, `build_link_graph`): DuckDB reads every partition's files (`read_parquet`, out of core)
and writes the derived tables into a new DuckDB file that replaces `store.duckdb` by a rename: a reader (a snapshot
build, an asset check, a query) holds the file it opened and never waits, and a build killed half-way changes
nothing. Builds queue on one lock file. Derived tables:
- `pages`: one row per distinct page. Per URL the latest 2xx capture is kept; across URLs, pages with the same
  content hash are one page, and the copy that wins is the earliest capture (then the shortest URL, then the URL's
  sort order); the others become `url_aliases`.
- `url_aliases`: URLs that lead to a page without being its URL (`duplicate_content`, `redirect`).
- `link_graph`: page -> page edges resolved from outlinks (through aliases and redirects), with anchor text, the
  sentence around the link, and the clickstream's navigation count.
- `partition_stats` (in the built file): the counters of the partitions the build read, so a snapshot knows which
  ingests it saw; `build_inputs`: which version of each partition that was.

**Reads** (`connect`, `query`, `counts`): an in-memory DuckDB connection with the raw tables as views over the
current partitions and the built tables of `store.duckdb` attached read-only.

**Migration**: a store of the single-file layout (raw tables inside `store.duckdb`, no `store.parts/`) is read as it
is, and converted to partitions by `convert_single_file()`, which the first partition write runs by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

# Raw tables by source, as each partition writes them.
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
# Written by every partition beside its source's tables.
META_SCHEMAS: dict[str, pa.Schema] = {
    "rejects": pa.schema([("source", pa.string()), ("partition", pa.string()), ("reason", pa.string()),
                          ("detail", pa.string()), ("location", pa.string())]),
    "partition_stats": pa.schema([("source", pa.string()), ("partition", pa.string()), ("stat", pa.string()),
                                  ("value", pa.float64())]),
}
SCHEMAS = {**RAW_SCHEMAS, **META_SCHEMAS}
RAW_TABLES = (*RAW_SCHEMAS, *META_SCHEMAS)
DERIVED_TABLES = ("pages", "url_aliases", "link_graph")
FORMAT = "websim store partitions 1\n"

_FLUSH_ROWS = 20_000
_VERSION_PREFIX = "v"

# The raw partitions as their last ingest counted them; timings are left out, so re-ingesting an unchanged file
# gives the same rows. `{db}` is "" for the store itself, or "src." where the built file is attached under that name
# (it holds the partition_stats of the partitions it was built from).
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
    """Buffers the rows of one partition and streams them into its Parquet files (in the partition's temporary
    folder; `Store.partition_writer` makes them visible at once when the block ends without an error)."""

    def __init__(self, folder: Path, source: str, partition: str):
        self._folder = folder
        self.source = source
        self.partition = partition
        self._buffers: dict[str, list[dict]] = {t: [] for t in SOURCE_TABLES[source]}
        self._writers: dict[str, Any] = {}
        self.rows_written: Counter = Counter()
        self.rejects: Counter = Counter()
        self._reject_rows: list[dict] = []
        self.stats: dict[str, float] = {}

    def add(self, table: str, row: dict) -> None:
        buf = self._buffers[table]
        buf.append({"partition": self.partition, **row})
        if len(buf) >= _FLUSH_ROWS:
            self._flush(table)

    def add_arrow(self, table: str, data: pa.Table | pa.RecordBatchReader) -> None:
        """Rows already in Arrow form (a converted store, generated data), with `partition` set to this one's."""
        if table in self._buffers:
            self._flush(table)
        batches = data.to_batches() if isinstance(data, pa.Table) else data
        for batch in batches:
            chunk = pa.Table.from_batches([batch])
            chunk = chunk.set_column(chunk.schema.get_field_index("partition"), "partition",
                                     pa.array([self.partition] * len(chunk), pa.string()))
            self._write(table, chunk.select(SCHEMAS[table].names).cast(SCHEMAS[table]))

    def reject(self, reason: str, detail: str = "", location: str = "") -> None:
        self.rejects[reason] += 1
        self._reject_rows.append({"source": self.source, "partition": self.partition, "reason": reason,
                                  "detail": detail[:2000], "location": location})

    def _write(self, table: str, arrow: pa.Table) -> None:
        import pyarrow.parquet as pq

        if table not in self._writers:
            self._writers[table] = pq.ParquetWriter(self._folder / f"{table}.parquet", SCHEMAS[table],
                                                    compression="zstd")
        if arrow.num_rows:
            self._writers[table].write_table(arrow)
        self.rows_written[table] += arrow.num_rows

    def _flush(self, table: str) -> None:
        rows = self._buffers[table]
        if rows:
            self._write(table, pa.Table.from_pylist(rows, schema=RAW_SCHEMAS[table]))
            rows.clear()

    def _finish(self) -> None:
        for table in self._buffers:
            self._flush(table)
            self._write(table, SCHEMAS[table].empty_table())  # every table has a file, empty or not
        self._write("rejects", pa.Table.from_pylist(self._reject_rows, schema=META_SCHEMAS["rejects"]))
        stats = {**self.stats, **{f"rejected_{k}": v for k, v in self.rejects.items()}}
        self._write("partition_stats", pa.Table.from_pylist(
            [{"source": self.source, "partition": self.partition, "stat": k, "value": float(v)}
             for k, v in sorted(stats.items())], schema=META_SCHEMAS["partition_stats"]))
        self._close()
        for path in self._folder.iterdir():  # on disk before the rename that publishes them
            _fsync(path)

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refuse_in_worker_bootstrap(what: str) -> None:
    """Fail fast where a multiprocessing worker is re-running the calling script's top level.

    The extraction pool's workers (forkserver/spawn) import the main module again; a script that calls the ingest
    API at top level without an `if __name__ == "__main__":` guard would start an ingest inside every worker,
    and every page times out. Raised in the worker; the parent sees the workers die and stops with the same message
    (see `pipeline.ingest.extract`).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(MAIN_GUARD_MESSAGE.format(what=what))


MAIN_GUARD_MESSAGE = (
    "{what} was called while a worker process was importing the main module: the script that calls websim's ingest "
    "API runs again in each extraction worker. Put the calls under `if __name__ == \"__main__\":` (see README, "
    "\"Ingest from a script\").")


class Store:
    """The built store at `path` (a DuckDB file) and the partitions it is built from (`parts`, default
    `<path without suffix>.parts/`, beside it).

    `write_timeout_s` bounds a writer's wait for its partition's lock and `lock_timeout_s` a build's wait for another
    build (None: as long as it takes, like a queue); `on_wait(message)` hears who holds the lock while a writer waits
    (at the start, then every `wait_report_s`). Readers never wait.
    """

    def __init__(self, path: str | Path, lock_timeout_s: float | None = None, *, write_timeout_s: float | None = None,
                 on_wait: Callable[[str], None] | None = None, wait_report_s: float = 60.0,
                 parts: str | Path | None = None):
        self.path = Path(path)
        self.parts = Path(parts) if parts else self.path.with_name(self.path.stem + ".parts")
        self.lock_timeout_s = lock_timeout_s
        self.write_timeout_s = write_timeout_s
        self.on_wait = on_wait
        self.wait_report_s = wait_report_s

    # ---- locks --------------------------------------------------------------------------------

    def _lock_file(self, name: str) -> Path:
        return self.parts / ".locks" / f"{name}.lock"

    @contextlib.contextmanager
    def _hold(self, name: str, what: str, timeout_s: float | None) -> Iterator[None]:
        """Hold lock `name` alone, waiting for it as long as `timeout_s` and saying who holds it meanwhile."""
        import filelock

        path = self._lock_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # fallback_to_soft=False: a lock the kernel frees when its holder dies, or an error, never a marker file that
        # a killed writer would leave behind.
        lock = filelock.FileLock(path, is_singleton=False, fallback_to_soft=False, preserve_lock_file=True)
        holder = path.with_name(path.name + ".holder")
        started = time.monotonic()
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            while True:
                waited = time.monotonic() - started
                if timeout_s is not None and waited >= timeout_s:
                    raise TimeoutError(f"the store's {what} ({self.parts}) is locked for more than {timeout_s:.0f} s "
                                       f"({_read(holder) or 'holder unknown'})") from None
                if self.on_wait is not None:
                    self.on_wait(f"waiting for the store's {what} ({self.parts}): locked by "
                                 f"{_read(holder) or 'another process'} ({waited:.0f} s so far)")
                step = self.wait_report_s if timeout_s is None else min(self.wait_report_s, timeout_s - waited)
                try:  # filelock polls with an ordinary sleep: SIGTERM / Ctrl-C end the wait
                    lock.acquire(timeout=max(step, 0.01), poll_interval=0.2)
                    break
                except filelock.Timeout:
                    continue
            if self.on_wait is not None:
                self.on_wait(f"got the store's {what} after {time.monotonic() - started:.1f} s")
        try:  # who holds it, for those who wait (never trusted for anything else)
            holder.write_text(f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:300]}\n")
            yield
        finally:
            with contextlib.suppress(OSError):
                holder.unlink()
            lock.release()

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Hold the build lock (no other build runs meanwhile); `shared` (a reader) holds nothing, as readers read
        files that are only ever replaced by a rename."""
        if shared:
            yield
            return
        with self._hold("build", "build lock", self.lock_timeout_s):
            yield

    def holder(self) -> str:
        """Who holds a lock of this store now, as the holder wrote it: pid, host, command line ("" if none)."""
        for path in sorted((self.parts / ".locks").rglob("*.lock.holder")):
            text = _read(path)
            if text:
                return text
        return ""

    def lock_held(self) -> bool:
        """Whether some process holds one of this store's locks (a partition being written, a build) now."""
        import filelock

        for path in sorted((self.parts / ".locks").rglob("*.lock")):
            probe = filelock.FileLock(path, is_singleton=False, fallback_to_soft=False, preserve_lock_file=True)
            try:
                probe.acquire(blocking=False)
            except filelock.Timeout:
                return True
            probe.release()
        return False

    # ---- partitions ---------------------------------------------------------------------------

    def _ensure_format(self) -> None:
        """Create the partition folder; a single-file store at `path` is converted first."""
        if (self.parts / "FORMAT").exists():
            return
        with self.locked():
            if (self.parts / "FORMAT").exists():
                return
            if _legacy_tables(self.path):
                self._convert(self.path)
            self.parts.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # the store exists from the first ingest on, with nothing built yet
                import duckdb

                empty = self.path.with_name(f".{self.path.name}.build-{uuid.uuid4().hex[:12]}")
                duckdb.connect(str(empty)).close()
                os.replace(empty, self.path)
            tmp = self.parts / f".FORMAT.{os.getpid()}.tmp"
            tmp.write_text(FORMAT)
            os.replace(tmp, self.parts / "FORMAT")

    @contextlib.contextmanager
    def partition_writer(self, source: str, partition: str) -> Iterator[PartitionWriter]:
        """Replace `partition` of `source` whole: all or nothing, whatever was there before is gone."""
        if source not in SOURCE_TABLES:
            raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCE_TABLES)}")
        _check_key(partition)
        refuse_in_worker_bootstrap("the store")
        self._ensure_format()
        with self._replace_partition(source, partition) as writer:
            yield writer

    @contextlib.contextmanager
    def _replace_partition(self, source: str, partition: str) -> Iterator[PartitionWriter]:
        with self._hold(f"{source}/{partition}", f"partition {source}/{partition}", self.write_timeout_s):
            folder = self.parts / source / partition
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".tmp-*"):  # a dead writer's (we hold the partition's lock)
                shutil.rmtree(stale, ignore_errors=True)
            tmp = folder / f".tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            tmp.mkdir()
            writer = PartitionWriter(tmp, source, partition)
            try:
                yield writer
                writer._finish()
                versions = _versions(folder)
                final = folder / f"{_VERSION_PREFIX}{(versions[-1][0] if versions else 0) + 1:06d}"
                os.rename(tmp, final)  # the partition's new version is visible now, all of it
                _fsync(folder)
            except BaseException:
                writer._close()
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            for _, old in versions[:-1]:  # keep the one before: a build that listed it can finish
                shutil.rmtree(old, ignore_errors=True)

    def drop_partition(self, source: str, partition: str) -> None:
        """Remove a partition (its input file is gone)."""
        _check_key(partition)
        with self._hold(f"{source}/{partition}", f"partition {source}/{partition}", self.write_timeout_s):
            folder = self.parts / source / partition
            if folder.exists():
                trash = folder.with_name(f".dropped-{partition}-{uuid.uuid4().hex[:12]}")
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)

    def current_partitions(self) -> dict[tuple[str, str], Path]:
        """(source, partition) -> the folder of its current version."""
        found = {}
        for source in SOURCE_TABLES:
            root = self.parts / source
            if not root.is_dir():
                continue
            for entry in sorted(os.scandir(root), key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                versions = _versions(Path(entry.path))
                if versions:
                    found[(source, entry.name)] = versions[-1][1]
        return found

    def partitions(self, source: str) -> list[str]:
        """The partition keys of `source` there are now."""
        if (self.parts / "FORMAT").exists():
            return sorted(p for s, p in self.current_partitions() if s == source)
        with self.connect() as con:  # a single-file store
            return [r[0] for r in con.execute(
                f"SELECT DISTINCT partition FROM {SOURCE_TABLES[source][0]} ORDER BY 1").fetchall()]

    def partitions_signature(self) -> dict[str, Any] | None:
        """`partitions_signature` of what is ingested now; None while nothing is."""
        if not self.parts.exists() and not self.path.exists():
            return None
        with self.connect() as con:
            return partitions_signature(con.execute(PARTITIONS_SQL.format(db="")).fetchall())

    # ---- reads --------------------------------------------------------------------------------

    def _duckdb(self):
        import duckdb

        spill = self.path.parent / f".{self.path.name}.spill"
        con = duckdb.connect(config={"temp_directory": str(spill), "memory_limit": "4GB"})
        try:  # cosmetic (no bar in logs); some embeddings refuse it "as a global option": never worth a failed build
            con.execute("SET enable_progress_bar = false")
        except duckdb.Error:
            pass
        return con

    def _register_raw(self, con, folders: dict[tuple[str, str], Path]) -> None:
        """The raw tables as views of the connection over the partitions' files in `folders`."""
        for table in RAW_TABLES:
            files = [str(folder / f"{table}.parquet") for (source, _), folder in sorted(folders.items())
                     if table in (*SOURCE_TABLES[source], *META_SCHEMAS)]
            rel = con.read_parquet(files) if files else con.from_arrow(SCHEMAS[table].empty_table())
            con.register(table, rel)

    @contextlib.contextmanager
    def connect(self, read_only: bool = True) -> Iterator[Any]:
        """A DuckDB connection that reads the store: raw tables over the current partitions, built tables from the
        store's file (attached read-only as `store`). Writes go through `partition_writer` and the builds."""
        if not read_only:
            raise ValueError("Store.connect() reads; write partitions with partition_writer() and derived tables "
                             "with build_pages() / build_link_graph()")
        con = self._duckdb()
        try:
            built: set[str] = set()
            if self.path.exists():
                con.execute("ATTACH ? AS store (READ_ONLY)", [str(self.path)])
                built = {r[0] for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'store'").fetchall()}
            for table in DERIVED_TABLES:
                if table in built:
                    con.execute(f"CREATE VIEW {table} AS FROM store.{table}")
            if not (self.parts / "FORMAT").exists() and "warc_pages" in built:  # a single-file store, as it is
                for table in RAW_TABLES:
                    con.execute(f"CREATE VIEW {table} AS FROM store.{table}")
            else:
                self._register_raw(con, self.current_partitions())
            yield con
        finally:
            con.close()

    def counts(self) -> dict[str, int]:
        """Row counts of every table (derived ones only once built)."""
        with self.connect() as con:
            names = [r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog IN ('memory', 'temp') "
                "ORDER BY 1").fetchall()]
            return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}

    def contract_violations(self, table: str) -> dict[str, tuple[int, str]]:
        """For each data contract of `table` (see CONTRACTS): (rows violating it, what it promises)."""
        with self.connect() as con:
            return {name: (int(con.execute(sql).fetchone()[0]), promise)
                    for name, (sql, promise) in CONTRACTS[table].items()}

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        """Run a read query; rows as dicts (parameterised: pass values in `params`)."""
        with self.connect() as con:
            cur = con.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    # ---- builds -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _build(self, start_from_current: bool) -> Iterator[Any]:
        """A connection whose default database is a new DuckDB file that replaces `path` when the block ends
        without an error (a copy of the current one when `start_from_current`)."""
        with self.locked():
            tmp = self.path.with_name(f".{self.path.name}.build-{uuid.uuid4().hex[:12]}")
            for stale in self.path.parent.glob(f".{self.path.name}.build-*"):  # a dead build's (we hold the lock)
                stale.unlink(missing_ok=True)
            try:
                if start_from_current:
                    shutil.copyfile(self.path, tmp)
                con = self._duckdb()
                try:
                    con.execute("ATTACH ? AS out", [str(tmp)])
                    yield con
                    con.execute("USE memory")
                    con.execute("DETACH out")
                finally:
                    con.close()
                _fsync(tmp)
                os.replace(tmp, self.path)
            finally:
                for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                    leftover.unlink(missing_ok=True)

    def build_pages(self) -> dict[str, int]:
        """Rebuild `pages` and `url_aliases` from all WARC partitions and clickstream counts."""
        self._ensure_format()
        with self._build(start_from_current=False) as con:
            inputs = self.current_partitions()
            self._register_raw(con, inputs)
            con.execute("USE out")
            con.execute(_BUILD_PAGES_SQL)
            con.execute(_BUILD_ALIASES_SQL)
            con.execute("CREATE TABLE out.main.partition_stats AS FROM partition_stats ORDER BY ALL")
            con.execute("CREATE TABLE out.main.build_inputs (source VARCHAR, partition VARCHAR, version VARCHAR)")
            if inputs:
                con.executemany("INSERT INTO out.main.build_inputs VALUES (?, ?, ?)",
                                [(s, p, folder.name) for (s, p), folder in sorted(inputs.items())])
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
        """Rebuild `link_graph` from the outlinks of the pages' winning captures, read from the partition versions
        `pages` was built from."""
        if not self.path.exists():
            raise RuntimeError(f"no built store at {self.path}: build pages first")
        with self._build(start_from_current=True) as con:
            built = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'out'").fetchall()}
            if "pages" not in built:
                raise RuntimeError(f"store {self.path} has no pages yet: build pages first")
            if "build_inputs" in built:
                inputs = {(s, p): self.parts / s / p / v for s, p, v in con.execute(
                    "SELECT source, partition, version FROM out.main.build_inputs").fetchall()}
                gone = sorted(f"{s}/{p}" for (s, p), folder in inputs.items() if not folder.is_dir())
                if gone:
                    raise RuntimeError(f"partitions {gone[:5]} were re-ingested twice since pages was built (their "
                                       "version is gone): build pages again")
                self._register_raw(con, inputs)
            elif (self.parts / "FORMAT").exists():  # pages built by an older websim, partitions converted since
                self._register_raw(con, self.current_partitions())
            con.execute("USE out")
            con.execute(_BUILD_LINK_GRAPH_SQL)
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

    # ---- migration ----------------------------------------------------------------------------

    def convert_single_file(self, source_path: str | Path | None = None) -> dict[str, int]:
        """Write every partition of a single-file store (default: the one at `path`) as partition files of this
        store; the built tables stay in place until the next build. Returns partitions converted per source."""
        with self.locked():
            converted = self._convert(Path(source_path) if source_path else self.path)
            self.parts.mkdir(parents=True, exist_ok=True)
            (self.parts / "FORMAT").write_text(FORMAT)
            return converted

    def _convert(self, source_path: Path) -> dict[str, int]:
        import duckdb

        converted: Counter = Counter()
        con = duckdb.connect(str(source_path), read_only=True)
        try:
            keys = con.execute("""
                SELECT 'warc', partition FROM warc_pages UNION SELECT 'warc', partition FROM warc_redirects
                UNION SELECT 'clickstream', partition FROM clickstream
                UNION SELECT source, partition FROM partition_stats UNION SELECT source, partition FROM rejects
                ORDER BY ALL""").fetchall()
            for source, partition in keys:
                if source not in SOURCE_TABLES:
                    continue
                with self._replace_partition(source, partition) as w:
                    for table in (*SOURCE_TABLES[source], "rejects", "partition_stats"):
                        where = "partition = ?" if table in RAW_SCHEMAS else "source = ? AND partition = ?"
                        params = [partition] if table in RAW_SCHEMAS else [source, partition]
                        cols = ", ".join(SCHEMAS[table].names)
                        w.add_arrow(table, con.sql(f"SELECT {cols} FROM {table} WHERE {where}",
                                                   params=params).to_arrow_reader(_FLUSH_ROWS))
                converted[source] += 1
        finally:
            con.close()
        return dict(converted)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[:400]
    except OSError:
        return ""


def _check_key(partition: str) -> None:
    if not partition or "/" in partition or "\\" in partition or partition.startswith(".") or "\0" in partition:
        raise ValueError(f"partition key {partition!r} cannot be a folder name (empty, a path, or starts with '.')")


def _versions(folder: Path) -> list[tuple[int, Path]]:
    """The published versions of a partition's folder, oldest first."""
    found = []
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith(_VERSION_PREFIX) and name[len(_VERSION_PREFIX):].isdigit() and entry.is_dir():
            found.append((int(name[len(_VERSION_PREFIX):]), Path(entry.path)))
    return sorted(found)


def _legacy_tables(path: Path) -> bool:
    """Whether `path` is a store of the single-file layout (raw tables inside the DuckDB file)."""
    if not path.exists():
        return False
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return bool(con.execute("SELECT count(*) FROM information_schema.tables "
                                "WHERE table_name = 'warc_pages' AND table_schema = 'main'").fetchone()[0])
    finally:
        con.close()


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
