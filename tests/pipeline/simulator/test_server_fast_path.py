"""The server's fast path (`pipeline.simulator.fast_path`) against its Starlette path: for the same requests, good
and bad, the same ASGI messages (status, headers, body bytes); the ordinary requests really skip pydantic; anything
the fast path is unsure of (types, ranges, odd JSON, a body in pieces or never complete) gets the Starlette answer."""

import asyncio
import json
from urllib.parse import urlencode

import pytest

from pipeline.simulator.web import Simulator
from tests.support import DUPLICATE_URL, PAGED_HOST, WIKI


@pytest.fixture(scope="module")
def apps(small_snapshot):
    """(fast, slow): the app as served, and the same app with every request sent through the Starlette routes."""
    from pipeline.simulator.server import create_app

    fast = create_app(Simulator(small_snapshot), body_timeout_s=0.3)
    slow = create_app(Simulator(small_snapshot), body_timeout_s=0.3)
    slow.answer_fast = False
    return fast, slow


def call(app, method: str, path: str, query: dict | bytes = b"", body: bytes | list | None = None,
         headers: list | None = None, content_length: bool = True) -> list[dict]:
    """The messages `app` sends for one request; `body` a list: its pieces (the last one never ends if it is None)."""
    pieces = body if isinstance(body, list) else ([body] if body is not None else [])
    raw_headers = [(b"host", b"websim"), *(headers or [])]
    if body is not None and content_length:
        size = sum(len(p) for p in pieces if p is not None)
        raw_headers.append((b"content-length", str(size + (100 if None in pieces else 0)).encode()))
    qs = urlencode(query).encode() if isinstance(query, dict) else query
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": qs, "root_path": "", "headers": raw_headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1 or p is None}
                for i, p in enumerate(pieces) if p is not None] or [{"type": "http.request", "body": b""}]
    if pieces and pieces[-1] is None:
        messages[-1]["more_body"] = True
    never_ends = bool(pieces) and pieces[-1] is None
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        if never_ends:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return sent


def both(apps, *args, **kwargs) -> list[dict]:
    fast, slow = apps
    got, want = call(fast, *args, **kwargs), call(slow, *args, **kwargs)
    assert got == want, (args, kwargs)
    return got


def status_and_json(messages: list[dict]) -> tuple[int, dict]:
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return messages[0]["status"], json.loads(body)


GOOD = [
    ("GET", "/search", {"query": "volcanic lava", "k": "2"}, None),
    ("GET", "/search", {"q": "penguin"}, None),
    ("GET", "/search", {"query": "fjord glaciers", "snippet_chars": "0", "k": "100"}, None),
    ("POST", "/search", b"", {"query": "volcanic lava", "k": 2, "snippet_chars": 50, "session": "s", "x": 1.5}),
    ("POST", "/search", b"", {"query": "basalt", "k": None, "snippet_chars": None, "trajectory": None}),
    ("GET", "/fetch", {"url": WIKI + "Basalt"}, None),
    ("POST", "/fetch", b"", {"url": WIKI + "Unicorn"}),
    ("GET", "/fetch", {"url": "http://example.org/old-docs"}, None),
    ("GET", "/fetch", {"url": DUPLICATE_URL}, None),
    ("GET", "/fetch", {"url": "../../etc/passwd"}, None),  # a simulated 400: HTTP 400 with the answer
    ("GET", "/links", {"url": WIKI + "Aardvark", "backlinks": "true", "limit": "3"}, None),
    ("POST", "/links", b"", {"url": WIKI + "Aardvark", "backlinks": False}),
    ("GET", "/sitemap", {"host": PAGED_HOST, "limit": "10", "offset": "20"}, None),
    ("POST", "/sitemap", b"", {"host": "example.org", "prefix": "/docs"}),
    ("GET", "/sitemap", {"host": "bad host/x"}, None),
    ("GET", "/read", {"url": WIKI + "Basalt", "offset": "10", "max_chars": "50"}, None),
    ("POST", "/find", b"", {"url": WIKI + "Basalt", "text": "lava", "max_matches": 2, "context_chars": 20}),
    ("GET", "/search", b"query=basalt&query=penguin&k=3&k=4", None),  # repeated parameters: the last one wins
]


@pytest.mark.parametrize("method,path,query,body", GOOD)
def test_ordinary_requests_skip_pydantic_and_answer_the_same_bytes(apps, monkeypatch, method, path, query, body):
    from pipeline.simulator import server

    validated = []
    real = server._validate
    monkeypatch.setattr(server, "_validate", lambda *a, **kw: validated.append(a) or real(*a, **kw))
    raw = json.dumps(body).encode() if body is not None else None
    fast, slow = apps
    got = call(fast, method, path, query, raw)
    assert validated == [], "the fast path sent an ordinary request to pydantic"
    assert got == call(slow, method, path, query, raw) and validated
    assert status_and_json(got)[0] in (200, 400)


def test_session_headers_and_fields_reach_the_call_log_the_same(small_snapshot, tmp_path):
    from pipeline.simulator.calllog import CallLog, read_trajectory
    from pipeline.simulator.server import create_app

    logs = {}
    for name, fast in (("fast", True), ("slow", False)):
        log = CallLog(tmp_path / name, small_snapshot.id)
        app = create_app(Simulator(small_snapshot, call_log=log))
        app.answer_fast = fast
        headers = [(b"x-websim-session", b"agent-7"), (b"x-websim-trajectory", b"t1")]
        call(app, "GET", "/search", {"query": "nebula stars"}, headers=headers)
        call(app, "POST", "/links", body=json.dumps({"url": WIKI + "Nebula", "trajectory": "t2"}).encode(),
             headers=headers)
        call(app, "GET", "/fetch", {"url": WIKI + "Nebula", "session": "s9"}, headers=headers)
        log.close()
        logs[name] = [[(c["op"], c["session"], c["status"], c["result_ids"]) for c in read_trajectory(tmp_path / name, t)]
                      for t in ("t1", "t2")]
    assert logs["fast"] == logs["slow"]
    t1, t2 = logs["fast"]
    assert [(op, session) for op, session, _, _ in t1] == [("search", "agent-7"), ("fetch", "s9")]
    assert t1[0][3] and [(op, session) for op, session, _, _ in t2] == [("links", "agent-7")]


BAD_QUERIES = [
    {}, {"query": ""}, {"query": "  "}, {"query": "nul\x00byte"}, {"query": "x" * 5000},
    {"query": "basalt", "k": "05"}, {"query": "basalt", "k": " 5"}, {"query": "basalt", "k": "+5"},
    {"query": "basalt", "k": "5.0"}, {"query": "basalt", "k": "1_0"}, {"query": "basalt", "k": "0"},
    {"query": "basalt", "k": "101"}, {"query": "basalt", "k": "-1"}, {"query": "basalt", "k": "٣"},
    {"query": "basalt", "k": "9" * 30}, {"query": "basalt", "snippet_chars": "5001"},
    {"query": "basalt", "session": "\x01"}, {"query": "basalt", "trajectory": "t" * 300},
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_query_strings_get_the_same_reasons(apps, query):
    status, answer = status_and_json(both(apps, "GET", "/search", query))
    assert status in (200, 400)  # "05" and " 5" are fine for pydantic; the fast path leaves them to it


@pytest.mark.parametrize("params", [
    {"url": WIKI + "Basalt", "backlinks": "True"}, {"url": WIKI + "Basalt", "backlinks": "1"},
    {"url": WIKI + "Basalt", "backlinks": "maybe"}, {"url": WIKI + "Basalt", "limit": "0"}, {"backlinks": "true"},
])
def test_bad_links_parameters_get_the_same_reasons(apps, params):
    both(apps, "GET", "/links", params)


BAD_BODIES = [
    b"", b"   ", b"[1, 2]", b'"just a string"', b"{not json", b"\xef\xbb\xbf{}", b'{"query": "\\ud800"}',
    b'{"query": "caf\xe9"}', b'{"query": "x"}{"query": "y"}', b'{"query": "basalt", "k": NaN}',
    b'{"query": "basalt", "k": 18446744073709551616}', b'{"query": "basalt", "k": 1e400}',
    b'{"query": "basalt", "k": "5"}', b'{"query": "basalt", "k": 5.0}', b'{"query": "basalt", "k": true}',
    b'{"query": 5}', b'{"query": null}', b'{"query": ["basalt"]}', b'{"query": "basalt", "session": 5}',
    b'{"query": "basalt", "session": ""}', b'{"query": "basalt", "x": [[[[1]]]]}', b'{"q": "penguin"}',
    b'{"query": "basalt", "extra": ' + b"[" * 990 + b"]" * 990 + b"}", b'{"query": "basalt", "k": ' + b"7" * 5000 + b"}",
    b'{"query": "basalt", "k": 2, "k": 0}', b'{"query": "nul\\u0000byte"}',
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_odd_bodies_get_the_same_answer(apps, body):
    status, answer = status_and_json(both(apps, "POST", "/search", body=body))
    assert status == 200 or answer["error"]


def test_bodies_in_pieces_without_a_length_or_never_complete(apps):
    body = json.dumps({"query": "volcanic lava", "k": 3}).encode()
    whole = both(apps, "POST", "/search", body=body)
    assert both(apps, "POST", "/search", body=[body[:7], body[7:]]) == whole
    assert both(apps, "POST", "/search", body=body, content_length=False) == whole
    timed_out = both(apps, "POST", "/search", body=[body[:7], None])
    assert timed_out[0]["status"] == 408 and (b"connection", b"close") in timed_out[0]["headers"]
    from pipeline.simulator.server import MAX_BODY_BYTES

    assert both(apps, "POST", "/search", body=b"{}", headers=[(b"content-length", str(MAX_BODY_BYTES + 1).encode())],
                content_length=False)[0]["status"] == 413


def test_a_bug_is_a_logged_500_on_the_fast_path_too(small_snapshot, caplog):
    from pipeline.simulator.server import create_app

    sim = Simulator(small_snapshot)

    def broken(**kwargs):
        raise RuntimeError("boom")

    sim._ops["links"] = broken
    app = create_app(sim)
    status, answer = status_and_json(call(app, "GET", "/links", {"url": WIKI + "Basalt"}))
    assert status == 500 and answer == {"error": "internal error (logged)", "status": 500}
    assert any("error serving GET /links" in r.getMessage() for r in caplog.records)
    assert status_and_json(call(app, "GET", "/fetch", {"url": WIKI + "Basalt"}))[1]["status"] == 200


def test_query_strings_are_read_as_starlette_reads_them():
    from urllib.parse import parse_qsl

    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pipeline.simulator.fast_path import query_params

    pieces = st.sampled_from([b"a", b"k", b"=", b"&", b"+", b"%", b"%2", b"%20", b"%2B", b"%3D", b"%26", b"%e2%80%a6",
                              b"%C3", b"%zz", b"%00", b"query", b"q", b"\xe9", b"\xff", b" ", b"5", b""])

    @settings(max_examples=3000, deadline=None, database=None, derandomize=True)
    @given(st.lists(pieces | st.binary(max_size=6), max_size=12).map(b"".join))
    def same(qs):
        assert query_params({"query_string": qs}) == dict(parse_qsl(qs.decode("latin-1"), keep_blank_values=True))

    same()
