"""The partitioned store, measured: a 4-shard WARC backfill serial vs 2-way parallel (the `warc_backfill` job under
the multiprocess executor), and the build from partitions to a served snapshot at the sample's size and at >= 200k
pages.

    .venv/bin/python benchmarks/bench_store.py                 # everything (the 200k part takes minutes)
    .venv/bin/python benchmarks/bench_store.py --pages 0       # the backfill and the 4.6k build only
    .venv/bin/python benchmarks/bench_store.py --skip-backfill --pages 200000
    .venv/bin/python benchmarks/bench_store.py --index-shards 2 ...  # + the index at 1 vs 2 shards on each snapshot
    .venv/bin/python benchmarks/bench_store.py --index-only --index-shards 2 --index-warcs 1  # that alone, 1 WARC

`--index-shards N` builds the same pages' tantivy index as one index and as N shards (`IndexConfig(shards=N)`, one
process per shard), best of two builds each, and prints wall time, CPU time (this process and the shard processes)
and their ratios, then how the two rank the same queries (page titles and sentences from pages): top-10 overlap,
how many top-10 lists are identical (pages of equal score in either order) and the largest score difference.

The 200k-page store is **synthetic**: copies of the real Wikispeedia pages under other hosts
(`c<N>.sim.example`), each copy's text made different (its sentences rotated, some of another page's spliced in) and
its links pointing into the same copy, written as partitions through the store's own partition writer. It measures
the build and the snapshot at that size, not extraction. Load averages are printed beside every figure: on a shared
machine the times are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARDS = [f"wikispeedia-2007-0000{i}.warc.gz" for i in range(4)]
CLICKS = "clickstream-wikispeedia-paths.tsv"
STATE_SQL = {  # content hashes of what a backfill leaves (the same queries as tests/assets/test_backfill.py)
    "pages": "SELECT count(*), bit_xor(md5_number(concat_ws('|', page_id, url, content_hash))) FROM pages",
    "url_aliases": "SELECT count(*), bit_xor(md5_number(concat_ws('|', url, page_id, reason))) FROM url_aliases",
    "link_graph": "SELECT count(*), bit_xor(md5_number(concat_ws('|', src_id, dst_id, anchor, clicks))) "
                  "FROM link_graph",
}


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def warc_backfill_multiprocess():
    """Module level, so that `dg.reconstructable` can rebuild the job in each step process."""
    import dagster as dg

    from assets import defs
    from assets.executors import executor_from_env

    return dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=defs.resources,
                          executor=executor_from_env("multiprocess")).resolve_job_def("warc_backfill")


def backfill(workdir: Path, warc_dir: Path, concurrent: int) -> dict:
    """One `warc_backfill` run of the shards, `concurrent` steps at a time, one extraction process per step."""
    import dagster as dg

    home = workdir / f"dagster_{concurrent}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    store_path = workdir / f"store_{concurrent}" / "store.duckdb"
    shutil.rmtree(store_path.parent, ignore_errors=True)
    # folders through resource config: the forkserver keeps the environment of the first run
    config = {"execution": {"config": {"max_concurrent": concurrent, "start_method": {
                  "forkserver": {"preload_modules": ["assets", "pipeline.ingest.extract"]}}}},
              "resources": {"inputs": {"config": {"warc_dirs": [str(warc_dir)]}},
                            "store": {"config": {"path": str(store_path)}}},
              "ops": {"warc_backfill_step": {"config": {"workers": 1}}},
              "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    before = load()
    started = time.perf_counter()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.execute_job(dg.reconstructable(warc_backfill_multiprocess), instance=instance, run_config=config)
        wall = time.perf_counter() - started
        assert result.success, f"backfill with {concurrent} concurrent steps failed"
        steps = {}
        for record in instance.all_logs(result.run_id):
            e = record.dagster_event
            if e is not None and e.step_key and e.step_key.startswith("warc_backfill_step["):
                if e.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                    steps.setdefault(e.step_key, {})[e.event_type_value] = record.timestamp
    return {"concurrent": concurrent, "wall_s": round(wall, 1), "store": str(store_path),
            "step_s": sorted(round(v["STEP_SUCCESS"] - v["STEP_START"], 1) for v in steps.values()),
            "load_before": before, "load_after": load()}


def state(store) -> dict:
    with store.connect() as con:
        return {name: [list(r) for r in con.execute(sql).fetchall()] for name, sql in STATE_SQL.items()}


def build(store, snapshots: Path) -> dict:
    """pages, link_graph, then a snapshot (tantivy), each timed."""
    from pipeline.simulator.snapshot import build_snapshot

    out = {"load_before": load()}
    t0 = time.perf_counter()
    out["pages"] = store.build_pages()["pages"]
    out["build_pages_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    out["edges"] = store.build_link_graph()["edges"]
    out["build_link_graph_s"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(snapshots, ignore_errors=True)
    t0 = time.perf_counter()
    snap = build_snapshot(store.path, snapshots, make_latest=False)
    out["snapshot_s"] = round(time.perf_counter() - t0, 1)
    out["snapshot"] = str(snap.path)
    out["snapshot_timings"] = snap.manifest["timings"]
    out["snapshot_pages"] = snap.manifest["counts"]["pages"]
    out["load_after"] = load()
    return out


# One synthetic copy `c` of every real page: another host, a 12-sentence window of its text starting at a sentence
# that depends on c, then 3 sentences of another page (so its content hash differs from the original's and every
# other copy's; pages are shorter than the real ones, which average 19k characters), its links into the copy.
_COPY_PAGES_SQL = r"""
SELECT ? AS partition, 'syn-' || CAST(? AS VARCHAR) || '-' || record_id AS record_id, record_offset,
       'https://c' || CAST(? AS VARCHAR) || '.sim.example' || path AS url, warc_date, http_status, content_type,
       charset, charset_source, title || ' (' || CAST(? AS VARCHAR) || ')' AS title, text, published, language,
       strlen(text) AS payload_bytes, sha256(text) AS content_hash, from_revisit
FROM (
  SELECT b.* EXCLUDE (text),
         array_to_string(list_slice(b.s, (? * 5) % len(b.s) + 1, (? * 5) % len(b.s) + 12) || list_slice(o.s, 1, 3),
                         '. ') AS text
  FROM syn_base b JOIN syn_base o ON o.i = (b.i * 31 + ? * 7919 + 7) % (SELECT count(*) FROM syn_base)
)
"""
_COPY_LINKS_SQL = r"""
SELECT ? AS partition, 'syn-' || CAST(? AS VARCHAR) || '-' || l.src_record_id AS src_record_id,
       'https://c' || CAST(? AS VARCHAR) || '.sim.example' || b.path AS src_url,
       'https://c' || CAST(? AS VARCHAR) || '.sim.example' || regexp_extract(l.dst_url, '^https?://[^/]+(/.*)$', 1)
         AS dst_url, l.anchor, l.context, l.ordinal
FROM syn_base b JOIN warc_links l ON l.partition = b.partition AND l.src_record_id = b.record_id
WHERE l.dst_url LIKE 'https://en.wikipedia.org/wiki/%'
"""


def synthesise(store, target_pages: int) -> dict:
    """Add synthetic partitions until the store holds >= `target_pages` pages (see the module docstring)."""
    import duckdb

    from pipeline.ingest.store import RAW_SCHEMAS

    t0 = time.perf_counter()
    folders = store.current_partitions()
    real = sorted(str(f / "warc_pages.parquet") for (s, _), f in folders.items() if s == "warc")
    links = sorted(str(f / "warc_links.parquet") for (s, _), f in folders.items() if s == "warc")
    con = duckdb.connect(config={"memory_limit": "4GB"})
    with store.connect() as src:
        winners = src.sql("SELECT partition, record_id FROM pages").to_arrow_table()
    con.register("winners", winners)
    con.register("warc_links", con.read_parquet(links))
    con.execute("""
        CREATE TABLE syn_base AS
        SELECT row_number() OVER (ORDER BY w.url) - 1 AS i, w.*,
               regexp_extract(w.url, '^https?://[^/]+(/.*)$', 1) AS path, string_split(w.text, '. ') AS s
        FROM read_parquet(?) w SEMI JOIN winners USING (partition, record_id)""", [real])
    n = con.execute("SELECT count(*) FROM syn_base").fetchall()[0][0]
    copies = -(-int(target_pages * 1.01) // n)  # a few copies collide with another's text: 1% more
    for c in range(1, copies + 1):
        key = f"synthetic-c{c:03d}.warc"
        with store.partition_writer("warc", key) as w:
            cols = ", ".join(RAW_SCHEMAS["warc_pages"].names)
            w.add_arrow("warc_pages", con.sql(f"SELECT {cols} FROM ({_COPY_PAGES_SQL})",
                                              params=[key, c, c, c, c, c, c]).to_arrow_reader(20_000))
            w.add_arrow("warc_links", con.sql(_COPY_LINKS_SQL, params=[key, c, c, c]).to_arrow_reader(50_000))
            w.stats = {"synthetic_copy_of_real_pages": n}
    con.close()
    chars = store.query("SELECT avg(strlen(text)) AS a FROM warc_pages WHERE partition LIKE 'synthetic-%'")[0]["a"]
    return {"real_pages": n, "copies": copies, "synthetic_avg_chars": round(chars),
            "generate_s": round(time.perf_counter() - t0, 1)}


def wikispeedia_snapshot(workdir: Path, n_warcs: int) -> Path:
    """A snapshot of the first `n_warcs` Wikispeedia WARC files (ingested once, one extraction process; reused)."""
    from pipeline import config as websim_config
    from pipeline.ingest.run import ingest_warc
    from pipeline.ingest.store import Store
    from pipeline.simulator.snapshot import build_snapshot, latest_snapshot

    root = workdir / f"index_snapshots_{n_warcs}"
    if (snap := latest_snapshot(root)) is not None:
        return snap.path
    store = Store(workdir / f"index_store_{n_warcs}" / "store.duckdb")
    shutil.rmtree(store.path.parent, ignore_errors=True)
    store.path.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    for name in SHARDS[:n_warcs]:
        ingest_warc(websim_config.sample_data_dir() / "warc" / name, store, name, workers=1)
    store.build_pages()
    store.build_link_graph()
    snap = build_snapshot(store.path, root)
    print(f"  snapshot of {n_warcs} Wikispeedia WARC file(s), {snap.manifest['counts']['pages']:,} pages, built in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return snap.path


_SENTENCE_END = r"(?<=[.!?])\s+"


def same_top(a: list[tuple[int, float]], b: list[tuple[int, float]], rel: float = 1e-5) -> bool:
    """The same ranking up to the order of equal scores: equal scores rank by rank, the same pages above the last."""
    if len(a) != len(b) or any(abs(x[1] - y[1]) > rel * max(1.0, abs(x[1])) for x, y in zip(a, b)):
        return False
    cut = a[-1][1] * (1 + rel) if a else 0.0
    return {p for p, sc in a if sc > cut} == {p for p, sc in b if sc > cut}


def index_shards(snapshot_path: Path, shards: int, workdir: Path, n_queries: int = 300, seed: int = 0) -> dict:
    """The snapshot's pages indexed as one tantivy index and as `shards` shards: build time, and their rankings."""
    import random
    import re

    from pipeline.simulator.search_index import IndexConfig, build_index, open_index
    from pipeline.simulator.snapshot import Snapshot

    with Snapshot.open(snapshot_path).connect() as con:
        docs = con.execute("SELECT page_id, title, text FROM pages ORDER BY page_id").fetchall()
    out: dict = {"pages": len(docs), "shards": shards, "builds": {1: [], shards: []}}
    for _ in range(2):  # alternate, best of two: the machine's load moves
        for n in (1, shards):
            before = load()
            stats = build_index(workdir / f"index_{n}", docs, IndexConfig(shards=n))
            out["builds"][n].append({"wall_s": stats.seconds, "cpu_s": stats.cpu_s, "load_before": before,
                                     "load_after": load(), "per_shard": stats.shards})
    best = {n: min(runs, key=lambda r: r["wall_s"]) for n, runs in out["builds"].items()}
    out["best"] = best
    out["wall_speedup"] = round(best[1]["wall_s"] / best[shards]["wall_s"], 2)
    out["cpu_ratio"] = round(best[shards]["cpu_s"] / best[1]["cpu_s"], 2)

    rng = random.Random(seed)
    sample = rng.sample(docs, min(n_queries, len(docs)))
    sentences = [rng.choice(c) for _, _, text in sample
                 if (c := [x for x in re.split(_SENTENCE_END, text) if 8 <= len(x.split()) <= 30])]
    one, many = open_index(workdir / "index_1"), open_index(workdir / f"index_{shards}")
    out["agreement"] = {}
    for name, queries in (("titles", [t for _, t, _ in sample if t]), ("sentences", sentences)):
        results, cpu = {}, {}
        for label, index in (("one", one), ("shards", many)):
            t0 = time.process_time()
            results[label] = [index.search(q, 10) for q in queries]
            cpu[label] = (time.process_time() - t0) / max(len(queries), 1) * 1000
        pairs = list(zip(results["one"], results["shards"]))
        out["agreement"][name] = {
            "queries": len(queries),
            "overlap_at_10": round(sum(len({p for p, _ in a} & {p for p, _ in b}) / max(len(a), 1)
                                       for a, b in pairs) / max(len(pairs), 1), 4),
            "identical_top10": sum(same_top(a, b) for a, b in pairs),
            "max_score_diff": max((abs(x[1] - y[1]) for a, b in pairs for x, y in zip(a, b)), default=0.0),
            "search_cpu_ms_one": round(cpu["one"], 3), "search_cpu_ms_shards": round(cpu["shards"], 3)}
    return out


def print_index_shards(r: dict) -> None:
    one, many = r["best"][1], r["best"][r["shards"]]
    print(f"  index of {r['pages']:,} pages, best of 2: 1 index {one['wall_s']:.2f} s wall / {one['cpu_s']:.2f} s CPU "
          f"({one['load_before']}); {r['shards']} shards {many['wall_s']:.2f} s wall / {many['cpu_s']:.2f} s CPU "
          f"({many['load_before']}): wall {r['wall_speedup']}x faster, CPU x{r['cpu_ratio']}", flush=True)
    for name, a in r["agreement"].items():
        print(f"    {name}: top-10 overlap {a['overlap_at_10']:.4f}, identical top-10 {a['identical_top10']}/"
              f"{a['queries']}, max score difference {a['max_score_diff']:.2g}; search CPU per query "
              f"{a['search_cpu_ms_one']:.2f} ms (1 index) vs {a['search_cpu_ms_shards']:.2f} ms (shards)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(REPO / ".websim" / "bench_store"))
    parser.add_argument("--pages", type=int, default=200_000, help="pages of the large build (0: skip it)")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--index-shards", type=int, default=0,
                        help="also build each snapshot's index as 1 index vs this many shards (0: skip)")
    parser.add_argument("--index-only", action="store_true",
                        help="only the index comparison, on a snapshot of --index-warcs Wikispeedia WARC files")
    parser.add_argument("--index-warcs", type=int, default=4, choices=range(1, len(SHARDS) + 1))
    args = parser.parse_args()

    from pipeline import config as websim_config
    from pipeline.ingest.run import ingest_clickstream
    from pipeline.ingest.store import Store

    data = websim_config.sample_data_dir()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    warc_dir = workdir / "warc"
    warc_dir.mkdir(exist_ok=True)
    for name in SHARDS:
        if not (warc_dir / name).exists():
            (warc_dir / name).symlink_to(data / "warc" / name)
    results: dict = {"cpus": os.cpu_count()}
    print(f"bench_store on {os.cpu_count()} cores ({load()})", flush=True)
    if args.index_only:
        if args.index_shards < 2:
            raise SystemExit("--index-only needs --index-shards N with N >= 2")
        results["index_shards"] = index_shards(wikispeedia_snapshot(workdir, args.index_warcs), args.index_shards,
                                               workdir / "index_sample")
        print_index_shards(results["index_shards"])
        out = workdir / "bench_store_index.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"results: {out}")
        return 0

    if not args.skip_backfill:
        runs = {}
        for concurrent in (1, 2):
            runs[concurrent] = backfill(workdir, warc_dir, concurrent)
            print(f"  backfill of {len(SHARDS)} shards, {concurrent} step(s) at a time: "
                  f"{runs[concurrent]['wall_s']} s (steps {runs[concurrent]['step_s']} s; "
                  f"{runs[concurrent]['load_before']} -> {runs[concurrent]['load_after']})", flush=True)
        states = {}
        for c in (1, 2):
            store = Store(runs[c]["store"])
            store.build_pages()
            store.build_link_graph()
            states[c] = state(store)
        results["backfill"] = {"serial": runs[1], "parallel_2": runs[2],
                               "speedup": round(runs[1]["wall_s"] / runs[2]["wall_s"], 2),
                               "same_content_hashes": states[1] == states[2]}
        print(f"  speed-up {results['backfill']['speedup']}x; serial and parallel stores have the same pages/"
              f"url_aliases/link_graph hashes: {states[1] == states[2]}", flush=True)
        base = Path(runs[2]["store"])
    else:
        base = workdir / "store_2" / "store.duckdb"
        if not (base.parent / "store.parts").exists():
            raise SystemExit(f"--skip-backfill needs a backfilled store at {base}: run once without it")

    store = Store(base)
    ingest_clickstream(data / "clickstream" / CLICKS, store, CLICKS, lang="en")
    results["build_sample"] = build(store, workdir / "snapshots_sample")
    b = results["build_sample"]
    print(f"  {b['pages']:,} pages: build_pages {b['build_pages_s']} s, link_graph {b['build_link_graph_s']} s, "
          f"snapshot {b['snapshot_s']} s {b['snapshot_timings']} ({b['load_before']} -> {b['load_after']})",
          flush=True)
    if args.index_shards > 1:
        results["index_shards_sample"] = index_shards(Path(b["snapshot"]), args.index_shards, workdir / "index_sample")
        print_index_shards(results["index_shards_sample"])

    if args.pages:
        large = Store(workdir / "store_large" / "store.duckdb")
        shutil.rmtree(large.path.parent, ignore_errors=True)
        large.path.parent.mkdir(parents=True)
        shutil.copytree(store.parts, large.parts)  # the real partitions, then synthetic ones beside them
        shutil.copyfile(store.path, large.path)  # their pages: which capture of each is the page
        results["synthetic"] = synthesise(large, args.pages)
        s = results["synthetic"]
        print(f"  SYNTHETIC: {s['copies']} perturbed copies of the {s['real_pages']:,} real pages as "
              f"{s['copies']} partitions (a 12-sentence window of each page + 3 sentences of another; "
              f"{s['synthetic_avg_chars']:,} characters on average), generated in {s['generate_s']} s", flush=True)
        results["build_large"] = build(large, workdir / "snapshots_large")
        b = results["build_large"]
        print(f"  {b['pages']:,} pages (synthetic): build_pages {b['build_pages_s']} s, link_graph "
              f"{b['build_link_graph_s']} s, snapshot {b['snapshot_s']} s {b['snapshot_timings']} "
              f"({b['load_before']} -> {b['load_after']})", flush=True)
        if args.index_shards > 1:
            results["index_shards_large"] = index_shards(Path(b["snapshot"]), args.index_shards,
                                                         workdir / "index_large")
            print_index_shards(results["index_shards_large"])
    out = workdir / "bench_store.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
