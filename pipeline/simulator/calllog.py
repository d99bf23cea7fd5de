"""The call log: who called which operation with what, how long it took and what it returned.

Writers append to an in-memory buffer (a tuple per call, no I/O) and flush it in batches to Parquet
files in the log folder (`<snapshot id>.logs/` beside the snapshot, which itself is read-only). Each
flush writes a new file under a temporary name and renames it, so readers only ever see whole files
and any number of processes can log to one folder. Readers rebuild a trajectory with DuckDB.

A call's record never sinks its batch: text that UTF-8 cannot hold (a lone surrogate from a JSON `"\\ud800"`)
is stored escaped (`args` as JSON with `\\ud800`, other columns backslash-escaped) and counted in
`rows_repaired`; a row that still cannot be written is dropped and counted in `rows_dropped`. The background
flush survives any error (logged), and a failed write keeps its rows for the next flush.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import threading
import time
import uuid
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

_COLUMNS = ("ts", "seq", "pid", "snapshot_id", "session", "trajectory", "op", "args", "status", "latency_ms",
            "delay_ms", "result_ids", "result_urls", "error")
_LIVE_LOGS: "weakref.WeakSet[CallLog]" = weakref.WeakSet()
_MAX_RETAINED_ROWS = 1_000_000  # rows kept for a retry while writes fail (disk full): beyond this, dropped
log = logging.getLogger("websim.calllog")


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("ts", pa.timestamp("us", tz="UTC")), ("seq", pa.int64()), ("pid", pa.int32()),
        ("snapshot_id", pa.string()), ("session", pa.string()), ("trajectory", pa.string()), ("op", pa.string()),
        ("args", pa.string()), ("status", pa.int16()), ("latency_ms", pa.float32()), ("delay_ms", pa.float32()),
        ("result_ids", pa.list_(pa.int64())), ("result_urls", pa.list_(pa.string())), ("error", pa.string()),
    ])


class CallLog:
    """Buffered, append-only log of simulator calls in `log_dir` (created on first flush)."""

    def __init__(self, log_dir: str | Path, snapshot_id: str = "", *, flush_rows: int = 4096,
                 flush_interval_s: float = 5.0):
        self.log_dir = Path(log_dir)
        self.snapshot_id = snapshot_id
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._files = itertools.count()
        self._last_flush = time.monotonic()
        self._writer_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.rows_written = 0
        self.rows_repaired = 0
        """Rows whose text was escaped to be written (lone surrogates)."""
        self.rows_dropped = 0
        """Rows that could not be written at all (or were over the retry buffer while writes failed)."""
        self.flush_errors = 0
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        _LIVE_LOGS.add(self)

    def record(self, op: str, args: dict[str, Any], *, session: str | None = None, trajectory: str | None = None,
               status: int = 200, latency_ms: float = 0.0, delay_ms: float = 0.0,
               result_ids: Sequence[int] = (), result_urls: Sequence[str] = (), error: str | None = None) -> None:
        """Append one call; cheap (no I/O) except for the call that fills the buffer."""
        row = (time.time(), next(self._seq), session, trajectory, op, args, status, latency_ms, delay_ms,
               list(result_ids), list(result_urls), error)
        self._rows.append(row)  # list.append is atomic under the GIL
        if len(self._rows) >= self.flush_rows:
            self.flush()
        elif self._flusher is None or not self._flusher.is_alive():
            self._start_flusher()

    def _start_flusher(self) -> None:
        # Calls that trickle in (or stop) still reach disk within flush_interval_s.
        with self._lock:
            if self._flusher is not None and self._flusher.is_alive():
                return
            ref = weakref.ref(self)

            def run() -> None:
                while True:
                    calls = ref()
                    if calls is None or calls._closed.wait(calls.flush_interval_s):
                        return
                    if calls._rows:
                        try:
                            calls.flush()
                        except Exception:  # noqa: BLE001 - the flusher must outlive any one batch
                            log.exception("call log flush to %s failed; retrying in %.1f s", calls.log_dir,
                                          calls.flush_interval_s)
                    del calls

            self._flusher = threading.Thread(target=run, name="websim-calllog-flush", daemon=True)
            self._flusher.start()

    def flush(self) -> Path | None:
        """Write the buffered calls to a new Parquet file; returns its path (None if nothing was buffered)."""
        import pyarrow.parquet as pq

        with self._lock:
            rows, self._rows = self._rows, []
            self._last_flush = time.monotonic()
            if not rows:
                return None
            try:
                table = self._table(rows)
            except Exception:  # noqa: BLE001 - a bad record: find it, write the others
                table = self._table_row_by_row(rows)
                if table is None:
                    return None
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                name = (f"calls-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{self._writer_id}-"
                        f"{next(self._files):06d}.parquet")
                tmp = self.log_dir / f".{name}.tmp"
                pq.write_table(table, tmp, compression="zstd")
                os.replace(tmp, self.log_dir / name)
            except BaseException:
                # Keep the batch for the next flush (bounded), ahead of what came in meanwhile.
                self.flush_errors += 1
                keep = rows[-_MAX_RETAINED_ROWS:]
                self.rows_dropped += len(rows) - len(keep)
                self._rows = keep + self._rows
                raise
            self.rows_written += table.num_rows
            return self.log_dir / name

    def _table(self, rows: list[tuple]):
        import pyarrow as pa

        pid = os.getpid()
        cols = list(zip(*rows))
        return pa.table({
            "ts": pa.array([datetime.fromtimestamp(t, timezone.utc) for t in cols[0]], pa.timestamp("us", tz="UTC")),
            "seq": pa.array(cols[1], pa.int64()),
            "pid": pa.array([pid] * len(rows), pa.int32()),
            "snapshot_id": pa.array([self.snapshot_id] * len(rows), pa.string()),
            "session": pa.array(cols[2], pa.string()),
            "trajectory": pa.array(cols[3], pa.string()),
            "op": pa.array(cols[4], pa.string()),
            "args": pa.array([a if isinstance(a, _RawJson) else json.dumps(a, ensure_ascii=False, default=str)
                              for a in cols[5]], pa.string()),
            "status": pa.array(cols[6], pa.int16()),
            "latency_ms": pa.array(cols[7], pa.float32()),
            "delay_ms": pa.array(cols[8], pa.float32()),
            "result_ids": pa.array(cols[9], pa.list_(pa.int64())),
            "result_urls": pa.array(cols[10], pa.list_(pa.string())),
            "error": pa.array(cols[11], pa.string()),
        }, schema=_schema())

    def _table_row_by_row(self, rows: list[tuple]):
        """The batch without the rows that cannot be written: each repaired if it can be, else dropped."""
        import pyarrow as pa

        good = []
        for row in rows:
            try:
                self._table([row])
                good.append(row)
                continue
            except Exception:  # noqa: BLE001
                pass
            try:
                fixed = _repaired(row)
                self._table([fixed])
                good.append(fixed)
                self.rows_repaired += 1
            except Exception as exc:  # noqa: BLE001
                self.rows_dropped += 1
                log.warning("call log: dropped a %r call that cannot be written (%s)", row[4], exc)
        return self._table(good) if good else None

    def close(self) -> None:
        self._closed.set()
        self.flush()
        _LIVE_LOGS.discard(self)


def _escaped(value: Any) -> Any:
    """A string UTF-8 can encode (lone surrogates backslash-escaped); other values as they are."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _args_json(args: Any) -> str:
    """`args` as JSON a reader gets back exactly: ASCII escapes where UTF-8 fails, repr for what JSON can't hold."""
    try:
        return json.dumps(args, ensure_ascii=True, default=str)
    except (ValueError, TypeError, RecursionError):  # circular, or nested deeper than the encoder goes
        return json.dumps({"unserialisable_args": repr(args)[:2000]}, ensure_ascii=True)


def _repaired(row: tuple) -> tuple:
    ts, seq, session, trajectory, op, args, status, latency_ms, delay_ms, ids, urls, error = row
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError):
        ids = []
    return (float(ts), int(seq), _escaped(_str_or_none(session)), _escaped(_str_or_none(trajectory)),
            _escaped(str(op)), _RawJson(_args_json(args)), int(status) if -32768 <= int(status) < 32768 else 0,
            float(latency_ms), float(delay_ms), ids, [_escaped(str(u)) for u in urls],
            _escaped(_str_or_none(error)))


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class _RawJson(str):
    """Arguments already serialised: written as they are."""


@atexit.register
def _flush_all() -> None:
    for log in list(_LIVE_LOGS):
        try:
            log.flush()
        except Exception:  # noqa: BLE001 - never fail interpreter exit over a log
            pass


def read_calls(log_dir: str | Path, *, session: str | None = None, trajectory: str | None = None,
               op: str | None = None) -> list[dict]:
    """Logged calls in `log_dir` (optionally of one session / trajectory / operation), in call order."""
    import duckdb

    log_dir = Path(log_dir)
    if not any(log_dir.glob("calls-*.parquet")):
        return []
    where, params = [], []
    for col, val in (("session", session), ("trajectory", trajectory), ("op", op)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    pattern = str(log_dir / "calls-*.parquet").replace("'", "''")
    sql = (f"SELECT * FROM read_parquet('{pattern}', union_by_name = true)"
           + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY ts, pid, seq")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()
    for r in rows:
        r["args"] = json.loads(r["args"]) if r["args"] else {}
    return rows


def read_trajectory(log_dir: str | Path, trajectory: str) -> list[dict]:
    """The calls of one trajectory, in the order they were made."""
    return read_calls(log_dir, trajectory=trajectory)
