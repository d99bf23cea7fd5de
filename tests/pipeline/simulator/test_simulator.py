"""The in-process simulator: search, fetch, links, sitemap, the knobs, the call log and the LLM tools."""

import inspect
import threading
import time

import pytest

from pipeline.simulator.calllog import CallLog, read_calls, read_trajectory
from pipeline.simulator.web import (
    FetchResponse,
    InvalidRequest,
    SearchResponse,
    Simulator,
    round_score,
    title_self_retrieval,
)
from pipeline.simulator.tools import TOOL_SCHEMAS, WebTools, call_tool, tool_functions
from tests.support import DUPLICATE_URL, EXAMPLE_PAGES, PAGED_COUNT, PAGED_HOST, REDIRECTS, TOPICS, WIKI


@pytest.fixture(scope="module")
def sim(small_snapshot):
    return Simulator(small_snapshot)


# ---- search ---------------------------------------------------------------------------------------

def test_round_score_is_round_to_4_places():
    import random
    import struct

    rng = random.Random(0)
    f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]  # noqa: E731  (what tantivy and bm25s score in)
    cases = [f32(rng.uniform(0, 60)) for _ in range(100_000)] + [rng.uniform(0, 500) for _ in range(100_000)]
    # halves at the 4th place, both parities; near-halves a double cannot hold exactly; edges of the fast path
    cases += [k / 20000 for k in range(1, 20001, 2)] + [k / 20000 + d for k in range(1, 2001, 2) for d in (1e-13, -1e-13)]
    cases += [0.0, -0.0, -0.00004, -1.23456, 419.43035, 419.43045, 1e9 + 0.00005, float("inf"), 5e-324]
    for x in cases:
        got, want = round_score(x), round(x, 4)
        assert got == want and str(got) == str(want), x
    import math
    assert math.isnan(round_score(float("nan")))


def test_every_page_is_found_first_by_its_title(sim):
    for title in TOPICS:
        resp = sim.search(title, 5)
        assert resp.status == 200
        assert resp.results[0].title == title, (title, [r.title for r in resp.results])
        assert resp.results[0].url == sim.fetch(WIKI + title).final_url
    assert title_self_retrieval(sim, sample=100, k=10)["hit_at_1"] >= 0.95


def test_results_are_ranked_with_snippets_around_the_query(sim):
    resp = sim.search("volcanic lava rock", k=3)
    assert isinstance(resp, SearchResponse) and resp.results[0].title == "Basalt"
    assert [r.rank for r in resp.results] == list(range(1, len(resp.results) + 1))
    assert all(a.score >= b.score for a, b in zip(resp.results, resp.results[1:]))
    assert "lava" in resp.results[0].snippet.lower() and "volcanic" in resp.results[0].snippet.lower()
    short = sim.search("volcanic lava rock", k=1, snippet_chars=30).results[0].snippet
    assert len(short) <= 32
    assert sim.search("volcanic", k=1, snippet_chars=0).results[0].snippet == ""


def test_search_k_and_defaults(small_snapshot):
    sim = Simulator(small_snapshot, default_k=2)
    assert len(sim.search("the").results) <= 2
    assert len(sim.search("manual", k=20).results) == 20
    assert sim.search("zzzunknownword").results == []
    assert sim.search("'; DROP TABLE pages; --").status == 200  # just words; there is no SQL on this path
    assert sim.search("../../etc/passwd").status == 200


@pytest.mark.parametrize("query,k", [("", 5), ("   ", 5), ("x" * 3000, 5), ("nul\x00byte", 5), ("ok", 0),
                                     ("ok", -1), ("ok", 10**9), ("ok", True), ("ok", "5"), (b"bytes", 5),
                                     (None, 5), ("bad\ud800surrogate", 5)])
def test_invalid_search_arguments_raise(sim, query, k):
    with pytest.raises(InvalidRequest):
        sim.search(query, k)


# ---- fetch ----------------------------------------------------------------------------------------

def test_fetch_a_page(sim, small_snapshot):
    resp = sim.fetch(WIKI + "Aardvark")
    assert isinstance(resp, FetchResponse) and resp.status == 200
    assert resp.title == "Aardvark" and "termites" in resp.text
    h = resp.headers
    assert h["content-type"] == "text/plain; charset=utf-8"
    assert int(h["content-length"]) == len(resp.text.encode("utf-8"))
    assert h["last-modified"] == "Fri, 01 Jun 2007 00:00:00 GMT"
    assert h["x-websim-snapshot"] == small_snapshot.id
    out = {link.title: link for link in resp.outlinks}
    assert set(out) == {"Penguin", "Basalt"}
    assert out["Penguin"].anchor == "another odd animal" and out["Penguin"].clicks == 120
    assert [link.title for link in resp.outlinks] == ["Penguin", "Basalt"]  # in page order


def test_fetch_unknown_and_invalid_urls(sim):
    resp = sim.fetch(WIKI + "Unicorn")
    assert resp.status == 404 and resp.text == "" and resp.error
    for bad in ("../../etc/passwd", "'; DROP TABLE pages; --", "ftp://example.org/", "mailto:x@y.z", "/wiki/Basalt"):
        assert sim.fetch(bad).status == 400
    with pytest.raises(InvalidRequest):
        sim.fetch("https://example.org/\x00")
    with pytest.raises(InvalidRequest):
        sim.fetch(42)


def test_redirects_answer_301_with_location(sim):
    for url, (location, status) in REDIRECTS.items():
        resp = sim.fetch(url)
        assert resp.status == status and resp.headers["location"] == location
        assert resp.text == "" and resp.page_id is None
        assert sim.fetch(resp.headers["location"]).status == 200


def test_duplicates_answer_200_with_the_canonical_page(sim):
    resp = sim.fetch(DUPLICATE_URL)
    canonical = "https://example.org/docs/intro"
    assert resp.status == 200 and resp.url == DUPLICATE_URL
    assert resp.canonical_url == canonical and resp.final_url == canonical
    assert resp.headers["content-location"] == canonical
    assert resp.headers["link"] == f'<{canonical}>; rel="canonical"'
    assert resp.text == sim.fetch(canonical).text and resp.page_id == sim.fetch(canonical).page_id


@pytest.mark.parametrize("variant", [
    "https://en.wikipedia.org/wiki/Basalt", "HTTPS://EN.WIKIPEDIA.ORG/wiki/Basalt", "https://en.wikipedia.org:443/wiki/Basalt",
    "https://en.wikipedia.org/wiki/Basalt#Formation", "https://en.wikipedia.org/wiki/./Basalt",
    "https://en.wikipedia.org/w/../wiki/Basalt", "https://en.wikipedia.org/wiki/%42asalt", "  https://en.wikipedia.org/wiki/Basalt ",
])
def test_url_variants_reach_the_same_page(sim, variant):
    assert sim.fetch(variant).page_id == sim.fetch(WIKI + "Basalt").page_id


def test_non_ascii_urls_in_any_encoding(sim):
    ids = {sim.fetch(u).page_id for u in (WIKI + "Café", WIKI + "Caf%C3%A9", WIKI + "Caf%c3%a9")}
    assert len(ids) == 1 and None not in ids


# ---- links and sitemap -----------------------------------------------------------------------------

def test_links_with_anchors_clicks_and_backlinks(sim):
    resp = sim.links(WIKI + "Aardvark", backlinks=True)
    assert resp.status == 200 and resp.n_outlinks == 2
    assert {(link.title, link.anchor, link.clicks) for link in resp.outlinks} == {
        ("Penguin", "another odd animal", 120), ("Basalt", "rocks", 7)}
    assert [(link.title, link.clicks) for link in resp.backlinks] == [("Penguin", 15)]
    assert resp.n_backlinks == 1
    without = sim.links(WIKI + "Aardvark")
    assert without.backlinks is None and without.n_backlinks == 1
    assert sim.links(WIKI + "Aardvark", limit=1).outlinks[0].title == "Penguin"


def test_links_of_aliases_and_unknown_urls(sim):
    assert sim.links("http://example.org/old-docs").url == "https://example.org/docs/intro"
    assert sim.links(DUPLICATE_URL).url == "https://example.org/docs/intro"
    assert sim.links(WIKI + "Unicorn").status == 404
    assert sim.links("not a url").status == 400
    with pytest.raises(InvalidRequest):
        sim.links(WIKI + "Basalt", backlinks="yes")


def test_sitemap_lists_a_host_by_path(sim):
    resp = sim.sitemap("example.org")
    assert resp.status == 200 and resp.total == len(EXAMPLE_PAGES)
    paths = [e.path for e in resp.entries]
    assert paths == sorted(paths) and paths[0] == "/"
    assert {e.title for e in resp.entries} == {t for t, _ in EXAMPLE_PAGES.values()}
    assert resp.next_offset is None
    docs = sim.sitemap("example.org", prefix="/docs")
    assert [e.path for e in docs.entries] == ["/docs/api", "/docs/install", "/docs/intro"]
    assert sim.sitemap("https://EXAMPLE.org/blog/").total == 2  # a URL: its host, its path as prefix
    assert sim.sitemap("example.org", prefix="docs/").total == 3


def test_sitemap_pagination(sim):
    seen, offset, pages = [], 0, 0
    while offset is not None:
        resp = sim.sitemap(PAGED_HOST, offset=offset, limit=10)
        assert resp.total == PAGED_COUNT
        seen += [e.path for e in resp.entries]
        offset = resp.next_offset
        pages += 1
    assert pages == 3 and seen == [f"/page-{i:02d}" for i in range(1, PAGED_COUNT + 1)]
    assert sim.sitemap(PAGED_HOST, offset=1000).entries == []


def test_sitemap_unknown_or_invalid_host(sim):
    assert sim.sitemap("nowhere.example").status == 404
    assert sim.sitemap("bad host/with space").status == 400
    with pytest.raises(InvalidRequest):
        sim.sitemap(PAGED_HOST, limit=0)
    with pytest.raises(InvalidRequest):
        sim.sitemap("", limit=5)
    assert [h["host"] for h in sim.hosts()] == sorted(["en.wikipedia.org", "example.org", PAGED_HOST])


# ---- knobs -----------------------------------------------------------------------------------------

def _statuses(sim, n=40, trajectory="t1"):
    return [sim.fetch(WIKI + "Basalt", trajectory=trajectory).status for _ in range(n)]


def test_failures_are_seeded_and_deterministic(small_snapshot):
    a = Simulator(small_snapshot, failure_rate=0.3, seed=7)
    b = Simulator(small_snapshot, failure_rate=0.3, seed=7)
    c = Simulator(small_snapshot, failure_rate=0.3, seed=8)
    sa = _statuses(a)
    assert sa == _statuses(b) and sa != _statuses(c)
    assert set(sa) == {200, 503} and 3 <= sa.count(503) <= 25
    failed = next(i for i, s in enumerate(sa) if s == 503)
    resp = Simulator(small_snapshot, failure_rate=0.3, seed=7).call(
        "fetch", {"url": WIKI + "Basalt"}, trajectory="t1")[0]
    assert (resp.status == 503) == (failed == 0)
    # A trajectory's draws do not depend on what other trajectories do in between.
    d = Simulator(small_snapshot, failure_rate=0.3, seed=7)
    interleaved = []
    for _ in range(40):
        d.fetch(WIKI + "Basalt", trajectory="other")
        interleaved.append(d.fetch(WIKI + "Basalt", trajectory="t1").status)
    assert interleaved == sa
    bad = Simulator(small_snapshot, failure_rate=1.0)
    for resp in (bad.search("x"), bad.fetch(WIKI + "Basalt"), bad.links(WIKI + "Basalt"), bad.sitemap("example.org")):
        assert resp.status == 503 and resp.error


def test_latency_is_simulated(small_snapshot):
    sim = Simulator(small_snapshot, latency_ms=20, latency_jitter_ms=10, seed=1)
    started = time.perf_counter()
    sim.fetch(WIKI + "Basalt")
    assert time.perf_counter() - started >= 0.02
    _, delay = sim.call("search", {"query": "basalt"}, trajectory="x", sleep=False)
    _, delay2 = Simulator(small_snapshot, latency_ms=20, latency_jitter_ms=10, seed=1).call(
        "search", {"query": "basalt"}, trajectory="x", sleep=False)
    assert 0.02 <= delay <= 0.03 and delay == delay2
    with pytest.raises(ValueError):
        Simulator(small_snapshot, failure_rate=2.0)


def test_concurrent_calls_match_serial_ones(sim):
    calls = [("search", {"query": t}) for t in TOPICS] + [("fetch", {"url": WIKI + t}) for t in TOPICS] + \
            [("links", {"url": WIKI + t, "backlinks": True}) for t in TOPICS]
    expected = [sim.call(op, args)[0].to_dict() for op, args in calls]
    fresh = Simulator(sim.snapshot, cache_size=0)
    errors, results = [], {}

    def worker(i):
        try:
            for _ in range(5):
                results[i] = [fresh.call(op, args)[0].to_dict() for op, args in calls]
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and all(r == expected for r in results.values())


# ---- call log --------------------------------------------------------------------------------------

def test_call_log_rebuilds_a_trajectory(small_snapshot, tmp_path):
    log = CallLog(tmp_path / "logs", small_snapshot.id, flush_rows=3)
    sim = Simulator(small_snapshot, call_log=log)
    sim.search("basalt lava", 3, session="agent-1", trajectory="traj-A")
    sim.fetch(WIKI + "Basalt", session="agent-1", trajectory="traj-A")
    sim.fetch(WIKI + "Unicorn", session="agent-2", trajectory="traj-B")
    sim.links(WIKI + "Basalt", session="agent-1", trajectory="traj-A")
    sim.sitemap("example.org", limit=2, session="agent-1", trajectory="traj-A")
    with pytest.raises(InvalidRequest):
        sim.search("", trajectory="traj-A")
    sim.close()
    calls = read_trajectory(tmp_path / "logs", "traj-A")
    assert [c["op"] for c in calls] == ["search", "fetch", "links", "sitemap", "search"]
    assert [c["status"] for c in calls] == [200, 200, 200, 200, 400]
    assert calls[0]["args"]["query"] == "basalt lava" and calls[0]["session"] == "agent-1"
    basalt = sim.fetch(WIKI + "Basalt").page_id
    assert calls[0]["result_ids"][0] == basalt and calls[1]["result_ids"] == [basalt]
    assert calls[1]["result_urls"] == [WIKI + "Basalt"]
    assert calls[3]["result_urls"] == ["https://example.org/", "https://example.org/blog/2020/hello"]
    assert calls[4]["error"] and all(c["latency_ms"] >= 0 and c["snapshot_id"] == small_snapshot.id for c in calls)
    assert [c["status"] for c in read_calls(tmp_path / "logs", session="agent-2")] == [404]
    assert len(list((tmp_path / "logs").glob("calls-*.parquet"))) == 2  # 3 rows, then the rest on close


def test_call_log_defaults_beside_the_snapshot(small_snapshot):
    sim = Simulator(small_snapshot, call_log=True)
    sim.fetch(WIKI + "Kelvin", trajectory="beside")
    sim.close()
    assert sim.call_log.log_dir == small_snapshot.log_dir
    assert [c["op"] for c in read_trajectory(small_snapshot.log_dir, "beside")] == ["fetch"]


def test_call_log_flushes_on_a_timer(tmp_path):
    log = CallLog(tmp_path, flush_rows=10_000, flush_interval_s=0.05)
    log.record("fetch", {"url": "u"}, trajectory="t")
    deadline = time.time() + 5
    while not read_trajectory(tmp_path, "t") and time.time() < deadline:
        time.sleep(0.05)
    assert len(read_trajectory(tmp_path, "t")) == 1
    log.close()


# ---- tools -----------------------------------------------------------------------------------------

def test_tools_return_compact_text(sim):
    tools = WebTools(sim)
    out = tools.search("volcanic lava", k=2)
    assert out.startswith('Results for "volcanic lava"') and "[1] Basalt" in out and WIKI + "Basalt" in out
    page = tools.open_url(WIKI + "Aardvark")
    assert "Title: Aardvark" in page and "termites" in page and "- Penguin <" in page
    assert "redirected from http://example.org/old-docs" in tools.open_url("http://example.org/old-docs")
    assert "same content as https://example.org/docs/intro" in tools.open_url(DUPLICATE_URL)
    assert tools.open_url(WIKI + "Unicorn").startswith("Error 404")
    assert tools.open_url("../../etc/passwd").startswith("Error 400")
    assert '"another odd animal" -> Penguin' in tools.links(WIKI + "Aardvark") and "(120 clicks)" in tools.links(
        WIKI + "Aardvark")
    listing = tools.sitemap(PAGED_HOST)
    assert "1-25 of 25" in listing and "/page-07  Manual page 7" in listing
    assert tools.search("").startswith("Error")
    assert tools.search("zzzunknownword").startswith("No results")


def test_open_url_reads_long_pages_in_parts(sim):
    tools = WebTools(sim, max_chars=40)
    first = tools.open_url(WIKI + "Aardvark")
    assert "open_url(url, offset=40)" in first
    second = tools.open_url(WIKI + "Aardvark", offset=40)
    text = sim.fetch(WIKI + "Aardvark").text
    assert text[40:80] in second


def test_tools_log_one_trajectory_per_reset(small_snapshot, tmp_path):
    sim = Simulator(small_snapshot, call_log=CallLog(tmp_path))
    tools = WebTools(sim, session="s")
    tools.reset(trajectory_id="first")
    tools.search("basalt")
    tools.reset()
    tools.open_url(WIKI + "Basalt")
    sim.close()
    assert [c["op"] for c in read_trajectory(tmp_path, "first")] == ["search"]
    assert len(read_calls(tmp_path, session="s")) == 2


def test_tool_schemas_match_transformers():
    utils = pytest.importorskip("transformers.utils")
    tools = WebTools.__new__(WebTools)
    for fn, schema in zip(tool_functions(tools), TOOL_SCHEMAS):
        generated = utils.get_json_schema(fn)
        generated["function"].pop("return", None)
        assert generated == schema


def test_tool_schemas_are_valid_openai_functions():
    names = set()
    for schema in TOOL_SCHEMAS:
        fn = schema["function"]
        assert schema["type"] == "function" and fn["name"] and fn["description"]
        params = fn["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
        method = getattr(WebTools, fn["name"])
        sig = inspect.signature(method)
        assert set(params["properties"]) == set(sig.parameters) - {"self"}
        assert all(p.annotation in ("str", "int") for name, p in sig.parameters.items() if name != "self")
        names.add(fn["name"])
    # What TRL's environment_factory turns into tools: every public function of the class but reset.
    public = {n for n, _ in inspect.getmembers(WebTools, inspect.isfunction) if not n.startswith("_")}
    assert public - {"reset"} == names


def test_call_tool_dispatches_and_reports_errors(sim):
    tools = WebTools(sim)
    assert "[1] Basalt" in call_tool(tools, "search", '{"query": "volcanic lava", "k": 1}')
    assert call_tool(tools, "search", "{not json").startswith("Error")
    assert call_tool(tools, "nope", {}).startswith("Error: unknown tool")
    assert "missing query" in call_tool(tools, "search", {})
    assert "unknown q" in call_tool(tools, "search", {"query": "x", "q": 1})
    assert call_tool(tools, "search", {"query": "x", "k": "many"}).startswith("Error")


def test_a_bug_is_logged_as_500_and_raised(small_snapshot, tmp_path):
    sim = Simulator(small_snapshot, call_log=CallLog(tmp_path))

    def broken(**kwargs):
        raise RuntimeError("boom")

    sim._ops["search"] = broken
    with pytest.raises(RuntimeError):
        sim.search("basalt", trajectory="bug")
    sim.close()
    [call] = read_trajectory(tmp_path, "bug")
    assert call["status"] == 500 and "boom" in call["error"]
