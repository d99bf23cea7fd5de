"""Tool calls out of a model's text, in the Qwen2.5 format the embedded model's chat template renders.

An assistant turn is free text with zero or more blocks

    <tool_call>
    {"name": "search", "arguments": {"query": "..."}}
    </tool_call>

(the grammar TRL's response parser uses for this template: `<tool_call>`, one JSON object, `</tool_call>`).
`parse_turn(text)` splits a turn into its text and calls and never raises: every malformed block becomes a
named error instead (`ERROR_KINDS`), so an agent loop can answer it and count it. `check_call(call, schemas)`
then says whether a well-formed call fits the tools (name known, required arguments present, no unknown ones,
JSON types right). `to_message(turn)` is the assistant message in the OpenAI / TRL shape that the chat
template renders back to the same text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

OPEN, CLOSE = "<tool_call>", "</tool_call>"
# What can be wrong with a <tool_call> block, from the outside in.
ERROR_KINDS = ("unclosed_tag", "invalid_json", "not_an_object", "missing_name", "bad_arguments", "stray_close_tag")
# What can be wrong with a well-formed call against the tools.
CHECK_KINDS = ("unknown_tool", "missing_argument", "unknown_argument", "wrong_type")
_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
               "object": (dict,), "array": (list,)}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    def as_message_call(self) -> dict[str, Any]:
        """The `tool_calls` item of an assistant message (arguments as an object, as the template renders them)."""
        return {"type": "function", "function": {"name": self.name, "arguments": dict(self.arguments)}}


@dataclass(frozen=True)
class ParseError:
    kind: str
    detail: str
    raw: str = ""


@dataclass
class ParsedTurn:
    """One assistant turn: its text outside the tool-call blocks, the well-formed calls, and the bad blocks."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)

    @property
    def has_tool_syntax(self) -> bool:
        """Whether the model tried to call a tool at all (a block, well-formed or not)."""
        return bool(self.calls or self.errors)


def parse_turn(text: str) -> ParsedTurn:
    """Split `text` into content and tool calls; malformed blocks become `ParseError`s, never exceptions."""
    text = text or ""
    calls: list[ToolCall] = []
    errors: list[ParseError] = []
    content_parts: list[str] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            content_parts.append(text[pos:])
            break
        content_parts.append(text[pos:start])
        body_start = start + len(OPEN)
        end = text.find(CLOSE, body_start)
        nested = text.find(OPEN, body_start)
        if end < 0 or (0 <= nested < end):
            stop = nested if nested >= 0 else len(text)
            errors.append(ParseError("unclosed_tag", f"{OPEN} without {CLOSE}", text[start:stop]))
            pos = stop
            if nested < 0:
                break
            continue
        body = text[body_start:end]
        call, error = _parse_body(body)
        if call is not None:
            calls.append(call)
        else:
            errors.append(ParseError(error[0], error[1], body))
        pos = end + len(CLOSE)
    content = "".join(content_parts)
    if CLOSE in content:
        errors.append(ParseError("stray_close_tag", f"{CLOSE} without {OPEN}", ""))
        content = content.replace(CLOSE, "")
    return ParsedTurn(content=content.strip(), calls=calls, errors=errors)


def _parse_body(body: str) -> tuple[ToolCall | None, tuple[str, str]]:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, ("invalid_json", f"not valid JSON ({exc.msg} at character {exc.pos})")
    except RecursionError:
        return None, ("invalid_json", "not valid JSON (nested too deeply)")
    if not isinstance(obj, dict):
        return None, ("not_an_object", f"a tool call is a JSON object, not {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, ("missing_name", 'a tool call needs "name": the tool to call')
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode; accept what decodes to an object
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            pass
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None, ("bad_arguments", '"arguments" must be a JSON object of parameter values')
    return ToolCall(name.strip(), arguments), ("", "")


def check_call(call: ToolCall, schemas: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """None if `call` fits one of the OpenAI-style function `schemas`, else (kind, what to fix)."""
    spec = next((s.get("function", s) for s in schemas if s.get("function", s).get("name") == call.name), None)
    names = [s.get("function", s).get("name") for s in schemas]
    if spec is None:
        return "unknown_tool", f"unknown tool {call.name!r}; the tools are {', '.join(names)}"
    params = spec.get("parameters", {}) or {}
    props = params.get("properties", {}) or {}
    missing = [p for p in params.get("required", []) if p not in call.arguments]
    if missing:
        return "missing_argument", f"{call.name} needs {', '.join(missing)}"
    unknown = sorted(set(call.arguments) - set(props))
    if unknown:
        return "unknown_argument", f"{call.name} takes {', '.join(props) or 'no arguments'}, not {', '.join(unknown)}"
    for key, value in call.arguments.items():
        expected = props[key].get("type")
        types = _JSON_TYPES.get(expected)
        if types and (not isinstance(value, types) or (isinstance(value, bool) and expected != "boolean")):
            return "wrong_type", f"{call.name}: {key} must be a {expected}"
    return None


def format_call(call: ToolCall) -> str:
    """A call as the chat template writes it (what a model should emit)."""
    return f'{OPEN}\n{json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)}\n{CLOSE}'


def to_message(turn: ParsedTurn) -> dict[str, Any]:
    """The assistant message of a parsed turn: content plus `tool_calls` (only the well-formed calls)."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.content}
    if turn.calls:
        message["tool_calls"] = [c.as_message_call() for c in turn.calls]
    return message
