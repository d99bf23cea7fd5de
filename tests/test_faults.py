"""Faults: a generation run killed with SIGKILL midway and run again loses and duplicates nothing; two runs that
write the store at once are serialised by the store pool and leave a consistent store; invalid config fails with
a clear error before any work starts.

The generation run is the real `candidate_questions` asset in its own process, talking through the real
`openai` backend and response cache to a small OpenAI-compatible server in this process that answers slowly
(like an editor: the question it is asked to polish, one phrase reworded) and counts what it is asked.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from assets import defs
from tests.support import reword, sample

REPO = Path(__file__).resolve().parents[1]


# ---- 1. kill -9 of a generation run, then a re-run --------------------------------------------------------------


class CopierServer(ThreadingHTTPServer):
    """`/v1/chat/completions` answering polish prompts like an editor (`reword`), `delay_s` per request."""

    daemon_threads = True

    def __init__(self, delay_s: float):
        super().__init__(("127.0.0.1", 0), _CopierHandler)
        self.delay_s = delay_s
        self.prompts: dict[int, list[str]] = {1: [], 2: []}  # the user message of each request, by run, on arrival
        self.run = 1
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _CopierHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-request: what this test does
            pass

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "copier", "object": "model"}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = request["messages"][-1]["content"]
        with self.server.lock:
            self.server.prompts[self.server.run].append(user)
        time.sleep(self.server.delay_s)
        text = reword(user)
        self._send({"id": "x", "object": "chat.completion", "model": "copier",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20}})


GENERATE = textwrap.dedent("""
    import sys
    import dagster as dg
    from assets.llm_resource import LLMResource
    from assets.questions import candidate_questions
    from assets.simulator import SimulatorResource

    snapshot, base_url = sys.argv[1:3]
    result = dg.materialize(
        [candidate_questions], instance=dg.DagsterInstance.get(),
        resources={"simulator": SimulatorResource(snapshot=snapshot),
                   "llm": LLMResource(backend="openai", base_url=base_url, model="copier",
                                      backend_options={"max_concurrency": 2})},
        run_config={"ops": {"candidate_questions": {"config": {"chunk_size": 4, "samples": 1}}}})
    print("SUCCESS" if result.success else "FAILED")
""")


def _cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    con = sqlite3.connect(path, timeout=30)
    try:  # the file exists a moment before its table does
        return con.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        con.close()


def _generate(snapshot_path: str, base_url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", GENERATE, snapshot_path, base_url], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_generation_killed_midway_resumes_from_the_cache_without_loss_or_duplicates(
        wikispeedia_snapshot, tmp_path, monkeypatch):  # noqa: F811
    from assets.questions import evidence_chains
    from assets.resources import PathsResource
    from assets.simulator import SimulatorResource
    from pipeline.synthesis import questions as q

    monkeypatch.setenv("WEBSIM_HOME", str(tmp_path / "home"))
    snap = str(wikispeedia_snapshot.path)
    chains = dg.materialize([evidence_chains], resources={"simulator": SimulatorResource(snapshot=snap),
                                                          "paths": PathsResource()},
                            instance=dg.DagsterInstance.get(),
                            run_config={"ops": {"evidence_chains": {"config": {"count": 24, "seed": 7}}}})
    assert chains.success
    seeds_path = Path(chains.asset_materializations_for_node("evidence_chains")[0].metadata["path"].value)
    candidates_path = seeds_path.with_name("candidate_questions.jsonl")
    _, chain_rows = q.read_jsonl(seeds_path)
    total = len(chain_rows)
    assert total >= 12
    cache = tmp_path / "home" / "cache" / "llm_responses.sqlite"

    server = CopierServer(delay_s=0.4)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # first run: killed with SIGKILL once a few chunks are in the cache
        proc = _generate(snap, server.base_url)
        deadline = time.monotonic() + 240
        while _cached_rows(cache) < 8:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no chunk reached the cache"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        cached = _cached_rows(cache)
        assert 8 <= cached < total and not candidates_path.exists()
        assert len(server.prompts[1]) >= cached  # requests in flight at the kill were answered but never stored

        # second run: only what the cache lacks is generated again
        with server.lock:
            server.run = 2
        proc = _generate(snap, server.base_url)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "SUCCESS" in out, out[-3000:]
    finally:
        server.shutdown()
    asked_second = server.prompts[2]
    assert len(asked_second) == total - cached  # cached responses were reused, none paid twice
    assert len(set(asked_second)) == len(asked_second)
    assert _cached_rows(cache) == total

    _, candidates = q.read_jsonl(candidates_path)
    ids = [c["candidate_id"] for c in candidates]
    assert len(ids) == total and len(set(ids)) == total  # nothing lost, nothing twice
    assert sorted(ids) == sorted(c["seed_id"] for c in chain_rows)
    assert all(c["writer"] == "copier" and c["question"] == reword(c["template_question"]) for c in candidates)


# ---- 2. two runs that write the store at once -------------------------------------------------------------------

WARCS = ("iana-2014.warc.gz", "datagovuk-2014.warc.gz")
INGEST = textwrap.dedent("""
    import sys
    import dagster as dg
    from assets import defs

    result = defs.resolve_job_def("warc_ingest").execute_in_process(
        partition_key=sys.argv[1], instance=dg.DagsterInstance.get(), raise_on_error=False,
        run_config={"ops": {"warc_pages": {"config": {"workers": 1}}}})
    print("RUN", result.run_id, "SUCCESS" if result.success else "FAILED")
""")


def test_two_runs_writing_the_store_at_once_both_complete_without_waiting(tmp_path, monkeypatch):
    from assets.cli import ensure_dagster_home
    from pipeline.ingest.store import Store

    folder = tmp_path / "warc"
    folder.mkdir()
    for name in WARCS:
        (folder / name).symlink_to(sample("warc", name))
    monkeypatch.setenv("WEBSIM_WARC_DIRS", str(folder))
    monkeypatch.setenv("WEBSIM_STORE", str(tmp_path / "store.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    ensure_dagster_home()  # the project's dagster.yaml
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("warc_files", list(WARCS))

    procs = [subprocess.Popen([sys.executable, "-c", INGEST, key], cwd=REPO, env=dict(os.environ),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for key in WARCS]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    run_ids = []
    for out in outs:
        line = next((x for x in out.splitlines() if x.startswith("RUN ")), "")
        assert line.endswith("SUCCESS"), out[-3000:]
        run_ids.append(line.split()[1])

    # each partition writes files of its own (issue 18): neither run waited for the other's partition
    # (tests/pipeline/ingest/test_store.py shows two writers inside the store at the same moment); the one wait
    # allowed is the very first ingest creating the store's folder under the build lock, which two first runs share
    waits = [r.user_message for run_id in run_ids for r in instance.all_logs(run_id)
             if "waiting for the store" in (r.user_message or "")]
    assert not [w for w in waits if "build lock" not in w], waits

    # and the store is whole: both partitions, each exactly as its ingest counted it
    store = Store(tmp_path / "store.duckdb")
    kept = {r["partition"]: int(r["value"]) for r in store.query(
        "SELECT partition, value FROM partition_stats WHERE source = 'warc' AND stat = 'pages_kept'")}
    rows = {r["partition"]: r["n"] for r in store.query(
        "SELECT partition, count(*) AS n FROM warc_pages GROUP BY partition")}
    links = {r["partition"]: int(r["value"]) for r in store.query(
        "SELECT partition, value FROM partition_stats WHERE source = 'warc' AND stat = 'links'")}
    link_rows = {r["partition"]: r["n"] for r in store.query(
        "SELECT partition, count(*) AS n FROM warc_links GROUP BY partition")}
    assert set(rows) == set(WARCS) and rows == kept and link_rows == links
    assert store.query("SELECT count(*) AS n FROM (SELECT partition, record_id FROM warc_pages "
                       "GROUP BY ALL HAVING count(*) > 1)")[0]["n"] == 0
    instance.dispose()


# ---- 3. invalid config: a clear error before any work -----------------------------------------------------------


def test_invalid_config_fails_before_any_work(tmp_path, monkeypatch):
    from pipeline.ingest.store import Store

    folder = tmp_path / "warc"
    folder.mkdir()
    warc = "cc-main-2024-22-whirlwind.warc.gz"
    (folder / warc).symlink_to(sample("warc", warc))
    store_path = tmp_path / "store.duckdb"
    monkeypatch.setenv("WEBSIM_WARC_DIRS", str(folder))
    monkeypatch.setenv("WEBSIM_STORE", str(store_path))
    job = defs.resolve_job_def("warc_ingest")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("warc_files", [warc, "missing.warc.gz"])

        # a wrong type is refused by Dagster at launch: no run exists, nothing was opened
        with pytest.raises(dg.DagsterInvalidConfigError, match=r"workers[\s\S]*Int"):
            job.execute_in_process(partition_key=warc, instance=instance,
                                   run_config={"ops": {"warc_pages": {"config": {"workers": "two"}}}})
        assert instance.get_runs_count() == 0 and not store_path.exists()

        assert job.execute_in_process(partition_key=warc, instance=instance).success
        before = Store(store_path).counts()

        # a value out of bounds fails the step as it starts, naming the field; the partition is left as it was
        bad = job.execute_in_process(partition_key=warc, instance=instance, raise_on_error=False,
                                     run_config={"ops": {"warc_pages": {"config": {"workers": -1}}}})
        assert not bad.success
        error = bad.get_step_failure_events()[0].step_failure_data.error
        message = (error.cause or error).message
        assert "workers" in message and "greater than or equal to 1" in message
        logs = [r.user_message for r in instance.all_logs(bad.run_id)]
        assert not any("ingesting" in m for m in logs)  # the asset body never ran
        assert Store(store_path).counts() == before

        # a partition whose file is not under the configured folders names the file and the folders
        missing = job.execute_in_process(partition_key="missing.warc.gz", instance=instance, raise_on_error=False)
        error = missing.get_step_failure_events()[0].step_failure_data.error
        message = (error.cause or error).message
        assert "missing.warc.gz" in message and str(folder) in message
        assert Store(store_path).counts() == before
