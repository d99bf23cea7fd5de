"""The navigation_tasks asset on the Wikispeedia sample snapshot (small counts), and sft_traces' pick-up of it."""

import dagster as dg

from assets.navigation import navigation_tasks
from assets.resources import PathsResource, StoreResource
from assets.simulator import SimulatorResource
from assets.training import SFTTracesConfig, navigation_train_rows


def test_navigation_tasks_materializes_a_checked_dataset(wikispeedia_snapshot, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    out = tmp_path / "navigation_tasks"
    result = dg.materialize(
        [navigation_tasks], instance=instance,
        resources={"store": StoreResource(path=str(tmp_path / "unused.duckdb")),
                   "simulator": SimulatorResource(snapshot=str(wikispeedia_snapshot.path)), "paths": PathsResource()},
        run_config={"ops": {"navigation_tasks": {"config": {"n_tasks": 30, "max_candidates": 200,
                                                            "output_dir": str(out)}}}})
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {"gold_paths_exist", "targets_in_one_split", "spans_difficulty"}
    assert all(c.passed for c in checks)
    meta = result.asset_materializations_for_node("navigation_tasks")[0].metadata
    assert meta["dagster/row_count"].value == 30 and meta["snapshot_id"].value == wikispeedia_snapshot.id
    assert (out / "README.md").is_file() and (out / "data" / "train.parquet").is_file()
    rows = navigation_train_rows(instance, SFTTracesConfig(navigation_tasks=5))
    assert 0 < len(rows) <= 5 and {r["split"] for r in rows} == {"train"}
    assert navigation_train_rows(instance, SFTTracesConfig(navigation_tasks=-1)) == []
