"""Sensors: new or changed input files become partitions and runs.

Each tick lists the configured folders, adds partitions for files not yet known and requests a
run for every file that is new or changed since the last tick (by size and mtime, kept in the
cursor), unless its partition was already materialized after the file was last written: so the
first tick after `make demo` / `websim run` (which ingest without the sensor, leaving its cursor
empty) requests nothing for the files those runs ingested. A file that vanished keeps its
partition and data: a missing mount must not erase a store.

`run_failure_log` makes failures visible outside the UI: each failed run becomes one JSON line in
`<data dir>/run_failures.jsonl` (run, job, partition, failed steps, error) and an error in the sensor's log.
"""


import json
import time
from pathlib import Path

import dagster as dg

from assets.jobs import clickstream_ingest_job, warc_ingest_job
from assets.partitions import clickstream_files, warc_files
from assets.resources import InputsResource


def materialized_after_write(instance: dg.DagsterInstance, asset_key: dg.AssetKey, files: dict[str, Path],
                             keys: list[str]) -> set[str]:
    """The partitions among `keys` whose latest materialization is newer than their file's last write."""
    if not keys:
        return set()
    latest: dict[str, float] = {}
    cursor = None
    while True:  # newest first, so the first record seen per partition is its latest
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys),
                                                 limit=1000, cursor=cursor)
        for record in result.records:
            latest.setdefault(record.partition_key, record.timestamp)
        if not result.has_more:
            break
        cursor = result.cursor
    return {k for k in keys if k in latest and latest[k] >= files[k].stat().st_mtime}


def _new_file_requests(context: dg.SensorEvaluationContext, files: dict, pdef: dg.DynamicPartitionsDefinition,
                       job_name: str, asset_key: dg.AssetKey) -> dg.SensorResult:
    previous = json.loads(context.cursor) if context.cursor else {}
    current = {k: f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for k, p in files.items()}
    known = set(context.instance.get_dynamic_partitions(pdef.name))
    new_keys = sorted(set(current) - known)
    changed = sorted(k for k, sig in current.items() if previous.get(k) != sig)
    done = materialized_after_write(context.instance, asset_key, files, [k for k in changed if k in known])
    if new_keys:
        context.log.info(f"{len(new_keys)} new {pdef.name} partitions: {new_keys[:10]}")
    if done:
        context.log.info(f"{len(done)} {pdef.name} files already materialized since they were written: no run "
                         f"for {sorted(done)[:10]}")
    return dg.SensorResult(
        dynamic_partitions_requests=[pdef.build_add_request(new_keys)] if new_keys else [],
        run_requests=[dg.RunRequest(run_key=f"{k}:{current[k]}", job_name=job_name, partition_key=k)
                      for k in changed if k not in done],
        cursor=json.dumps(current, sort_keys=True),
    )


@dg.sensor(job=warc_ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the WARC folders; each new or changed file becomes a warc_pages partition and a run "
                       "(none for a file materialized since it was last written).")
def warc_files_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource) -> dg.SensorResult:
    return _new_file_requests(context, inputs.warc_files(), warc_files, warc_ingest_job.name,
                              dg.AssetKey("warc_pages"))


@dg.sensor(job=clickstream_ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the clickstream folders; each new or changed dump becomes a partition and a run "
                       "(none for a dump materialized since it was last written).")
def clickstream_files_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource) -> dg.SensorResult:
    return _new_file_requests(context, inputs.clickstream_files(), clickstream_files, clickstream_ingest_job.name,
                              dg.AssetKey("clickstream"))


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
    description="Every failed run of this code location becomes one JSON line in `<data dir>/run_failures.jsonl` "
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
