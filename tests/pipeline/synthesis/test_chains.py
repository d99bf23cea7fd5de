"""Evidence chains on the real Wikispeedia graph: hops are link_graph edges, quotes are sentences of the pages.

The Wikispeedia snapshot (`wikispeedia_snapshot`) is a session fixture in tests/conftest.py.
"""

import pytest

from pipeline.synthesis.chains import ChainConfig, build_chains, check_chains, edge_weight, extract_facts, load_graph
from pipeline.text.lexical import split_sentences

WIKI = "https://en.wikipedia.org/wiki/"


@pytest.fixture(scope="module")
def graph(wikispeedia_snapshot):
    return load_graph(wikispeedia_snapshot.path / "snapshot.duckdb")


@pytest.fixture(scope="module")
def chains(graph, wikispeedia_snapshot):
    chains, rejections = build_chains(graph, ChainConfig(count=24, seed=3), snapshot_id=wikispeedia_snapshot.id)
    return chains, rejections


def _rows(snapshot, sql, params=()):
    with snapshot.connect() as con:
        return con.execute(sql, list(params)).fetchall()


def test_extract_facts_finds_dates_years_numbers_names_with_their_sentence():
    text = ("Test page\n2007 Schools Wikipedia Selection. Related subjects: Art\n"
            "The tower was completed on 31 March 1889 by a team of about 300 workers in the city.\n"
            "The architect Gustave Eiffel presented it to the public at the fair in the spring of that year.\n"
            "Its restoration in 1986 was paid for by the city of Paris after a long debate in the council.\n"
            "| Height | 300 m |\n"
            "Short one 1999.")
    facts = extract_facts(text, "Test page")
    got = {(f.answer, f.kind) for f in facts}
    assert ("31 March 1889", "date") in got and ("1986", "year") in got
    assert ("300", "number") in got and ("Gustave Eiffel", "name") in got
    assert ("1999", "year") not in got  # not a prose sentence
    assert not any(f.answer == "1889" for f in facts)  # the year of a date is the date's
    for f in facts:
        assert f.sentence[f.start:f.end] == f.answer and f.sentence in text
    # facts naming the page itself answer nothing
    assert not any("Eiffel" in f.answer for f in extract_facts(text, "Gustave Eiffel"))


def test_extract_facts_skips_list_items_and_names_cut_short():
    text = ("X\nThe war ended the fighting of World War I in many of the provinces of the old empire.\n"
            "Its moths include Common Emerald, Giant Leopard Moth, Hypercompe eridanus and others of the genus.\n"
            "Later, Abdolhossein Zarrinkoub's Serr-e Ney is a critical and comparative analysis of the poem.")
    names = [f.answer for f in extract_facts(text, "X") if f.kind in ("name", "place")]
    assert "World War" not in names and "Giant Leopard Moth" not in names
    assert not any("Serr" in n for n in names)


def test_chains_are_walks_over_real_edges(chains, wikispeedia_snapshot):
    built, rejections = chains
    assert len(built) == 24, rejections
    assert {c["hops"] for c in built} >= {1, 2, 3}
    db = wikispeedia_snapshot.path / "snapshot.duckdb"
    assert check_chains(built, db) == {name: (0, []) for name in check_chains([], db)}
    ids = {url: pid for url, pid in _rows(wikispeedia_snapshot, "SELECT url, page_id FROM pages")}
    for c in built:
        steps = c["chain"]
        assert len(steps) == c["hops"] + 1 and steps[0]["url"] == c["start_url"] and steps[-1]["url"] == c["answer_url"]
        assert len({s["url"] for s in steps}) == len(steps)  # no page twice
        for a, b in zip(steps, steps[1:]):
            rows = _rows(wikispeedia_snapshot, "SELECT context, anchor FROM link_graph WHERE src_id = ? AND dst_id = ?",
                         [ids[a["url"]], ids[b["url"]]])
            assert rows and rows[0][0] == a["quote"]  # the justification is the link's own sentence
            assert rows[0][1].casefold() in a["quote"].casefold() or b["title"].casefold() in a["quote"].casefold()


def test_quotes_are_real_sentences_of_their_pages(chains, wikispeedia_snapshot):
    built, _ = chains
    texts = dict(_rows(wikispeedia_snapshot, "SELECT url, text FROM pages"))
    for c in built:
        for step in c["chain"]:
            text = texts[step["url"]]
            assert step["quote"] in text
            assert len(step["quote"].split()) >= 6
        # the answer sentence is one of the page's sentences and states the answer
        assert c["answer_sentence"] in split_sentences(texts[c["answer_url"]])
        assert c["answer"] in c["answer_sentence"] and c["answer_sentence"] == c["chain"][-1]["quote"]


def test_chains_prefer_clicked_links(chains, graph):
    built, _ = chains
    hops = [clicks for c in built for clicks in c["clicks"]]
    clicked_share = sum(1 for n in hops if n > 0) / len(hops)
    # among all qualifying edges into chain pages, far fewer carry clicks than among the edges the walks took
    available = [e for c in built for s in c["chain"][1:] for e in graph.backlinks[_page_id(graph, s["url"])]]
    base_share = sum(1 for e in available if e.clicks > 0) / len(available)
    assert clicked_share > base_share
    assert edge_weight(available[0]) >= 1.0


def _page_id(graph, url):
    return next(pid for pid, p in graph.pages.items() if p["url"] == url)


def test_chains_are_deterministic_and_seeded(graph):
    a, _ = build_chains(graph, ChainConfig(count=6, seed=11))
    b, _ = build_chains(graph, ChainConfig(count=6, seed=11))
    c, _ = build_chains(graph, ChainConfig(count=6, seed=12))
    assert a == b
    assert [x["chain_id"] for x in a] != [x["chain_id"] for x in c]


def test_hop_mix_is_honoured(graph):
    only_two, _ = build_chains(graph, ChainConfig(count=5, seed=1, hop_mix={2: 1.0}))
    assert [c["hops"] for c in only_two] == [2] * 5
    with pytest.raises(ValueError):
        build_chains(graph, ChainConfig(count=1, hop_mix={7: 1.0}))


def test_check_chains_catches_broken_chains(chains, wikispeedia_snapshot):
    built, _ = chains
    broken = [dict(built[0], chain=[dict(built[0]["chain"][0], quote="A sentence that is not on the page at all."),
                                    *built[0]["chain"][1:]]),
              dict(built[1], chain=[built[1]["chain"][0], dict(built[1]["chain"][1], url=WIKI + "No_such_page"),
                                    *built[1]["chain"][2:]])]
    found = check_chains(broken, wikispeedia_snapshot.path / "snapshot.duckdb")
    assert found["quotes_in_pages"][0] >= 1 and found["hops_are_edges"][0] >= 1
