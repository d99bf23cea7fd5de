"""Ingest assets: WARC files and clickstream dumps into the store, then pages and the link graph.

Each partition writes files of its own (see pipeline.ingest.store), so partitions ingest at once: as runs (one per
partition, the UI's or `dagster job backfill`'s backfills, under the run queue) or as the parallel steps of one
`warc_backfill` / `clickstream_backfill` run (`ingest_partition` mapped over the keys, `max_concurrent` at a time
under the multiprocess executor, one step per partition under the cluster executors). No Dagster pool.
"""

import re

import dagster as dg
from pydantic import Field

from assets.partitions import clickstream_files, warc_files
from assets.resources import InputsResource, StoreResource
from pipeline.ingest.run import IngestReport, ingest_clickstream, ingest_warc


class WarcIngestConfig(dg.Config):
    # Bounds are checked when the step starts, before the store is opened: a bad value fails with its name.
    workers: int = Field(default=2, ge=1, description="Extraction processes (use the machine's cores).")
    page_timeout_s: float = Field(default=30.0, gt=0, description="Time limit for one page's extraction; a page "
                                                                  "over it is rejected as extract_timeout.")
    max_payload_bytes: int = Field(default=5_000_000, ge=1,
                                   description="Larger payloads are rejected as payload_too_large.")
    max_captures: int = Field(default=0, ge=0, description="Stop after this many HTML captures per file (a quick "
                                                           "look at big files); 0: the whole file.")


def _report_metadata(report: IngestReport) -> dict:
    rejected_total = sum(report.rejected.values())
    md = {
        "path": dg.MetadataValue.path(report.path),
        "kept": report.kept,
        "rejected": rejected_total,
        "seconds": round(report.seconds, 2),
        "per_second": round(report.rate, 1),
        "counts": dg.MetadataValue.json(dict(sorted(report.counts.items()))),
        "rejected_by_reason": dg.MetadataValue.json(dict(sorted(report.rejected.items()))),
    }
    if report.preview:
        md["preview"] = dg.MetadataValue.md(md_table(report.preview))
    return md


def md_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")[:120]  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


@dg.asset(
    partitions_def=warc_files,
    group_name="ingest",
    kinds={"parquet"},
    description="HTML pages, outlinks, redirects and rejects of one WARC file (partition = file name) in Parquet "
                "files of its own, replaced whole on re-run.",
)
def warc_pages(context: dg.AssetExecutionContext, config: WarcIngestConfig, store: StoreResource,
               inputs: InputsResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=ingest_warc_partition(context, context.partition_key, config, store, inputs))


def ingest_warc_partition(context, key: str, config: WarcIngestConfig, store: StoreResource,
                          inputs: InputsResource) -> dict:
    """Ingest WARC partition `key`; its materialization metadata."""
    path = inputs.warc_path(key)
    context.log.info(f"ingesting {path}")
    seen = 0

    def progress(n: int) -> None:
        nonlocal seen
        seen += n
        if seen % 500 == 0:
            context.log.info(f"{seen} captures extracted")

    report = ingest_warc(path, store.get(on_wait=context.log.info), key, workers=config.workers,
                         timeout_s=config.page_timeout_s, max_payload_bytes=config.max_payload_bytes,
                         max_captures=config.max_captures or None, progress=progress)
    context.log.info(f"{report.kept} pages kept, {sum(report.rejected.values())} rejected "
                     f"({dict(report.rejected)}) in {report.seconds:.1f} s")
    return {**_report_metadata(report), "records_seen": report.counts["records"]}


@dg.asset(
    partitions_def=clickstream_files,
    group_name="ingest",
    kinds={"parquet"},
    description="Rows of one Wikipedia clickstream dump (prev, curr, type, n) in Parquet files of its own, replaced "
                "whole on re-run.",
)
def clickstream(context: dg.AssetExecutionContext, store: StoreResource, inputs: InputsResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=ingest_clickstream_partition(context, context.partition_key, store, inputs))


def ingest_clickstream_partition(context, key: str, store: StoreResource, inputs: InputsResource) -> dict:
    """Ingest clickstream partition `key`; its materialization metadata."""
    path = inputs.clickstream_path(key)
    report = ingest_clickstream(path, store.get(on_wait=context.log.info), key)
    context.log.info(f"{report.kept} rows kept, {sum(report.rejected.values())} rejected in {report.seconds:.1f} s")
    return {**_report_metadata(report), "rows_seen": report.counts["rows_seen"]}


@dg.asset(
    deps=[warc_pages, clickstream],
    group_name="ingest",
    kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.eager(),
    description="Distinct pages across all WARC partitions: latest 2xx capture per URL, one page per content hash "
                "(earliest capture wins, others become url_aliases), with clickstream traffic by Wikipedia title.",
)
def pages(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    s = store.get(on_wait=context.log.info)
    stats = s.build_pages()
    context.log.info(f"pages: {stats}")
    preview = s.query("SELECT page_id, url, title, n_chars, clicks_in FROM pages ORDER BY clicks_in DESC, page_id LIMIT 5")
    return dg.MaterializeResult(metadata={
        **stats,
        "dagster/row_count": stats["pages"],
        "preview": dg.MetadataValue.md(md_table(preview)) if preview else "",
    })


@dg.asset(
    deps=[pages],
    group_name="ingest",
    kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.eager(),
    description="Page -> page edges resolved from outlinks (through aliases and redirects) with anchor text, the "
                "sentence around the link and the clickstream's navigation count.",
)
def link_graph(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    s = store.get(on_wait=context.log.info)
    stats = s.build_link_graph()
    context.log.info(f"link_graph: {stats}")
    preview = s.query("""
        SELECT ps.title AS src, pd.title AS dst, g.anchor, g.clicks FROM link_graph g
        JOIN pages ps ON ps.page_id = g.src_id JOIN pages pd ON pd.page_id = g.dst_id
        ORDER BY g.clicks DESC, g.src_id, g.dst_id LIMIT 5""")
    return dg.MaterializeResult(metadata={
        **stats,
        "dagster/row_count": stats["edges"],
        "preview": dg.MetadataValue.md(md_table(preview)) if preview else "",
    })


# ---- backfills as parallel steps --------------------------------------------------------------------------------

class BackfillConfig(dg.Config):
    partitions: list[str] = Field(default=[], description="Partition keys (file names); empty: every file under "
                                                          "the configured folders.")


def _step_key(i: int, key: str) -> str:
    return f"{i:05d}_{re.sub(r'[^A-Za-z0-9_]', '_', key)}"[:100]


def _backfill_keys(context, config: BackfillConfig, files: dict, pdef: dg.DynamicPartitionsDefinition,
                   resolve) -> list[str]:
    keys = list(dict.fromkeys(config.partitions)) or sorted(files)
    for key in keys:
        resolve(key)  # a missing file fails here, before any step starts
    known = set(context.instance.get_dynamic_partitions(pdef.name))
    if new := [k for k in keys if k not in known]:
        context.instance.add_dynamic_partitions(pdef.name, new)
    context.log.info(f"backfilling {len(keys)} {pdef.name} partitions")
    return keys


@dg.op(out=dg.DynamicOut(str), description="The WARC partitions to ingest, one step each.")
def warc_backfill_partitions(context: dg.OpExecutionContext, config: BackfillConfig, inputs: InputsResource):
    for i, key in enumerate(_backfill_keys(context, config, inputs.warc_files(), warc_files, inputs.warc_path)):
        yield dg.DynamicOutput(key, mapping_key=_step_key(i, key))


@dg.op(description="Ingest one WARC partition into files of its own; reports the warc_pages materialization.")
def warc_backfill_step(context: dg.OpExecutionContext, config: WarcIngestConfig, key: str, store: StoreResource,
                       inputs: InputsResource) -> str:
    metadata = ingest_warc_partition(context, key, config, store, inputs)
    context.log_event(dg.AssetMaterialization(asset_key=warc_pages.key, partition=key, metadata=metadata))
    return key


@dg.op(out=dg.DynamicOut(str), description="The clickstream partitions to ingest, one step each.")
def clickstream_backfill_partitions(context: dg.OpExecutionContext, config: BackfillConfig, inputs: InputsResource):
    keys = _backfill_keys(context, config, inputs.clickstream_files(), clickstream_files, inputs.clickstream_path)
    for i, key in enumerate(keys):
        yield dg.DynamicOutput(key, mapping_key=_step_key(i, key))


@dg.op(description="Ingest one clickstream partition; reports the clickstream materialization.")
def clickstream_backfill_step(context: dg.OpExecutionContext, key: str, store: StoreResource,
                              inputs: InputsResource) -> str:
    metadata = ingest_clickstream_partition(context, key, store, inputs)
    context.log_event(dg.AssetMaterialization(asset_key=clickstream.key, partition=key, metadata=metadata))
    return key
