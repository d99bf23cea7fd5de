"""The `snapshot` asset, its title-search check, and SimulatorResource."""

import dagster as dg
import pytest

from assets.resources import StoreResource
from assets.simulator import SimulatorResource, snapshot, snapshot_title_search
from pipeline.simulator.web import HttpSimulator, Simulator
from pipeline.simulator.snapshot import latest_snapshot
from tests.support import TOPICS


@pytest.fixture()
def resources(small_store, tmp_path):
    return {"store": StoreResource(path=str(small_store.path)),
            "simulator": SimulatorResource(snapshots_root=str(tmp_path / "snapshots"))}


def test_snapshot_asset_and_check(resources, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([snapshot, snapshot_title_search], resources=resources, instance=instance,
                            run_config={"ops": {"snapshot": {"config": {"index_kind": "tantivy"}}}})
    assert result.success
    md = result.asset_materializations_for_node("snapshot")[0].metadata
    snap = latest_snapshot(tmp_path / "snapshots")
    assert md["snapshot_id"].value == snap.id and md["path"].value == str(snap.path)
    assert md["pages"].value == snap.manifest["counts"]["pages"] and md["edges"].value > 0
    assert md["index_kind"].value == "tantivy" and md["index_bytes"].value > 0 and md["build_seconds"].value > 0
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1 and checks[0].passed
    assert checks[0].metadata["hit_at_k"].value >= 0.9 and checks[0].metadata["sampled"].value > 0


def test_snapshot_asset_with_bm25s(resources, tmp_path):
    result = dg.materialize([snapshot], resources=resources,
                            run_config={"ops": {"snapshot": {"config": {"index_kind": "bm25s", "k1": 1.4}}}})
    assert result.success
    assert latest_snapshot(tmp_path / "snapshots").manifest["index"]["config"]["k1"] == 1.4


def test_simulator_resource_clients(resources, tmp_path):
    dg.materialize([snapshot], resources=resources)
    client = resources["simulator"].get_client()
    assert isinstance(client, Simulator)
    title = next(iter(TOPICS))
    assert client.search(title, 1).results[0].title == title
    pinned = SimulatorResource(snapshot=str(latest_snapshot(tmp_path / "snapshots").path))
    assert pinned.get_client().snapshot_id == client.snapshot_id
    assert isinstance(SimulatorResource(base_url="http://127.0.0.1:9").get_client(), HttpSimulator)


def test_definitions_load_with_the_simulator_objects(resources):
    defs = dg.Definitions(assets=[snapshot], asset_checks=[snapshot_title_search], resources=resources)
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_assets_def("snapshot").group_names_by_key[snapshot.key] == "simulator"
