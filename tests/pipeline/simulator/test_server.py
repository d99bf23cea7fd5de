"""The HTTP server over real loopback HTTP: endpoints, Search-R1's /retrieve shape, bad input, load, call log."""

import http.client
import json
import threading
import time
from urllib.parse import quote, urlencode

import httpx
import pytest

from pipeline.simulator.calllog import read_trajectory
from pipeline.simulator.web import HttpSimulator, InvalidRequest, Simulator
from tests.support import DUPLICATE_URL, PAGED_HOST, TOPICS, WIKI, ServerProcess

@pytest.fixture(scope="module")
def server(small_snapshot):
    srv = ServerProcess(small_snapshot.path, log_calls=False)
    yield srv
    output = srv.stop()
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


# ---- endpoints -------------------------------------------------------------------------------------

def test_healthz_and_index(client, small_snapshot):
    assert client.get("/healthz").json() == {"status": "ok", "snapshot": small_snapshot.id,
                                             "pages": small_snapshot.manifest["counts"]["pages"]}
    index = client.get("/").json()
    assert index["snapshot"]["id"] == small_snapshot.id and "/retrieve" in index["endpoints"]


def test_search_get_and_post(client):
    got = client.get("/search", params={"query": "volcanic lava", "k": 2}).json()
    posted = client.post("/search", json={"query": "volcanic lava", "k": 2}).json()
    assert got == posted
    assert got["status"] == 200 and got["results"][0]["title"] == "Basalt" and len(got["results"]) <= 2
    assert set(got["results"][0]) == {"rank", "url", "title", "snippet", "score", "page_id"}
    assert client.get("/search", params={"q": "penguin"}).json()["results"][0]["title"] == "Penguin"


def test_fetch_statuses_in_the_body(client):
    page = client.get("/fetch", params={"url": WIKI + "Basalt"})
    assert page.status_code == 200 and page.json()["status"] == 200 and page.json()["title"] == "Basalt"
    missing = client.post("/fetch", json={"url": WIKI + "Unicorn"})
    assert missing.status_code == 200 and missing.json()["status"] == 404
    moved = client.get("/fetch", params={"url": "http://example.org/old-docs"})
    # A simulated 301 is data, not an HTTP redirect that a client would follow out of the simulation.
    assert moved.status_code == 200 and not moved.has_redirect_location
    assert moved.json()["status"] == 301 and moved.json()["headers"]["location"] == "https://example.org/docs/intro"
    dup = client.get("/fetch", params={"url": DUPLICATE_URL}).json()
    assert dup["status"] == 200 and dup["canonical_url"] == "https://example.org/docs/intro"


def test_links_sitemap_hosts(client):
    links = client.get("/links", params={"url": WIKI + "Aardvark", "backlinks": "true"}).json()
    assert {x["title"] for x in links["outlinks"]} == {"Penguin", "Basalt"} and links["backlinks"][0]["title"] == "Penguin"
    assert client.post("/links", json={"url": WIKI + "Aardvark"}).json()["backlinks"] is None
    sm = client.get("/sitemap", params={"host": PAGED_HOST, "limit": 10, "offset": 20}).json()
    assert [e["path"] for e in sm["entries"]] == [f"/page-{i}" for i in range(21, 26)] and sm["next_offset"] is None
    assert client.post("/sitemap", json={"host": "example.org", "prefix": "/docs"}).json()["total"] == 3
    assert {h["host"] for h in client.get("/hosts").json()["hosts"]} == {"en.wikipedia.org", "example.org", PAGED_HOST}


def test_http_client_matches_in_process(server, small_snapshot):
    sim = Simulator(small_snapshot)
    with HttpSimulator(server.base_url) as remote:
        assert remote.search("fjord glaciers", 3).to_dict() == sim.search("fjord glaciers", 3).to_dict()
        assert remote.fetch(WIKI + "Aardvark").to_dict() == sim.fetch(WIKI + "Aardvark").to_dict()
        assert remote.links(WIKI + "Aardvark", backlinks=True).to_dict() == \
            sim.links(WIKI + "Aardvark", backlinks=True).to_dict()
        assert remote.sitemap(PAGED_HOST, limit=5).to_dict() == sim.sitemap(PAGED_HOST, limit=5).to_dict()
        assert remote.fetch("../../etc/passwd").to_dict() == sim.fetch("../../etc/passwd").to_dict()
        assert remote.sitemap("bad host/x").status == 400
        with pytest.raises(InvalidRequest):
            remote.search("", 3)


# ---- Search-R1 -------------------------------------------------------------------------------------

def test_retrieve_has_search_r1_shape(client):
    body = client.post("/retrieve", json={"queries": ["volcanic lava", "flightless bird"], "topk": 3,
                                          "return_scores": True}).json()
    assert list(body) == ["result"] and len(body["result"]) == 2
    for hits in body["result"]:
        assert 1 <= len(hits) <= 3
        for hit in hits:
            assert set(hit) == {"document", "score"} and isinstance(hit["score"], float)
            assert {"id", "contents"} <= set(hit["document"])
    top = body["result"][0][0]["document"]
    assert top["contents"].startswith('"Basalt"\n') and top["title"] == "Basalt"
    # What Search-R1's generation code does with it (search_r1/llm_agent/generation.py, _passages2string):
    content = top["contents"]
    assert content.split("\n")[0].strip('"') == "Basalt" and "lava" in "\n".join(content.split("\n")[1:])

    plain = client.post("/retrieve", json={"queries": ["volcanic lava"], "topk": 2}).json()
    assert set(plain["result"][0][0]) >= {"id", "contents"}  # return_scores false: documents only
    assert client.post("/retrieve", json={"queries": ["basalt", ""], "topk": 1}).json()["result"][1] == []


# ---- bad input -------------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("GET", "/search", {}, None),
    ("GET", "/search", {"query": ""}, None),
    ("GET", "/search", {"query": "   "}, None),
    ("POST", "/search", None, {"query": ""}),
    ("GET", "/search", {"query": "x" * 20_000}, None),
    ("GET", "/search", {"query": "nul\x00byte"}, None),
    ("POST", "/search", None, {"query": "nul\u0000byte"}),
    ("POST", "/search", None, {"query": "lone \ud800 surrogate"}),
    ("POST", "/search", None, {"query": 5}),
    ("POST", "/search", None, {"query": ["basalt"]}),
    ("POST", "/search", None, {"query": "basalt", "k": "5"}),
    ("POST", "/search", None, {"query": "basalt", "k": 2.5}),
    ("POST", "/search", None, {"query": "basalt", "k": True}),
    ("GET", "/search", {"query": "basalt", "k": "-1"}, None),
    ("GET", "/search", {"query": "basalt", "k": "0"}, None),
    ("GET", "/search", {"query": "basalt", "k": str(10**9)}, None),
    ("GET", "/search", {"query": "basalt", "k": "1e3"}, None),
    ("GET", "/search", {"query": "basalt", "k": "99999999999999999999999"}, None),
    ("POST", "/search", None, [1, 2]),
    ("POST", "/search", None, "just a string"),
    ("GET", "/fetch", {}, None),
    ("GET", "/fetch", {"url": "../../etc/passwd"}, None),
    ("GET", "/fetch", {"url": "'; DROP TABLE pages; --"}, None),
    ("GET", "/fetch", {"url": "file:///etc/passwd"}, None),
    ("POST", "/fetch", None, {"url": None}),
    ("POST", "/fetch", None, {"url": {"x": 1}}),
    ("GET", "/links", {"url": WIKI + "Basalt", "backlinks": "maybe"}, None),
    ("GET", "/links", {"url": WIKI + "Basalt", "limit": "0"}, None),
    ("GET", "/sitemap", {}, None),
    ("GET", "/sitemap", {"host": "../../etc/passwd"}, None),
    ("GET", "/sitemap", {"host": "'; DROP TABLE pages; --"}, None),
    ("GET", "/sitemap", {"host": PAGED_HOST, "offset": "-5"}, None),
    ("GET", "/sitemap", {"host": PAGED_HOST, "limit": "100000"}, None),
    ("POST", "/retrieve", None, {"queries": []}),
    ("POST", "/retrieve", None, {"queries": "basalt"}),
    ("POST", "/retrieve", None, {"queries": [1, 2]}),
    ("POST", "/retrieve", None, {"queries": ["basalt"], "topk": 0}),
    ("POST", "/retrieve", None, {"queries": ["basalt"], "topk": 10**9}),
    ("POST", "/retrieve", None, {"queries": ["basalt"] * 20_000}),  # over MAX_RETRIEVE_QUERIES
    ("POST", "/retrieve", None, {"queries": ["basalt"], "return_scores": "perhaps"}),
    ("POST", "/retrieve", None, {"queries": ["basalt"], "topk": "three"}),
    ("POST", "/access", None, {"urls": "https://en.wikipedia.org/wiki/Basalt"}),
    ("POST", "/access", None, {"urls": [1, 2]}),
    ("POST", "/access", None, {}),
    ("GET", "/read", {"url": WIKI + "Basalt", "offset": "-1"}, None),
    ("GET", "/read", {"url": WIKI + "Basalt", "max_chars": "0"}, None),
    ("POST", "/find", None, {"url": WIKI + "Basalt"}),
    ("POST", "/find", None, {"url": WIKI + "Basalt", "text": ""}),
    ("POST", "/find", None, {"url": WIKI + "Basalt", "text": "lava", "max_matches": 10**6}),
]


@pytest.mark.parametrize("method,path,params,body", BAD_REQUESTS)
def test_bad_input_is_a_4xx_json_answer(client, method, path, params, body):
    if body is None:
        r = client.request(method, path, params=params)
    else:
        r = client.request(method, path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]


def test_raw_bodies_and_sizes(client):
    bad = [b"\xff\xfe\x00\x01binary", b"{not json", b'{"query": "unterminated', "{\"query\": \"caf\xe9\"}".encode("latin-1")]
    for raw in bad:
        r = client.post("/search", content=raw)
        assert r.status_code == 400 and "JSON" in r.json()["error"]
    from pipeline.simulator.server import MAX_BODY_BYTES

    huge = json.dumps({"query": "a" * MAX_BODY_BYTES}).encode()
    assert client.post("/search", content=huge).status_code == 413
    assert client.post("/search", content=b"").status_code == 400  # no query


def test_routes_and_methods(client):
    for path in ("/nope", "/../../etc/passwd", "/search/../../etc/passwd"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"]
    assert client.delete("/search").status_code == 405
    assert client.get("/retrieve").status_code == 405 and client.get("/retrieve").json()["error"]


def test_injection_strings_are_only_text(client, small_snapshot):
    for q in ("'; DROP TABLE pages; --", "../../etc/passwd", "basalt OR 1=1", 'title:"x" AND NOT body:*'):
        r = client.get("/search", params={"query": q})
        assert r.status_code == 200 and r.json()["status"] == 200
    assert client.get("/healthz").json()["pages"] == small_snapshot.manifest["counts"]["pages"]
    assert client.get("/fetch", params={"url": WIKI + "Basalt"}).json()["status"] == 200


# ---- load --------------------------------------------------------------------------------------------

def test_10000_requests_without_an_error(server):
    titles = list(TOPICS)
    paths = []
    for i in range(10_000):
        t = titles[i % len(titles)]
        kind = i % 4
        if kind == 0:
            paths.append(("GET", "/search?" + urlencode({"query": f"{t} history", "k": 5}), None))
        elif kind == 1:
            paths.append(("GET", "/fetch?url=" + quote(WIKI + t, safe=""), None))
        elif kind == 2:
            paths.append(("POST", "/links", json.dumps({"url": WIKI + t, "backlinks": True})))
        else:
            paths.append(("POST", "/retrieve", json.dumps({"queries": [t], "topk": 3})))
    n_clients = 16
    errors: list[str] = []
    done = [0] * n_clients

    def run(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for method, path, body in paths[c::n_clients]:
                headers = {"content-type": "application/json"} if body else {}
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or not data.startswith(b"{"):
                    errors.append(f"{method} {path}: {resp.status} {data[:200]!r}")
                done[c] += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(n_clients)]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    elapsed = time.perf_counter() - started
    assert not errors, errors[:5]
    assert sum(done) == 10_000
    print(f"10,000 requests from {n_clients} clients in {elapsed:.1f} s ({10_000 / elapsed:.0f} req/s)")


# ---- call log over HTTP ------------------------------------------------------------------------------

def test_call_log_over_http_rebuilds_a_trajectory(small_snapshot):
    srv = ServerProcess(small_snapshot.path, log_calls=True, failure_rate=0.0)
    try:
        headers = {"X-Websim-Session": "agent-7", "X-Websim-Trajectory": "http-traj"}
        with httpx.Client(base_url=srv.base_url, headers=headers) as c:
            c.get("/search", params={"query": "nebula stars"})
            c.post("/fetch", json={"url": WIKI + "Nebula"})
            c.post("/links", json={"url": WIKI + "Nebula", "trajectory": "body-traj"})  # body wins over header
            c.get("/search", params={"query": ""})
    finally:
        output = srv.stop()  # a graceful stop flushes the log
    assert "Traceback" not in output, output
    calls = read_trajectory(small_snapshot.log_dir, "http-traj")
    assert [(c["op"], c["status"]) for c in calls] == [("search", 200), ("fetch", 200), ("search", 400)]
    assert calls[0]["session"] == "agent-7" and calls[1]["result_urls"] == [WIKI + "Nebula"]
    assert [c["op"] for c in read_trajectory(small_snapshot.log_dir, "body-traj")] == ["links"]


def test_a_bug_answers_500_and_the_server_keeps_serving(small_snapshot):
    from starlette.testclient import TestClient

    from pipeline.simulator.server import create_app

    sim = Simulator(small_snapshot)

    def broken(**kwargs):
        raise RuntimeError("boom")

    sim._ops["links"] = broken
    with TestClient(create_app(sim), raise_server_exceptions=False) as c:
        r = c.get("/links", params={"url": WIKI + "Basalt"})
        assert r.status_code == 500 and r.json()["error"] == "internal error (logged)"
        assert c.get("/fetch", params={"url": WIKI + "Basalt"}).json()["status"] == 200


def test_a_cached_answer_is_encoded_once_and_served_the_same(small_snapshot):
    from starlette.testclient import TestClient

    from pipeline.simulator.server import _EncodedCache, create_app

    app = create_app(Simulator(small_snapshot, cache_size=16))
    with TestClient(app) as c:
        first, again = (c.get("/fetch", params={"url": WIKI + "Basalt"}) for _ in range(2))
        assert first.content == again.content and first.json()["title"] == "Basalt"
        assert len(app.state.encoded._bodies) == 1
        other = c.get("/fetch", params={"url": WIKI + "Penguin"}).json()
        assert other["title"] == "Penguin" and c.get("/links", params={"url": WIKI + "Basalt"}).status_code == 200
        assert len(app.state.encoded._bodies) == 2  # links answers are not cached by the simulator: not kept
    cache, answers = _EncodedCache(2), [object(), object(), object()]
    for i, a in enumerate(answers):
        cache.put(a, b"%d" % i)
    assert cache.get(answers[0]) is None and cache.get(answers[2]) == b"2" and cache.get(object()) is None
