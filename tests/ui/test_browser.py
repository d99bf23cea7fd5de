"""The Dagster UI in a real browser: `dagster dev` on 127.0.0.1 with the project's workspace.yaml and its own
DAGSTER_HOME, driven by headless Chromium (Debian's `chromium`, through Playwright).

The store holds one small sample WARC, ingested beforehand; the watched input folders are empty, so the sensors
launch nothing. The test checks that the global asset graph shows websim's asset groups, materializes `pages`
from its asset page, waits for the run to succeed and for the materialization's metadata to show, materializes
`link_graph` and `snapshot` and checks that the snapshot's plot renders in place on the asset page (not behind "[Show Markdown]"), and saves a
screenshot of each stage under `$WEBSIM_TEST_ARTIFACTS` (default `<repo>/test-artifacts`)/ui.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import sample

pytestmark = [pytest.mark.ui, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SMALL_WARC = "wikipedia-mona-lisa-2013.warc.gz"
GROUPS = ("ingest", "simulator", "synthesis", "training")
DAGSTER_YAML = """\
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def artifacts_dir() -> Path:
    root = Path(os.environ.get("WEBSIM_TEST_ARTIFACTS") or REPO / "test-artifacts")
    out = root / "ui"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path):
    """`dagster dev` over a store that holds one ingested WARC; yields (base url, store counts, log path)."""
    from pipeline.ingest.run import ingest_warc
    from pipeline.ingest.store import Store

    home, dagster_home, empty = tmp_path / "websim_home", tmp_path / "dagster_home", tmp_path / "inbox"
    for folder in (home, dagster_home, empty):
        folder.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    store = Store(home / "store.duckdb")
    ingest_warc(sample("warc", SMALL_WARC), store, SMALL_WARC, workers=1)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "WEBSIM_HOME": str(home),
           "WEBSIM_WARC_DIRS": str(empty), "WEBSIM_CLICKSTREAM_DIRS": str(empty), "HF_HUB_OFFLINE": "1"}
    env.pop("WEBSIM_STORE", None)
    log_path = tmp_path / "dagster_dev.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
                                 "-h", "127.0.0.1", "-p", str(port)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not come up on {base}:\n{log_path.read_text()[-4000:]}")
            time.sleep(1)
        yield base, store.counts(), log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # dagster dev and the daemon, webserver and code server it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_runs_to_finish(page, base: str, timeout_s: float = 300) -> None:
    """Until the runs list shows no queued or running run (`pages` eagerly triggers `link_graph` too)."""
    deadline = time.monotonic() + timeout_s
    page.goto(f"{base}/runs")
    page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first.wait_for(timeout=120_000)
    while page.get_by_text(re.compile(r"^(Queued|Not started|Starting|Started|Canceling)$")).count():
        if time.monotonic() > deadline:
            pytest.fail("runs still queued or running after %d s" % timeout_s)
        time.sleep(3)
        page.reload()
        page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first.wait_for(timeout=120_000)


def test_asset_graph_materialize_and_metadata_in_chromium(dagster_dev):
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; scripts/setup.sh does it as root)")
    from playwright.sync_api import expect, sync_playwright

    base, counts, log_path = dagster_dev
    shots = artifacts_dir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        # Dagster's first-visit "Join the Dagster community" dialog covers the page: skip it whenever it shows. It
        # can open late, under another dialog (the upstream-materialization confirm), whose backdrop then takes
        # pointer clicks: the Skip button's click event is dispatched to it directly.
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda _: page.get_by_role("button", name="Skip").dispatch_event("click"))
        try:
            # 1. the global asset graph lists websim's asset groups
            page.goto(f"{base}/asset-groups")
            for group in GROUPS:
                expect(page.get_by_text(group, exact=True).first).to_be_visible(timeout=120_000)
            page.screenshot(path=str(shots / "1_asset_graph.png"), full_page=True)

            # 2. launch a materialization of `pages` from its asset page
            page.goto(f"{base}/assets/pages")
            expect(page.get_by_text("pages", exact=True).first).to_be_visible()
            page.locator("button:has-text('Materialize')").first.click()  # the icon is part of its accessible name
            # The store was filled outside Dagster, so the UI warns that the upstream assets were never
            # materialized; `pages` reads the store, not them: confirm.
            launched, confirm = page.get_by_text("Launched run").first, page.get_by_role("button", name="Confirm")
            expect(launched.or_(confirm)).to_be_visible(timeout=120_000)
            if confirm.is_visible():
                page.screenshot(path=str(shots / "2a_confirm_upstream.png"), full_page=True)
                confirm.click()
            expect(launched).to_be_visible(timeout=120_000)
            page.screenshot(path=str(shots / "2_materialize_launched.png"), full_page=True)

            # 3. the run succeeds
            page.goto(f"{base}/runs")
            status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
            expect(status).to_be_visible(timeout=240_000)  # the runs list refreshes itself
            expect(status).to_have_text("Success")
            expect(page.get_by_text("Manually launched").first).to_be_visible()
            page.screenshot(path=str(shots / "3_run_succeeded.png"), full_page=True)

            # 4. the materialization's metadata shows on the asset page, with the store's own numbers
            page.goto(f"{base}/assets/pages")
            expect(page.get_by_text("distinct_urls").first).to_be_visible(timeout=60_000)
            captures = page.locator("tr", has=page.get_by_text("captures", exact=True)).first
            expect(captures).to_be_visible()
            captures_row = captures.inner_text().split()
            body = page.inner_text("body")
            page.screenshot(path=str(shots / "4_metadata.png"), full_page=True)

            # 5. a plot renders on an asset page: materialize `link_graph`, then `snapshot`, whose build-time bars
            # are inline markdown
            for asset in ("link_graph", "snapshot"):
                page.goto(f"{base}/assets/{asset}")
                expect(page.get_by_text(asset, exact=True).first).to_be_visible()
                page.locator("button:has-text('Materialize')").first.click()
                launched, confirm = page.get_by_text("Launched run").first, page.get_by_role("button", name="Confirm")
                expect(launched.or_(confirm)).to_be_visible(timeout=120_000)
                if confirm.is_visible():
                    confirm.click()
                expect(launched).to_be_visible(timeout=120_000)
                _wait_for_runs_to_finish(page, base)
            page.goto(f"{base}/assets/snapshot")
            plot = page.locator("img[alt='snapshot build time by stage']").first
            expect(plot).to_be_visible(timeout=300_000)
            plot.scroll_into_view_if_needed()
            plot_size = plot.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
            plot_row = page.locator("tr", has=page.get_by_text("build_time", exact=True)).first.inner_text()
            page.screenshot(path=str(shots / "5_plot_on_asset_page.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            print(log_path.read_text()[-6000:])
            raise
        finally:
            browser.close()
    assert "duplicate_content_aliases" in body and "pages_with_clicks" in body
    assert captures_row[0] == "captures" and captures_row[-1] == str(counts["warc_pages"])  # the rows ingested
    assert plot_size == [True, 480, 128], plot_size  # the SVG decoded and drew at its size, in place
    assert "Show Markdown" not in plot_row and "build time by stage: copy" in plot_row
