"""Generated bad requests (hypothesis) against the ASGI app, in process: every answer is < 500, none hangs, and
the app is healthy afterwards. About 1,200 requests in a few seconds."""

import asyncio
import json
import string
import threading
from collections import Counter

import httpx
import pytest

from pipeline.simulator.web import Simulator
from tests.support import PAGED_HOST, WIKI

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

N_REQUESTS = 1200
REQUEST_TIMEOUT_S = 10.0
ENDPOINTS = ["/search", "/fetch", "/links", "/sitemap", "/retrieve"]
# Mostly the endpoints that take arguments, with the right methods; sometimes anything.
PATHS = ENDPOINTS * 6 + ["/hosts", "/healthz", "/", "/nope", "/search/x", "/%2e%2e/etc/passwd"]
METHODS = ["GET", "POST"] * 6 + ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
FIELDS = ["query", "q", "k", "snippet_chars", "url", "backlinks", "limit", "host", "prefix", "offset", "queries",
          "topk", "return_scores", "session", "trajectory"]

# Text with the characters that break things: controls, lone surrogates, the last code point, RTL marks, NUL.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "\U0010ffff", "\u202e", "the of and", "what is it",
                     "../../etc/passwd", "'; DROP TABLE pages; --", "title:x AND NOT body:*", "http://", "http://[::1",
                     "https://en.wikipedia.org/wiki/Basalt", WIKI + "%00", "//" * 300, "a" * 3000, PAGED_HOST,
                     "*", "\\", "%", "nan", "-1", "1e309"]),
)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
                        st.floats(allow_nan=False, allow_infinity=False), nasty_text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                              st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5),
                                                                              inner, max_size=5)),
                          max_leaves=20)


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # ASCII escapes: lone surrogates travel as \ud800


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(_dumps, st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=6)),
    st.builds(_dumps, json_value),
    st.sampled_from([b"{", b"}", b"[" * 5000, b'{"query": ' + b"[" * 3000, b'{"k": ' + b"9" * 6000 + b"}",
                     b'{"query": "basalt", "k": NaN}', b'{"query": Infinity}', b'{"query": "\\ud800"}',
                     b'{"queries": ["a", "\\udc00"]}', b'{"query": "x"}{"query": "y"}', b"\xef\xbb\xbf{}",
                     b'{"queries": ' + b'["basalt"],' * 1 + b'"topk": 100}',
                     _dumps({"queries": ["the of and"] * 600}), _dumps({"queries": ["basalt"] * 512, "topk": 100}),
                     _dumps({"query": "basalt", "k": True}), _dumps({"host": PAGED_HOST, "prefix": "\U0010ffff"}),
                     _dumps({"url": WIKI + "Basalt", "limit": 10**30}), _dumps({"session": ["x"], "query": "a"})]),
)
query_params = st.dictionaries(st.sampled_from(FIELDS) | st.text(alphabet=string.printable, max_size=5),
                               st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FFF), max_size=30)
                               | st.sampled_from(["1e3", "-0", "99999999999999999999", "true", "maybe", ""]),
                               max_size=5)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
requests = st.fixed_dictionaries({
    "method": st.sampled_from(METHODS),
    "path": st.sampled_from(PATHS),
    "params": query_params,
    "body": st.none() | raw_bodies,
    "headers": st.dictionaries(st.sampled_from(["content-type", "x-websim-session", "x-websim-trajectory",
                                                "accept", "content-encoding"]), header_values, max_size=3),
})


class _Loop:
    """One event loop in a thread; requests go to the app through httpx's ASGI transport, each with a deadline."""

    def __init__(self, app):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://websim")

    def request(self, **kw) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(self.client.request(**kw), self.loop).result(REQUEST_TIMEOUT_S)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_generated_bad_requests_never_get_a_5xx_or_hang(small_snapshot, tmp_path, capsys):
    from pipeline.simulator.calllog import CallLog
    from pipeline.simulator.server import create_app

    calls = CallLog(tmp_path / "logs", small_snapshot.id, flush_interval_s=0.5)
    app = create_app(Simulator(small_snapshot, call_log=calls), body_timeout_s=2.0)
    runner = _Loop(app)
    statuses: Counter = Counter()
    failures: list = []

    @settings(max_examples=N_REQUESTS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(req=requests)
    def one(req):
        kw = {"method": req["method"], "url": req["path"], "params": req["params"], "headers": req["headers"]}
        if req["body"] is not None and req["method"] not in ("GET", "HEAD"):
            kw["content"] = req["body"]
        try:
            r = runner.request(**kw)
        except TimeoutError:  # concurrent.futures.TimeoutError is TimeoutError on 3.11
            failures.append(("hang", kw))
            raise AssertionError(f"no answer within {REQUEST_TIMEOUT_S} s: {kw!r:.500}")
        statuses[r.status_code] += 1
        if r.status_code >= 500:
            failures.append((r.status_code, kw, r.text[:300]))
        assert r.status_code < 500, (kw, r.text[:500])
        if r.status_code >= 400 and req["method"] != "HEAD":
            assert r.json()["error"], r.text[:300]  # a reason, always

    try:
        one()
        health = runner.request(method="GET", url="/healthz")
        search = runner.request(method="GET", url="/search", params={"query": "basalt"})
    finally:
        runner.close()
        calls.close()
    total = sum(statuses.values())
    with capsys.disabled():
        print(f"\nfuzz: {total} generated requests, statuses {dict(sorted(statuses.items()))}, "
              f"call log rows written {calls.rows_written} (repaired {calls.rows_repaired}, dropped "
              f"{calls.rows_dropped})")
    assert not failures
    assert total >= 1000 and not any(code >= 500 for code in statuses)
    assert health.status_code == 200 and search.status_code == 200 and search.json()["results"]
    assert calls.rows_dropped == 0
