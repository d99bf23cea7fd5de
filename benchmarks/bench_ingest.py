"""Ingest throughput: our WARC -> pages path against datatrove's, and warcio's parser against fastwarc's.

    python benchmarks/bench_ingest.py [--limit N] [--workers 2] [--warc-dir DIR] [--sections cpu,pool,parsers,phases]

1. CPU per page (the four Wikispeedia shards, one process, `time.process_time`, so neighbours on a shared
   machine inflate it far less than wall time): `read_warc` + `extract_page` (exact, and `fast=True`) against
   datatrove's `WarcReader` + `Trafilatura`, shard by shard in turn so that a change in load hits all alike.
   datatrove is timed twice: its extractor called in this process (its bare cost) and as its step runs, in its
   sandbox process (CPU of this process and of the reaped sandbox). Ours also extracts metadata (title, date,
   language) and every outlink with its sentence; datatrove's step returns the main text only.
   The same pass checks that what ours stores is identical to what the extractor stored before the issue-16
   speed-ups (digests in tests/pipeline/ingest/data/extract_golden.json), and says what `fast=True` changes.
2. Pool (`--sections pool`): `extract_many(workers=W)` against datatrove's `LocalPipelineExecutor(tasks=W,
   workers=W)`, pages/s of wall time.
3. Raw parse rate over all sample WARCs: warcio `ArchiveIterator` against fastwarc's (records/s,
   MB/s of compressed input), each parsing WARC and HTTP headers and reading every record's raw
   payload (no content decoding), best of 3.
4. Where our time goes, in one process: WARC parse, charset decode, lxml parse, links, trafilatura.

A quick look at section 1: `--sections cpu --limit 400` (100 pages of each shard, ~2 minutes of CPU; the
whole-file golden check needs no --limit, ~6 minutes).

Needs the `bench` extra (fastwarc, datatrove); datatrove's WarcReader also imports `cchardet` and
`magic` (faust-cchardet, python-magic). A missing one skips its section with a note.
The machine may be shared: the load average is printed at the start and the end of each section.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import itertools
import os
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import sample_data_dir  # noqa: E402
from pipeline.ingest.extract import (  # noqa: E402
    ExtractedPage,
    ExtractionError,
    extract_links,
    extract_many,
    extract_page,
    main_content,
    parse_html,
)
from pipeline.ingest.warc import WarcCapture, decode_html, header_charset, read_warc  # noqa: E402
from tests.pipeline.ingest import golden  # noqa: E402

SECTIONS = ("cpu", "pool", "parsers", "phases")


def load() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())


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


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ours_on(path: str, limit: int | None, fast: bool) -> tuple[float, list[tuple[str, int, str, int]]]:
    """CPU seconds of read_warc + extract_page over one file, and (url, offset, digest, text chars) per page."""
    clock = time.process_time
    rows = []
    spent = 0.0
    t = clock()
    caps = (c for c in read_warc(path) if isinstance(c, WarcCapture))
    for cap in islice(caps, limit):
        page = _extract(cap, fast)
        done = clock()
        rows.append(_row(cap, page))  # the digest is the benchmark's own check: off the clock
        spent += done - t
        t = clock()
    return spent + (clock() - t), rows


def _extract(cap: WarcCapture, fast: bool):
    try:
        return extract_page(cap.html, cap.url, fast=fast)
    except ExtractionError as exc:
        return exc


def _row(cap: WarcCapture, page) -> tuple[str, int, str, int]:
    return cap.url, cap.offset, golden.page_digest(page), len(getattr(page, "text", ""))


def _datatrove_parts():
    try:
        import cchardet  # noqa: F401
        import magic  # noqa: F401
        from datatrove.pipeline.extractors import Trafilatura
        from datatrove.pipeline.readers import WarcReader
    except ImportError as exc:
        return f"skipped: {exc} (pip install datatrove faust-cchardet python-magic)"
    return WarcReader, Trafilatura


def _interleaved(path: str, limit: int | None, cpu: collections.Counter) -> tuple[list, list, int] | str:
    """Page by page, in turn: our read + exact extraction, our fast extraction, datatrove's read + extraction
    (in this process), each on its own CPU clock, the order alternating from page to page; so a change of load
    or a cache warmed by the first taker hits all of them alike. Returns our rows (exact, fast) and the
    number of datatrove documents."""
    parts = _datatrove_parts()
    if isinstance(parts, str):
        return parts
    WarcReader, Trafilatura = parts
    clock = time.process_time
    ours = (c for c in read_warc(path) if isinstance(c, WarcCapture))
    theirs = WarcReader(os.path.dirname(path), glob_pattern=os.path.basename(path), limit=limit or -1).run()
    extractor = Trafilatura(timeout=10.0)
    exact_rows, fast_rows, docs = [], [], 0

    def ours_exact():
        t = clock()
        cap = next(ours, None)
        read = clock()
        page = _extract(cap, False) if cap is not None else None
        cpu["ours_read"] += read - t
        cpu["ours_extract"] += clock() - read
        if cap is not None:
            exact_rows.append(_row(cap, page))  # the digest is the benchmark's own check: off the clock
        return cap

    def datatrove():
        t = clock()
        doc = next(theirs, None)
        if doc is not None:
            extractor.extract(doc.text)
        cpu["datatrove"] += clock() - t
        return doc

    with _quiet_stderr():
        for i in itertools.count():
            if limit is not None and i >= limit:
                break
            if i % 2:
                cap, doc = ours_exact(), datatrove()
            else:
                doc, cap = datatrove(), ours_exact()
            if cap is not None:
                t = clock()
                page = _extract(cap, True)
                cpu["ours_fast_extract"] += clock() - t
                fast_rows.append(_row(cap, page))
            docs += doc is not None
            if cap is None and doc is None:
                break
    return exact_rows, fast_rows, docs


def _datatrove_step_on(path: str, limit: int | None) -> tuple[float, int] | str:
    """CPU seconds of datatrove's WarcReader + Trafilatura as its step runs (each page through its sandbox
    process: this process and the reaped sandbox), and documents read."""
    parts = _datatrove_parts()
    if isinstance(parts, str):
        return parts
    WarcReader, Trafilatura = parts
    reader = WarcReader(os.path.dirname(path), glob_pattern=os.path.basename(path), limit=limit or -1)
    extractor = Trafilatura(timeout=10.0)
    read = collections.Counter()

    def counted():
        for doc in reader.run():
            read["docs"] += 1
            yield doc

    t, children = time.process_time(), _children_cpu()
    with _quiet_stderr():
        for _ in extractor.run(counted()):
            pass
    return time.process_time() - t + _children_cpu() - children, read["docs"]


def bench_cpu(files: list[str], other_files: list[str], limit: int | None) -> None:
    print(f"## CPU per page, one process, page by page in turn ({load()})")
    from trafilatura import extract

    extract("<html><body><p>" + "warm up " * 50 + "</p></body></html>")  # imports and lazy caches, for both sides
    extract_page("<html><body><p>" + "warm up " * 50 + "</p></body></html>", "https://example.org/")
    per_file = None if limit is None else max(1, limit // len(files))
    cpu = collections.Counter()
    pages = collections.Counter()
    exact_rows, fast_rows, notes = [], [], {}
    for path in files:
        out = _interleaved(path, per_file, cpu)
        if isinstance(out, str):  # no datatrove: ours alone
            notes["datatrove"] = notes["datatrove_step"] = out
            seconds, rows = _ours_on(path, per_file, fast=False)
            cpu["ours_extract"] += seconds  # read included: without datatrove the reads are not timed apart
            exact_rows.append((os.path.basename(path), rows))
            seconds, frows = _ours_on(path, per_file, fast=True)
            cpu["ours_fast_extract"] += seconds
            fast_rows += frows
            pages["ours"] += len(rows)
            continue
        rows, frows, docs = out
        exact_rows.append((os.path.basename(path), rows))
        fast_rows += frows
        pages["ours"] += len(rows)
        pages["datatrove"] += docs
        step = _datatrove_step_on(path, per_file)
        if isinstance(step, str):
            notes["datatrove_step"] = step
        else:
            cpu["datatrove_step"] += step[0]
            pages["datatrove_step"] += step[1]
    cpu["ours"] = cpu["ours_read"] + cpu["ours_extract"]
    cpu["ours_fast"] = cpu["ours_read"] + cpu["ours_fast_extract"]
    pages["ours_fast"] = pages["ours"]
    ms = {k: cpu[k] / pages[k] * 1000 for k in cpu if pages[k]}
    print(f"  websim  read_warc + extract_page, exact     : {ms['ours']:6.2f} ms/page ({pages['ours']} pages; "
          f"read_warc {cpu['ours_read'] / pages['ours'] * 1000:.2f})")
    print(f"  websim  read_warc + extract_page, fast=True : {ms['ours_fast']:6.2f} ms/page")
    for key, label in (("datatrove", "datatrove WarcReader + Trafilatura.extract"),
                       ("datatrove_step", "datatrove WarcReader + Trafilatura step  ")):
        if key in notes:
            print(f"  {label} : {notes[key]}")
        else:
            print(f"  {label} : {ms[key]:6.2f} ms/page ({pages[key]} pages; "
                  f"{'its sandbox process included, shard by shard' if key == 'datatrove_step' else 'in this process'})")
    if "datatrove" in ms:
        print(f"  ratio websim/datatrove, CPU per page        : exact {ms['ours'] / ms['datatrove']:.2f}x of its "
              f"in-process cost" + (f", {ms['ours'] / ms['datatrove_step']:.2f}x of its step" if "datatrove_step" in ms
                                     else ""))
    _check_against_golden(exact_rows, whole=limit is None)
    _fast_trade_off("Wikispeedia", [r for _, rows in exact_rows for r in rows], fast_rows,
                    f"extraction {cpu['ours_extract'] / cpu['ours_fast_extract']:.2f}x less CPU")
    other_exact, other_fast, t_exact, t_fast = [], [], 0.0, 0.0
    for path in other_files:
        for fast, rows in ((False, other_exact), (True, other_fast)):
            seconds, found = _ours_on(path, None, fast=fast)
            rows += found
            t_exact, t_fast = (t_exact + seconds, t_fast) if not fast else (t_exact, t_fast + seconds)
    if other_exact:
        _fast_trade_off("the other sample WARCs", other_exact, other_fast,
                        f"read + extraction {t_exact / t_fast:.2f}x less CPU")
    print(f"  ({load()})")


def _check_against_golden(exact_rows: list[tuple[str, list]], whole: bool) -> None:
    recorded = golden.load()
    if not golden.applies(recorded):
        print(f"  stored output vs the pre-speed-up extractor: not checked, digests hold for {recorded['libraries']} "
              f"and {recorded.get('verified_libraries', [])} (python -m tests.pipeline.ingest.golden --verify-libraries)")
        return
    same = checked = 0
    files_same = []
    for name, rows in exact_rows:
        expected = recorded["files"][name]
        digest = golden.FileDigest(name)
        for url, offset, page_digest, _ in rows:
            digest.add(offset, page_digest)
            if str(offset) in expected["sample"]:
                checked += 1
                same += expected["sample"][str(offset)] == page_digest
        if whole:
            files_same.append((digest.pages, digest.all) == (expected["pages"], expected["all"]))
    pages = sum(len(rows) for _, rows in exact_rows)
    if whole:
        verdict = "IDENTICAL" if all(files_same) and same == checked else "DIFFERENT"
        print(f"  stored output vs the pre-speed-up extractor: {verdict} (whole-file digests of {sum(files_same)}/"
              f"{len(files_same)} shards, {pages} pages, match; {same}/{checked} sampled pages match)")
    else:
        print(f"  stored output vs the pre-speed-up extractor: {same}/{checked} sampled pages identical "
              "(whole files are compared without --limit)")


def _fast_trade_off(what: str, exact: list, fast: list, speed: str) -> None:
    changed = [(e, f) for e, f in zip(exact, fast) if e[2] != f[2]]
    kinds = collections.Counter()
    for e, f in changed:
        parts = [n for n, a, b in zip(("text", "metadata", "links"), e[2].split(":"), f[2].split(":")) if a != b]
        kinds["+".join(parts) or "rejection"] += 1
    print(f"  fast=True on {what}: {len(exact) - len(changed)}/{len(exact)} pages identical, {len(changed)} changed "
          f"({', '.join(f'{k}: {v}' for k, v in kinds.items()) or 'none'}), {speed}")
    for e, f in sorted(changed, key=lambda ef: -abs(ef[0][3] - ef[1][3]))[:3]:
        print(f"    {e[0]}: main text {e[3]:,} -> {f[3]:,} characters")


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
    """Single-process CPU time per phase on the first `pages` pages."""
    from warcio.archiveiterator import ArchiveIterator

    from pipeline.ingest.extract import _parse

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
    trees = [_parse(c.html) for c in caps]
    parse = clock() - t
    t = clock()
    for c, tree in zip(caps, trees):
        extract_links(tree.getroottree().getroot(), c.url)
    links = clock() - t
    fast_trees = [_parse(c.html) for c in caps]
    trafilatura_s = trafilatura_fast = 0.0
    for i, (c, tree, fast_tree) in enumerate(zip(caps, trees, fast_trees)):  # in turn, page by page
        for fast in ((False, True) if i % 2 else (True, False)):
            t = clock()
            main_content(c.html, fast_tree if fast else tree, c.url, fast=fast)  # prunes the tree: read last
            if fast:
                trafilatura_fast += clock() - t
            else:
                trafilatura_s += clock() - t
    n = len(caps)
    return dict(
        pages=n,
        parse_ms=(read_total - decode) / n * 1000,
        decode_ms=decode / n * 1000,
        lxml_ms=parse / n * 1000,
        links_ms=links / n * 1000,
        trafilatura_ms=trafilatura_s / n * 1000,
        trafilatura_fast_ms=trafilatura_fast / n * 1000,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="pages to ingest (default: all 4,598)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--phase-pages", type=int, default=1000, help="pages for the single-process phase timing")
    ap.add_argument("--warc-dir", type=Path, default=sample_data_dir() / "warc")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {','.join(SECTIONS)}")
    args = ap.parse_args(argv)
    sections = set(args.sections.split(","))
    if sections - set(SECTIONS):
        sys.exit(f"unknown sections {sorted(sections - set(SECTIONS))}; known: {','.join(SECTIONS)}")
    files = speedia_files(args.warc_dir)
    if not files:
        sys.exit(f"no wikispeedia-*.warc.gz in {args.warc_dir}")
    all_files = sorted(glob.glob(str(args.warc_dir / "*.warc.gz")))

    print(f"# bench_ingest: {len(files)} Wikispeedia shards, limit={args.limit}, workers={args.workers}, "
          f"cpus={os.cpu_count()}, {load()}")
    if "cpu" in sections:
        bench_cpu(files, [f for f in all_files if f not in files], args.limit)

    if "pool" in sections:
        print(f"## pool, wall time ({load()})")
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

    if "parsers" in sections:
        parsers = bench_parsers(all_files)
        print(f"## raw parse, all {len(all_files)} sample WARCs ({parsers['size_mb']:.1f} MB gz), best of 3 ({load()}):")
        for name in ("warcio", "fastwarc"):
            p = parsers[name]
            if isinstance(p, str):
                print(f"  {name:9s}: {p}")
            else:
                print(f"  {name:9s}: {p['records']} records in {p['seconds']:.3f}s = "
                      f"{p['records_s']:8.0f} records/s, {p['mb_s']:6.1f} MB/s")
        if not isinstance(parsers.get("fastwarc"), str):
            print(f"  ratio fastwarc/warcio: {parsers['fastwarc']['records_s'] / parsers['warcio']['records_s']:.1f}x")

    if "phases" in sections:
        phases = bench_phases(files, min(args.phase_pages, args.limit or args.phase_pages))
        keys = ("parse_ms", "decode_ms", "lxml_ms", "links_ms", "trafilatura_ms")
        total = sum(phases[k] for k in keys)
        print(f"## phases, one process, CPU ms/page over {phases['pages']} pages (total {total:.1f} ms "
              f"= {1000 / total:.0f} pages/s per core; {load()}):")
        for key, label in [("parse_ms", "WARC parse + framing"), ("decode_ms", "charset decode"),
                           ("lxml_ms", "lxml parse (once)"), ("links_ms", "links + contexts"),
                           ("trafilatura_ms", "trafilatura text+title+date")]:
            print(f"  {label:28s}: {phases[key]:6.2f} ms  ({phases[key] / total:5.1%})")
        print(f"  (trafilatura with fast=True: {phases['trafilatura_fast_ms']:.2f} ms/page)")


if __name__ == "__main__":
    main()
