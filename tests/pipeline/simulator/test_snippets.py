"""Snippets from the snapshot's term map: they hold the query terms a page has, as well as or better than scanning the
text did; batched search; format-1 snapshots still served; unknown formats refused with what to do."""

import json
import re
import shutil
import zlib

import numpy as np
import pytest

from pipeline.simulator.search_index import make_snippet, query_terms
from pipeline.simulator.snapshot import FORMAT_VERSION, MANIFEST, SERVE_DIR, Snapshot
from pipeline.simulator.snippets import FILES, SnippetMap, _kernels, _crc_table, _word_table, build_snippet_map
from pipeline.simulator.web import InvalidRequest, Simulator
from tests.support import TOPICS

_TOKEN = re.compile(r"[^\W_]+")


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


def snippet_map_of(texts: list[str], tmp_path, stopwords=()) -> SnippetMap:
    """A SnippetMap over `texts` held in one buffer, as the simulator holds pages.arrow."""
    build_snippet_map(texts, tmp_path, stopwords)
    encoded = [t.encode() for t in texts]
    starts = np.cumsum([0] + [len(b) for b in encoded])
    return SnippetMap(tmp_path, np.frombuffer(b"".join(encoded), dtype=np.uint8), starts[:-1].astype(np.int64),
                      starts[1:].astype(np.int64))


@pytest.fixture(scope="module")
def sim(small_snapshot):
    return Simulator(small_snapshot, cache_size=0)


def test_the_kernel_hashes_tokens_like_zlib():
    page_terms = _kernels().page_terms
    text = "Basalt flows, café au lait; 1945 x basalt"
    keys, counts, positions = page_terms(np.frombuffer(text.lower().encode(), dtype=np.uint8), _word_table(),
                                         np.zeros(0, np.uint32), _crc_table(), 10_000, 40, 16)
    tokens = {t for t in _TOKEN.findall(text.lower()) if len(t.encode()) >= 2}
    stems = {"flow"}  # "flows" is filed under its stem as well: the query term "flow" finds it in one lookup
    assert set(keys.tolist()) == {zlib.crc32(t.encode()) for t in tokens | stems} and list(keys) == sorted(keys)
    assert counts[list(keys).index(zlib.crc32(b"basalt"))] == 2 and sum(counts) == len(positions)
    flow, flows = (positions[sum(counts[:list(keys).index(zlib.crc32(w))])] for w in (b"flow", b"flows"))
    assert flow == flows == text.lower().index("flows")


def test_a_snippet_holds_the_query_terms_the_page_has(sim):
    """Every result's snippet holds a query term when the page has one; summed over many queries, the snippets hold
    at least as many of the terms their pages have as the old text scan (make_snippet) found."""
    queries = [*TOPICS, "volcanic lava rock", "flightless bird island", "manual chapter install", "basalt lava",
               "nebula star formation", "example domain documentation"]
    new_total = old_total = checked = 0
    for query in queries:
        terms = [t for t in query_terms(query) if len(t) > 1]
        for r in sim.search(query, 10).results:
            text = sim.fetch(r.url).text
            has = [t for t in terms if t in _tokens(text)]
            if not has:
                continue
            checked += 1
            got = _tokens(r.snippet)
            assert any(t in got for t in has), (query, r.url, r.snippet)
            new_total += sum(t in got for t in has)
            old_total += sum(t in _tokens(make_snippet(text, terms, 200)) for t in has)
    assert checked > 20
    assert new_total >= old_total, (new_total, old_total)


def test_a_term_far_into_a_long_page_is_found_and_whitespace_collapsed(tmp_path):
    filler = "Filler words about nothing in particular. " * 400  # ~17,000 characters
    texts = [
        "Kilimanjaro is a mountain.\n\n" + filler + "The summit crater of Kilimanjaro holds a glacier named Furtwängler.",
        "Short page\u00a0with   odd\n\nspacing and volcanoes.",
        "İstanbul straddles the Bosphorus; İstanbul is large.",
        "",
    ]
    smap = snippet_map_of(texts, tmp_path, stopwords=("the", "a", "is"))
    rows = np.arange(len(texts), dtype=np.int64)
    far, spaced, dotted, empty = smap.snippets(rows, ["glacier", "kilimanjaro", "summit"], 120)
    assert "glacier" in far and "summit" in far and "Kilimanjaro" in far and far.startswith("…")
    assert len(far) <= 122
    first = smap.snippets(rows[1:2], ["volcano"], 200)[0]  # "volcano" finds "volcanoes"; spaces collapsed
    assert first == "Short page with odd spacing and volcanoes."
    assert "Bosphorus" in smap.snippets(rows[2:3], ["bosphorus"], 60)[0]
    assert smap.snippets(rows[3:4], ["anything"], 50) == [""]
    # No term on the page: its start, cut at a word with "…".
    cut = smap.snippets(rows[:1], ["absent"], 40)[0]
    assert cut.startswith("Kilimanjaro is a mountain") and cut.endswith("…") and len(cut) <= 41
    assert smap.snippets(rows, ["glacier"], 0) == [""] * 4


def test_records_are_the_urls_titles_and_snippets_taken_one_by_one(sim):
    """`SnippetMap.records` (one compiled call, one decode) gives what the page files and `snippets` give per field."""
    smap = sim._snippet_map
    queries = [*TOPICS, "volcanic lava rock", "flightless bird island", "manual chapter install", "nebula", "zzz"]
    rows = np.arange(sim.page_count(), dtype=np.int64)
    for query in queries:
        terms = query_terms(query)
        for max_chars in (0, 1, 7, 60, 200, 1000):
            urls, titles = sim.files.urls_titles(rows)
            snippets = smap.snippets(rows, terms, max_chars)
            assert smap.records(rows, terms, max_chars) == (urls, titles, snippets), (query, max_chars)
    assert smap.records(rows[:0], ["x"], 200) == ([], [], [])


def test_a_nul_in_a_page_falls_back_to_one_by_one(tmp_path):
    texts = ["Alpha beta gamma.", "Delta \x00 epsilon zeta.", "Eta theta."]
    smap = snippet_map_of(texts, tmp_path)
    data, starts, ends = smap._data, smap._start, smap._end
    # url = title = text for this test: spans of the same bytes.
    spans = np.stack([starts, ends, starts, ends, starts, ends], axis=1)
    both = SnippetMap(tmp_path, data, starts, ends, spans=spans)
    rows = np.arange(3, dtype=np.int64)
    assert both.records(rows, ["epsilon"], 100) is None
    assert both.records(rows[[0, 2]], ["theta"], 100) == ([texts[0], texts[2]], [texts[0], texts[2]],
                                                           both.snippets(rows[[0, 2]], ["theta"], 100))


def test_search_results_come_whole_when_a_title_holds_a_nul(sim, monkeypatch):
    want = sim.search("volcanic lava rock", 5).to_dict()
    monkeypatch.setattr(sim._snippet_map, "records", lambda *a: None)  # as when a field holds the separator
    assert sim.search("volcanic lava rock", 5).to_dict() == want


def test_search_many_answers_like_search_in_order(sim):
    queries = ["volcanic lava rock", "flightless bird", "manual chapter", "zzzunknownword"] * 5
    batch = sim.search_many(queries, 3)
    assert [b.to_dict() for b in batch] == [sim.search(q, 3).to_dict() for q in queries]
    assert sim.search_many([], 3) == []
    with pytest.raises(InvalidRequest):
        sim.search_many(["fine", ""], 3)
    with pytest.raises(InvalidRequest):
        sim.search_many("not a list", 3)
    result = sim.retrieve(["basalt", "  ", "nebula"], topk=2)["result"]
    assert result[1] == [] and result[0] and result[2]


def _copy_snapshot(snapshot, tmp_path):
    dst = tmp_path / snapshot.path.name
    shutil.copytree(snapshot.path, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_a_format_1_snapshot_is_served_with_scanned_snippets(small_snapshot, tmp_path):
    old = _copy_snapshot(small_snapshot, tmp_path)
    for name in FILES:
        (old / SERVE_DIR / f"{name}.npy").unlink()
    manifest = json.loads((old / MANIFEST).read_text())
    (old / MANIFEST).write_text(json.dumps({**manifest, "format": 1}))
    sim = Simulator(Snapshot.open(old))
    assert sim._snippet_map is None
    snippet = sim.search("volcanic lava rock", 1).results[0].snippet.lower()
    assert "lava" in snippet and "volcanic" in snippet
    assert FORMAT_VERSION == small_snapshot.manifest["format"] == 2


def test_an_unknown_format_is_refused_with_what_to_do(small_snapshot, tmp_path):
    future = _copy_snapshot(small_snapshot, tmp_path)
    manifest = json.loads((future / MANIFEST).read_text())
    (future / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ValueError, match="format 99.*rebuild it"):
        Snapshot.open(future)
