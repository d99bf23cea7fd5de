"""The persistent response cache: one SQLite file (WAL mode) shared by every process that generates.

Keyed by a hash of (model id, normalised prompt, sampling params including the seed, schema, tools): the same
request on any backend, in any process, hits the same row. Backends write after every engine call, each batch
in its own transaction, so a run killed midway keeps every finished batch and a re-run only generates the
rest. Only deterministic requests (greedy, or with an explicit seed) are cached unless a backend is told
otherwise; see `Backend.cache_nondeterministic`.

WAL lets readers and one writer work at once across processes; `busy_timeout` makes concurrent writers wait
for each other instead of failing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Completion, Request

CACHE_VERSION = 1  # bump when the key or the stored value changes meaning
_STORED_FIELDS = ("text", "prompt_tokens", "completion_tokens", "finish_reason")


def request_key(model_id: str, request: Request) -> str:
    """The cache key of one request: sha256 over a canonical JSON of everything that changes the answer."""
    payload = {
        "v": CACHE_VERSION,
        "model": model_id,
        "prompt": request.prompt,
        "params": request.params.to_dict(),
        "schema": request.schema,
        "tools": list(request.tools) if request.tools else None,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class ResponseCache:
    """Completions by request key, in `<path>` (created with its folder on first use)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.stats = CacheStats()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> "ResponseCache":
        return cls(Path(data_dir) / "cache" / "llm_responses.sqlite")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (only an OS crash can lose the last commits).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, model TEXT NOT NULL, created REAL NOT NULL, completions TEXT NOT NULL)"
            )
            self._conn = conn
        return self._conn

    def key(self, model_id: str, request: Request) -> str:
        return request_key(model_id, request)

    def get_many(self, keys: list[str]) -> dict[str, list[Completion]]:
        """The stored completions of the keys that are present (marked `cached=True`)."""
        found: dict[str, list[Completion]] = {}
        with self._lock:
            conn = self._connection()
            for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in conn.execute(f"SELECT key, completions FROM responses WHERE key IN ({marks})", chunk):
                    found[key] = [Completion(**item, cached=True) for item in json.loads(blob)]
        self.stats.hits += len(found)
        self.stats.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, model_id: str, items: dict[str, list[Completion]]) -> None:
        """Store completions by key, all in one transaction (the unit a crash can lose)."""
        now = time.time()
        rows = [
            (key, model_id, now, json.dumps([{f: getattr(c, f) for f in _STORED_FIELDS} for c in completions]))
            for key, completions in items.items()
        ]
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.stats.writes += len(rows)

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT count(*) FROM responses").fetchone()[0]

    def clear(self, model_id: str | None = None) -> int:
        """Delete every entry (or one model's); returns how many went."""
        with self._lock:
            conn = self._connection()
            if model_id is None:
                return conn.execute("DELETE FROM responses").rowcount
            return conn.execute("DELETE FROM responses WHERE model = ?", (model_id,)).rowcount

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"
