"""Schedules.

`refresh_on_new_pages` ticks every hour and asks one question: did the store's ingested partitions change since
the latest snapshot was built? The snapshot's manifest records the partitions it saw (`store_partitions`, a
digest of `partition_stats` without timings); when the store's differs, the tick requests a `refresh` run
(pages, link graph, a new snapshot, then the whole synthesis group on it), otherwise it skips and says why. So
the sensors ingest new files as they land and the schedule turns them into a snapshot and new questions at most
once an hour, and never for a re-ingest that changed nothing.
"""


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
