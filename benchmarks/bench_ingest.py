"""Ingest throughput: our WARC -> pages path against datatrove's, and warcio's parser against fastwarc's.

    python benchmarks/bench_ingest.py [--limit N] [--workers 2] [--warc-dir DIR]

1. Ingest (the four Wikispeedia shards): `read_warc` + `extract_many(workers=W)` against datatrove's
   `WarcReader` + `Trafilatura` under its `LocalPipelineExecutor(tasks=W, workers=W)`, pages/s and ratio.
   The two do different amounts of work per page: ours also extracts metadata (title, date,
   language) and every outlink with its sentence; datatrove's step returns the main text only.
2. Raw parse rate over all sample WARCs: warcio `ArchiveIterator` against fastwarc's (records/s,
   MB/s of compressed input), each parsing WARC and HTTP headers and reading every record's raw
   payload (no content decoding), best of 3.
3. Where our time goes, in one process: WARC parse, charset decode, trafilatura, link extraction.

Needs the `bench` extra (fastwarc, datatrove); datatrove's WarcReader also imports `cchardet` and
`magic` (faust-cchardet, python-magic). A missing one skips its section with a note.
The machine may be shared: a calibration line says how many cores this run actually got.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import sample_data_dir  # noqa: E402
from pipeline.ingest.extract import ExtractedPage, extract_links, extract_many, parse_html  # noqa: E402
from pipeline.ingest.warc import WarcCapture, decode_html, header_charset, read_warc  # noqa: E402


def _burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def cores_available(workers: int) -> float:
    """Effective parallelism right now: `workers` busy loops in parallel vs one alone."""
    import multiprocessing as mp

    n = 3_000_000
    t = time.perf_counter()
    _burn(n)
    one = time.perf_counter() - t
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_burn, [n] * workers)  # warm the pool
        t = time.perf_counter()
        pool.map(_burn, [n] * workers)
        par = time.perf_counter() - t
    return workers * one / par


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def speedia_files(warc_dir: Path) -> list[str]:
    return sorted(glob.glob(str(warc_dir / "wikispeedia-*.warc.gz")))


def bench_ours(files: list[str], limit: int | None, workers: int) -> dict:
    counters = collections.Counter()

    def pairs():
        for path in files:
            for item in read_warc(path, counters=counters):
                if isinstance(item, WarcCapture):
                    yield item.html, item.url

    t = time.perf_counter()
    pages = links = errors = 0
    for result in extract_many(islice(pairs(), limit), workers=workers, timeout_s=10.0):
        if isinstance(result, ExtractedPage):
            pages += 1
            links += len(result.links)
        else:
            errors += 1
    wall = time.perf_counter() - t
    return dict(pages=pages, errors=errors, links=links, wall=wall, rate=(pages + errors) / wall)


def bench_datatrove(warc_dir: Path, limit: int | None, workers: int) -> dict | str:
    try:
        import cchardet  # noqa: F401
        import magic  # noqa: F401
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.extractors import Trafilatura
        from datatrove.pipeline.readers import WarcReader
    except ImportError as exc:
        return f"skipped: {exc} (pip install datatrove faust-cchardet python-magic)"
    per_task = -1 if limit is None else max(1, limit // workers)
    with tempfile.TemporaryDirectory() as logs:
        executor = LocalPipelineExecutor(
            pipeline=[
                WarcReader(str(warc_dir), glob_pattern="wikispeedia-*.warc.gz", limit=per_task),
                Trafilatura(timeout=10.0),
            ],
            tasks=workers,
            workers=workers,
            logging_dir=logs,
        )
        t = time.perf_counter()
        with _quiet_stderr():  # datatrove's tasks log to stderr at INFO, in their own processes
            stats = executor.run()
        wall = time.perf_counter() - t
    step = {s.name: s.stats for s in stats.stats}
    extractor = next(v for k, v in step.items() if "Trafilatura" in k)
    total = extractor["total"].total if "total" in extractor else 0
    forwarded = extractor["forwarded"].total if "forwarded" in extractor else 0
    return dict(pages=forwarded, total=total, wall=wall, rate=total / wall)


def bench_parsers(files: list[str], repeats: int = 3) -> dict:
    from warcio.archiveiterator import ArchiveIterator as WarcioIterator

    try:
        from fastwarc.warc import ArchiveIterator as FastIterator
    except ImportError as exc:
        FastIterator, fast_missing = None, str(exc)
    size_mb = sum(os.path.getsize(f) for f in files) / 1e6

    def warcio_pass():
        n = 0
        for f in files:
            with open(f, "rb") as fh:
                for record in WarcioIterator(fh):
                    record.raw_stream.read()
                    n += 1
        return n

    def fastwarc_pass():
        n = 0
        for f in files:
            with open(f, "rb") as fh:
                for record in FastIterator(fh, parse_http=True):
                    record.reader.read()
                    n += 1
        return n

    out = {}
    for name, fn in [("warcio", warcio_pass), ("fastwarc", fastwarc_pass)]:
        if name == "fastwarc" and FastIterator is None:
            out[name] = f"skipped: {fast_missing}"
            continue
        best, n = float("inf"), 0
        for _ in range(repeats):
            t = time.perf_counter()
            n = fn()
            best = min(best, time.perf_counter() - t)
        out[name] = dict(records=n, seconds=best, records_s=n / best, mb_s=size_mb / best)
    out["size_mb"] = size_mb
    return out


def bench_phases(files: list[str], pages: int) -> dict:
    """Single-process time per phase on the first `pages` pages (process CPU time, so a busy
    neighbour on a shared machine does not inflate it)."""
    from trafilatura import bare_extraction
    from warcio.archiveiterator import ArchiveIterator

    from pipeline.ingest import extract as extract_module

    clock = time.process_time
    # read_warc end to end (parse + framing checks + decode) ...
    t = clock()
    caps = []
    for f in files:
        for item in read_warc(f):
            if isinstance(item, WarcCapture):
                caps.append(item)
            if len(caps) >= pages:
                break
        if len(caps) >= pages:
            break
    read_total = clock() - t
    # ... of which charset decoding, timed on the same payloads
    payloads = []
    for f in files:
        with open(f, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "response":
                    ctype = record.http_headers.get_header("Content-Type")
                    payloads.append((record.content_stream().read(), header_charset(ctype)))
                if len(payloads) >= len(caps):
                    break
        if len(payloads) >= len(caps):
            break
    t = clock()
    for data, charset in payloads:
        decode_html(data, charset)
    decode = clock() - t

    t = clock()
    for c in caps:
        extract_links(parse_html(c.html), c.url)
    links = clock() - t
    t = clock()
    for c in caps:
        bare_extraction(c.html, url=c.url, with_metadata=True, include_comments=False,
                        date_extraction_params=extract_module._DATE_PARAMS)
    trafilatura_s = clock() - t
    t = clock()
    for c in caps[: max(1, len(caps) // 5)]:
        bare_extraction(c.html, url=c.url, with_metadata=True, include_comments=False)
    trafilatura_default = (clock() - t) / max(1, len(caps) // 5)
    n = len(caps)
    return dict(
        pages=n,
        parse_ms=(read_total - decode) / n * 1000,
        decode_ms=decode / n * 1000,
        trafilatura_ms=trafilatura_s / n * 1000,
        links_ms=links / n * 1000,
        trafilatura_default_dates_ms=trafilatura_default * 1000,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="pages to ingest (default: all 4,598)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--phase-pages", type=int, default=1000, help="pages for the single-process phase timing")
    ap.add_argument("--warc-dir", type=Path, default=sample_data_dir() / "warc")
    args = ap.parse_args(argv)
    files = speedia_files(args.warc_dir)
    if not files:
        sys.exit(f"no wikispeedia-*.warc.gz in {args.warc_dir}")
    all_files = sorted(glob.glob(str(args.warc_dir / "*.warc.gz")))

    print(f"# bench_ingest: {len(files)} Wikispeedia shards, limit={args.limit}, workers={args.workers}, "
          f"cpus={os.cpu_count()}")
    print(f"calibration: {cores_available(args.workers):.2f} of {args.workers} cores available to this run")

    ours = bench_ours(files, args.limit, args.workers)
    print(f"ours      read_warc + extract_many : {ours['pages'] + ours['errors']:5d} pages "
          f"({ours['errors']} errors, {ours['links']} links) in {ours['wall']:6.1f}s = {ours['rate']:6.1f} pages/s")
    dt = bench_datatrove(args.warc_dir, args.limit, args.workers)
    if isinstance(dt, str):
        print(f"datatrove WarcReader + Trafilatura  : {dt}")
    else:
        print(f"datatrove WarcReader + Trafilatura  : {dt['total']:5d} pages "
              f"({dt['pages']} with text) in {dt['wall']:6.1f}s = {dt['rate']:6.1f} pages/s")
        print(f"ratio ours/datatrove               : {ours['rate'] / dt['rate']:.2f}x "
              "(ours also extracts metadata and links with contexts)")

    parsers = bench_parsers(all_files)
    print(f"raw parse, all {len(all_files)} sample WARCs ({parsers['size_mb']:.1f} MB gz), best of 3:")
    for name in ("warcio", "fastwarc"):
        p = parsers[name]
        if isinstance(p, str):
            print(f"  {name:9s}: {p}")
        else:
            print(f"  {name:9s}: {p['records']} records in {p['seconds']:.3f}s = "
                  f"{p['records_s']:8.0f} records/s, {p['mb_s']:6.1f} MB/s")
    if not isinstance(parsers.get("fastwarc"), str):
        print(f"  ratio fastwarc/warcio: {parsers['fastwarc']['records_s'] / parsers['warcio']['records_s']:.1f}x")

    phases = bench_phases(files, min(args.phase_pages, args.limit or args.phase_pages))
    total = phases["parse_ms"] + phases["decode_ms"] + phases["trafilatura_ms"] + phases["links_ms"]
    print(f"phases, one process, CPU ms/page over {phases['pages']} pages (total {total:.1f} ms "
          f"= {1000 / total:.0f} pages/s per core):")
    for key, label in [("parse_ms", "WARC parse + framing"), ("decode_ms", "charset decode"),
                       ("trafilatura_ms", "trafilatura (text+meta)"), ("links_ms", "lxml parse + links")]:
        print(f"  {label:24s}: {phases[key]:6.2f} ms  ({phases[key] / total:5.1%})")
    print(f"  (trafilatura with htmldate's default extensive date search: "
          f"{phases['trafilatura_default_dates_ms']:.2f} ms/page)")


if __name__ == "__main__":
    main()
