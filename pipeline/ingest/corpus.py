"""Text corpora the field already holds, ingested as pages: Search-R1 / FlashRAG JSONL and Parquet corpora.

- **JSONL** (`.jsonl`, `.jsonl.gz`): Search-R1's and FlashRAG's wiki-18 (`{"id": "0", "contents": "\"Aaron\"\nAaron is
  a prophet ..."}`: the first line of `contents` is the title in double quotes) and corpora with `title` / `text`
  fields instead of `contents`.
- **Parquet** (`.parquet`): one document per row with an id column (`id`, `docid`, `_id` or `doc_id`), a text column
  (`text`, `contents`, `body` or `content`) and, where present, `title` and `url` (BrowseComp-Plus's corpus,
  FineWeb/ClueWeb-style dumps). Read in record batches: the file is never loaded whole.

`read_corpus(path)` yields `CorpusDoc`s and `CorpusRejection`s (a malformed line, a document without an id or text,
an id seen before, a URL that is not a web URL) and never raises on bad content. `ingest_corpus(path, store)`
writes the documents as one partition of the store's page captures (source `warc`, table `warc_pages`, HTTP 200,
`text/plain`), so `pages`, the link graph and `snapshot` treat them like crawled pages, and the rejections beside
them. A document without a URL gets `https://<corpus>.corpus.invalid/doc/<id>` (`.invalid` is reserved: such a URL
names no real site). Corpus documents have no links; their pages are served, searched and fetched.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import quote

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
ID_COLUMNS = ("id", "docid", "_id", "doc_id")
TEXT_COLUMNS = ("text", "contents", "body", "content")
REJECTIONS = ("invalid_json", "not_an_object", "missing_id", "empty_text", "duplicate_id", "bad_url",
              "no_id_column", "no_text_column", "unreadable_file")
_BATCH_ROWS = 4096


@dataclass(frozen=True)
class CorpusDoc:
    id: str
    title: str
    text: str
    url: str
    location: str
    """Where it was read: `line N` or `row N`."""


@dataclass(frozen=True)
class CorpusRejection:
    reason: str
    detail: str
    location: str


def corpus_name(path: str | Path) -> str:
    """The corpus's name from its file name (`wiki-18.jsonl.gz` -> `wiki-18`), as a host label."""
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63] or "corpus"


def split_contents(contents: str) -> tuple[str, str]:
    """Search-R1's `contents` as (title, text): the first line is the title in double quotes; without a quoted
    first line there is no title and all of it is text."""
    first, sep, rest = contents.partition("\n")
    stripped = first.strip()
    if sep and len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
        return stripped[1:-1].strip(), rest.strip()
    return "", contents.strip()


def _document(record: Mapping[str, Any], location: str, host: str, seen: set[str]) -> CorpusDoc | CorpusRejection:
    from pipeline.ingest.urls import normalize_url

    doc_id = next((record[c] for c in ID_COLUMNS if record.get(c) not in (None, "")), None)
    if doc_id is None:
        return CorpusRejection("missing_id", f"none of {', '.join(ID_COLUMNS)}", location)
    doc_id = str(doc_id)
    title = str(record.get("title") or "").strip()
    column = next((c for c in TEXT_COLUMNS if isinstance(record.get(c), str) and record[c].strip()), None)
    text = record[column] if column else ""
    if column == "contents":  # Search-R1's '"Title"\ntext': the title line is not text
        quoted, body = split_contents(text)
        if quoted and (not title or quoted == title):
            title, text = quoted, body
    text = text.strip()
    if not text:
        return CorpusRejection("empty_text", f"document {doc_id}", location)
    if doc_id in seen:
        return CorpusRejection("duplicate_id", f"document {doc_id} again", location)
    seen.add(doc_id)
    raw_url = str(record.get("url") or "") or f"https://{host}/doc/{quote(doc_id, safe='')}"
    url = normalize_url(raw_url)
    if url is None:
        return CorpusRejection("bad_url", raw_url[:500], location)
    return CorpusDoc(doc_id, title or doc_id, text, url, location)


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def read_jsonl_corpus(path: str | Path, host: str | None = None) -> Iterator[CorpusDoc | CorpusRejection]:
    path = Path(path)
    host = host or f"{corpus_name(path)}.corpus.invalid"
    seen: set[str] = set()
    with _open_text(path) as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            location = f"line {n}"
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                yield CorpusRejection("invalid_json", f"{getattr(exc, 'msg', 'too deep')}: {line[:200]}", location)
                continue
            if not isinstance(record, dict):
                yield CorpusRejection("not_an_object", line[:200], location)
                continue
            yield _document(record, location, host, seen)


def read_parquet_corpus(path: str | Path, host: str | None = None) -> Iterator[CorpusDoc | CorpusRejection]:
    import pyarrow.parquet as pq

    path = Path(path)
    host = host or f"{corpus_name(path)}.corpus.invalid"
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # not Parquet, truncated footer: one rejection for the file, never a crash
        yield CorpusRejection("unreadable_file", f"{type(exc).__name__}: {exc}"[:500], str(path))
        return
    names = pf.schema_arrow.names
    if not any(c in names for c in ID_COLUMNS):
        yield CorpusRejection("no_id_column", f"columns {names}; expected one of {', '.join(ID_COLUMNS)}", str(path))
        return
    if not any(c in names for c in TEXT_COLUMNS):
        yield CorpusRejection("no_text_column", f"columns {names}; expected one of {', '.join(TEXT_COLUMNS)}",
                              str(path))
        return
    columns = [c for c in (*ID_COLUMNS, *TEXT_COLUMNS, "title", "url") if c in names]
    seen: set[str] = set()
    row = 0
    for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
        for record in batch.to_pylist():
            yield _document(record, f"row {row}", host, seen)
            row += 1


def read_corpus(path: str | Path, host: str | None = None) -> Iterator[CorpusDoc | CorpusRejection]:
    """Documents and rejections of a corpus file, by its suffix (`SUFFIXES`)."""
    name = Path(path).name.lower()
    if name.endswith(".parquet"):
        return read_parquet_corpus(path, host)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl_corpus(path, host)
    raise ValueError(f"{path}: not a corpus file (expected one of {', '.join(SUFFIXES)})")


def ingest_corpus(path: str | Path, store: Any, partition: str | None = None, *, host: str | None = None,
                  progress: Any = None) -> Any:
    """Read `path` and store its documents as partition `partition` (default: the file name) of the page captures,
    replacing that partition whole; returns an `IngestReport` (source `warc`: the pages go where crawled pages go)."""
    from pipeline.ingest.run import IngestReport, content_hash

    path = Path(path)
    partition = partition or path.name
    report = IngestReport("warc", partition, str(path))
    started = time.perf_counter()
    with store.partition_writer("warc", partition) as w:
        for item in read_corpus(path, host):
            if progress:
                progress(1)
            if isinstance(item, CorpusRejection):
                w.reject(f"corpus_{item.reason}", item.detail, item.location)
                continue
            w.add("warc_pages", {
                "record_id": f"{partition}#{item.id}", "record_offset": None, "url": item.url, "warc_date": None,
                "http_status": 200, "content_type": "text/plain", "charset": "utf-8", "charset_source": "corpus",
                "title": item.title, "text": item.text, "published": None, "language": None,
                "payload_bytes": len(item.text.encode("utf-8")), "content_hash": content_hash(item.text),
                "from_revisit": False,
            })
            report.counts["pages_kept"] += 1
            if len(report.preview) < 5:
                report.preview.append({"url": item.url, "title": item.title, "chars": len(item.text), "links": 0,
                                       "status": 200})
        report.rejected = Counter(w.rejects)
        report.counts["documents_read"] = report.counts["pages_kept"] + sum(report.rejected.values())
        report.seconds = time.perf_counter() - started
        w.stats = {**report.counts, "seconds": report.seconds}
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.ingest.corpus FILE... [--store PATH]`: ingest corpus files, one partition each."""
    import argparse

    from pipeline import config
    from pipeline.ingest.store import Store

    parser = argparse.ArgumentParser(prog="python -m pipeline.ingest.corpus",
                                     description="Ingest Search-R1/FlashRAG JSONL or Parquet corpora into the store.")
    parser.add_argument("files", nargs="+", help=f"corpus files ({', '.join(SUFFIXES)})")
    parser.add_argument("--store", default="", help="the store (default: $WEBSIM_STORE or $WEBSIM_HOME/store.duckdb)")
    parser.add_argument("--host", default=None, help="host of generated URLs (default: <corpus>.corpus.invalid)")
    args = parser.parse_args(argv)
    store = Store(args.store or config.store_path())
    for path in args.files:
        report = ingest_corpus(path, store, host=args.host)
        print(f"{report.partition}: {report.kept} documents kept, rejected {dict(sorted(report.rejected.items()))} "
              f"({report.seconds:.1f} s)")
    print("then rebuild pages and the snapshot: dagster asset materialize -m assets --select pages,link_graph,snapshot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
