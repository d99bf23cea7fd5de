"""A backfill of every WARC partition, run twice through the project's own Dagster jobs, leaves the same store.

The WARC folder is configured the way a user does it (`WEBSIM_WARC_DIRS`) and holds the six small sample WARCs
(every sample file but the four 10 MB Wikispeedia shards, which would take minutes per pass on two cores); the
backfill is what `websim backfill warc_pages --all` runs: one `warc_ingest` run per partition on a persistent
instance, then `store_build`. The second pass goes in the reverse order.
"""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from assets import defs
from assets.resources import InputsResource, StoreResource
from tests.support import SHARED_DATA, sample

STATE_SQL = {
    "warc_pages": "SELECT partition, count(*), bit_xor(md5_number(concat_ws('|', url, http_status, content_hash, "
                  "record_id))) FROM warc_pages GROUP BY ALL ORDER BY ALL",
    "warc_links": "SELECT partition, count(*), bit_xor(md5_number(concat_ws('|', src_record_id, dst_url, anchor, "
                  "ordinal))) FROM warc_links GROUP BY ALL ORDER BY ALL",
    "pages": "SELECT count(*), bit_xor(md5_number(concat_ws('|', page_id, url, content_hash))) FROM pages",
    "url_aliases": "SELECT count(*), bit_xor(md5_number(concat_ws('|', url, page_id, reason))) FROM url_aliases",
    "link_graph": "SELECT count(*), bit_xor(md5_number(concat_ws('|', src_id, dst_id, anchor, clicks))) "
                  "FROM link_graph",
    "rejects": "SELECT source, partition, reason, count(*) FROM rejects GROUP BY ALL ORDER BY ALL",
}


@pytest.fixture
def small_warc_dir(tmp_path, monkeypatch):
    sample("warc")
    folder = tmp_path / "warc"
    folder.mkdir()
    for name in sorted(os.listdir(SHARED_DATA / "warc")):
        if not name.startswith("wikispeedia-"):
            (folder / name).symlink_to(SHARED_DATA / "warc" / name)
    monkeypatch.setenv("WEBSIM_WARC_DIRS", str(folder))
    monkeypatch.setenv("WEBSIM_STORE", str(tmp_path / "store.duckdb"))
    return folder


def _store_state(store) -> dict:
    with store.connect(read_only=True) as con:
        state = {name: con.execute(sql).fetchall() for name, sql in STATE_SQL.items()}
    return {"counts": store.counts(), "partitions": store.partitions_signature(), **state}


def test_backfilling_every_warc_partition_twice_gives_the_same_store(small_warc_dir):
    keys = sorted(InputsResource().warc_files())  # every partition of the configured folder
    assert len(keys) == 6
    store = StoreResource().get()
    assert store.path == small_warc_dir.parent / "store.duckdb"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("warc_files", keys)

        def backfill(order: list[str]) -> dict:
            for key in order:
                result = defs.resolve_job_def("warc_ingest").execute_in_process(partition_key=key, instance=instance)
                assert result.success, key
            assert defs.resolve_job_def("store_build").execute_in_process(instance=instance).success
            return _store_state(store)

        first = backfill(keys)
        second = backfill(keys[::-1])
        counts = first["counts"]
        assert counts["warc_pages"] >= 90 and counts["pages"] >= 50 and counts["link_graph"] > 0
        assert {row[0] for row in first["warc_pages"]} == set(keys)  # every partition holds pages
        assert second == first

        runs = instance.get_run_records(dg.RunsFilter(job_name="warc_ingest"))
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == sorted(keys * 2)
        materialized = instance.get_materialized_partitions(dg.AssetKey("warc_pages"))
        assert materialized == set(keys)


# ---- parallel steps: all 10 sample WARCs, 2 steps at a time, against a serial run ---------------------------------

CAPTURES = 10  # the first captures of each file: every partition and code path, seconds not minutes per pass


def backfill_config(warc_dir, store_path) -> dict:
    """Two steps at a time; folders through resource config, not the environment: a forkserver started by an
    earlier test keeps that test's environment. forkserver: each step forks from a process that has imported the
    code location once (spawn imports it again per step)."""
    preload = ["assets", "pipeline.ingest.extract", "tests.assets.test_backfill"]
    forkserver = {"forkserver": {"preload_modules": preload}}
    return {"execution": {"config": {"max_concurrent": 2, "start_method": forkserver}},
            "resources": {"inputs": {"config": {"warc_dirs": [str(warc_dir)]}},
                          "store": {"config": {"path": str(store_path)}}},
            "ops": {"warc_backfill_step": {"config": {"workers": 1, "max_captures": CAPTURES}}}}


def warc_backfill_multiprocess():
    """Module level, so that `dg.reconstructable` can rebuild the job in each step process."""
    from tests.support import with_executor
    from assets.executors import executor_from_env

    return with_executor(defs, executor_from_env("multiprocess")).resolve_job_def("warc_backfill")


def _built_state(store) -> dict:
    store.build_pages()
    store.build_link_graph()
    return _store_state(store)


@pytest.fixture(scope="module")
def all_warcs(tmp_path_factory):
    sample("warc")
    folder = tmp_path_factory.mktemp("all_warcs")
    for name in sorted(os.listdir(SHARED_DATA / "warc")):
        (folder / name).symlink_to(SHARED_DATA / "warc" / name)
    return folder


@pytest.fixture(scope="module")
def serial_state(all_warcs, tmp_path_factory):
    """The reference: every partition ingested one after the other in this process."""
    from pipeline.ingest.run import ingest_warc
    from pipeline.ingest.store import Store

    store = Store(tmp_path_factory.mktemp("serial") / "store.duckdb")
    keys = sorted(os.listdir(all_warcs))
    assert len(keys) == 10
    for key in keys:
        ingest_warc(all_warcs / key, store, key, workers=1, max_captures=CAPTURES)
    return _built_state(store)


@pytest.fixture
def parallel_env(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    (tmp_path / "dagster_home").mkdir()
    return tmp_path


def _intervals(instance, run_id: str) -> list[tuple[float, float]]:
    """(start, end) of each ingest step of a run, from its event log."""
    start, end = {}, {}
    for record in instance.all_logs(run_id):
        e = record.dagster_event
        if e is not None and e.step_key and e.step_key.startswith("warc_backfill_step["):
            if e.event_type_value == "STEP_START":
                start[e.step_key] = record.timestamp
            elif e.event_type_value == "STEP_SUCCESS":
                end[e.step_key] = record.timestamp
    return [(start[k], end[k]) for k in start]


def test_a_parallel_backfill_of_every_sample_warc_gives_the_serial_store(parallel_env, all_warcs, serial_state):
    from pipeline.ingest.store import Store

    keys = sorted(os.listdir(all_warcs))
    with dg.instance_for_test(temp_dir=str(parallel_env / "dagster_home")) as instance:
        with dg.execute_job(dg.reconstructable(warc_backfill_multiprocess), instance=instance,
                            run_config=backfill_config(all_warcs, parallel_env / "store.duckdb")) as result:
            assert result.success
            spans = _intervals(instance, result.run_id)
        assert instance.get_materialized_partitions(dg.AssetKey("warc_pages")) == set(keys)
    assert len(spans) == 10
    at_once = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert at_once == 2, spans  # two steps ran side by side, never more
    state = _built_state(Store(parallel_env / "store.duckdb"))
    assert {row[0] for row in state["warc_pages"]} == set(keys)
    assert state == serial_state


KILLABLE = """
import sys
import dagster as dg
from tests.assets.test_backfill import backfill_config, warc_backfill_multiprocess
if __name__ == "__main__":
    with dg.instance_for_test(temp_dir=sys.argv[1]) as instance:
        dg.execute_job(dg.reconstructable(warc_backfill_multiprocess), instance=instance,
                       run_config=backfill_config(sys.argv[2], sys.argv[3]))
"""


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it (the run, its forkserver, the steps) at once."""
    import psutil

    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def test_a_parallel_backfill_killed_mid_write_then_run_again_gives_the_serial_store(parallel_env, all_warcs,
                                                                                   serial_state):
    from pipeline.ingest.store import Store

    store = Store(parallel_env / "store.duckdb")
    (parallel_env / "killed_home").mkdir()
    script = parallel_env / "killable.py"
    script.write_text(KILLABLE)
    run = subprocess.Popen([sys.executable, str(script), str(parallel_env / "killed_home"), str(all_warcs),
                            str(store.path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        deadline = time.monotonic() + 240
        # kill -9 the run and its step processes while one partition is done and others are being written
        while not (list(store.parts.glob("warc/*/v000001")) and list(store.parts.glob("warc/*/.tmp-*"))):
            assert run.poll() is None and time.monotonic() < deadline, "the backfill ended before it could be killed"
            time.sleep(0.05)
    finally:
        _kill_tree(run.pid)
        run.wait(30)
    visible = store.current_partitions()
    assert list(store.parts.glob("warc/*/.tmp-*")) and 0 < len(visible) < 10
    for (_, key), folder in visible.items():  # what is visible is whole: every file, rows as counted
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{t}.parquet" for t in ("warc_pages", "warc_links", "warc_redirects", "rejects", "partition_stats"))
    kept = store.query("SELECT partition, value FROM partition_stats WHERE stat = 'pages_kept' ORDER BY 1")
    rows = store.query("SELECT partition, count(*) AS n FROM warc_pages GROUP BY 1 ORDER BY 1")
    assert [(r["partition"], int(r["value"])) for r in kept] == [(r["partition"], r["n"]) for r in rows]
    assert not store.lock_held()  # the kernel freed the dead writers' locks

    with dg.instance_for_test(temp_dir=str(parallel_env / "dagster_home")) as instance:
        with dg.execute_job(dg.reconstructable(warc_backfill_multiprocess), instance=instance,
                            run_config=backfill_config(all_warcs, store.path)) as result:
            assert result.success
    assert not list(store.parts.glob("warc/*/.tmp-*"))  # the re-run's writers removed what the dead ones left
    assert _built_state(store) == serial_state
