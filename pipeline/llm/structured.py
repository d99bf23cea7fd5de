"""Structured (JSON-schema) output: parse, validate, re-ask a bounded number of times, then record a rejection.

Backends that constrain decoding with a grammar (vLLM's structured outputs, an OpenAI-compatible server given
`response_format`) rarely produce invalid JSON, but can still be cut off by `max_tokens`; the transformers
backend only prompts and checks. Either way every output goes through `parse_json`, and an item that fails is
re-generated with a fresh seed (and, for chats, a short corrective turn) up to `max_json_retries` times; before a
re-ask, text that is almost JSON (trailing commas, single quotes, Python literals, unquoted keys, a reply cut off by
`max_tokens`) is mended with `json-repair` (a cut-off reply loses its last, unfinished entry) and counted in
`usage.json_repaired`; the mended value still has to pass the schema. What
still fails comes back with its raw text and `error="invalid_json"` or `"schema_violation"`, and is counted in
`usage.rejections`; the other items are unaffected.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING, Any

from .base import Completion, Request

if TYPE_CHECKING:
    from .base import Backend

INVALID_JSON = "invalid_json"
SCHEMA_VIOLATION = "schema_violation"
RETRY_TEMPERATURE = 0.7  # a greedy re-ask would reproduce the same failure
RETRY_SEED_BASE = 7919  # retries of attempt k use seed base + k * RETRY_SEED_BASE: distinct and reproducible

_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def extract_json(text: str, repair: bool = True) -> Any:
    """The JSON value in `text`: the whole text, a fenced ```json block, or the first {...}/[...] in it; with
    `repair`, else the first {...}/[...] mended by `json-repair`.

    Raises ValueError when there is none.
    """
    value, _ = extract_json_repaired(text, repair)
    return value


def _unfenced(text: str) -> str:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return fenced.group(1).strip() if fenced else stripped


def extract_json_repaired(text: str, repair: bool = True) -> tuple[Any, bool]:
    """`(value, repaired)`: as `extract_json`, and whether the value needed mending."""
    stripped = _unfenced(text)
    try:
        return json.loads(stripped), False
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
            return value, False
        except json.JSONDecodeError:
            continue
    if repair:
        value = repair_json(stripped)
        if value is not None:
            return value, True
    raise ValueError("no JSON value found")


def _cut_mid_value(text: str) -> bool:
    """Whether `text` stops inside a string, number or literal (not after a finished value or a comma)."""
    in_string = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and in_string:
            escaped = True
        elif ch == '"':
            in_string = not in_string
    return in_string or text.rstrip()[-1:] not in ('}', ']', '"', ',')


def repair_json(text: str) -> Any:
    """The object or array that starts at the first `{`/`[` of `text`, mended by `json-repair`; None if there is
    none. When the text stops in the middle of a value (a reply cut off by `max_tokens`), that unfinished last entry
    is dropped rather than kept half-written ("It opened in 18")."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None
    import json_repair

    body = text[start:]
    value = json_repair.loads(body)
    if not isinstance(value, (dict, list)):
        return None
    if _cut_mid_value(body) and not _drop_last_entry(value):
        return None  # nothing finished before the cut: a re-ask, not an empty answer
    return value


def _drop_last_entry(value: Any) -> bool:
    """Drop the entry a cut-off reply was writing: the last item of the innermost list on the last path (a half
    written key point goes whole, the finished ones stay), else the innermost object's last key. False when that
    leaves the container empty (nothing was finished)."""
    path = []
    while isinstance(value, (dict, list)) and value:
        key = next(reversed(value)) if isinstance(value, dict) else -1
        path.append((value, key))
        value = value[key]
    lists = [(container, key) for container, key in path if isinstance(container, list)]
    if not path:
        return False
    container, key = (lists or path)[-1]
    del container[key]
    return bool(container)


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Why `value` does not satisfy `schema` (empty when it does). Uses `jsonschema` when installed."""
    try:
        import jsonschema
    except ImportError:
        return _basic_schema_errors(value, schema, "$")
    validator_cls = jsonschema.validators.validator_for(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator_cls(schema).iter_errors(value)]


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _basic_schema_errors(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """The common subset (type, enum, required, properties, additionalProperties, items) for installs
    without `jsonschema`."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        ok = any(
            isinstance(value, _TYPES.get(t, object)) and not (t in ("integer", "number") and isinstance(value, bool))
            for t in types
        )
        if not ok:
            return [f"{path}: {value!r} is not of type {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing required property {k!r}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in props:
                errors += _basic_schema_errors(item, props[key], f"{path}/{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected property {key!r}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += _basic_schema_errors(item, schema["items"], f"{path}/{i}")
    return errors


def parse_json(text: str, schema: dict[str, Any] | None = None) -> tuple[Any, str | None, str | None]:
    """Parse and validate one output: `(value, None, None)` or `(None, reason, detail)`.

    `reason` is "invalid_json" (no JSON value in the text) or "schema_violation" (JSON, but not of `schema`).
    """
    value, _, reason, detail = parse_json_repaired(text, schema)
    return value, reason, detail


def parse_json_repaired(text: str, schema: dict[str, Any] | None = None,
                        repair: bool = True) -> tuple[Any, bool, str | None, str | None]:
    """`parse_json`, and whether the value was mended: `(value, repaired, reason, detail)`.

    The text as it stands wins; the mended text is tried when that has no JSON value, or has one the schema
    rejects (often an inner object of a reply cut off by `max_tokens`, which the strict scan finds whole)."""
    try:
        value, repaired = extract_json_repaired(text, repair)
    except ValueError as exc:
        return None, False, INVALID_JSON, str(exc)
    errors = schema_errors(value, schema) if schema else []
    if errors and repair and not repaired:
        mended = repair_json(_unfenced(text))
        if mended is not None and not schema_errors(mended, schema):
            return mended, True, None, None
    if errors:
        return None, repaired, SCHEMA_VIOLATION, "; ".join(errors)[:500]
    return value, repaired, None, None


def apply_parse(completion: Completion, schema: dict[str, Any] | None) -> Completion:
    """Fill `parsed` / `error` of a completion from its text (a backend error is left as it is)."""
    if completion.finish_reason == "error":
        return completion
    value, repaired, reason, detail = parse_json_repaired(completion.text, schema)
    completion.parsed, completion.error, completion.error_detail = value, reason, detail
    completion.repaired = repaired and reason is None
    return completion


def retry_request(request: Request, failed: Completion, attempt: int, sample: int) -> Request:
    """The re-ask for a failed item: sampled with a fresh seed; a chat also gets told what was wrong."""
    base_seed = request.params.seed or 0
    params = request.params.replace(
        n=1,
        temperature=max(request.params.temperature, RETRY_TEMPERATURE),
        seed=base_seed + attempt * RETRY_SEED_BASE + sample,
    )
    prompt = request.prompt
    if request.is_chat:
        problem = "was not valid JSON" if failed.error == INVALID_JSON else f"did not match the schema ({failed.error_detail})"
        prompt = list(prompt) + [
            {"role": "assistant", "content": failed.text[:2000]},
            {
                "role": "user",
                "content": f"Your reply {problem}. Reply with only a JSON value that matches this JSON schema, "
                f"no other text:\n{json.dumps(request.schema)}",
            },
        ]
    return dataclasses.replace(request, prompt=prompt, params=params)


class StructuredGenerator:
    """Runs schema requests on a backend: generate, parse, re-ask the failures, record what still fails."""

    def __init__(self, backend: "Backend") -> None:
        self.backend = backend

    def run(self, requests: list[Request]) -> list[list[Completion]]:
        backend = self.backend
        results = backend._generate_cached(requests)
        for request, completions in zip(requests, results):
            for completion in completions:
                apply_parse(completion, request.schema)
        for attempt in range(1, backend.max_json_retries + 1):
            failed = [
                (i, j)
                for i, completions in enumerate(results)
                for j, c in enumerate(completions)
                if c.error in (INVALID_JSON, SCHEMA_VIOLATION)
            ]
            if not failed:
                break
            backend.usage.retries += len(failed)
            retries = [retry_request(requests[i], results[i][j], attempt, j) for i, j in failed]
            for (i, j), request, (retried,) in zip(failed, retries, backend._generate_cached(retries)):
                apply_parse(retried, requests[i].schema)
                retried.attempts = attempt + 1
                if retried.finish_reason == "error":  # keep the earlier, informative output
                    results[i][j].attempts = attempt + 1
                else:
                    results[i][j] = retried
        for completions in results:
            for c in completions:
                if c.error in (INVALID_JSON, SCHEMA_VIOLATION):
                    backend.usage.rejections[c.error] += 1
                elif c.repaired:
                    backend.usage.json_repaired += 1
        return results
