"""The vLLM backend on the embedded model: batched chat and raw prompts, stop strings, grammar-constrained JSON,
and one bad item isolated from its batch. The engine starts once for the module (~15-25 s on CPU)."""

import json

import pytest

pytest.importorskip("vllm")

from pipeline.llm import SamplingParams  # noqa: E402
from pipeline.llm.model_setup import ensure_embedded_model  # noqa: E402
from pipeline.llm.vllm_backend import VLLMBackend  # noqa: E402

pytestmark = pytest.mark.slow

# Bounded fields: the grammar then has to close the object within max_tokens. An unbounded string let the greedy
# 135M model loop inside the name ("Unique123456789101123...") to the token limit in one full-suite run.
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24},
                   "age": {"type": "integer", "minimum": 0, "maximum": 150}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    data_dir = tmp_path_factory.getbasetemp() / "websim_home"
    # bm25s loads numba/llvmlite, whose library wrapper broke vLLM CPU's start-up module scan: the engine must
    # start in a process that already searched with bm25s (as the full test session and the pipeline do).
    import bm25s  # noqa: F401

    with pytest.MonkeyPatch.context() as env:
        # One OpenMP thread: on a shared CI machine, threads bound to busy cores spin-wait (2-4x slower).
        env.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
        env.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # short prompts; the default (up to 8 GiB) is for agent loops
        b = VLLMBackend(str(ensure_embedded_model(data_dir)), data_dir=data_dir, engine_args={"max_model_len": 1024})
        b.start()
    yield b
    b.close()


def test_greedy_chat_batch(backend):
    chats = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "What colour is the sky?"}],
    ]
    out = backend.generate(chats, SamplingParams(max_tokens=24))
    assert "Paris" in out[0].text
    for c in out:
        assert c.ok and 0 < c.completion_tokens <= 24 and c.prompt_tokens > 10
        assert c.finish_reason in ("stop", "length")
    again = backend.generate(chats, SamplingParams(max_tokens=24))
    assert [c.text for c in again] == [c.text for c in out]


def test_raw_prompts_and_stop_strings(backend):
    prompt = "Here is a list of fruits: apple, pear, plum, cherry, grape, mango, kiwi, lemon, lime,"
    free, stopped = backend.generate([prompt, prompt], SamplingParams(max_tokens=16)), None
    stopped = backend.generate([prompt], SamplingParams(max_tokens=16, stop=(",",)))[0]
    assert "," in free[0].text and "," not in stopped.text
    assert stopped.finish_reason == "stop" and free[0].text.startswith(stopped.text)


def test_structured_output_is_always_valid_json(backend):
    chats = [
        [{"role": "user", "content": f"Invent a fictional person number {i}. Give their name and age."}] for i in range(4)
    ]
    # Unconstrained by the bounds, the model gives this one the age -2: the grammar must keep it in range.
    chats.append([{"role": "user", "content": "Invent a person whose name is the word Alexander written twenty times "
                                              "in a row. Give their name and age."}])
    greedy = backend.generate(chats, SamplingParams(max_tokens=64), schema=PERSON)
    sampled = backend.generate(chats, SamplingParams(max_tokens=64, temperature=1.0, seed=7), schema=PERSON)
    for c in greedy + sampled:
        value = json.loads(c.text)  # the grammar makes the raw text JSON, not just something we can dig out
        assert isinstance(value["name"], str) and isinstance(value["age"], int)
        assert len(value["name"]) <= 24 and 0 <= value["age"] <= 150  # the schema's bounds are in the grammar
        assert c.parsed == value and c.ok and c.attempts == 1


def test_seeded_sampling_of_long_distinct_prompts(backend):
    # Prompts too long to prefill in one engine step: vLLM CPU used to fail seeded sampled requests
    # there ("CPU Generator does not use offset"), so every request of such a batch came back an error.
    words = "river mountain castle harbour treaty empire railway festival cathedral island".split()
    chats = [[{"role": "user", "content": " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(700))
               + " Name one of these words."}] for i in range(8)]
    out = backend.generate(chats, SamplingParams(max_tokens=8, temperature=0.7, seed=11))
    assert [c.error for c in out] == [None] * 8 and all(c.completion_tokens > 0 for c in out)


def test_tools_are_rendered(backend):
    tool = {"type": "function", "function": {"name": "search_pages", "description": "Search the web.",
                                             "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
    chat = [{"role": "user", "content": "Search for the Eiffel tower."}]
    plain, with_tools = backend.generate([chat], SamplingParams(max_tokens=4)), backend.generate(
        [chat], SamplingParams(max_tokens=4), tools=[tool]
    )
    assert with_tools[0].prompt_tokens > plain[0].prompt_tokens + 50  # the tool list is in the system turn


def test_a_prompt_too_long_fails_alone(backend):
    out = backend.generate(["word " * 2000, "The capital of Italy is"], SamplingParams(max_tokens=4))
    assert out[0].finish_reason == "error" and "maximum context length" in out[0].error
    assert out[1].ok and out[1].text
    assert backend.usage.rejections["backend_error"] >= 1


def test_the_kv_cache_is_half_the_available_memory_within_bounds(monkeypatch, tmp_path):
    import builtins
    import io

    from pipeline.llm.vllm_backend import kv_cache_gib

    real_open = builtins.open

    def meminfo(gib):
        return lambda path, *a, **k: (io.StringIO(f"MemTotal: 1 kB\nMemAvailable: {gib * 2**20} kB\n")
                                      if path == "/proc/meminfo" else real_open(path, *a, **k))

    for available, expected in ((24, 8), (10, 5), (3, 2)):
        monkeypatch.setattr(builtins, "open", meminfo(available))
        assert kv_cache_gib() == expected, available


def test_compact_json_is_an_engine_setting_with_its_own_cache_entries(backend):
    # vLLM 0.32 ignores the request's `disable_any_whitespace`: only the engine's structured-output config counts.
    compact = VLLMBackend(backend.model_path, data_dir=backend.data_dir, compact_json=True)
    assert compact.engine_args["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert compact.model_id == backend.model_id + "+compact-json"
    assert "structured_outputs_config" not in backend.engine_args and not backend.compact_json
