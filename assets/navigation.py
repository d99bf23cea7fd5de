"""Synthesis asset: navigation tasks (reach one article from another by following links) from human game paths."""

from pathlib import Path

import dagster as dg

from assets.handoffs import json_metadata
from assets.plots import numeric
from assets.resources import PathsResource, StoreResource
from assets.simulator import SimulatorResource, snapshot
from pipeline import config as websim_config
from pipeline.simulator.snapshot import DUCKDB_FILE
from pipeline.synthesis.navigation import CHECKS, NavigationConfig, make_navigation_dataset


class NavigationTasksConfig(dg.Config):
    n_tasks: int = 600
    """Tasks to make (spread across difficulty levels)."""
    game_files: list[str] = []
    """Wikispeedia paths files (paths_unfinished.tsv / paths_finished.tsv); empty: the sample's."""
    seed: int = 0
    eval_fraction: float = 0.25
    described_fraction: float = 0.3
    max_shortest: int = 6
    max_candidates: int = 4000
    output_dir: str = ""
    """Empty: `<data dir>/datasets/navigation_tasks`."""


def source_db(simulator: SimulatorResource, store: StoreResource) -> tuple[Path, str]:
    """The latest (or configured) snapshot's DuckDB file and id; the store itself while no snapshot exists."""
    try:
        snap = simulator.get_snapshot()
        return snap.path / DUCKDB_FILE, snap.id
    except FileNotFoundError:
        return store.get().path, "store"


@dg.asset(
    deps=[snapshot],
    group_name="synthesis",
    kinds={"parquet", "duckdb"},
    check_specs=[dg.AssetCheckSpec(name, asset="navigation_tasks", description=promise)
                 for name, promise in CHECKS.items()],
    description="Navigation tasks from human Wikispeedia paths: start article -> target article (named, or "
                "described by its defining sentence) by following links. Gold from the snapshot's link graph (BFS "
                "shortest path, pages one step closer, most-clicked shortest path); human figures per pair; "
                "difficulty levels; split by target page. Parquet + HF dataset + JSONL + card.",
)
def navigation_tasks(context: dg.AssetExecutionContext, config: NavigationTasksConfig, simulator: SimulatorResource,
                     store: StoreResource, paths: PathsResource) -> dg.MaterializeResult:
    db_path, snapshot_id = source_db(simulator, store)
    games = config.game_files or [str(websim_config.sample_data_dir() / "wikispeedia" / "paths_unfinished.tsv")]
    out_dir = paths.dataset_dir("navigation_tasks", config.output_dir)
    run = make_navigation_dataset(db_path, games, out_dir, snapshot_id=snapshot_id, log=context.log.info, config=(
        NavigationConfig(n_tasks=config.n_tasks, seed=config.seed, eval_fraction=config.eval_fraction,
                         described_fraction=config.described_fraction, max_shortest=config.max_shortest,
                         max_candidates=config.max_candidates)))
    s = run.stats
    metadata = {"path": dg.MetadataValue.path(run.export["path"]), "snapshot_id": snapshot_id,
                "dagster/row_count": len(run.rows), **json_metadata({k: s[k] for k in (
                    "by_split", "by_difficulty", "by_shortest", "by_source", "by_variant", "rejections",
                    "human_baseline")}),
                "games": s["games"], "candidates": s["candidates"], "seconds": s["seconds"],
                **numeric({f"{split}_tasks": int(n) for split, n in s["by_split"].items()}),
                "sample_task": dg.MetadataValue.md(f"```\n{run.rows[0]['question']}\n```\ngold path: "
                                                   f"{' -> '.join(run.rows[0]['gold_path_titles'])}"
                                                   if run.rows else "(no tasks)"),
                "dataset_card": dg.MetadataValue.path(str(Path(run.export["path"]) / "README.md"))}
    checks = [dg.AssetCheckResult(check_name=name, passed=bad == 0,
                                  metadata={"violations": bad, "examples": dg.MetadataValue.json(examples)})
              for name, (bad, examples) in run.checks.items()]
    return dg.MaterializeResult(metadata=metadata, check_results=checks)
