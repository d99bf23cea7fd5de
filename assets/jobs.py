"""Jobs: what the sensors, the CLI backfills and `websim run` launch."""

import dagster as dg

from assets.ingest import clickstream, link_graph, pages, warc_pages
from assets.report_tasks import report_tasks
from assets.simulator import snapshot

warc_ingest_job = dg.define_asset_job(
    "warc_ingest", selection=[warc_pages],
    description="Ingest WARC partitions (one run per file); backfill with `dagster job backfill -j warc_ingest`.")
clickstream_ingest_job = dg.define_asset_job(
    "clickstream_ingest", selection=[clickstream],
    description="Ingest clickstream partitions (one run per dump file).")
store_build_job = dg.define_asset_job(
    "store_build", selection=dg.AssetSelection.assets(pages, link_graph, snapshot),
    description="Rebuild the deduplicated pages and the link graph from all ingested partitions, then a new "
                "simulator snapshot (with checks).")
synthesis_job = dg.define_asset_job(
    "synthesis", selection=dg.AssetSelection.assets(report_tasks),
    description="Synthesise training data from the latest snapshot with the configured model (report tasks).")
