"""The HTTP server's fast path: an ordinary single-call request (`/search`, `/fetch`, `/links`, ...) read, checked and
answered without Starlette's middleware, router, `Request` object and pydantic, which cost more per call than the
simulator's own work (issue 16: HTTP must cost at most 1.3x in-process).

The fast path answers only what it is sure of: the query string or a small JSON body whose fields have exactly the
types and ranges the pydantic request models accept. Anything else (a wrong type, a number out of range, JSON that
orjson and the standard parser might read differently, a body that has not arrived) returns `None` here, and the
request goes to the Starlette route, which gives the same answer and the same 4xx reasons as ever: the models stay the
one definition of what is valid, and the checks here are derived from them (`FastModel`).
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, Awaitable, Callable, Union, get_args, get_origin
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson

_KINDS = (str, int, bool)
_MISSING = object()


class FastModel:
    """The fields of a pydantic request model as plain checks: for each field its type (str, int or bool), whether
    None is allowed, its default, and its bounds (`Field(ge=..., le=...)`). `None` from `values` means "not sure":
    let the model decide."""

    def __init__(self, model: Any):
        fields = []
        for name, info in model.model_fields.items():
            annotation = info.annotation
            args = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
            kinds = [a for a in args if a is not type(None)]
            if len(kinds) != 1 or kinds[0] not in _KINDS:
                raise TypeError(f"{model.__name__}.{name}: the fast path checks str, int and bool fields only")
            lo = hi = None
            for m in info.metadata:
                lo = getattr(m, "ge", lo)
                hi = getattr(m, "le", hi)
            default = _MISSING if info.is_required() else info.default
            fields.append((name, kinds[0], type(None) in args, default, lo, hi))
        if model.model_config.get("extra", "ignore") != "ignore":
            raise TypeError(f"{model.__name__}: the fast path ignores unknown fields, as the model must")
        self.fields = tuple(fields)

    def values(self, params: dict[str, Any], strict: bool) -> dict[str, Any] | None:
        """The field values of `params` (a JSON object when `strict`, a query string's strings when not), or None."""
        out = {}
        for name, kind, nullable, default, lo, hi in self.fields:
            v = params.get(name, _MISSING)
            if v is _MISSING or (v is None and strict):
                if default is _MISSING or (v is None and not nullable):
                    return None
                out[name] = default
                continue
            if strict:
                if type(v) is not kind:  # JSON gives exact types: a bool is not an int here, nor "5" an int
                    return None
            elif kind is int:
                # Plain decimal digits only (no sign, spaces, underscores or leading zeros): what both agree on.
                if not (v.isascii() and v.isdigit() and len(v) <= 18 and (v[0] != "0" or len(v) == 1)):
                    return None
                v = int(v)
            elif kind is bool:
                if v == "true":
                    v = True
                elif v == "false":
                    v = False
                else:
                    return None
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return None
            out[name] = v
        return out


def query_params(scope: dict) -> dict[str, str]:
    """The query string's parameters as Starlette's `dict(request.query_params)` gives them (`parse_qsl` of its
    Latin-1 text, blank values kept, the last value of a name wins), with less work for an ASCII query string."""
    qs = scope["query_string"]
    if not qs.isascii():
        return dict(parse_qsl(qs.decode("latin-1"), keep_blank_values=True))
    out = {}
    for part in qs.split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            out[_unquote_plus(name)] = _unquote_plus(value)
    return out


def _unquote_plus(raw: bytes) -> str:
    """`unquote(text.replace("+", " "))` of ASCII `raw`: percent escapes decoded as UTF-8, invalid ones replaced."""
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        return unquote_to_bytes(raw).decode("utf-8", "replace")
    return raw.decode("ascii")


def json_object(body: bytes) -> dict[str, Any] | None:
    """A small flat JSON object (values null, booleans, numbers, strings), or None for anything else: a body that
    orjson reads the same as the standard parser, which the slow path uses (nested values, where the two parsers'
    depth limits differ, go there)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    for v in data.values():
        if type(v) in (list, dict):
            return None
    return data


def header(scope: dict, name: bytes) -> str | None:
    """The first value of header `name` (lower case, as servers deliver them), as Starlette's `headers.get`."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


Receive = Callable[[], Awaitable[dict]]


def replay(messages: list[dict], receive: Receive) -> Receive:
    """A `receive` that gives `messages` again, then the rest of the request: for the slow path after a fast try."""
    pending = list(messages)

    async def again() -> dict:
        if pending:
            return pending.pop(0)
        return await receive()

    return again


async def small_body(scope: dict, receive: Receive, max_bytes: int, timeout_s: float) -> tuple[bytes | None, list[dict]]:
    """The body of a request that declares its Content-Length (at most `max_bytes`), and the messages read: (None,
    messages) when the slow path should have it (no length, too long, the client went away); TimeoutError when it
    did not arrive within `timeout_s`."""
    declared = header(scope, b"content-length")
    if declared is None or not (declared.isascii() and declared.isdigit()) or int(declared) > max_bytes:
        return None, []
    messages: list[dict] = []
    async with asyncio.timeout(timeout_s):
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None, messages
            if not message.get("more_body", False):
                break
    body = b"".join(m.get("body", b"") for m in messages)
    return (body if len(body) <= max_bytes else None), messages
