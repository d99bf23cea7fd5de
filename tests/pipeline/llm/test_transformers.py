"""The transformers backend on the embedded model: left-padded batches, token counts, stop strings, sampling."""

import pytest

from pipeline.llm import SamplingParams
from pipeline.llm.model_setup import ensure_embedded_model
from pipeline.llm.transformers_backend import TransformersBackend

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a terse assistant who answers in one sentence."},
        {"role": "user", "content": "Name three colours of the rainbow, and say briefly why the sky is blue during the day."},
    ],
    [{"role": "user", "content": "Hi"}],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return ensure_embedded_model(tmp_path_factory.getbasetemp() / "websim_home")


@pytest.fixture(scope="module")
def backend(model_dir):
    # float32: in bf16 the matmul kernels round differently for different batch shapes, so a batched greedy
    # run can drift from a single one after some tokens even with correct padding; fp32 makes the check exact.
    # One thread: CI machines are shared, and spinning OpenMP threads on busy cores are 10-40x slower.
    b = TransformersBackend(str(model_dir), dtype="float32", num_threads=1)
    yield b
    b.close()


def test_batch_gives_the_same_greedy_text_as_one_by_one(backend):
    params = SamplingParams(max_tokens=24)
    batched = backend.generate(CHATS, params)
    single = [backend.generate([chat], params)[0] for chat in CHATS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert "Paris" in batched[0].text


def test_token_counts_are_the_real_ones(backend):
    out = backend.generate(CHATS, SamplingParams(max_tokens=24))
    tok = backend.tokenizer
    for chat, c in zip(CHATS, out):
        rendered = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert c.prompt_tokens == len(tok(rendered, add_special_tokens=False)["input_ids"])
        assert 0 < c.completion_tokens <= 24
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert c.completion_tokens == 24
        else:  # the end-of-turn token counts, as vLLM counts it
            assert len(tok(c.text, add_special_tokens=False)["input_ids"]) <= c.completion_tokens
    assert [c.prompt_index for c in out] == [0, 1, 2]


def test_stop_strings_end_the_completion(backend):
    prompt = "Here is a list of fruits: apple, pear, plum, cherry, grape, mango, kiwi, lemon, lime"
    free = backend.generate([prompt + ","], SamplingParams(max_tokens=16))[0]
    stopped = backend.generate([prompt + ","], SamplingParams(max_tokens=16, stop=(",",)))[0]
    assert "," in free.text, "the model continues the list (otherwise this test proves nothing)"
    assert "," not in stopped.text and stopped.finish_reason == "stop"
    assert free.text.startswith(stopped.text)
    assert stopped.completion_tokens < free.completion_tokens


def test_seeded_sampling_is_reproducible_and_n_gives_n(backend):
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=123, n=3)
    first = backend.generate(CHATS[:1], params)
    again = backend.generate(CHATS[:1], params)
    assert len(first) == 3 and [c.sample_index for c in first] == [0, 1, 2]
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 1


def test_tools_reach_the_template(backend):
    tool = {"type": "function", "function": {"name": "search_pages", "description": "Search.", "parameters": {}}}
    from pipeline.llm.base import Request, normalize_prompt

    text = backend.render(Request(normalize_prompt(CHATS[0]), SamplingParams(), tools=(tool,)))
    assert "search_pages" in text and "<tools>" in text


def test_a_prompt_too_long_fails_alone(backend):
    limit = backend.max_model_len
    backend.max_model_len = 64
    try:
        out = backend.generate(["word " * 100, "The capital of France is"], SamplingParams(max_tokens=4))
    finally:
        backend.max_model_len = limit
    assert out[0].error == "prompt_too_long" and out[0].finish_reason == "error"
    assert out[1].ok and out[1].text
