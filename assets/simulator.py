"""Simulator assets: the `snapshot` the simulated web serves, its search check, and a client resource."""


import enum
from pathlib import Path

import dagster as dg

from assets.ingest import link_graph, pages
from assets.plots import inline_bars
from assets.resources import StoreResource
from pipeline.simulator.cache import shared_simulator
from pipeline.simulator.search_index import INDEX_KINDS, IndexConfig
from pipeline.simulator.web import HttpSimulator, Simulator, title_self_retrieval
from pipeline.simulator.snapshot import Snapshot, build_snapshot, resolve_snapshot, snapshots_root

# A page must find itself by its title within the top 10 at least this often. Wikispeedia measures
# 0.998 at rank 1; a broken index (analyzer mismatch, page ids off by one) measures near 0. Titles
# shared by several pages ("Home") are left out of the sample, as no engine can tell those apart.
MIN_TITLE_HIT_RATE = 0.9


class SimulatorResource(dg.ConfigurableResource):
    """The simulated web for assets: in process over a snapshot, or over HTTP when `base_url` is set.

    `snapshot` empty: the latest one under `snapshots_root` (empty: `<$WEBSIM_HOME>/snapshots`).
    """

    snapshot: str = ""
    snapshots_root: str = ""
    base_url: str = ""
    timeout_s: float = 30.0

    def root(self) -> Path:
        return Path(self.snapshots_root) if self.snapshots_root else snapshots_root()

    def get_snapshot(self) -> Snapshot:
        return resolve_snapshot(self.snapshot or None, self.root())

    def get_client(self) -> "Simulator | HttpSimulator":
        if self.base_url:
            return HttpSimulator(self.base_url, timeout_s=self.timeout_s)
        return shared_simulator(self.get_snapshot().path)


# A Dagster enum: a misspelt kind fails run-config validation before any step runs.
IndexKind = enum.Enum("IndexKind", {kind: kind for kind in INDEX_KINDS}, type=str)


class SnapshotConfig(dg.Config):
    index_kind: IndexKind = IndexKind.tantivy
    """Search engine: "tantivy" (measured best, see pipeline/simulator/search_index.py) or "bm25s"."""
    stopwords: bool = True
    stemming: bool = False
    title_boost: float = 1.0
    k1: float = 1.2
    """BM25 k1 (bm25s only; tantivy fixes 1.2)."""
    b: float = 0.75
    """BM25 b (bm25s only; tantivy fixes 0.75)."""
    index_shards: int = 1
    """tantivy indexes the pages are split between, built in parallel processes and searched as one index with the
    statistics of all pages (same ranking; see docs/scale-out.md for when it pays)."""


@dg.asset(
    deps=[pages, link_graph],
    group_name="simulator",
    kinds={"duckdb", "tantivy"},
    description="An immutable, read-only snapshot of the store (pages with text, aliases, link graph, traffic, "
                "search index) in `<data dir>/snapshots/<id>/`; the simulator serves it while ingest goes on.",
)
def snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig, store: StoreResource,
             simulator: SimulatorResource) -> dg.MaterializeResult:
    index = IndexConfig(kind=IndexKind(config.index_kind).value, stopwords=config.stopwords,
                        stemming=config.stemming, title_boost=config.title_boost, k1=config.k1, b=config.b,
                        shards=config.index_shards)
    # DuckDB refuses a read-only open while a writer holds the store: the build queues on the store's lock (shared)
    # behind a running ingest, as long as it takes.
    snap = build_snapshot(store.get().path, simulator.root(), index=index, log=context.log.info,
                          lock_timeout_s=24 * 3600.0)
    m = snap.manifest
    return dg.MaterializeResult(metadata={
        "snapshot_id": snap.id,
        "path": dg.MetadataValue.path(str(snap.path)),
        "pages": m["counts"]["pages"],
        "edges": m["counts"]["edges"],
        "url_aliases": m["counts"]["url_aliases"],
        "hosts": m["counts"]["hosts"],
        "index_kind": m["index"]["kind"],
        "index_bytes": m["index"]["bytes"],
        "bytes_total": sum(m["bytes"].values()),
        "build_seconds": round(sum(m["timings"].values()), 2),
        "timings": dg.MetadataValue.json(m["timings"]),
        "build_time": inline_bars(list(m["timings"].values()), "snapshot build time by stage",
                                  "build time by stage: " + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s"
                                                                      for k, v in m["timings"].items())),
        "fingerprint": m["fingerprint"],
        "dagster/row_count": m["counts"]["pages"],
    })


@dg.asset_check(asset=snapshot, blocking=True,
                description=f"A sample of pages, searched by their own title, find themselves in the top 10 "
                            f"(pass at >= {MIN_TITLE_HIT_RATE:.0%}).")
def snapshot_title_search(context: dg.AssetCheckExecutionContext, simulator: SimulatorResource) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(snapshot.key)
    path = event.asset_materialization.metadata.get("path") if event and event.asset_materialization else None
    sim = shared_simulator(path.value) if path is not None else simulator.get_client()
    stats = title_self_retrieval(sim, sample=500, k=10, seed=0)
    return dg.AssetCheckResult(
        passed=stats["sampled"] == 0 or stats["hit_at_k"] >= MIN_TITLE_HIT_RATE,
        metadata={**stats, "threshold": MIN_TITLE_HIT_RATE, "snapshot_id": sim.snapshot_id},
    )
