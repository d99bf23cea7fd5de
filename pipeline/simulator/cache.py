"""The process's one cache of in-process simulators: `shared_simulator(snapshot, **options)`.

Rollouts create tool environments by the hundred and assets open the same snapshot again and again; they all
share one `Simulator` per (snapshot folder, options), and with it the memory-mapped snapshot, the search index
and one buffered call log. A snapshot is immutable, so a cached simulator never goes stale.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pipeline.simulator.snapshot import resolve_snapshot
from pipeline.simulator.web import Simulator

_SIMULATORS: dict[tuple, Simulator] = {}
_LOCK = threading.Lock()


def shared_simulator(snapshot: str | Path | None = None, *, snapshots_root: str | Path | None = None,
                     **options: Any) -> Simulator:
    """The shared Simulator for `snapshot` (a folder, an id under `snapshots_root`, or None for the latest).

    `options` are `Simulator` keyword arguments (e.g. `snippet_chars=120, call_log=True`); each distinct set of
    options gets its own instance.
    """
    snap = resolve_snapshot(snapshot, snapshots_root)
    key = (str(snap.path), tuple(sorted(options.items())))
    with _LOCK:
        sim = _SIMULATORS.get(key)
        if sim is None:
            sim = _SIMULATORS[key] = Simulator(snap, **options)
        return sim
