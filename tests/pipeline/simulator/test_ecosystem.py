"""The server with the field's own clients: Search-R1's batch search (its client code, copied), a GRPO step's 2,560
queries in one /retrieve, pydantic-style coercion, ASearcher's /access, find-in-page and paged reading of long pages
over HTTP and as tools."""

from types import SimpleNamespace

import pytest
import requests

from pipeline.simulator.tools import WebTools, call_tool
from pipeline.simulator.web import HttpSimulator, Simulator
from tests.support import TOPICS, WIKI, ServerProcess


@pytest.fixture(scope="module")
def server(small_snapshot):
    srv = ServerProcess(small_snapshot.path, log_calls=False)
    yield srv
    output = srv.stop()
    assert "Traceback" not in output, output


class SearchR1Client:
    """search_r1/llm_agent/generation.py (PeterGriffinJin/Search-R1 @ a14dc3a), `_batch_search` and
    `_passages2string` as they are there: no status check, the answer's "result" read straight away."""

    def __init__(self, search_url: str, topk: int = 3):
        self.config = SimpleNamespace(search_url=search_url, topk=topk)

    def batch_search(self, queries):
        results = self._batch_search(queries)['result']

        return [self._passages2string(result) for result in results]

    def _batch_search(self, queries):

        payload = {
            "queries": queries,
            "topk": self.config.topk,
            "return_scores": True
        }

        return requests.post(self.config.search_url, json=payload).json()

    def _passages2string(self, retrieval_result):
        format_reference = ''
        for idx, doc_item in enumerate(retrieval_result):

            content = doc_item['document']['contents']
            title = content.split("\n")[0]
            text = "\n".join(content.split("\n")[1:])
            format_reference += f"Doc {idx+1}(Title: {title}) {text}\n"

        return format_reference


def test_search_r1_client_reads_a_grpo_step_in_one_request(server):
    """train_grpo.sh: 512 prompts x 5 rollouts = 2,560 queries in one /retrieve."""
    client = SearchR1Client(server.base_url + "/retrieve")
    titles = list(TOPICS)
    queries = [titles[i % len(titles)] if i % 2 else "studied for centuries" for i in range(2560)]
    passages = client.batch_search(queries)
    assert len(passages) == 2560
    for query, text in zip(queries, passages):
        if query == "studied for centuries":
            assert text.count("\nDoc ") == 2 and text.startswith("Doc 1(Title: "), text[:200]
        else:
            assert text.startswith(f'Doc 1(Title: "{query}")'), (query, text[:200])


def test_return_scores_and_topk_are_coerced_like_pydantic(server):
    url = server.base_url + "/retrieve"
    as_text = requests.post(url, json={"queries": ["basalt"], "topk": "2", "return_scores": "true"}).json()
    as_json = requests.post(url, json={"queries": ["basalt"], "topk": 2, "return_scores": True}).json()
    assert as_text == as_json and set(as_text["result"][0][0]) == {"document", "score"}
    plain = requests.post(url, json={"queries": ["basalt"], "return_scores": "false"}).json()["result"][0]
    assert "contents" in plain[0] and "score" not in plain[0] and len(plain) == 3
    bad = requests.post(url, json={"queries": ["basalt"], "return_scores": "perhaps"})
    assert bad.status_code == 400 and "return_scores" in bad.json()["error"]
    absurd = requests.post(url, json={"queries": ["basalt"] * 20_000})
    assert absurd.status_code == 400 and "queries" in absurd.json()["error"]


def test_asearcher_access_gives_pages_or_null(server, small_snapshot):
    r = requests.post(server.base_url + "/access",
                      json={"urls": [WIKI + "Basalt", WIKI + "Unicorn", "not a url", "http://example.org/old-docs"]})
    assert r.status_code == 200
    basalt, unicorn, junk, moved = r.json()["result"]
    assert basalt["url"] == WIKI + "Basalt" and basalt["title"] == "Basalt" and "lava" in basalt["contents"]
    assert unicorn is None and junk is None
    assert moved["url"] == "https://example.org/docs/intro"  # the redirect followed, as a browser would
    # ASearcher's AsyncSearchBrowserClient reads result["contents"] of each page, and r["url"]/r["contents"] of a
    # /retrieve document without scores.
    docs = requests.post(server.base_url + "/retrieve", json={"queries": ["basalt"], "topk": 2,
                                                              "return_scores": False}).json()["result"][0]
    assert all(d["url"] and d["contents"] for d in docs)
    assert Simulator(small_snapshot).access_pages([WIKI + "Basalt"])[0][0] == basalt


def _long_page_url(sim: Simulator) -> str:
    with sim.snapshot.connect() as con:
        return con.execute("SELECT url FROM pages ORDER BY n_bytes DESC LIMIT 1").fetchall()[0][0]


def test_find_and_paged_reading_over_http_match_in_process(server, small_snapshot):
    sim = Simulator(small_snapshot)
    url = _long_page_url(sim)
    text = sim.fetch(url).text
    word = max(text.split(), key=lambda w: (text.count(w), len(w)))  # a word the page repeats
    local = sim.find(url, word, max_matches=3)
    assert local.status == 200 and local.total >= 2 and len(local.matches) <= 3
    for m in local.matches:
        assert text[m.offset:m.offset + len(word)].lower() == word.lower()
    with HttpSimulator(server.base_url) as remote:
        assert remote.find(url, word, max_matches=3) == local
        pages, offset = [], 0
        while offset is not None:
            part = remote.read(url, offset, max_chars=len(text) // 3 + 1)
            assert part.status == 200 and part.total_chars == len(text)
            pages.append(part.text)
            offset = part.next_offset
        assert "".join(pages) == text and len(pages) == 3
        assert remote.read(WIKI + "Unicorn").status == 404
        assert remote.access_pages([url])[0]["contents"] == text
    spaced = sim.find(WIKI + "Basalt", "VOLCANIC\n  rock")  # case and whitespace do not matter
    assert spaced.total == 1 and "volcanic rock" in spaced.matches[0].snippet


def test_find_in_page_tool_points_to_offsets_that_open_url_reads(small_snapshot):
    tools = WebTools(Simulator(small_snapshot))
    out = call_tool(tools, "find_in_page", {"url": WIKI + "Basalt", "text": "lava"})
    assert "occurs 1 time(s)" in out and "at offset" in out
    offset = int(out.split("at offset ")[1].split(":")[0])
    assert tools.open_url(WIKI + "Basalt", offset).split("\n\n", 1)[1].lower().startswith("lava")
    assert "does not occur" in tools.find_in_page(WIKI + "Basalt", "zeppelin")
    assert tools.find_in_page(WIKI + "Unicorn", "lava").startswith("Error 404")
    assert tools.find_in_page(WIKI + "Basalt", "").startswith("Error")
