"""Tool calls out of model text: well-formed calls, every kind of malformed output, and fit to the tools."""

import json

import pytest

from training.env import TOOL_SCHEMAS
from training.tool_parser import ParsedTurn, ToolCall, check_call, format_call, parse_turn, to_message


def block(obj) -> str:
    return f"<tool_call>\n{json.dumps(obj)}\n</tool_call>"


def test_one_call_with_reasoning():
    turn = parse_turn('I search first.\n' + block({"name": "search", "arguments": {"query": "Basalt"}}))
    assert turn.content == "I search first."
    assert turn.calls == [ToolCall("search", {"query": "Basalt"})]
    assert turn.errors == [] and turn.has_tool_syntax


def test_several_calls_and_text_between_them():
    text = ("a " + block({"name": "search", "arguments": {"query": "x"}}) + " b "
            + block({"name": "answer", "arguments": {"answer": "42"}}) + " c")
    turn = parse_turn(text)
    assert [c.name for c in turn.calls] == ["search", "answer"]
    assert turn.content == "a  b  c"


def test_plain_text_has_no_calls():
    turn = parse_turn("The capital of France is Paris.")
    assert turn == ParsedTurn(content="The capital of France is Paris.") and not turn.has_tool_syntax
    assert parse_turn("").calls == [] and parse_turn(None).content == ""


@pytest.mark.parametrize("text,kind", [
    ('<tool_call>\n{"name": "search", "arguments": {"query": "x"}\n</tool_call>', "invalid_json"),
    ("<tool_call>\nsearch(query='x')\n</tool_call>", "invalid_json"),
    ("<tool_call></tool_call>", "invalid_json"),
    ('<tool_call>\n{"name": "search", "arguments": {"query": "x"}}', "unclosed_tag"),
    ('<tool_call>\n["search", {"query": "x"}]\n</tool_call>', "not_an_object"),
    ('<tool_call>\n{"arguments": {"query": "x"}}\n</tool_call>', "missing_name"),
    ('<tool_call>\n{"name": "", "arguments": {}}\n</tool_call>', "missing_name"),
    ('<tool_call>\n{"name": 3, "arguments": {}}\n</tool_call>', "missing_name"),
    ('<tool_call>\n{"name": "search", "arguments": ["x"]}\n</tool_call>', "bad_arguments"),
    ('<tool_call>\n{"name": "search", "arguments": "not json"}\n</tool_call>', "bad_arguments"),
    ('{"name": "search", "arguments": {"query": "x"}}\n</tool_call>', "stray_close_tag"),
])
def test_malformed_output_becomes_a_named_error(text, kind):
    turn = parse_turn(text)
    assert turn.calls == []
    assert [e.kind for e in turn.errors] == [kind]
    assert turn.has_tool_syntax


def test_an_unclosed_block_does_not_swallow_the_next_one():
    text = '<tool_call>\n{"name": "search"\n' + block({"name": "search", "arguments": {"query": "y"}})
    turn = parse_turn(text)
    assert [e.kind for e in turn.errors] == ["unclosed_tag"]
    assert turn.calls == [ToolCall("search", {"query": "y"})]


def test_lenient_where_the_meaning_is_unambiguous():
    # double-encoded arguments, missing arguments, no newlines around the JSON
    assert parse_turn(block({"name": "search", "arguments": json.dumps({"query": "x"})})).calls == [
        ToolCall("search", {"query": "x"})]
    assert parse_turn('<tool_call>{"name": "answer"}</tool_call>').calls == [ToolCall("answer", {})]
    assert parse_turn('<tool_call>{"name": " search ", "arguments": null}</tool_call>').calls == [
        ToolCall("search", {})]


def test_garbage_never_raises():
    for text in ["<tool_call>" * 5, "</tool_call>" * 3, "<tool_call>\x00\ud800</tool_call>",
                 "<tool_call>" + "[" * 5000 + "]" * 5000 + "</tool_call>"]:
        turn = parse_turn(text)
        assert turn.calls == [] and turn.errors
    assert parse_turn("{" * 1000).errors == []


@pytest.mark.parametrize("call,kind", [
    (ToolCall("browse", {"url": "x"}), "unknown_tool"),
    (ToolCall("search", {}), "missing_argument"),
    (ToolCall("search", {"query": "x", "k": 5}), "unknown_argument"),
    (ToolCall("search", {"query": 5}), "wrong_type"),
    (ToolCall("open_url", {"url": "x", "offset": "10"}), "wrong_type"),
    (ToolCall("open_url", {"url": "x", "offset": True}), "wrong_type"),
])
def test_calls_that_do_not_fit_the_tools(call, kind):
    problem = check_call(call, TOOL_SCHEMAS)
    assert problem is not None and problem[0] == kind and problem[1]


def test_calls_that_fit():
    for call in [ToolCall("search", {"query": "x"}), ToolCall("open_url", {"url": "https://a.b/"}),
                 ToolCall("open_url", {"url": "https://a.b/", "offset": 500}), ToolCall("follow_link", {"title": "T"}),
                 ToolCall("answer", {"answer": "1915"})]:
        assert check_call(call, TOOL_SCHEMAS) is None


def test_format_and_message_round_trip():
    call = ToolCall("follow_link", {"title": "Café \"Noir\""})
    turn = parse_turn("Next. " + format_call(call))
    assert turn.calls == [call]
    assert to_message(turn) == {"role": "assistant", "content": "Next.", "tool_calls": [
        {"type": "function", "function": {"name": "follow_link", "arguments": {"title": 'Café "Noir"'}}}]}
    assert "tool_calls" not in to_message(parse_turn("just text"))


@pytest.mark.slow
def test_agrees_with_trls_parser_on_well_formed_output(embedded_tokenizer):
    """What we count as a valid call is what TRL's response parser (used by GRPO) extracts."""
    from trl.chat_template_utils import add_response_schema

    tok = add_response_schema(embedded_tokenizer)
    texts = ["I look it up.\n" + format_call(ToolCall("search", {"query": "Eiffel Tower"})),
             format_call(ToolCall("open_url", {"url": "https://en.wikipedia.org/wiki/Paris", "offset": 500})),
             "a\n" + format_call(ToolCall("search", {"query": "x"})) + "\n" + format_call(
                 ToolCall("answer", {"answer": "1889"}))]
    for text in texts:
        theirs = tok.parse_response(text + "<|im_end|>", prefix="<|im_start|>assistant\n")
        ours = to_message(parse_turn(text))
        assert ours["tool_calls"] == theirs["tool_calls"]
        assert ours["content"] == theirs.get("content", "").strip()


@pytest.fixture(scope="module")
def embedded_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from pipeline.llm.model_setup import ensure_embedded_model

    return AutoTokenizer.from_pretrained(ensure_embedded_model(tmp_path_factory.getbasetemp() / "websim_home"))
