"""The response cache: keys, repeated runs served from it, and a run killed with SIGKILL resuming where it died."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.llm import SamplingParams
from pipeline.llm.base import Completion, Request, normalize_prompt
from pipeline.llm.cache import ResponseCache, request_key
from pipeline.llm.model_setup import ensure_embedded_model
from pipeline.llm.transformers_backend import TransformersBackend

REPO = Path(__file__).resolve().parents[3]
CHAT = [{"role": "user", "content": "Hi"}]


def key(prompt=CHAT, params=SamplingParams(), schema=None, model="m"):
    return request_key(model, Request(normalize_prompt(prompt), params, schema))


def test_key_covers_everything_that_changes_the_answer():
    base = key()
    assert base == key()
    assert key(model="other") != base
    assert key(params=SamplingParams(seed=1)) != base
    assert key(params=SamplingParams(max_tokens=7)) != base
    assert key(params=SamplingParams(stop=("\n",))) != base
    assert key(schema={"type": "object"}) != base
    assert key(prompt="Hi") != base  # a raw prompt is not the chat
    # Equivalent spellings of the same chat are the same request.
    assert key(prompt=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]) == base
    assert key(prompt={"role": "user", "content": "Hi"}) == base


def test_put_get_roundtrip_and_stats(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many("m", {"k1": [Completion("a", 3, 1, "stop")], "k2": [Completion("b", 3, 2, "length")]})
    found = cache.get_many(["k1", "k2", "k3"])
    assert found["k1"][0].text == "a" and found["k2"][0].finish_reason == "length"
    assert all(c.cached for cs in found.values() for c in cs)
    assert cache.stats.as_dict() == {"hits": 2, "misses": 1, "writes": 2}
    assert len(ResponseCache(tmp_path / "c.sqlite")) == 2  # another connection (process) sees it
    assert cache.clear("m") == 2 and len(cache) == 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return ensure_embedded_model(tmp_path_factory.getbasetemp() / "websim_home")


def test_second_run_is_all_hits_with_identical_text(model_dir, tmp_path):
    prompts = [f"Fact number {i} about the moon:" for i in range(4)]
    params = SamplingParams(max_tokens=8)
    first_backend = TransformersBackend(str(model_dir), cache=ResponseCache(tmp_path / "c.sqlite"), num_threads=1)
    first = first_backend.generate(prompts, params)
    assert first_backend.usage.cache_misses == 4 and first_backend.usage.cache_hits == 0
    # A new backend (as in a new process) with the same cache file: nothing is generated, no model is loaded.
    second_backend = TransformersBackend(str(model_dir), cache=ResponseCache(tmp_path / "c.sqlite"))
    second = second_backend.generate(prompts, params)
    assert [c.text for c in second] == [c.text for c in first]
    assert [c.completion_tokens for c in second] == [c.completion_tokens for c in first]
    assert all(c.cached for c in second) and not any(c.cached for c in first)
    assert second_backend.usage.cache_hits == 4 and second_backend.usage.requests == 0
    assert second_backend._model is None


def test_sampled_requests_without_seed_are_not_cached(model_dir, tmp_path):
    backend = TransformersBackend(str(model_dir), cache=ResponseCache(tmp_path / "c.sqlite"), num_threads=1)
    backend.generate(["Once upon a time"], SamplingParams(max_tokens=4, temperature=1.0))
    assert len(backend.cache) == 0
    backend.generate(["Once upon a time"], SamplingParams(max_tokens=4, temperature=1.0, seed=5))
    assert len(backend.cache) == 1


N_PROMPTS, CHUNK = 12, 2
WORKER = textwrap.dedent(
    f"""
    import sys
    from pipeline.llm import SamplingParams
    from pipeline.llm.cache import ResponseCache
    from pipeline.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(sys.argv[1], cache=ResponseCache(sys.argv[2]), batch_size={CHUNK}, num_threads=1)
    out = backend.generate([f"Story {{i}}: once upon a time" for i in range({N_PROMPTS})], SamplingParams(max_tokens=24))
    print("DONE", backend.usage.cache_hits, backend.usage.cache_misses, flush=True)
    """
)


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def test_a_run_killed_midway_regenerates_only_what_is_missing(model_dir, tmp_path):
    db = tmp_path / "cache.sqlite"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(model_dir), str(db)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 240
    try:
        while _rows(db) < CHUNK and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the worker finished before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = _rows(db)
    assert 0 < kept < N_PROMPTS
    assert kept % CHUNK == 0, "each batch is written whole, or not at all"

    rerun = subprocess.run([sys.executable, "-c", WORKER, str(model_dir), str(db)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300, check=True)
    hits, misses = map(int, rerun.stdout.split("DONE")[1].split())
    assert (hits, misses) == (kept, N_PROMPTS - kept)
    assert _rows(db) == N_PROMPTS
