"""Faults of issue 15 against the server: every bad input is a 4xx with a reason, never a 500; the event loop stays
free while a large batch runs; a client that sends too little body is answered and let go; the call log outlives
a record that UTF-8 cannot hold. In process (the ASGI app through httpx / starlette's TestClient) where that is
enough, over real loopback HTTP where the socket is the point."""

import asyncio
import json
import logging
import socket
import threading
import time

import httpx
import pytest

from pipeline.simulator.calllog import CallLog, read_trajectory
from pipeline.simulator.web import Simulator
from tests.support import ServerProcess, PAGED_HOST, WIKI

STOPWORD_QUERIES = ["the of and", "what is it", "who is the", "to be or not to be"]


@pytest.fixture(scope="module")
def sim(small_snapshot):
    return Simulator(small_snapshot)


@pytest.fixture(scope="module")
def client(sim):
    from starlette.testclient import TestClient

    from pipeline.simulator.server import create_app

    with TestClient(create_app(sim), raise_server_exceptions=False) as c:
        yield c


# ---- 2. stop-word-only queries ------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", STOPWORD_QUERIES)
def test_a_stopword_only_query_has_no_results_not_an_error(sim, client, query):
    resp = sim.search(query)
    assert resp.status == 200 and resp.results == []
    r = client.get("/search", params={"query": query})
    assert r.status_code == 200 and r.json()["status"] == 200 and r.json()["results"] == []


def test_a_retrieve_batch_with_stopword_queries_answers_the_others(client):
    r = client.post("/retrieve", json={"queries": ["basalt lava", *STOPWORD_QUERIES, "nebula"]})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert len(result) == 6 and result[1:5] == [[], [], [], []]
    assert "Basalt" in result[0][0]["title"] and "Nebula" in result[5][0]["title"]


def test_stopword_queries_on_bm25s(small_store, tmp_path):
    pytest.importorskip("bm25s")
    from pipeline.simulator.search_index import IndexConfig
    from pipeline.simulator.snapshot import build_snapshot

    snap = build_snapshot(small_store.path, tmp_path, index=IndexConfig(kind="bm25s"))
    s = Simulator(snap)
    for q in STOPWORD_QUERIES:
        assert s.search(q).status == 200


# ---- 3. the call log after a bad request --------------------------------------------------------------------------

def test_the_call_log_keeps_flushing_after_a_lone_surrogate(small_snapshot, tmp_path):
    from starlette.testclient import TestClient

    from pipeline.simulator.server import create_app

    calls = CallLog(tmp_path / "logs", small_snapshot.id, flush_interval_s=0.2)
    s = Simulator(small_snapshot, call_log=calls)
    body = {"trajectory": "t1"}
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        assert c.post("/search", json={**body, "query": "basalt"}).status_code == 200
        r = c.post("/search", content=b'{"trajectory": "t1", "query": "lava \\ud800 rock"}')
        assert r.status_code == 400 and "surrogate" in r.json()["error"]
        assert c.post("/fetch", json={**body, "url": WIKI + "Basalt"}).status_code == 200
        deadline = time.monotonic() + 10  # the normal flush interval is 0.2 s: no close(), no flush() here
        while len(read_trajectory(calls.log_dir, "t1")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        logged = read_trajectory(calls.log_dir, "t1")
        assert [(x["op"], x["status"]) for x in logged] == [("search", 200), ("search", 400), ("fetch", 200)]
        assert logged[1]["args"]["query"] == "lava \ud800 rock"  # stored escaped, read back exactly
        assert calls.rows_repaired == 1 and calls.rows_dropped == 0
        # and the flusher is still there for later calls
        assert c.post("/search", json={**body, "query": "nebula"}).status_code == 200
        deadline = time.monotonic() + 10
        while len(read_trajectory(calls.log_dir, "t1")) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(read_trajectory(calls.log_dir, "t1")) == 4 and calls._flusher.is_alive()


def test_the_call_log_survives_rows_it_cannot_write(tmp_path):
    calls = CallLog(tmp_path, "snap", flush_interval_s=0.1)
    calls.record("search", {"query": "ok"})
    circular: dict = {}
    circular["self"] = circular
    calls.record("search", circular, session="s\udfff", result_urls=["http://x/\ud800"])
    calls.record("links", {"url": "u"}, result_ids=["not a number"])
    calls.record("fetch", {"url": "ok"})
    deadline = time.monotonic() + 10
    while calls.rows_written < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls.rows_written == 4 and calls.rows_repaired == 2 and calls._flusher.is_alive()


# ---- 4. a large /retrieve beside other clients --------------------------------------------------------------------

def test_healthz_answers_while_a_big_batch_is_in_flight(small_snapshot):
    """The batch's searches run in a thread: /healthz (and any other request) is served meanwhile."""
    from pipeline.simulator.server import create_app

    s = Simulator(small_snapshot)
    started = threading.Event()
    search = s._ops["search"]

    def slow_search(**kwargs):  # a big corpus: each query costs real CPU time, here 50 ms of it
        started.set()
        time.sleep(0.05)
        return search(**kwargs)

    s._ops["search"] = slow_search
    app = create_app(s)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://websim") as c:
            big = asyncio.ensure_future(c.post("/retrieve", json={"queries": ["basalt"] * 60, "topk": 5}))
            while not started.is_set():
                await asyncio.sleep(0.005)
            health = await asyncio.wait_for(c.get("/healthz"), 10)
            small = await asyncio.wait_for(c.get("/fetch", params={"url": WIKI + "Basalt"}), 10)
            in_flight = not big.done()
            r = await asyncio.wait_for(big, 60)
            return health, small, in_flight, r

    health, small, in_flight, r = asyncio.run(scenario())
    assert health.status_code == 200 and small.status_code == 200
    assert in_flight, "healthz waited for the whole batch"
    assert r.status_code == 200 and len(r.json()["result"]) == 60


def test_a_retrieve_asking_for_too_much_is_refused_with_the_limit(client):
    from pipeline.simulator.server import MAX_RETRIEVE_DOCS

    r = client.post("/retrieve", json={"queries": ["basalt"] * 512, "topk": 100})
    assert r.status_code == 413
    assert str(MAX_RETRIEVE_DOCS) in r.json()["error"] and "51200" in r.json()["error"]
    ok = client.post("/retrieve", json={"queries": ["basalt"] * 512, "topk": MAX_RETRIEVE_DOCS // 512})
    assert ok.status_code == 200


def test_an_answer_over_the_size_cap_is_refused_with_the_limit(client, monkeypatch):
    from pipeline.simulator import server

    monkeypatch.setattr(server, "MAX_RESPONSE_BYTES", 2000)
    r = client.get("/sitemap", params={"host": PAGED_HOST, "limit": 25})
    assert r.status_code == 413 and "2000" in r.json()["error"]
    assert client.get("/healthz").status_code == 200


# ---- 5. JSON a parser chokes on -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,reason", [
    (b'{"query": "basalt", "k": ' + b"7" * 5000 + b"}", "digits"),
    (b'{"query": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    (b"[" * 100_000, "nested"),
    (b'{"query": "basalt", "k": NaN}', "NaN"),
    (b'{"query": "basalt", "k": -Infinity}', "Infinity"),
])
def test_json_the_parser_refuses_is_a_400_with_the_reason(client, raw, reason):
    for path in ("/search", "/retrieve", "/fetch"):
        r = client.post(path, content=raw)
        assert r.status_code == 400, (path, r.text[:300])
        assert reason in r.json()["error"]


# ---- 6. too little body, and clients that go away -----------------------------------------------------------------

def _asgi_call(app, receive, timeout_s: float = 10.0) -> list[dict]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/search", "raw_path": b"/search", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"websim"), (b"content-type", b"application/json"), (b"content-length", b"100")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def run():
        await asyncio.wait_for(app(scope, receive, send), timeout_s)

    asyncio.run(run())
    return sent


def test_a_body_shorter_than_its_content_length_gets_408_in_time(sim):
    from pipeline.simulator.server import create_app

    app = create_app(sim, body_timeout_s=0.3)
    parts = [{"type": "http.request", "body": b'{"query": ', "more_body": True}]

    async def receive():
        if parts:
            return parts.pop(0)
        await asyncio.Event().wait()  # the rest never comes (and the client does not leave)

    sent = _asgi_call(app, receive)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert "0.3 s" in json.loads(body)["error"]


def test_a_client_that_disconnects_is_one_quiet_line(sim, caplog):
    from pipeline.simulator.server import create_app

    app = create_app(sim)
    parts = [{"type": "http.request", "body": b'{"query": ', "more_body": True}, {"type": "http.disconnect"}]

    async def receive():
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    with caplog.at_level(logging.INFO, logger="websim.server"):
        sent = _asgi_call(app, receive)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert any("disconnected" in r.getMessage() for r in caplog.records)
    assert all(m.get("status", 0) < 500 for m in sent)


def _recv_all(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while True:
        chunk = sock.recv(65536)  # socket.timeout here: the server held the connection open
        if not chunk:
            return data
        data += chunk


def test_over_loopback_short_bodies_are_answered_and_closed(small_snapshot):
    srv = ServerProcess(small_snapshot.path, log_calls=False, body_timeout_s=1.0)
    try:
        socks = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"query\": ")
            socks.append(s)
        answers = [_recv_all(s, 15) for s in socks]  # each: a 408, then the server closes the connection
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[0][:200]
        for s in socks:
            s.close()
        for _ in range(20):  # clients that give up half-way through their body
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"queries\"")
            s.close()
        time.sleep(0.5)
        assert httpx.get(srv.base_url + "/healthz", timeout=10).status_code == 200
    finally:
        output = srv.stop()
    assert "Traceback" not in output, output[-3000:]


# ---- 8. small ones ------------------------------------------------------------------------------------------------

def test_topk_null_is_the_default_like_an_absent_topk(sim, client):
    many = client.post("/retrieve", json={"queries": ["manual chapter"], "topk": 10}).json()["result"][0]
    assert len(many) == 10
    absent = client.post("/retrieve", json={"queries": ["manual chapter"]}).json()["result"][0]
    null = client.post("/retrieve", json={"queries": ["manual chapter"], "topk": None}).json()["result"][0]
    assert len(absent) == len(null) == 3 and absent == null
    assert len(sim.retrieve(["manual chapter"], topk=None)["result"][0]) == 3
    assert len(client.post("/search", json={"query": "manual chapter", "k": None}).json()["results"]) == len(
        client.post("/search", json={"query": "manual chapter"}).json()["results"])


def test_head_is_get_without_a_body(client):
    for path, params in (("/search", {"query": "basalt"}), ("/fetch", {"url": WIKI + "Basalt"}),
                         ("/sitemap", {"host": PAGED_HOST})):
        get = client.get(path, params=params)
        head = client.head(path, params=params)
        assert get.status_code == head.status_code == 200, (path, head.status_code)
    assert client.head("/search", params={}).status_code == 400


def test_a_sitemap_prefix_ending_in_the_last_code_point(client):
    r = client.get("/sitemap", params={"host": PAGED_HOST, "prefix": "/page-\U0010ffff"})
    assert r.status_code == 200 and r.json()["entries"] == []
