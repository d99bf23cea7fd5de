"""Store writers under the real CLI (`websim backfill`, Dagster runs on a persistent instance), issues 15 and 18:

- a writer killed with SIGKILL mid-ingest leaves nothing of its partition visible and does not wedge the next one:
  an unattended re-run completes;
- a run waiting for a partition that another run is writing stops on SIGTERM (`timeout 100 websim backfill ...`)
  and on Ctrl-C (SIGINT).

Partitions write files of their own; two writers of the same partition queue on its lock file, which the kernel
releases when its holder dies; no Dagster pool slot is left behind by a dead run.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import sample

REPO = Path(__file__).resolve().parents[1]
BIG = "wikispeedia-2007-00000.warc.gz"  # 1,150 pages: long enough to be killed half-way
SMALL = "iana-2014.warc.gz"


class Cli:
    """`websim backfill ...` in its own process; its output is collected line by line."""

    def __init__(self, *args: str, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-m", "assets.cli", "backfill", "warc_pages", *args], cwd=REPO,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            assert self.proc.poll() is None or text in self.output, f"exited ({self.proc.returncode}):\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout_s} s:\n{self.output[-3000:]}"
            time.sleep(0.1)

    def exit_code(self, timeout_s: float) -> int | None:
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def cli_env(tmp_path):
    folder = tmp_path / "warc"
    folder.mkdir()
    for name in (BIG, SMALL):
        (folder / name).symlink_to(sample("warc", name))
    env = {**os.environ, "WEBSIM_WARC_DIRS": str(folder), "WEBSIM_STORE": str(tmp_path / "store.duckdb"),
           "DAGSTER_HOME": str(tmp_path / "dagster_home"), "WEBSIM_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(REPO)}
    return env


def _writing(cli: Cli, store_path: Path, timeout_s: float = 180) -> None:
    """Wait until `cli` holds a partition's lock and has extracted some pages (mid-ingest)."""
    from pipeline.ingest.store import Store

    deadline = time.monotonic() + timeout_s
    while not Store(store_path).lock_held():
        assert cli.proc.poll() is None, cli.output[-3000:]
        assert time.monotonic() < deadline, cli.output[-3000:]
        time.sleep(0.1)
    cli.wait_for("captures extracted", timeout_s)


def test_a_writer_killed_mid_ingest_does_not_wedge_the_next_run(cli_env):
    from pipeline.ingest.store import Store

    store_path = Path(cli_env["WEBSIM_STORE"])
    first = Cli(BIG, env=cli_env)
    try:
        _writing(first, store_path)
        first.proc.send_signal(signal.SIGKILL)
        assert first.exit_code(30) == -signal.SIGKILL
    finally:
        first.kill()
    killed = Store(store_path)
    assert killed.partitions("warc") == [] and killed.counts()["warc_pages"] == 0  # nothing of it is visible
    assert list(killed.parts.glob(f"warc/{BIG}/.tmp-*"))  # what it was writing, out of sight until the re-run

    # the same command again, nobody at the keyboard: it gets the store and completes
    rerun = Cli(BIG, SMALL, env=cli_env)
    try:
        rc = rerun.exit_code(300)
        assert rc == 0, f"re-run ended with {rc} (None: still waiting after 300 s):\n{rerun.output[-3000:]}"
    finally:
        rerun.kill()
    assert "backfilled 2 partitions" in rerun.output

    store = Store(store_path)
    kept = {r["partition"]: int(r["value"]) for r in store.query(
        "SELECT partition, value FROM partition_stats WHERE source = 'warc' AND stat = 'pages_kept'")}
    rows = {r["partition"]: r["n"] for r in store.query(
        "SELECT partition, count(*) AS n FROM warc_pages GROUP BY partition")}
    assert set(rows) == {BIG, SMALL} and rows == kept and rows[BIG] == 1150
    assert not store.lock_held() and not list(store.parts.glob("warc/*/.tmp-*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_waiting_for_a_partition_stops_on_a_signal(cli_env, sig):
    store_path = Path(cli_env["WEBSIM_STORE"])
    writer = Cli(BIG, env=cli_env)
    try:
        _writing(writer, store_path)
        waiter = Cli(BIG, env=cli_env)  # the same partition: it queues behind the writer
        try:
            waiter.wait_for("waiting for the store", 120)
            started = time.monotonic()
            waiter.proc.send_signal(sig)
            rc = waiter.exit_code(60)
            assert rc is not None, f"still running 60 s after {sig.name}:\n{waiter.output[-3000:]}"
            assert rc != 0
            print(f"{sig.name}: the waiting run ended in {time.monotonic() - started:.1f} s with {rc}")
        finally:
            waiter.kill()
        assert writer.proc.poll() is None  # the writer goes on
    finally:
        writer.kill()
