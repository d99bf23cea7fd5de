"""Structured output: parsing and validation of raw strings, and a real batch in which one item never yields
JSON (the transformers backend has no grammar): it is re-asked, then rejected; the others are parsed."""

import pytest

from pipeline.llm import SamplingParams
from pipeline.llm.model_setup import ensure_embedded_model
from pipeline.llm.structured import _basic_schema_errors, extract_json, parse_json
from pipeline.llm.transformers_backend import TransformersBackend

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.mark.parametrize(
    "text, value",
    [
        ('{"name": "Ann", "age": 3}', {"name": "Ann", "age": 3}),
        ('  ```json\n{"name": "Ann", "age": 3}\n```  ', {"name": "Ann", "age": 3}),
        ('Sure! Here it is: {"name": "Ann", "age": 3} Hope that helps.', {"name": "Ann", "age": 3}),
        ("[1, 2]", [1, 2]),
    ],
)
def test_extract_json_finds_the_value(text, value):
    assert extract_json(text) == value


@pytest.mark.parametrize(
    "text, reason",
    [
        ("The sea is wide and blue.", "invalid_json"),
        ('{"name": "Ann", "age": ', "invalid_json"),  # cut off by max_tokens
        ('{"name": "Ann", "age": "three"}', "schema_violation"),
        ('{"name": "Ann"}', "schema_violation"),
        ('{"name": "Ann", "age": true}', "schema_violation"),
    ],
)
def test_parse_json_names_the_reason(text, reason):
    value, why, detail = parse_json(text, PERSON)
    assert value is None and why == reason and detail


def test_parse_json_accepts_a_valid_object():
    assert parse_json('{"name": "Ann", "age": 3}', PERSON) == ({"name": "Ann", "age": 3}, None, None)


def test_fallback_validator_agrees_on_common_cases():
    assert _basic_schema_errors({"name": "A", "age": 1}, PERSON, "$") == []
    assert _basic_schema_errors({"name": "A", "age": True}, PERSON, "$")
    assert _basic_schema_errors({"name": "A"}, PERSON, "$")
    strict = {**PERSON, "additionalProperties": False}
    assert _basic_schema_errors({"name": "A", "age": 1, "x": 0}, strict, "$")
    assert _basic_schema_errors([{"name": 1, "age": 1}], {"type": "array", "items": PERSON}, "$")


FEW_SHOT = (
    "Extract the person as JSON.\n"
    'Text: Alice is 30 years old.\nJSON: {"name": "Alice", "age": 30}\n'
    'Text: Bob turned 41 last week.\nJSON: {"name": "Bob", "age": 41}\n'
    "Text: {who}\nJSON:"
)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    model_dir = ensure_embedded_model(tmp_path_factory.getbasetemp() / "websim_home")
    b = TransformersBackend(str(model_dir), max_json_retries=2, num_threads=1)
    yield b
    b.close()


def test_one_unparseable_item_is_retried_then_rejected_and_the_batch_survives(backend):
    prompts = [
        FEW_SHOT.replace("{who}", "Carol is 25."),
        [{"role": "user", "content": "Write a short poem about the sea."}],  # the 135M model writes prose
        FEW_SHOT.replace("{who}", "Dan is 52."),
    ]
    out = backend.generate(prompts, SamplingParams(max_tokens=24, stop=("\n",)), schema=PERSON)
    assert [c.parsed for c in (out[0], out[2])] == [{"name": "Carol", "age": 25}, {"name": "Dan", "age": 52}]
    assert out[0].ok and out[0].attempts == 1
    bad = out[1]
    # Prose is not JSON, or (greedy decoding differs between bf16 and fp32 CPUs) JSON of another shape: either way
    # the item is rejected with its reason, retried, and the batch survives.
    assert bad.error in ("invalid_json", "schema_violation") and bad.parsed is None and bad.text  # raw output kept
    assert bad.attempts == 1 + backend.max_json_retries
    usage = backend.usage.as_dict()
    assert usage["rejections"] == {bad.error: 1}
    assert usage["retries"] == backend.max_json_retries
