"""Shared fixtures: the real sample data beside the checkout, and a store ingested from all of it once."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("WEBSIM_SAMPLE_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def sample(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data not found: {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test writes into the developer's data dir or Dagster home."""
    home = tmp_path_factory.getbasetemp() / "websim_home"
    monkeypatch.setenv("WEBSIM_HOME", str(home))
    monkeypatch.setenv("WEBSIM_SAMPLE_DATA", str(SHARED_DATA))
    monkeypatch.delenv("WEBSIM_STORE", raising=False)
    dagster_home = tmp_path_factory.mktemp("dagster_home")  # each test its own (Dagster caches instances per home)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))


@pytest.fixture(autouse=True)
def _no_leaked_dagster_state():
    """A Dagster instance left undisposed by one test (e.g. a test context's) stays the process-wide "defs state
    storage", and a later `Definitions.validate_loadable` reads it from a deleted folder: each test starts clean."""
    try:
        from dagster._core.storage.defs_state.base import set_defs_state_storage
    except ImportError:  # another Dagster layout: nothing to reset
        yield
        return
    import gc

    gc.collect()  # finalise instances earlier tests left behind now, not in the middle of this test
    with set_defs_state_storage(None):
        yield


@pytest.fixture(scope="session")
def full_store(tmp_path_factory):
    """Every sample WARC and clickstream file ingested, pages and link graph built (about a minute)."""
    from pipeline.ingest.run import CLICKSTREAM_SUFFIXES, WARC_SUFFIXES, ingest_clickstream, ingest_warc, list_inputs
    from pipeline.ingest.store import Store

    sample("warc")
    store = Store(tmp_path_factory.mktemp("full_store") / "store.duckdb")
    reports = {}
    for key, path in list_inputs([SHARED_DATA / "warc"], WARC_SUFFIXES).items():
        reports[key] = ingest_warc(path, store, key)
    for key, path in list_inputs([SHARED_DATA / "clickstream"], CLICKSTREAM_SUFFIXES).items():
        reports[key] = ingest_clickstream(path, store, key)
    store.reports = reports
    store.page_stats = store.build_pages()
    store.link_stats = store.build_link_graph()
    return store
