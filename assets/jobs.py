"""Jobs: what the sensors, the CLI backfills and `websim run` launch."""

import dagster as dg

from assets.evaluation import evaluation
from assets.ingest import (clickstream, clickstream_backfill_partitions, clickstream_backfill_step, link_graph, pages,
                           warc_backfill_partitions, warc_backfill_step, warc_pages)
from assets.questions import candidate_questions, evidence_chains, hard_queries
from assets.navigation import navigation_tasks
from assets.report_tasks import report_tasks
from assets.simulator import snapshot
from assets.training import grpo_model, sft_model, sft_traces
from assets.training_report import report_grpo_model, report_sft_model

warc_ingest_job = dg.define_asset_job(
    "warc_ingest", selection=[warc_pages],
    description="Ingest WARC partitions (one run per file); backfill with `dagster job backfill -j warc_ingest`.")
clickstream_ingest_job = dg.define_asset_job(
    "clickstream_ingest", selection=[clickstream],
    description="Ingest clickstream partitions (one run per dump file).")


@dg.job(description="Ingest many WARC partitions in one run, one step per file, in parallel (partitions write "
                    "files of their own): run config `execution: {config: {max_concurrent: N}}` under the "
                    "multiprocess executor; every partition shows as a warc_pages materialization.")
def warc_backfill():
    warc_backfill_partitions().map(warc_backfill_step)


@dg.job(description="Ingest many clickstream partitions in one run, one step per dump file, in parallel.")
def clickstream_backfill():
    clickstream_backfill_partitions().map(clickstream_backfill_step)

store_build_job = dg.define_asset_job(
    "store_build", selection=dg.AssetSelection.assets(pages, link_graph, snapshot),
    description="Rebuild the deduplicated pages and the link graph from all ingested partitions, then a new "
                "simulator snapshot (with checks).")
synthesis_job = dg.define_asset_job(
    "synthesis", selection=dg.AssetSelection.assets(report_tasks, evidence_chains, candidate_questions, hard_queries,
                                                      navigation_tasks),
    description="Synthesise training data from the latest snapshot with the configured model: report-chunking "
                "tasks, hard multi-hop questions (evidence chains -> back-translated candidates -> verified), and "
                "navigation tasks from human Wikispeedia paths.")
training_job = dg.define_asset_job(
    "training", selection=dg.AssetSelection.assets(sft_traces, sft_model, grpo_model, report_sft_model,
                                                  report_grpo_model, evaluation),
    description="Train the search agent on the synthesised data: SFT traces, SFT (with a before/after check), GRPO "
                "in the simulator with verifier rewards, then base vs SFT vs GRPO on the eval split.")
