"""The refresh schedule and the run-failure sensor, through Dagster's own test contexts on a real instance and a
real (small) store: the schedule asks for a refresh exactly when new pages arrived since the latest snapshot."""

import json
from datetime import datetime, timezone

import dagster as dg

from assets import defs
from assets.ingest import link_graph, pages, warc_pages
from assets.resources import InputsResource, StoreResource
from assets.schedules import SIGNATURE_TAG, refresh_decision, refresh_job, refresh_on_new_pages
from assets.sensors import failure_log_path, run_failure_log
from assets.simulator import SimulatorResource, snapshot
from tests.support import sample

WARC_A, WARC_B = "cc-main-2024-22-whirlwind.warc.gz", "wikipedia-mona-lisa-2013.warc.gz"


def _with_operations(base: dg.Definitions) -> dg.Definitions:
    """The project's definitions with the schedule and the failure sensor (added unless already registered)."""
    schedules = [s for s in [refresh_on_new_pages] if s.name not in {x.name for x in base.schedules or []}]
    sensors = [s for s in [run_failure_log] if s.name not in {x.name for x in base.sensors or []}]
    return dg.Definitions(assets=base.assets, asset_checks=base.asset_checks, jobs=base.jobs,
                          schedules=[*(base.schedules or []), *schedules], sensors=[*(base.sensors or []), *sensors],
                          resources=base.resources, executor=base.executor)


def test_schedule_and_sensor_load_with_the_project():
    full = _with_operations(defs)
    dg.Definitions.validate_loadable(full)
    schedule = full.resolve_schedule_def("refresh_on_new_pages")
    assert schedule.job_name == "refresh" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = full.resolve_job_def("refresh")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    synthesis = {spec.key.to_user_string() for spec in full.resolve_all_asset_specs() if spec.group_name == "synthesis"}
    assert {"pages", "link_graph", "snapshot", "report_tasks"} <= selected and synthesis <= selected
    assert not {"warc_pages", "clickstream"} & selected  # ingest stays with the file sensors
    assert full.resolve_sensor_def("run_failure_log").default_status == dg.DefaultSensorStatus.RUNNING


def test_refresh_decision_rules():
    store = {"signature": "b", "partitions": {"warc": 2}}
    assert "no ingested partitions" in refresh_decision(None, None, None, None)
    assert "no ingested partitions" in refresh_decision({"signature": "x", "partitions": {}}, None, None, None)
    assert refresh_decision(store, None, None, None) is None  # pages but no snapshot yet
    assert refresh_decision(store, {"signature": "a"}, "s1", None) is None
    skip = refresh_decision(store, {"signature": "b"}, "s1", None)
    assert skip == "no new pages since snapshot s1 (2 warc partitions)"
    assert "already queued or running (r1)" in refresh_decision(store, {"signature": "a"}, "s1", "r1")


def test_refresh_schedule_requests_a_run_only_when_new_pages_arrived(tmp_path):
    from pipeline.ingest.run import ingest_warc

    store = StoreResource(path=str(tmp_path / "store.duckdb"))
    simulator = SimulatorResource(snapshots_root=str(tmp_path / "snapshots"))
    resources = {"store": store, "simulator": simulator}
    with dg.instance_for_test() as instance:
        def tick():
            return refresh_on_new_pages(dg.build_schedule_context(
                instance=instance, resources=resources,
                scheduled_execution_time=datetime(2025, 1, 1, 12, tzinfo=timezone.utc)))

        first = tick()
        assert isinstance(first, dg.SkipReason) and "no ingested partitions" in first.skip_message

        ingest_warc(sample("warc", WARC_A), store.get(), WARC_A, workers=1)
        request = tick()
        assert isinstance(request, dg.RunRequest) and request.tags[SIGNATURE_TAG]

        # what the requested run does first: pages, link graph and a snapshot that records the partitions it saw
        result = dg.materialize([pages, link_graph, snapshot], instance=instance, resources=resources)
        assert result.success
        snap_id = result.asset_materializations_for_node("snapshot")[0].metadata["snapshot_id"].value
        skipped = tick()
        assert isinstance(skipped, dg.SkipReason)
        assert skipped.skip_message == f"no new pages since snapshot {snap_id} (1 warc partitions)"

        ingest_warc(sample("warc", WARC_A), store.get(), WARC_A, workers=1)  # the same file again: nothing new
        assert isinstance(tick(), dg.SkipReason)

        ingest_warc(sample("warc", WARC_B), store.get(), WARC_B, workers=1)
        again = tick()
        assert isinstance(again, dg.RunRequest) and again.tags[SIGNATURE_TAG] != request.tags[SIGNATURE_TAG]

        # while a refresh run is in flight, later ticks wait for it instead of stacking runs
        instance.add_run(dg.DagsterRun(job_name=refresh_job.name, run_id="0" * 8 + "-0000-0000-0000-000000000001",
                                       status=dg.DagsterRunStatus.STARTED))
        waiting = tick()
        assert isinstance(waiting, dg.SkipReason) and "already queued or running" in waiting.skip_message


def test_failed_run_is_logged_with_its_step_and_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBSIM_HOME", str(tmp_path / "home"))
    empty = tmp_path / "no_warcs"
    empty.mkdir()
    resources = {"store": StoreResource(path=str(tmp_path / "store.duckdb")),
                 "inputs": InputsResource(warc_dirs=[str(empty)])}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("warc_files", ["gone.warc.gz"])
        result = dg.materialize([warc_pages], partition_key="gone.warc.gz", instance=instance, resources=resources,
                                raise_on_error=False)
        assert not result.success
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_log", dagster_event=result.get_run_failure_event(), dagster_instance=instance,
            dagster_run=result.dagster_run).for_run_failure()
        run_failure_log(context)
        run_failure_log(context)  # appends: one line per evaluation

    assert failure_log_path() == tmp_path / "home" / "run_failures.jsonl"
    lines = failure_log_path().read_text().splitlines()
    assert len(lines) == 2 and len({json.loads(line)["run_id"] for line in lines}) == 1
    record = json.loads(lines[-1])
    assert record["run_id"] == result.run_id and record["partition"] == "gone.warc.gz"
    assert record["launched_by"] == "manual"
    assert [s["step"] for s in record["failed_steps"]] == ["warc_pages"]
    error = record["failed_steps"][0]["error"]
    assert error.startswith("FileNotFoundError") and "gone.warc.gz" in error and str(empty) in error
