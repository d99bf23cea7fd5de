"""Schedules and run-failure visibility.

`refresh_on_new_pages` ticks every hour and asks one question: did the store's ingested partitions change since
the latest snapshot was built? The snapshot's manifest records the partitions it saw (`store_partitions`, a
digest of `partition_stats` without timings); when the store's differs, the tick requests a `refresh` run
(pages, link graph, a new snapshot, then the whole synthesis group on it), otherwise it skips and says why. So
the sensors ingest new files as they land and the schedule turns them into a snapshot and new questions at most
once an hour, and never for a re-ingest that changed nothing.

`run_failure_log` makes failures visible outside the UI: each failed run becomes one JSON line in
`<data dir>/run_failures.jsonl` (run, job, partition, failed steps, error) and an error in the sensor's log.
"""

import json
import time
from pathlib import Path

import dagster as dg

from assets.resources import StoreResource
from assets.simulator import SimulatorResource

SIGNATURE_TAG = "websim/store_partitions"
ACTIVE_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                   dg.DagsterRunStatus.STARTED]

refresh_job = dg.define_asset_job(
    "refresh",
    selection=dg.AssetSelection.assets("pages", "link_graph", "snapshot") | dg.AssetSelection.groups("synthesis"),
    description="Rebuild pages, the link graph and a new snapshot from everything ingested, then synthesise "
                "questions and report tasks on that snapshot (what `refresh_on_new_pages` launches).",
)


def refresh_decision(store_partitions: dict | None, snapshot_partitions: dict | None, snapshot_id: str | None,
                     active_run_id: str | None) -> str | None:
    """Why not to refresh (a skip reason), or None to refresh. Pure: the schedule gathers the facts."""
    if not store_partitions or not store_partitions["partitions"]:
        return "the store has no ingested partitions yet"
    if snapshot_partitions and snapshot_partitions.get("signature") == store_partitions["signature"]:
        return f"no new pages since snapshot {snapshot_id} ({_describe(store_partitions)})"
    if active_run_id:
        return f"a refresh run is already queued or running ({active_run_id})"
    return None


def _describe(partitions: dict) -> str:
    return ", ".join(f"{n} {source} partitions" for source, n in partitions["partitions"].items())


@dg.schedule(
    cron_schedule="0 * * * *",
    job=refresh_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: when the store's ingested partitions differ from those the latest snapshot was built "
                "from, rebuild the snapshot and synthesise new questions on it; otherwise skip with the reason.",
)
def refresh_on_new_pages(context: dg.ScheduleEvaluationContext, store: StoreResource,
                         simulator: SimulatorResource) -> dg.RunRequest | dg.SkipReason:
    import duckdb

    from pipeline.simulator.snapshot import latest_snapshot

    try:
        current = store.get().partitions_signature()
    except duckdb.IOException as exc:  # a writer holds the store; the next tick will see its result
        return dg.SkipReason(f"the store is busy ({str(exc).splitlines()[0][:200]})")
    snap = latest_snapshot(simulator.root())
    active = context.instance.get_run_records(
        dg.RunsFilter(job_name=refresh_job.name, statuses=ACTIVE_STATUSES), limit=1)
    reason = refresh_decision(current, snap.manifest.get("store_partitions") if snap else None,
                              snap.id if snap else None, active[0].dagster_run.run_id if active else None)
    if reason:
        return dg.SkipReason(reason)
    since = f"snapshot {snap.id}" if snap else "no snapshot yet"
    context.log.info(f"new pages ({_describe(current)}; {since}): requesting a refresh")
    return dg.RunRequest(run_key=f"{current['signature'][:16]}:{context.scheduled_execution_time:%Y%m%dT%H%M}",
                         tags={SIGNATURE_TAG: current["signature"][:16]})


def failure_log_path() -> Path:
    from pipeline import config

    return config.data_dir() / "run_failures.jsonl"


def failure_record(context: dg.RunFailureSensorContext) -> dict:
    """What one failed run leaves in the failure log."""
    run = context.dagster_run
    steps = [{"step": e.step_key, "error": _error_text(e.step_failure_data.error if e.step_failure_data else None)}
             for e in context.get_step_failure_events()]
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "launched_by": _launched_by(run.tags),
        "message": context.failure_event.message,
        "failed_steps": steps,
    }


def _launched_by(tags) -> str:
    for tag in ("dagster/schedule_name", "dagster/sensor_name"):
        if tags.get(tag):
            return tags[tag]
    return "backfill" if tags.get("dagster/backfill") else "manual"


def _error_text(error) -> str | None:
    if error is None:
        return None
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause  # Dagster's wrapper says "error in op x"; the cause says what went wrong
    return f"{error.cls_name}: {error.message.strip()}"[:2000] if error.cls_name else error.message.strip()[:2000]


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run of this code location becomes one JSON line in <data dir>/run_failures.jsonl "
                "(run, job, partition, failed steps, error) and an error in this sensor's log.",
)
def run_failure_log(context: dg.RunFailureSensorContext) -> None:
    record = failure_record(context)
    path = failure_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:  # one short append per failure: lines never interleave
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    where = f" partition {record['partition']}" if record["partition"] else ""
    steps = "; ".join(f"{s['step']}: {s['error']}" for s in record["failed_steps"]) or record["message"]
    context.log.error(f"run {record['run_id']} of {record['job']}{where} failed: {steps} (logged to {path})")
