"""Shared fixtures: an isolated home per test, a store ingested from all the sample data, the small corpus's store
and snapshot, the Wikispeedia snapshot, and a tiny model. What they are built from is in tests/support.py."""

import pytest

from tests.support import SHARED_DATA, sample, write_corpus


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


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """The small corpus of tests/support.py in a store: three hosts, links, a duplicate, redirects, clicks."""
    from pipeline.ingest.store import Store

    store = Store(tmp_path_factory.mktemp("store") / "store.duckdb")
    write_corpus(store)
    return store


@pytest.fixture(scope="session")
def small_snapshot(small_store, tmp_path_factory):
    """A snapshot of `small_store`, shared by the simulator, server, training and asset tests."""
    from pipeline.simulator.snapshot import build_snapshot

    return build_snapshot(small_store.path, tmp_path_factory.mktemp("snapshots"))


@pytest.fixture(scope="session")
def wikispeedia_snapshot(tmp_path_factory):
    """One Wikispeedia WARC shard (about 1,150 articles) with the Wikispeedia clickstream; about 25 s to build."""
    from pipeline.ingest.run import ingest_clickstream, ingest_warc
    from pipeline.simulator.snapshot import build_snapshot
    from pipeline.ingest.store import Store

    warc = sample("warc", "wikispeedia-2007-00000.warc.gz")
    clicks = sample("clickstream", "clickstream-wikispeedia-paths.tsv")
    root = tmp_path_factory.mktemp("wikispeedia")
    store = Store(root / "store.duckdb")
    ingest_warc(warc, store, warc.name, workers=1)
    ingest_clickstream(clicks, store, clicks.name)
    store.build_pages()
    store.build_link_graph()
    return build_snapshot(store.path, root / "snapshots")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 1-layer Llama with SmolLM2's vocabulary, tokenizer and chat template, saved as a model folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from pipeline.llm.model_setup import ensure_embedded_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model(tmp_path_factory.getbasetemp() / "websim_home"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
