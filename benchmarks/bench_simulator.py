"""Benchmark the simulator: search engines side by side, in-process and HTTP latency, a rollout burst, scale.

    python benchmarks/bench_simulator.py                 # Wikispeedia, then a 1,000,000-page corpus
    python benchmarks/bench_simulator.py --scale 100000  # a smaller scaled corpus
    python benchmarks/bench_simulator.py --scale 0       # Wikispeedia only
    python benchmarks/bench_simulator.py --scale 0 --headline-only --parts index burst --max-seconds 5   # quick

What it measures, on the same queries for every engine (page titles, sentences from pages, the 500
HotpotQA questions in ../shared/data/qa):
- search QPS and p50/p99 latency: the raw index (tantivy vs bm25s, one query at a time, and bm25s's
  batched `retrieve` as its best case), and `Simulator.search` with snippets;
- quality: how often a page is rank 1 for its own title; recall@10 of a sentence's source page;
- fetch p50/p99 in process (cold: no cache), and what the call log costs on it;
- HTTP: search QPS from 16 concurrent clients, and the rollout burst (16 clients x 100 mixed calls);
- at scale: corpus generation, store build, snapshot build and bm25s build times and peak RAM.

The Wikispeedia store is built with the real ingest (cached in the work folder); the scaled corpus is
generated from it in SQL: copy c of page i lives on host c<c>.sim.example, its title joins two real
titles, its text mixes 8 sentences of page i with 4 of another page (chosen per copy), its links are page i's
re-keyed (the first 12). 1% more pages than asked are generated, as dedup merges a few.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import config as websim_config  # noqa: E402
from pipeline.ingest.store import Store  # noqa: E402

N_CLIENTS = 16
CALLS_PER_CLIENT = 100
BM25S_BYTES_PER_PAGE = 16_000  # peak build memory per ~2 KB page, measured at 100k pages


# ---- helpers ---------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def timed(fn, items, max_s: float = 30.0) -> dict:
    """Call fn(item) for each item (at most max_s seconds): count, QPS, p50/p99 in ms.

    `cpu_p99_ms` is the p99 of the thread's CPU time per call: on a shared machine the wall-clock p99
    mostly measures how long the scheduler kept this process waiting, the CPU time what a call costs.
    """
    lat, cpu = [], []
    started = time.perf_counter()
    for item in items:
        t0, c0 = time.perf_counter(), time.thread_time()
        fn(item)
        lat.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        if t0 - started > max_s:
            break
    total = time.perf_counter() - started
    return {"n": len(lat), "qps": len(lat) / total, "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "cpu_qps": len(cpu) / max(sum(cpu), 1e-9), "cpu_p99_ms": pct(cpu, 0.99) * 1e3}


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        return next(int(x.split()[1]) * 1024 for x in f if x.startswith("MemAvailable:"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def run_child(args: list[str]) -> tuple[dict, float, float]:
    """Run this script's hidden subcommand in a child: (its JSON answer, seconds, peak RSS in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"child {args} failed with status {status}")
    return json.loads(out.decode().strip().splitlines()[-1]), time.perf_counter() - started, usage.ru_maxrss / 1024


def line(label: str, d: dict) -> str:
    cpu = f"   | per CPU-s {d['cpu_qps']:>6.0f}, cpu p99 {d['cpu_p99_ms']:5.2f} ms" if "cpu_qps" in d else ""
    return (f"  {label:<44} {d['qps']:>7.0f}/s   p50 {d['p50_ms']:6.2f} ms   p99 {d['p99_ms']:6.2f} ms{cpu}"
            f"   (n={d['n']})")


# ---- corpora ---------------------------------------------------------------------------------

def wikispeedia_store(workdir: Path) -> Path:
    from pipeline.ingest.run import ingest_clickstream, ingest_warc

    path = workdir / "wikispeedia_store.duckdb"
    if path.exists():
        return path
    data = websim_config.sample_data_dir()
    tmp = workdir / "wikispeedia_store.tmp.duckdb"
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        p.unlink(missing_ok=True)
    store = Store(tmp)
    started = time.perf_counter()
    for warc in sorted((data / "warc").glob("wikispeedia-*.warc.gz")):
        report = ingest_warc(warc, store, workers=os.cpu_count() or 2)
        print(f"  ingested {warc.name}: {report.kept} pages in {report.seconds:.0f} s", flush=True)
    ingest_clickstream(data / "clickstream" / "clickstream-wikispeedia-paths.tsv", store, lang="en")
    store.build_pages()
    store.build_link_graph()
    print(f"  Wikispeedia store built in {time.perf_counter() - started:.0f} s", flush=True)
    store.parts.rename(Store(path).parts)  # the partitions travel with the built file
    tmp.rename(path)
    return path


def scaled_store(src: Path, workdir: Path, total: int) -> tuple[Path, dict]:
    """A copy of the Wikispeedia store grown to `total` pages with `bench_store.synthesise`'s perturbed copies of
    its pages on other hosts (synthetic partitions written through the store's own partition writer)."""
    import shutil

    from bench_store import synthesise

    path = workdir / f"scaled_{total}_store.duckdb"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return path, json.loads(info_path.read_text())
    path.unlink(missing_ok=True)
    store = Store(path)
    shutil.rmtree(store.parts, ignore_errors=True)
    shutil.copytree(Store(src).parts, store.parts, ignore=shutil.ignore_patterns(".locks"))
    shutil.copy2(src, path)
    t0 = time.perf_counter()
    info = synthesise(store, total)
    info["generate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    info["pages"] = store.build_pages()["pages"]
    info["edges"] = store.build_link_graph()["edges"]
    info["store_build_s"] = time.perf_counter() - t0
    info_path.write_text(json.dumps(info))
    return path, info


# ---- queries and quality ---------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def make_queries(snapshot, n_titles: int, n_sentences: int, seed: int = 0, host: str | None = None) -> dict:
    rng = random.Random(seed)
    where = f"WHERE host = '{host}'" if host else ""
    with snapshot.connect() as con:
        rows = con.execute(f"""SELECT page_id, title, text FROM pages {where}
                               QUALIFY count(*) OVER (PARTITION BY title) = 1 AND title <> ''
                               ORDER BY page_id""").fetchall()
    titles = [(t, pid) for pid, t, _ in rng.sample(rows, min(n_titles, len(rows)))]
    sentences = []
    for pid, _, text in rng.sample(rows, min(n_sentences * 2, len(rows))):
        cands = [s for s in _SENTENCE.split(text) if 8 <= len(s.split()) <= 30]
        if cands:
            sentences.append((rng.choice(cands), pid))
        if len(sentences) >= n_sentences:
            break
    qa = websim_config.sample_data_dir() / "qa" / "hotpotqa-dev-sample500.jsonl"
    hotpot = [json.loads(x)["question"] for x in qa.read_text().splitlines() if x.strip()]
    return {"titles": titles, "sentences": sentences, "hotpot": hotpot}


def quality(search, queries: dict, text_of) -> dict:
    """Title rank-1 and sentence recall@10 of the source page; and, as a scaled corpus copies sentences
    into many pages, how often some top-10 page holds the sentence at all."""
    t1 = sum(1 for q, pid in queries["titles"] if (ids := search(q, 10)) and ids[0] == pid)
    r10 = held = 0
    for q, pid in queries["sentences"]:
        ids = search(q, 10)
        r10 += pid in ids
        held += pid in ids or any(q in text_of(i) for i in ids)
    n_t, n_s = max(len(queries["titles"]), 1), max(len(queries["sentences"]), 1)
    return {"title_at_1": t1 / n_t, "sentence_recall_at_10": r10 / n_s, "sentence_found_at_10": held / n_s}


def engine_figures(label: str, search, queries: dict, max_s: float, text_of) -> dict:
    q = quality(search, queries, text_of)
    mixed = [x for x, _ in queries["titles"][:1000]] + [x for x, _ in queries["sentences"][:1000]] + queries["hotpot"]
    random.Random(1).shuffle(mixed)
    speed = timed(lambda x: search(x, 10), mixed, max_s)
    hot = timed(lambda x: search(x, 10), queries["hotpot"], max_s)
    print(line(f"{label}: mixed queries", speed))
    print(line(f"{label}: HotpotQA questions", hot))
    print(f"  {label}: title rank-1 {q['title_at_1']:.3f}   sentence recall@10 {q['sentence_recall_at_10']:.3f} "
          f"(source page; a page holding the sentence: {q['sentence_found_at_10']:.3f})")
    return {**q, "mixed": speed, "hotpot": hot}


def bm25s_batched(index_dir: Path, queries: list[str]) -> dict:
    import bm25s

    from pipeline.simulator.search_index import query_terms

    model = bm25s.BM25.load(str(index_dir / "bm25s"), mmap=True)
    tokens = [t for q in queries if (t := [x for x in query_terms(q) if x in model.vocab_dict])]
    t0 = time.perf_counter()
    model.retrieve(tokens, k=10, show_progress=False, n_threads=os.cpu_count() or 1)
    return {"n": len(tokens), "qps": len(tokens) / (time.perf_counter() - t0)}


# ---- in-process simulator --------------------------------------------------------------------

def simulator_figures(snapshot, queries: dict, max_s: float, tmp: Path) -> dict:
    from pipeline.simulator.calllog import CallLog
    from pipeline.simulator.web import Simulator

    out = {}
    rss0 = rss_mb()
    t0 = time.perf_counter()
    sim = Simulator(snapshot, cache_size=0)
    out["open_s"] = time.perf_counter() - t0
    out["open_rss_mb"] = rss_mb() - rss0
    qs = queries["hotpot"] + [x for x, _ in queries["sentences"][:500]]
    out["search"] = timed(lambda q: sim.search(q, 10), qs, max_s)
    print(line("Simulator.search (k=10, snippets, no cache)", out["search"]))
    with snapshot.connect() as con:
        urls = [r[0] for r in con.execute("SELECT url FROM pages USING SAMPLE 3000 ROWS (reservoir, 7)").fetchall()]
    out["fetch"] = timed(sim.fetch, urls, max_s)
    print(line("Simulator.fetch (cold, no cache)", out["fetch"]))
    cached = Simulator(snapshot)
    for u in urls[:500]:
        cached.fetch(u)
    out["fetch_cached"] = timed(cached.fetch, urls[:500] * 4, max_s)
    print(line("Simulator.fetch (LRU hit)", out["fetch_cached"]))
    logged = Simulator(snapshot, cache_size=0, call_log=CallLog(tmp / "calllog", snapshot.id))
    base, with_log = [], []
    for _ in range(3):  # interleaved, best of 3, in CPU time: the machine is shared
        for target, fn in ((base, sim.fetch), (with_log, lambda u: logged.fetch(u, trajectory="bench"))):
            c0 = time.thread_time()
            for u in urls[:1500]:
                fn(u)
            target.append((time.thread_time() - c0) / 1500)
    logged.close()
    out["calllog_overhead"] = min(with_log) / min(base) - 1
    print(f"  call log overhead on cold fetch (CPU time): {out['calllog_overhead'] * 100:+.1f}% "
          f"({min(base) * 1e6:.0f} vs {min(with_log) * 1e6:.0f} us per fetch)")
    out["rss_mb_after"] = rss_mb()
    return out


# ---- HTTP ----------------------------------------------------------------------------------------

class Server:
    def __init__(self, snapshot_path: Path, workers: int, log_calls: bool = True):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        code = (f"from pipeline.simulator.server import serve; serve({str(snapshot_path)!r}, port={self.port}, "
                f"workers={workers}, log_calls={log_calls})")
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                for _ in range(workers * 4):  # every worker up
                    if http_get(self.port, "/healthz")[0] != 200:
                        raise OSError
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its worker processes."""
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo += [int(x) for x in f.read().split()]
            except OSError:
                pass
        total = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


_STATUS = re.compile(rb'\{"status":(\d+)')


class RawConnection:
    """A keep-alive HTTP/1.1 client that parses no more than it must (status line, Content-Length): the burst
    measures the server, and http.client spends more CPU per response (email.parser headers) than the server does.
    The answer's own status is read from the body's first field (orjson keeps the dataclass order)."""

    def __init__(self, port: int):
        self.port = port
        self.sock = None
        self.file = None

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def request(self, method: str, path: str, body: str | None) -> tuple[int, bytes]:
        payload = body.encode() if body else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(payload)}\r\n"
        if payload:
            head += "Content-Type: application/json\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + payload)
        status = int(self.file.readline().split(b" ", 2)[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, self.file.read(length)

    def close(self) -> None:
        for f in (self.file, self.sock):
            if f is not None:
                f.close()


def run_clients(server: "Server", plans: list[list[tuple[str, str, str | None]]]) -> dict:
    """One thread per plan, keep-alive connections, all released at once: wall time, latencies, errors, and
    the CPU seconds the server and the clients used (what the run costs on a machine nobody else uses)."""
    port = server.port
    lat: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(len(plans) + 1)

    def client(plan):
        conn = RawConnection(port)
        try:
            conn.connect()
        finally:
            barrier.wait()  # released even when connecting failed: the request loop reports the errors
        mine = []
        for method, path, body in plan:
            t0 = time.perf_counter()
            try:
                status, data = conn.request(method, path, body)
                m = _STATUS.match(data)
                if status != 200 or m is None or int(m.group(1)) not in (200, 301, 404):
                    errors.append(f"{status} {data[:100]!r}")
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
                conn.close()
                conn = RawConnection(port)
                conn.connect()
            mine.append(time.perf_counter() - t0)
        lat.extend(mine)
        conn.close()

    threads = [threading.Thread(target=client, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    barrier.wait()
    t0, server_cpu0, client_cpu0 = time.perf_counter(), server.cpu_seconds(), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server_cpu, client_cpu = server.cpu_seconds() - server_cpu0, time.process_time() - client_cpu0
    n = sum(len(p) for p in plans)
    return {"n": n, "wall_s": wall, "qps": n / wall, "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "server_cpu_s": server_cpu, "client_cpu_s": client_cpu, "errors": len(errors), "error_sample": errors[:3]}


def burst_ops(queries: dict, urls: list[str], seed: int) -> list[list[tuple[str, dict]]]:
    """16 agents x 100 calls: 40% search, 40% fetch, 20% links, like a search agent's rollout."""
    rng = random.Random(seed)
    texts = queries["hotpot"] + [t for t, _ in queries["titles"]]
    plans = []
    for _ in range(N_CLIENTS):
        plan = []
        for i in range(CALLS_PER_CLIENT):
            r = rng.random()
            if r < 0.4:
                plan.append(("search", {"query": rng.choice(texts), "k": 5}))
            elif r < 0.8:
                plan.append(("fetch", {"url": rng.choice(urls)}))
            else:
                plan.append(("links", {"url": rng.choice(urls)}))
        plans.append(plan)
    return plans


def http_plan(ops: list[tuple[str, dict]]) -> list[tuple[str, str, str | None]]:
    out = []
    for op, args in ops:
        if op == "search":
            out.append(("GET", "/search?" + urlencode(args), None))
        elif op == "fetch":
            out.append(("GET", "/fetch?url=" + quote(args["url"], safe=""), None))
        else:
            out.append(("POST", "/links", json.dumps(args)))
    return out


def burst_plans(queries: dict, urls: list[str], seed: int) -> list[list[tuple[str, str, str | None]]]:
    return [http_plan(p) for p in burst_ops(queries, urls, seed)]


def in_process_burst(sim, plans: list[list[tuple[str, dict]]]) -> float:
    """The same burst on one in-process Simulator, one thread per agent, all released at once: wall seconds."""
    barrier = threading.Barrier(len(plans) + 1)

    def agent(plan):
        barrier.wait()
        for op, args in plan:
            sim.call(op, dict(args))

    threads = [threading.Thread(target=agent, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def http_figures(snapshot, queries: dict, workers_list: list[int], bursts: int) -> dict:
    with snapshot.connect() as con:
        urls = [r[0] for r in con.execute("SELECT url FROM pages USING SAMPLE 5000 ROWS (reservoir, 3)").fetchall()]
    out = {}
    for workers in workers_list:
        server = Server(snapshot.path, workers)
        try:
            search_plans = [[("GET", "/search?" + urlencode({"query": q, "k": 10}), None)
                             for q in queries["hotpot"][c::N_CLIENTS] * 3] for c in range(N_CLIENTS)]
            s = run_clients(server, search_plans)
            print(line(f"HTTP search, {N_CLIENTS} clients, {workers} worker(s)", s) + f"   errors {s['errors']}")
            runs = [run_clients(server, burst_plans(queries, urls, seed)) for seed in range(bursts)]
            walls = [r["wall_s"] for r in runs]
            cpu = statistics.median(r["server_cpu_s"] + r["client_cpu_s"] for r in runs)
            print(f"  rollout burst {N_CLIENTS}x{CALLS_PER_CLIENT} mixed calls, {workers} worker(s): "
                  f"median {statistics.median(walls):.2f} s, best {min(walls):.2f} s, worst {max(walls):.2f} s "
                  f"(p99 call {statistics.median(r['p99_ms'] for r in runs):.1f} ms), "
                  f"errors {sum(r['errors'] for r in runs)}; CPU per burst {cpu:.2f} s "
                  f"(server {statistics.median(r['server_cpu_s'] for r in runs):.2f} s)")
            out[f"workers_{workers}"] = {"search": s, "burst_walls_s": walls, "burst_cpu_s": cpu,
                                         "burst_errors": sum(r["errors"] for r in runs), "bursts": runs}
        finally:
            server.stop()
    return out


# ---- the simulator against its own index, batched, and HTTP against in-process (issue 16) ----------------------

def snippet_coverage(sim, queries: list[str]) -> dict:
    """Of the query terms a result page has (whole tokens), the share its snippet holds: the term map's snippets
    against the text scan they replaced (make_snippet), on the same results."""
    from pipeline.simulator.search_index import make_snippet, query_terms

    token = re.compile(r"[^\W_]+")
    new = old = have = 0
    for q in queries:
        terms = [t for t in query_terms(q) if len(t) > 1]
        for r in sim.search(q, 10).results:
            text = sim.files.page(r.page_id, ("text",))["text"]
            page_tokens = set(token.findall(text.lower()))
            has = [t for t in terms if t in page_tokens]
            have += len(has)
            got, before = (set(token.findall(x.lower())) for x in (r.snippet, make_snippet(text, terms, sim.snippet_chars)))
            new += sum(t in got for t in has)
            old += sum(t in before for t in has)
    return {"terms": have, "new": new / max(have, 1), "old": old / max(have, 1)}


def simulator_vs_index(snapshot, bm25s_snapshot, queries: dict, max_s: float) -> dict:
    """Simulator.search (k=10, snippets, no cache) against its raw index, and search_many against bm25s-numba's
    batched retrieve, on titles, sentences and HotpotQA questions. Ratios in CPU time too: on a shared machine wall
    time mostly measures the neighbours."""
    from pipeline.simulator.search_index import _query_terms
    from pipeline.simulator.web import Simulator

    sim = Simulator(snapshot, cache_size=0)
    sets = {"titles": [q for q, _ in queries["titles"][:2000]], "sentences": [q for q, _ in queries["sentences"]],
            "hotpot": queries["hotpot"]}
    out = {}
    print(f"  Simulator.search with snippets vs its raw {sim.index.kind} index (k=10, one query at a time, warm, "
          f"best of 3 alternating, load {os.getloadavg()[0]:.1f}):")
    for name, qs in sets.items():
        # Steady state, as a server serving a trainer is: one untimed pass touches the index and the pages these
        # queries reach (the memory-mapped files' first touches are page faults, paid once per process), then
        # raw and Simulator alternate, best of 3 each, so a neighbour's burst does not land on one side only.
        for q in qs:
            sim.search(q, 10)
        raw = full = None
        for _ in range(3):
            _query_terms.cache_clear()  # each loop parses its queries afresh
            r = timed(lambda q: sim.index.search(q, 10), qs, max_s)
            _query_terms.cache_clear()
            f = timed(lambda q: sim.search(q, 10), qs, max_s)
            raw = r if raw is None or r["cpu_qps"] > raw["cpu_qps"] else raw
            full = f if full is None or f["cpu_qps"] > full["cpu_qps"] else full
        ratio, cpu_ratio = full["qps"] / raw["qps"], full["cpu_qps"] / raw["cpu_qps"]
        print(f"    {name:<10} raw {raw['qps']:>7.0f}/s (per CPU-s {raw['cpu_qps']:>6.0f})   Simulator.search "
              f"{full['qps']:>7.0f}/s (per CPU-s {full['cpu_qps']:>6.0f})   ratio x{ratio:.2f} (CPU x{cpu_ratio:.2f}; "
              f"target >= 0.5)")
        out[name] = {"raw": raw, "simulator": full, "ratio": ratio, "cpu_ratio": cpu_ratio}
    cov = snippet_coverage(sim, sets["hotpot"][:300] + sets["sentences"][:300])
    print(f"    snippets hold {cov['new']:.3f} of the query terms their pages have (text scan before: "
          f"{cov['old']:.3f}; {cov['terms']} page terms over 600 queries x 10 results)")
    out["snippet_coverage"] = cov
    if bm25s_snapshot is not None:
        import bm25s

        from pipeline.simulator.search_index import query_terms

        model = bm25s.BM25.load(str(bm25s_snapshot.path / "index" / "bm25s"), mmap=True, backend="numba")
        model.retrieve([["warm"]], k=10, show_progress=False, n_threads=os.cpu_count() or 1)
        print(f"  batched, {os.cpu_count()} threads: Simulator.search_many (snippets) vs bm25s-numba retrieve (ids only):")
        for name, qs in sets.items():
            tokens = [t for q in qs if (t := [x for x in query_terms(q) if x in model.vocab_dict])]
            sim.search_many(qs[:50], 10)
            best_many = best_bm = float("inf")
            for _ in range(3):  # best of 3: the machine is shared
                t0 = time.perf_counter()
                sim.search_many(qs, 10)
                best_many = min(best_many, time.perf_counter() - t0)
                t0 = time.perf_counter()
                model.retrieve(tokens, k=10, show_progress=False, n_threads=os.cpu_count() or 1)
                best_bm = min(best_bm, time.perf_counter() - t0)
            many, bm = len(qs) / best_many, len(tokens) / best_bm
            print(f"    {name:<10} search_many {many:>7.0f}/s   bm25s-numba batched {bm:>7.0f}/s   ratio x{many / bm:.2f} "
                  f"(target >= 1)")
            out[f"batched_{name}"] = {"search_many_qps": many, "bm25s_numba_qps": bm, "ratio": many / bm}
    return out


def burst_in_process_vs_http(snapshot, queries: dict, workers_list: list[int], bursts: int) -> dict:
    """The rollout burst (16 agents x 100 mixed calls) in process and over HTTP, the same calls, interleaved runs,
    no call log on either side: what HTTP adds."""
    from pipeline.simulator.web import Simulator

    with snapshot.connect() as con:
        urls = [r[0] for r in con.execute("SELECT url FROM pages USING SAMPLE 5000 ROWS (reservoir, 3)").fetchall()]
    out = {}
    servers = {w: Server(snapshot.path, w, log_calls=False) for w in workers_list}
    try:
        walls: dict[str, list[float]] = {"in_process": [], **{f"http_{w}": [] for w in workers_list}}
        cpu: dict[int, list[tuple[float, float]]] = {}
        in_cpu: list[float] = []
        for seed in range(bursts):
            ops = burst_ops(queries, urls, 100 + seed)
            # A fresh simulator per run: its page cache starts cold, as each server's starts warm on earlier runs'
            # URLs only (different seeds draw mostly different pages).
            c0 = time.process_time()
            walls["in_process"].append(in_process_burst(Simulator(snapshot), ops))
            in_cpu.append((time.process_time() - c0) / sum(len(p) for p in ops))
            for w, server in servers.items():
                r = run_clients(server, [http_plan(p) for p in ops])
                walls[f"http_{w}"].append(r["wall_s"])
                cpu.setdefault(w, []).append((r["server_cpu_s"] / r["n"], r["client_cpu_s"] / r["n"]))
                if r["errors"]:
                    print(f"    HTTP errors: {r['errors']} {r['error_sample']}")
        base = statistics.median(walls["in_process"])
        print(f"  rollout burst {N_CLIENTS}x{CALLS_PER_CLIENT} mixed calls, median of {bursts} "
              f"(load {os.getloadavg()[0]:.1f}): in process {base:.3f} s")
        for w in workers_list:
            m = statistics.median(walls[f"http_{w}"])
            server_us = statistics.median(c[0] for c in cpu[w]) * 1e6
            client_us = statistics.median(c[1] for c in cpu[w]) * 1e6
            print(f"    over HTTP, {w} worker(s): {m:.3f} s   ratio x{m / base:.2f} (target <= 1.3); CPU per call: "
                  f"server {server_us:.0f} us, clients {client_us:.0f} us, in process {statistics.median(in_cpu) * 1e6:.0f} us")
            out[f"http_{w}"] = {"median_s": m, "ratio": m / base}
        out["in_process_median_s"] = base
        out["walls"] = walls
    finally:
        for server in servers.values():
            server.stop()
    return out


# ---- one corpus --------------------------------------------------------------------------------

def bench_corpus(name: str, store: Path, workdir: Path, args, n_titles: int, n_sentences: int,
                 quality_host: str | None = None) -> dict:
    from pipeline.simulator.search_index import open_index
    from pipeline.simulator.web import PageFiles
    from pipeline.simulator.snapshot import Snapshot

    print(f"\n== {name} ==", flush=True)
    root = workdir / f"snapshots_{name}"
    if not args.reuse_snapshots:
        shutil.rmtree(root, ignore_errors=True)
    res = {}
    kinds = ["tantivy", "bm25s"]
    with Store(store).connect(read_only=True) as con:
        n_pages = con.execute("SELECT count(*) FROM pages").fetchall()[0][0]
    need_gb, free_gb = (1.5e9 + n_pages * BM25S_BYTES_PER_PAGE) / 1e9, mem_available() / 1e9
    if need_gb > 0.7 * free_gb:
        # bm25s holds every token of the corpus in Python lists while it builds; on a shared machine
        # running out of memory would kill other people's work, so it is left out and said so.
        print(f"  bm25s left out at {n_pages:,} pages: its build needs ~{need_gb:.0f} GB, {free_gb:.0f} GB available")
        kinds = ["tantivy"]
    if "engines" not in args.parts and "index" not in args.parts:  # the burst alone: no bm25s needed
        kinds = ["tantivy"]
    for kind in kinds:
        if args.reuse_snapshots and (info := _built_snapshot(root / kind)) is not None:
            res[f"build_{kind}"] = info
            print(f"  snapshot with {kind}: {info['path']} from an earlier run (--reuse-snapshots)")
            continue
        info, secs, peak = run_child(["_build", str(store), str(root / kind), kind])
        res[f"build_{kind}"] = {"seconds": secs, "peak_rss_mb": peak, **info}
        print(f"  snapshot with {kind}: built in {secs:.1f} s (index {info['index_s']:.1f} s, "
              f"{info['index_bytes'] / 1e6:.0f} MB), peak RSS {peak:.0f} MB, {info['pages']} pages, "
              f"{info['edges']} edges", flush=True)
    snap = {k: Snapshot.open(Path(res[f"build_{k}"]["path"])) for k in kinds}
    queries = make_queries(snap["tantivy"], n_titles, n_sentences, host=quality_host)
    print(f"  queries: {len(queries['titles'])} titles, {len(queries['sentences'])} sentences, "
          f"{len(queries['hotpot'])} HotpotQA questions"
          + (f" (titles and sentences from {quality_host} pages)" if quality_host else ""))
    engines = {}
    files = PageFiles(snap["tantivy"])
    text_of = lambda pid: files.page(pid, ("text",))["text"]  # noqa: E731
    for kind in (kinds if "engines" in args.parts else []):
        gc.collect()
        rss0 = rss_mb()
        index = open_index(snap[kind].path / "index")
        engines[kind] = engine_figures(kind, lambda q, k, ix=index: [pid for pid, _ in ix.search(q, k)], queries,
                                       args.max_seconds, text_of)
        engines[kind]["rss_mb"] = rss_mb() - rss0
        del index
    if "bm25s" in engines and "tantivy" in engines:
        batched = bm25s_batched(snap["bm25s"].path / "index", queries["hotpot"])
        print(f"  bm25s batched retrieve (all HotpotQA questions in one call, {os.cpu_count()} threads): "
              f"{batched['qps']:.0f} q/s")
        t, b = engines["tantivy"], engines["bm25s"]
        print(f"  ratio tantivy/bm25s: mixed QPS x{t['mixed']['qps'] / b['mixed']['qps']:.2f} "
              f"(per CPU-s x{t['mixed']['cpu_qps'] / b['mixed']['cpu_qps']:.2f}), "
              f"HotpotQA QPS x{t['hotpot']['qps'] / b['hotpot']['qps']:.2f} "
              f"(per CPU-s x{t['hotpot']['cpu_qps'] / b['hotpot']['cpu_qps']:.2f}), "
              f"p99 x{t['mixed']['p99_ms'] / b['mixed']['p99_ms']:.2f}, "
              f"cpu p99 x{t['mixed']['cpu_p99_ms'] / b['mixed']['cpu_p99_ms']:.2f}; "
              f"title rank-1 {t['title_at_1']:.3f} vs {b['title_at_1']:.3f}, "
              f"sentence recall@10 {t['sentence_recall_at_10']:.3f} vs {b['sentence_recall_at_10']:.3f} "
              f"(found {t['sentence_found_at_10']:.3f} vs {b['sentence_found_at_10']:.3f})")
        res["bm25s_batched"] = batched
    res["engines"] = engines
    print("\n  -- the simulator against its index, batched, HTTP against in-process --")
    if "index" in args.parts:
        res["simulator_vs_index"] = simulator_vs_index(snap["tantivy"], snap.get("bm25s"), queries, args.max_seconds)
    if "burst" in args.parts:
        res["burst"] = burst_in_process_vs_http(snap["tantivy"], queries, args.http_workers, args.bursts)
    if args.headline_only:
        return res
    res["simulator"] = simulator_figures(snap["tantivy"], queries, args.max_seconds, workdir)
    res["http"] = http_figures(snap["tantivy"], queries, args.http_workers, args.bursts)
    return res


def _built_snapshot(root: Path) -> dict | None:
    """The latest snapshot an earlier run built under `root`, as `_child_build` describes one; None if there is none."""
    from pipeline.simulator.snapshot import Snapshot

    try:
        m = Snapshot.open(root / (root / "LATEST").read_text().strip()).manifest
    except (OSError, ValueError):
        return None
    return {"path": str(root / m["id"]), "pages": m["counts"]["pages"], "edges": m["counts"]["edges"], "seconds": 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=str(websim_config.data_dir() / "bench_simulator"))
    parser.add_argument("--store", help="an existing Wikispeedia store (default: built with the real ingest)")
    parser.add_argument("--scale", type=int, default=1_000_000, help="pages of the scaled corpus (0: skip)")
    parser.add_argument("--http-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time limit of each timed loop")
    parser.add_argument("--only-scaled", action="store_true", help="skip the Wikispeedia figures")
    parser.add_argument("--headline-only", action="store_true",
                        help="engines, Simulator vs its index, batched, burst in process vs HTTP; nothing else")
    parser.add_argument("--reuse-snapshots", action="store_true",
                        help="serve the snapshots an earlier run built in the work folder instead of building them")
    parser.add_argument("--parts", nargs="+", choices=["engines", "index", "burst"], default=["engines", "index", "burst"],
                        help="of the headline figures, these: engines side by side, Simulator.search against its index "
                             "and batched against bm25s, the burst in process against HTTP")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; work folder {workdir}")

    store = Path(args.store) if args.store else wikispeedia_store(workdir)
    results = {}
    if not args.only_scaled:
        results["wikispeedia"] = bench_corpus("wikispeedia", store, workdir, args, n_titles=5000, n_sentences=1000)
    if args.scale:
        print(f"\n== generating a {args.scale:,}-page corpus ==", flush=True)
        big, info = scaled_store(store, workdir, args.scale)
        print(f"  generated in {info['generate_s']:.0f} s; pages + link graph built in {info['store_build_s']:.0f} s: "
              f"{info['pages']:,} pages, {info['edges']:,} edges", flush=True)
        results["scaled"] = {"store": info, **bench_corpus(
            f"scaled_{args.scale}", big, workdir, args, n_titles=2000, n_sentences=1000,
            quality_host="en.wikipedia.org")}
    out = workdir / "bench_simulator.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nall figures in {out}")
    return 0


def _child_build(store: str, root: str, kind: str) -> None:
    from pipeline.simulator.search_index import IndexConfig
    from pipeline.simulator.snapshot import build_snapshot

    snap = build_snapshot(store, root, index=IndexConfig(kind=kind))
    m = snap.manifest
    print(json.dumps({"path": str(snap.path), "pages": m["counts"]["pages"], "edges": m["counts"]["edges"],
                      "index_bytes": m["index"]["bytes"], "index_s": m["timings"]["index_s"],
                      "copy_s": m["timings"]["copy_s"], "serve_files_s": m["timings"]["serve_files_s"],
                      "bytes": m["bytes"]}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_build":
        _child_build(*sys.argv[2:5])
        sys.exit(0)
    sys.exit(main())
