import os
import shutil

import dagster as dg
import pytest

from assets import defs
from assets.ingest import clickstream, link_graph, pages, warc_pages
from assets.checks import link_graph_contracts, pages_contracts
from assets.resources import InputsResource, StoreResource
from assets.sensors import clickstream_files_sensor, warc_files_sensor
from tests.support import sample

SMALL_WARCS = ["cc-main-2024-22-whirlwind.warc.gz", "wikipedia-mona-lisa-2013.warc.gz"]


def test_definitions_load():
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} >= {
        "warc_pages", "clickstream", "pages", "link_graph"}
    assert {s.name for s in repo.sensor_defs} >= {"warc_files_sensor", "clickstream_files_sensor"}
    for name in ("warc_ingest", "clickstream_ingest", "store_build"):
        defs.resolve_job_def(name)


@pytest.fixture
def inputs(tmp_path):
    warc_dir, click_dir = tmp_path / "warc", tmp_path / "clicks"
    warc_dir.mkdir()
    click_dir.mkdir()
    for name in SMALL_WARCS:
        shutil.copy(sample("warc", name), warc_dir / name)
    shutil.copy(sample("clickstream", "clickstream-enwiki-2024-11.sample1k.tsv"), click_dir)
    return InputsResource(warc_dirs=[str(warc_dir)], clickstream_dirs=[str(click_dir)])


def test_sensor_adds_new_files_as_partitions_and_runs_them_once(inputs, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    ctx = dg.build_sensor_context(instance=instance, resources={"inputs": inputs})
    result = warc_files_sensor(ctx)
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == sorted(SMALL_WARCS)
    assert sorted(r.partition_key for r in result.run_requests) == sorted(SMALL_WARCS)
    instance.add_dynamic_partitions("warc_files", SMALL_WARCS)

    ctx = dg.build_sensor_context(instance=instance, resources={"inputs": inputs}, cursor=result.cursor)
    again = warc_files_sensor(ctx)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []

    changed = tmp_path / "warc" / SMALL_WARCS[0]
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ctx = dg.build_sensor_context(instance=instance, resources={"inputs": inputs}, cursor=again.cursor)
    assert [r.partition_key for r in warc_files_sensor(ctx).run_requests] == [SMALL_WARCS[0]]

    ctx = dg.build_sensor_context(instance=instance, resources={"inputs": inputs})
    assert [r.partition_key for r in clickstream_files_sensor(ctx).run_requests] == [
        "clickstream-enwiki-2024-11.sample1k.tsv"]


def _materialize_all(instance, resources):
    for key in SMALL_WARCS:
        r = dg.materialize([warc_pages], partition_key=key, instance=instance, resources=resources)
        assert r.success
    r = dg.materialize([clickstream], partition_key="clickstream-enwiki-2024-11.sample1k.tsv", instance=instance,
                       resources=resources)
    assert r.success
    r = dg.materialize([pages, link_graph, pages_contracts, link_graph_contracts], instance=instance,
                       resources=resources)
    assert r.success
    return r


def test_ingest_assets_materialize_and_rerun_changes_no_count(inputs, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("warc_files", SMALL_WARCS)
    instance.add_dynamic_partitions("clickstream_files", ["clickstream-enwiki-2024-11.sample1k.tsv"])
    store = StoreResource(path=str(tmp_path / "store.duckdb"))
    resources = {"store": store, "inputs": inputs}

    result = _materialize_all(instance, resources)
    first = store.get().counts()
    assert first["pages"] >= 2 and first["clickstream"] == 1039
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)

    mats = instance.fetch_materializations(warc_pages.key, limit=10).records
    md = mats[0].asset_materialization.metadata
    assert {"kept", "rejected", "per_second", "rejected_by_reason", "records_seen"} <= set(md)

    _materialize_all(instance, resources)
    assert store.get().counts() == first


def test_backfill_jobs_ingest_every_file_and_report_each_partition(inputs, tmp_path):
    """`warc_backfill` / `clickstream_backfill` (in process here; tests/assets/test_backfill.py runs them under the
    multiprocess executor): every file becomes a registered, materialized partition with the asset's metadata."""
    store = StoreResource(path=str(tmp_path / "store.duckdb"))
    with dg.instance_for_test() as instance:
        for job, op, asset, pdef in (("warc_backfill", "warc_backfill_step", warc_pages, "warc_files"),
                                     ("clickstream_backfill", "clickstream_backfill_step", clickstream,
                                      "clickstream_files")):
            run_config = {"ops": {op: {"config": {"workers": 1}}}} if job == "warc_backfill" else {}
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, run_config=run_config, resources={"store": store, "inputs": inputs})
            assert result.success
            expected = set(SMALL_WARCS) if job == "warc_backfill" else {"clickstream-enwiki-2024-11.sample1k.tsv"}
            assert set(instance.get_dynamic_partitions(pdef)) == expected
            assert instance.get_materialized_partitions(asset.key) == expected
            md = instance.fetch_materializations(asset.key, limit=1).records[0].asset_materialization.metadata
            assert {"kept", "rejected", "rejected_by_reason"} <= set(md)
    counts = store.get().counts()
    assert counts["clickstream"] == 1039 and counts["warc_pages"] > 0
    assert store.get().partitions("warc") == sorted(SMALL_WARCS)


def test_a_backfill_of_a_missing_file_fails_before_any_step(inputs, tmp_path):
    store = StoreResource(path=str(tmp_path / "store.duckdb"))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("warc_backfill").execute_in_process(
            instance=instance, raise_on_error=False, resources={"store": store, "inputs": inputs},
            run_config={"ops": {"warc_backfill_partitions": {"config": {"partitions": ["missing.warc.gz"]}}}})
        assert not result.success
        error = result.get_step_failure_events()[0].step_failure_data.error
        assert "missing.warc.gz" in (error.cause or error).message
        assert not instance.get_dynamic_partitions("warc_files")
    assert not store.get().parts.exists()
