"""Snapshots: immutable, versioned, read-only copies of the store that the simulator serves.

A snapshot is a folder `<root>/<id>/` (root: `<data dir>/snapshots`), id = UTC build time + the first
hex digits of the content fingerprint (`20250101T120000Z-1a2b3c4d`):

- `snapshot.duckdb`: `pages` (with text), `url_aliases`, `link_graph`, `page_traffic`; what later stages
  query with SQL (open it with `Snapshot.connect()`, read-only, from as many processes as you like).
- `serve/*.arrow`: the same rows laid out for the hot path, as uncompressed Arrow IPC files that the
  simulator memory-maps (zero-copy, shared between processes by the page cache): `pages` by page_id,
  `urls` (pages and aliases by a 64-bit URL hash), `links` by source, `backlinks` by target, `sitemap`
  by (host, path), `hosts`.
- `index/`: the search index (see `pipeline.simulator.search_index`), one tantivy index or, with
  `IndexConfig(shards=N)`, N of them in `index/shard-*/` (`pipeline.simulator.index_shards`).
- `manifest.json`: id, creation time, source store, counts, index kind and settings, fingerprint, timings.

A snapshot is built in a hidden temporary folder beside the others and renamed into place whole,
then its files are made read-only; `LATEST` (a file holding an id) is replaced atomically. Nothing
of an existing snapshot is ever written again, so building a new one cannot disturb one being served.
The store is opened read-only, and only for the copy into `snapshot.duckdb`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline import config as websim_config
from pipeline.simulator.search_index import STOPWORDS, IndexConfig, build_index, dir_bytes
from pipeline.simulator.snippets import build_snippet_map

FORMAT_VERSION = 2
"""2: `serve/snippet_*.npy`, the term map that makes snippets a lookup (pipeline.simulator.snippets)."""
READABLE_FORMATS = (1, 2)
"""Format 1 snapshots are served with snippets scanned from the text (slower, same API)."""
MANIFEST = "manifest.json"
DUCKDB_FILE = "snapshot.duckdb"
INDEX_DIR = "index"
SERVE_DIR = "serve"
LATEST = "LATEST"
SERVE_FILES = ("pages", "urls", "links", "backlinks", "sitemap", "hosts")
_BATCH_ROWS = 8192


def snapshots_root() -> Path:
    """Where snapshots live: `<data dir>/snapshots`."""
    return websim_config.data_dir() / "snapshots"


def url_key(url: str) -> int:
    """The 64-bit key under which `serve/urls.arrow` files a (normalised) URL."""
    return int.from_bytes(hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class Snapshot:
    """A built snapshot folder and its manifest."""

    path: Path
    manifest: dict

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def log_dir(self) -> Path:
        """Writable sibling folder for the call log (the snapshot itself is read-only)."""
        return self.path.with_name(self.path.name + ".logs")

    def file(self, name: str) -> Path:
        return self.path / SERVE_DIR / f"{name}.arrow"

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A read-only DuckDB connection to `snapshot.duckdb`, closed on exit."""
        import duckdb

        con = duckdb.connect(str(self.path / DUCKDB_FILE), read_only=True)
        try:
            yield con
        finally:
            con.close()

    @classmethod
    def open(cls, path: str | Path) -> "Snapshot":
        path = Path(path).resolve()
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is not a snapshot (no {MANIFEST})") from None
        if manifest.get("format") not in READABLE_FORMATS:
            raise ValueError(f"snapshot {path} has format {manifest.get('format')}; this code reads formats "
                             f"{', '.join(map(str, READABLE_FORMATS))}: rebuild it (materialize the `snapshot` asset, "
                             "or pipeline.simulator.snapshot.build_snapshot) with this version of websim")
        return cls(path, manifest)


def latest_snapshot(root: str | Path | None = None) -> Snapshot | None:
    """The snapshot `LATEST` points to, or None when none was built."""
    root = Path(root) if root else snapshots_root()
    try:
        snap_id = (root / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    return Snapshot.open(root / snap_id)


def list_snapshots(root: str | Path | None = None) -> list[str]:
    """Ids of the snapshots under `root`, oldest first."""
    root = Path(root) if root else snapshots_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def resolve_snapshot(ref: str | Path | None = None, root: str | Path | None = None) -> Snapshot:
    """A snapshot by folder path, by id under `root`, or the latest when `ref` is empty or "latest"."""
    root = Path(root) if root else snapshots_root()
    if ref in (None, "", "latest"):
        snap = latest_snapshot(root)
        if snap is None:
            raise FileNotFoundError(f"no snapshot under {root}: build one first (the `snapshot` asset)")
        return snap
    p = Path(ref)
    if (p / MANIFEST).is_file():
        return Snapshot.open(p)
    if (root / str(ref) / MANIFEST).is_file():
        return Snapshot.open(root / str(ref))
    raise FileNotFoundError(f"no snapshot {str(ref)!r} (neither a snapshot folder nor an id under {root})")


def remove_snapshot(snapshot: Snapshot) -> None:
    """Delete a snapshot folder (and its logs). Never the one `LATEST` points to."""
    latest = latest_snapshot(snapshot.path.parent)
    if latest is not None and latest.path == snapshot.path:
        raise ValueError(f"{snapshot.id} is the latest snapshot; build another before removing it")
    _make_writable(snapshot.path)
    shutil.rmtree(snapshot.path)
    shutil.rmtree(snapshot.log_dir, ignore_errors=True)


# ---- building --------------------------------------------------------------------------------

# Copied from the store as they are, in the order the hot path reads them. `path` (path + query)
# is what a sitemap sorts by.
_COPY_SQL = [
    r"""CREATE TABLE pages AS
        SELECT page_id, url, host,
               coalesce(nullif(regexp_extract(url, '^https?://[^/]+(/.*)?$', 1), ''), '/') AS path,
               coalesce(title, '') AS title, coalesce(text, '') AS text, published, language, warc_date,
               http_status, content_type, content_hash, n_chars, strlen(coalesce(text, '')) AS n_bytes,
               wiki_lang, wiki_title, clicks_in, clicks_in_link, clicks_in_search
        FROM src.pages ORDER BY page_id""",
    """CREATE TABLE url_aliases AS
        SELECT url, page_id, reason, target_url, http_status FROM src.url_aliases
        WHERE url NOT IN (SELECT url FROM src.pages) ORDER BY url""",
    """CREATE TABLE link_graph AS
        SELECT src_id, dst_id, anchor, context, n_links, first_ordinal, clicks FROM src.link_graph
        ORDER BY src_id, first_ordinal, dst_id""",
]
_TRAFFIC_SQL = """
CREATE TABLE page_traffic AS
SELECT p.page_id, p.clicks_in, p.clicks_in_link, p.clicks_in_search,
       coalesce(o.n, 0) AS outlinks, coalesce(o.clicks, 0) AS clicks_out, coalesce(i.n, 0) AS backlinks
FROM pages p
LEFT JOIN (SELECT src_id, count(*) AS n, sum(clicks) AS clicks FROM link_graph GROUP BY src_id) o ON o.src_id = p.page_id
LEFT JOIN (SELECT dst_id, count(*) AS n FROM link_graph GROUP BY dst_id) i ON i.dst_id = p.page_id
ORDER BY p.page_id
"""
# What the serving files hold (see simulator.PageFiles); row order is what makes lookups cheap.
# `pages` and `link_graph` were inserted in page_id / (src_id, first_ordinal) order and DuckDB keeps
# insertion order: no ORDER BY, so the texts are streamed rather than sorted in memory (checked after).
_SERVE_SQL = {
    "pages": "SELECT page_id, url, host, title, warc_date, content_type, n_bytes, clicks_in, text FROM pages",
    "links": "SELECT src_id, dst_id, anchor, clicks FROM link_graph",
    "backlinks": """SELECT g.dst_id, g.src_id, g.anchor, g.clicks FROM link_graph g
                    ORDER BY g.dst_id, g.clicks DESC, g.src_id""",
    "sitemap": "SELECT host, path, url, title, page_id FROM pages ORDER BY host, path, url",
    "hosts": """SELECT host, CAST(row_number() OVER (ORDER BY host) - 1 AS INTEGER) AS ord,
                       CAST(sum(count(*)) OVER (ORDER BY host) - count(*) AS BIGINT) AS start, count(*) AS n_pages
                FROM pages GROUP BY host ORDER BY host""",
}
# Order-independent row digests (XOR of md5s): the same rows give the same fingerprint on any machine.
_FINGERPRINT_SQL = """
SELECT
  (SELECT coalesce(bit_xor(md5_number(concat_ws(chr(31), page_id, url, title, content_hash, epoch_us(warc_date)))), 0)
   FROM pages),
  (SELECT coalesce(bit_xor(md5_number(concat_ws(chr(31), url, page_id, reason, target_url))), 0) FROM url_aliases),
  (SELECT coalesce(bit_xor(md5_number(concat_ws(chr(31), src_id, dst_id, anchor, clicks))), 0) FROM link_graph)
"""
_COUNTS_SQL = """
SELECT
  (SELECT count(*) FROM pages) AS pages,
  (SELECT count(*) FROM url_aliases) AS url_aliases,
  (SELECT count(*) FROM url_aliases WHERE reason = 'redirect') AS redirects,
  (SELECT count(*) FROM url_aliases WHERE reason = 'duplicate_content') AS duplicate_urls,
  (SELECT count(*) FROM link_graph) AS edges,
  (SELECT count(*) FROM link_graph WHERE clicks > 0) AS edges_with_clicks,
  (SELECT count(DISTINCT host) FROM pages) AS hosts,
  (SELECT coalesce(sum(n_bytes), 0) FROM pages) AS text_bytes
"""


def build_snapshot(
    store_path: str | Path,
    root: str | Path | None = None,
    *,
    index: IndexConfig = IndexConfig(),
    make_latest: bool = True,
    lock_timeout_s: float = 300.0,
    duckdb_memory_limit: str = "4GB",
    log: Callable[[str], None] | None = None,
) -> Snapshot:
    """Build a new snapshot of the store at `store_path` under `root` and (by default) make it the latest.

    DuckDB spills to disk beyond `duckdb_memory_limit` (its default, 80% of RAM, is not neighbourly).
    """
    import duckdb

    log = log or (lambda msg: None)
    store_path = Path(store_path).resolve()
    root = Path(root).resolve() if root else snapshots_root()
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(root)
    created = datetime.now(timezone.utc)
    tmp = root / f".building-{created:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    (tmp / SERVE_DIR).mkdir(parents=True)
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        con = duckdb.connect(str(tmp / DUCKDB_FILE))
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET memory_limit = '{duckdb_memory_limit}'")
            con.execute("SET preserve_insertion_order = true")
            from pipeline.ingest.store import Store

            # A reader of the store: beside other readers, after the writer that holds it (its lock file).
            store_lock = (Store(store_path, lock_timeout_s=lock_timeout_s).locked(shared=True) if store_path.exists()
                          else contextlib.nullcontext())
            with store_lock:
                store_partitions = _copy_store(con, store_path, lock_timeout_s)
            con.execute(_TRAFFIC_SQL)
            con.execute("CHECKPOINT")
            timings["copy_s"] = time.perf_counter() - t0
            log(f"copied the store in {timings['copy_s']:.1f} s")

            t0 = time.perf_counter()
            for name, sql in _SERVE_SQL.items():
                _write_arrow(con.sql(sql).to_arrow_reader(_BATCH_ROWS), tmp / SERVE_DIR / f"{name}.arrow")
            _check_sorted(tmp / SERVE_DIR / "pages.arrow", "page_id")
            _check_sorted(tmp / SERVE_DIR / "links.arrow", "src_id")
            _write_url_table(con, tmp / SERVE_DIR / "urls.arrow")
            timings["serve_files_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            snippet_counts = build_snippet_map(_arrow_texts(tmp / SERVE_DIR / "pages.arrow"), tmp / SERVE_DIR,
                                               STOPWORDS if index.stopwords else ())
            timings["snippet_map_s"] = time.perf_counter() - t0
            log(f"snippet term map: {snippet_counts['terms']} terms in {timings['snippet_map_s']:.1f} s")

            cur = con.execute(_COUNTS_SQL)
            counts = dict(zip([d[0] for d in cur.description], map(int, cur.fetchall()[0])))
            digest = hashlib.sha256(",".join(str(v) for v in con.execute(_FINGERPRINT_SQL).fetchall()[0]).encode())
            fingerprint = digest.hexdigest()

            t0 = time.perf_counter()
            stats = build_index(tmp / INDEX_DIR, _index_docs(con), index)
            timings["index_s"] = time.perf_counter() - t0
            log(f"indexed {stats.docs} pages with {index.kind} in {timings['index_s']:.1f} s"
                + (f" ({index.shards} shards)" if index.shards > 1 else ""))
        finally:
            con.close()

        snap_id = f"{created:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"
        manifest = {
            "id": snap_id,
            "format": FORMAT_VERSION,
            "created": created.isoformat(),
            "source_store": str(store_path),
            "store_partitions": store_partitions,
            "fingerprint": fingerprint,
            "counts": counts,
            "index": {"kind": index.kind, "config": asdict(index), "docs": stats.docs, "shards": index.shards,
                      "bytes": dir_bytes(tmp / INDEX_DIR), "seconds": round(stats.seconds, 3), "cpu_s": stats.cpu_s},
            "bytes": {"duckdb": (tmp / DUCKDB_FILE).stat().st_size, "serve": dir_bytes(tmp / SERVE_DIR),
                      "index": dir_bytes(tmp / INDEX_DIR)},
            "snippets": {**snippet_counts, "stopwords": index.stopwords},
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "versions": _versions(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _make_read_only(tmp)
        final = _rename_into_place(tmp, root, snap_id)
    except BaseException:
        _make_writable(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    snap = Snapshot.open(final)
    if make_latest:
        set_latest(snap)
    log(f"snapshot {snap.id} at {snap.path}")
    return snap


def set_latest(snapshot: Snapshot) -> None:
    """Point `LATEST` at `snapshot` unless it already points at a newer one (ids sort by build time)."""
    root = snapshot.path.parent
    with open(root / ".latest.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = latest_snapshot(root) if (root / LATEST).exists() else None
        if current is None or current.id <= snapshot.id or not current.path.exists():
            tmp = root / f".{LATEST}.{os.getpid()}.tmp"
            tmp.write_text(snapshot.path.name + "\n")
            os.replace(tmp, root / LATEST)


def _copy_store(con, store_path: Path, lock_timeout_s: float) -> dict[str, Any]:
    """Copy the store's derived tables; returns `partitions_signature` of the raw partitions, read in the same
    read-only attach, so a snapshot knows exactly which ingests it saw."""
    import duckdb

    from pipeline.ingest.store import PARTITIONS_SQL, partitions_signature

    if not store_path.exists():
        raise FileNotFoundError(f"no store at {store_path}: ingest something first")
    deadline = time.monotonic() + lock_timeout_s
    quoted = str(store_path).replace("'", "''")
    while True:
        try:
            con.execute(f"ATTACH '{quoted}' AS src (READ_ONLY)")
            break
        except duckdb.IOException as exc:
            # A writer holds the store; it releases it when its transaction ends.
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'src'").fetchall()}
        missing = {"pages", "url_aliases", "link_graph"} - tables
        if missing:
            raise RuntimeError(f"store {store_path} has no {sorted(missing)} yet: build pages and link_graph first")
        con.execute("BEGIN TRANSACTION")
        for sql in _COPY_SQL:
            con.execute(sql)
        con.execute("COMMIT")
        rows = con.execute(PARTITIONS_SQL.format(db="src.")).fetchall() if "partition_stats" in tables else []
        return partitions_signature(rows)
    finally:
        con.execute("DETACH src")


def _write_arrow(reader, path: Path) -> None:
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def _check_sorted(path: Path, column: str) -> None:
    """The simulator binary-searches `column`: refuse a file whose rows are not in order."""
    import numpy as np
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        col = pa.ipc.open_file(source).read_all().column(column)
        values = np.concatenate([c.to_numpy() for c in col.chunks]) if col.num_chunks else np.array([])
    if len(values) > 1 and not bool(np.all(values[1:] >= values[:-1])):
        raise RuntimeError(f"{path.name} is not sorted by {column}")


def _write_url_table(con, path: Path) -> None:
    """Every URL the simulator answers for (pages, then aliases), sorted by `url_key`."""
    import numpy as np
    import pyarrow as pa

    pages = con.sql("""SELECT url, page_id, '' AS reason, CAST(200 AS SMALLINT) AS http_status, url AS target_url
                       FROM pages""").to_arrow_table()
    aliases = con.sql("""SELECT url, page_id, reason, CAST(coalesce(http_status, 301) AS SMALLINT) AS http_status,
                                coalesce(target_url, '') AS target_url FROM url_aliases""").to_arrow_table()
    table = pa.concat_tables([pages, aliases.cast(pages.schema)])
    keys = np.fromiter((url_key(u) for u in table.column("url").to_pylist()), dtype=np.uint64, count=table.num_rows)
    order = np.argsort(keys, kind="stable")
    table = table.take(pa.array(order)).add_column(0, "key", pa.array(keys[order]))
    _write_arrow(table.to_reader(max_chunksize=_BATCH_ROWS * 8), path)


def _arrow_texts(path: Path) -> Iterator[str]:
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        for chunk in pa.ipc.open_file(source).read_all().column("text").chunks:
            yield from chunk.to_pylist()


def _index_docs(con) -> Iterator[tuple[int, str, str]]:
    reader = con.sql("SELECT page_id, title, text FROM pages").to_arrow_reader(2048)
    for batch in reader:
        yield from zip(*(batch.column(i).to_pylist() for i in range(3)))


def _rename_into_place(tmp: Path, root: Path, snap_id: str) -> Path:
    for n in range(100):
        final = root / (snap_id if n == 0 else f"{snap_id}-{n}")
        try:
            # rename(2) replaces an empty directory silently; make sure nothing is there first.
            final.mkdir()
        except FileExistsError:
            continue
        final.rmdir()
        try:
            os.rename(tmp, final)
            return final
        except OSError:
            continue
    raise RuntimeError(f"could not find a free name for snapshot {snap_id} under {root}")


def _make_read_only(path: Path) -> None:
    for p in sorted(path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        mode = p.stat().st_mode
        if p.is_dir():
            p.chmod(stat.S_IMODE(mode) & ~0o222 | 0o555)
        else:
            p.chmod(stat.S_IMODE(mode) & ~0o222 | 0o444)
    path.chmod(0o555)


def _make_writable(path: Path) -> None:
    if not path.exists():
        return
    path.chmod(0o755)
    for p in path.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def _remove_stale_builds(root: Path, max_age_s: float = 24 * 3600) -> None:
    """Leftovers of builds that died more than a day ago (a live build never takes that long)."""
    for p in root.glob(".building-*"):
        with contextlib.suppress(OSError):
            if time.time() - p.stat().st_mtime > max_age_s:
                _make_writable(p)
                shutil.rmtree(p, ignore_errors=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("duckdb", "pyarrow", "tantivy", "bm25s"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
