"""Ingest assets: WARC files and clickstream dumps into the store, then pages and the link graph."""


import dagster as dg
from pydantic import Field

from assets.partitions import clickstream_files, warc_files
from assets.resources import InputsResource, StoreResource
from pipeline.ingest.run import IngestReport, ingest_clickstream, ingest_warc

# No Dagster pool: the store's own lock (a `flock` the kernel drops when its holder dies, kill -9 included) queues
# the writers, so a killed run can never keep a slot that every later writer waits for. See pipeline.ingest.store.


class WarcIngestConfig(dg.Config):
    # Bounds are checked when the step starts, before the store is opened: a bad value fails with its name.
    workers: int = Field(default=2, ge=1, description="Extraction processes (use the machine's cores).")
    page_timeout_s: float = Field(default=30.0, gt=0, description="Time limit for one page's extraction; a page "
                                                                  "over it is rejected as extract_timeout.")
    max_payload_bytes: int = Field(default=5_000_000, ge=1,
                                   description="Larger payloads are rejected as payload_too_large.")


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
    kinds={"duckdb"},
    description="HTML pages, outlinks and redirects of one WARC file (partition = file name), replaced whole on re-run.",
)
def warc_pages(context: dg.AssetExecutionContext, config: WarcIngestConfig, store: StoreResource,
               inputs: InputsResource) -> dg.MaterializeResult:
    path = inputs.warc_path(context.partition_key)
    context.log.info(f"ingesting {path}")
    seen = 0

    def progress(n: int) -> None:
        nonlocal seen
        seen += n
        if seen % 500 == 0:
            context.log.info(f"{seen} captures extracted")

    report = ingest_warc(path, store.get(on_wait=context.log.info), context.partition_key, workers=config.workers,
                         timeout_s=config.page_timeout_s, max_payload_bytes=config.max_payload_bytes,
                         progress=progress)
    context.log.info(f"{report.kept} pages kept, {sum(report.rejected.values())} rejected "
                     f"({dict(report.rejected)}) in {report.seconds:.1f} s")
    return dg.MaterializeResult(metadata={**_report_metadata(report), "records_seen": report.counts["records"]})


@dg.asset(
    partitions_def=clickstream_files,
    group_name="ingest",
    kinds={"duckdb"},
    description="Rows of one Wikipedia clickstream dump (prev, curr, type, n), replaced whole on re-run.",
)
def clickstream(context: dg.AssetExecutionContext, store: StoreResource, inputs: InputsResource) -> dg.MaterializeResult:
    path = inputs.clickstream_path(context.partition_key)
    report = ingest_clickstream(path, store.get(on_wait=context.log.info), context.partition_key)
    context.log.info(f"{report.kept} rows kept, {sum(report.rejected.values())} rejected in {report.seconds:.1f} s")
    return dg.MaterializeResult(metadata={**_report_metadata(report), "rows_seen": report.counts["rows_seen"]})


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
