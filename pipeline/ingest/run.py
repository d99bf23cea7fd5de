"""Ingest one input file into one store partition: WARC files and clickstream dumps.

Records in, rows out: `read_warc` yields captures, redirects and rejections; `extract_many` turns
captures into text and links on all cores under a per-page time limit; everything that is dropped
is a counted, recorded rejection. The partition is replaced whole, in files of its own (see
`Store.partition_writer`), so any number of files ingest at once.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from pipeline.ingest.store import Store

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
CLICKSTREAM_SUFFIXES = (".tsv", ".tsv.gz")
_WS = re.compile(r"\s+")


@dataclass
class IngestReport:
    """What one partition's ingest saw, kept and rejected."""

    source: str
    partition: str
    path: str
    seconds: float = 0.0
    counts: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    preview: list[dict] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.counts["pages_kept"] if self.source == "warc" else self.counts["rows_kept"]

    @property
    def rate(self) -> float:
        return self.kept / self.seconds if self.seconds else 0.0


def list_inputs(dirs: Iterable[str | Path], suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Input files under `dirs` by partition key (the file name). Two files with one name is an error."""
    found: dict[str, Path] = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.name.endswith(suffixes) and not p.name.startswith("."):
                if p.name in found and found[p.name] != p:
                    raise ValueError(f"two input files named {p.name!r}: {found[p.name]} and {p}; "
                                     "partition keys are file names, rename one")
                found[p.name] = p
    return found


def resolve_input(key: str, dirs: Iterable[str | Path], suffixes: tuple[str, ...]) -> Path:
    """The file behind partition `key`, with a clear error when it is not under the configured folders."""
    files = list_inputs(dirs, suffixes)
    if key not in files:
        raise FileNotFoundError(f"partition {key!r}: no such file under {list(map(str, dirs))}")
    return files[key]


def content_hash(text: str) -> str:
    """Exact-duplicate key: sha256 of the text with whitespace collapsed."""
    return hashlib.sha256(_WS.sub(" ", text).strip().encode("utf-8")).hexdigest()


def ingest_warc(
    path: str | Path,
    store: Store,
    partition: str | None = None,
    *,
    workers: int = 2,
    timeout_s: float = 30.0,
    max_payload_bytes: int = 5_000_000,
    max_captures: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Read, extract and store one WARC file as partition `partition` (default: the file name).

    `max_captures` stops reading after that many HTML captures (a quick look at a big file; the partition then
    holds that prefix of it, and its stats say `truncated_at_captures`)."""
    from pipeline.ingest.extract import ExtractionError, check_main_guard, extract_many
    from pipeline.ingest.warc import WarcCapture, WarcRedirect, WarcRejection, read_warc

    if workers > 1:  # before the store is touched: a script without a main guard fails here, not 200 s later
        check_main_guard("ingest_warc")
    path = Path(path)
    partition = partition or path.name
    report = IngestReport("warc", partition, str(path))
    reader_counts: Counter = Counter()
    started = time.perf_counter()
    with store.partition_writer("warc", partition) as w:
        pending: deque[WarcCapture] = deque()

        def captures() -> Iterator[tuple[str, str]]:
            # Redirects and rejections are written as the reader meets them; captures go on to
            # extraction, which reads this generator lazily and answers in order.
            fed = 0
            for item in read_warc(path, max_payload_bytes=max_payload_bytes, counters=reader_counts):
                if isinstance(item, WarcCapture):
                    if max_captures is not None and fed >= max_captures:
                        report.counts["truncated_at_captures"] = max_captures
                        return
                    fed += 1
                    pending.append(item)
                    yield item.html, item.url
                elif isinstance(item, WarcRedirect):
                    w.add("warc_redirects", {"record_id": item.record_id, "url": item.url, "location": item.location,
                                             "http_status": item.http_status, "warc_date": item.warc_date})
                elif isinstance(item, WarcRejection):
                    w.reject(item.reason, item.detail, item.location)

        for page in extract_many(captures(), workers=workers, timeout_s=timeout_s):
            cap = pending.popleft()
            if progress:
                progress(1)
            if isinstance(page, ExtractionError):
                w.reject(f"extract_{page.reason}", f"{cap.url}: {page}", cap.record_id)
                continue
            report.counts["pages_kept"] += 1
            if cap.from_revisit:
                report.counts["pages_from_revisits"] += 1
            w.add("warc_pages", {
                "record_id": cap.record_id, "record_offset": cap.offset, "url": cap.url,
                "warc_date": cap.warc_date, "http_status": cap.http_status, "content_type": cap.content_type,
                "charset": cap.charset, "charset_source": cap.charset_source, "title": page.title,
                "text": page.text, "published": page.published, "language": page.language,
                "payload_bytes": cap.payload_bytes, "content_hash": content_hash(page.text),
                "from_revisit": cap.from_revisit,
            })
            for i, link in enumerate(page.links):
                w.add("warc_links", {"src_record_id": cap.record_id, "src_url": cap.url, "dst_url": link.url,
                                     "anchor": link.anchor, "context": link.context, "ordinal": i})
            report.counts["links"] += len(page.links)
            if len(report.preview) < 5:
                report.preview.append({"url": cap.url, "title": page.title, "chars": len(page.text),
                                       "links": len(page.links), "status": cap.http_status})
        report.counts.update(reader_counts)
        report.rejected = Counter(w.rejects)
        report.seconds = time.perf_counter() - started
        w.stats = {**report.counts, "seconds": report.seconds}
    return report


def ingest_clickstream(path: str | Path, store: Store, partition: str | None = None, *,
                       lang: str | None = None) -> IngestReport:
    """Store one clickstream dump as partition `partition` (default: the file name)."""
    from pipeline.ingest.clickstream import ClickRow, language_of, read_clickstream

    path = Path(path)
    partition = partition or path.name
    lang = lang or language_of(path)
    report = IngestReport("clickstream", partition, str(path))
    started = time.perf_counter()
    with store.partition_writer("clickstream", partition) as w:
        for row in read_clickstream(path):
            if isinstance(row, ClickRow):
                report.counts["rows_kept"] += 1
                report.counts[f"type_{row.type}"] += 1
                w.add("clickstream", {"lang": lang, "prev": row.prev, "curr": row.curr, "type": row.type, "n": row.n})
                if len(report.preview) < 5:
                    report.preview.append({"prev": row.prev, "curr": row.curr, "type": row.type, "n": row.n})
            else:
                w.reject(row.reason, row.detail, row.location)
        report.counts["rows_seen"] = report.counts["rows_kept"] + sum(w.rejects.values())
        report.rejected = Counter(w.rejects)
        report.seconds = time.perf_counter() - started
        w.stats = {**report.counts, "seconds": report.seconds}
    return report
