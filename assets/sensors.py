"""Sensors: new or changed input files become partitions and runs.

Each tick lists the configured folders, adds partitions for files not yet known and requests a
run for every file that is new or changed since the last tick (by size and mtime, kept in the
cursor). A file that vanished keeps its partition and data: a missing mount must not erase a store.
"""


import json

import dagster as dg

from assets.jobs import clickstream_ingest_job, warc_ingest_job
from assets.partitions import clickstream_files, warc_files
from assets.resources import InputsResource


def _new_file_requests(context: dg.SensorEvaluationContext, files: dict, pdef: dg.DynamicPartitionsDefinition,
                       job_name: str) -> dg.SensorResult:
    previous = json.loads(context.cursor) if context.cursor else {}
    current = {k: f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for k, p in files.items()}
    known = set(context.instance.get_dynamic_partitions(pdef.name))
    new_keys = sorted(set(current) - known)
    changed = sorted(k for k, sig in current.items() if previous.get(k) != sig)
    if new_keys:
        context.log.info(f"{len(new_keys)} new {pdef.name} partitions: {new_keys[:10]}")
    return dg.SensorResult(
        dynamic_partitions_requests=[pdef.build_add_request(new_keys)] if new_keys else [],
        run_requests=[dg.RunRequest(run_key=f"{k}:{current[k]}", job_name=job_name, partition_key=k)
                      for k in changed],
        cursor=json.dumps(current, sort_keys=True),
    )


@dg.sensor(job=warc_ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the WARC folders; each new or changed file becomes a warc_pages partition and a run.")
def warc_files_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource) -> dg.SensorResult:
    return _new_file_requests(context, inputs.warc_files(), warc_files, warc_ingest_job.name)


@dg.sensor(job=clickstream_ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the clickstream folders; each new or changed dump becomes a partition and a run.")
def clickstream_files_sensor(context: dg.SensorEvaluationContext, inputs: InputsResource) -> dg.SensorResult:
    return _new_file_requests(context, inputs.clickstream_files(), clickstream_files, clickstream_ingest_job.name)
