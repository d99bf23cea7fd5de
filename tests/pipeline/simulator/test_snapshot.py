"""Snapshots: what a build holds, that it is read-only and immutable, and the search index + snippets.

The small corpus is in tests/support.py, its store and snapshot (`small_store`, `small_snapshot`) in tests/conftest.py.
"""

import hashlib
import json
import os
import re
import shutil
import stat

import pytest

from pipeline.simulator.search_index import IndexConfig, make_snippet, query_terms
from pipeline.simulator.snapshot import (
    LATEST,
    build_snapshot,
    latest_snapshot,
    list_snapshots,
    remove_snapshot,
    resolve_snapshot,
)
from pipeline.ingest.store import Store
from tests.support import EDGES, EXAMPLE_PAGES, PAGED_COUNT, REDIRECTS, TOPICS, write_corpus


def tree_digest(path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# ---- what a snapshot holds -------------------------------------------------------------------------

def test_manifest_describes_the_build(small_snapshot, small_store):
    m = small_snapshot.manifest
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", m["id"])
    assert m["id"].endswith(m["fingerprint"][:8])
    assert m["source_store"] == str(small_store.path.resolve())
    n_pages = len(TOPICS) + len(EXAMPLE_PAGES) + PAGED_COUNT
    assert m["counts"]["pages"] == n_pages
    assert m["counts"]["duplicate_urls"] == 1
    assert m["counts"]["redirects"] == len(REDIRECTS)
    assert m["counts"]["edges"] == len(EDGES) + 1  # + example.org home -> /docs/intro (old-docs resolves to it too)
    assert m["counts"]["hosts"] == 3
    assert m["index"]["kind"] == "tantivy" and m["index"]["docs"] == n_pages and m["index"]["bytes"] > 0
    assert set(m["timings"]) == {"copy_s", "serve_files_s", "snippet_map_s", "index_s"}
    assert m["format"] == 2 and m["snippets"]["pages"] == n_pages and m["snippets"]["terms"] > n_pages


def test_snapshot_duckdb_is_a_read_only_copy_of_the_store(small_snapshot, small_store):
    with small_snapshot.connect() as a, small_snapshot.connect() as b:  # many readers at once
        tables = {r[0] for r in a.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"pages", "url_aliases", "link_graph", "page_traffic"} <= tables
        assert a.execute("SELECT count(*) FROM pages").fetchall() == b.execute("SELECT count(*) FROM pages").fetchall()
        with pytest.raises(Exception, match="read-only"):
            a.execute("DELETE FROM pages")
        traffic = dict(a.execute("""SELECT p.title, t.clicks_in FROM page_traffic t JOIN pages p USING (page_id)
                                    WHERE p.title IN ('Penguin', 'Aardvark')""").fetchall())
    assert traffic == {"Penguin": 620, "Aardvark": 15}
    store_rows = small_store.query("SELECT page_id, url, title, text FROM pages ORDER BY page_id")
    with small_snapshot.connect() as con:
        snap_rows = con.execute("SELECT page_id, url, title, text FROM pages ORDER BY page_id").fetchall()
    assert [tuple(r.values()) for r in store_rows] == snap_rows


def test_files_are_read_only(small_snapshot):
    for p in [small_snapshot.path, *small_snapshot.path.rglob("*")]:
        assert not stat.S_IMODE(p.stat().st_mode) & 0o222, p


def test_resolve_by_path_id_and_latest(small_snapshot):
    root = small_snapshot.path.parent
    assert (root / LATEST).read_text().strip() == small_snapshot.id
    assert latest_snapshot(root).path == small_snapshot.path
    for ref in (None, "latest", small_snapshot.id, small_snapshot.path, str(small_snapshot.path)):
        assert resolve_snapshot(ref, root).id == small_snapshot.id
    with pytest.raises(FileNotFoundError):
        resolve_snapshot("20000101T000000Z-deadbeef", root)
    assert small_snapshot.id in list_snapshots(root)
    assert small_snapshot.log_dir == root / f"{small_snapshot.id}.logs"


# ---- immutability ----------------------------------------------------------------------------------

def test_a_new_build_never_disturbs_a_served_snapshot(small_store, tmp_path):
    from pipeline.simulator.web import Simulator

    store = Store(tmp_path / "store.duckdb")
    shutil.copy(small_store.path, store.path)
    root = tmp_path / "snapshots"
    first = build_snapshot(store.path, root)
    before = tree_digest(first.path)
    sim = Simulator(first, cache_size=0)
    new_url = "https://example.org/docs/changelog"
    answer_before = sim.search("Basalt", 3).to_dict()
    assert sim.fetch(new_url).status == 404

    # The store changes and a second snapshot is built while the first is open and serving.
    write_corpus(store, extra_pages={new_url: ("Changelog", "Release notes for every widget version.")})
    second = build_snapshot(store.path, root)

    assert second.id != first.id and second.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert latest_snapshot(root).id == second.id
    assert tree_digest(first.path) == before
    assert sim.fetch(new_url).status == 404
    assert sim.search("Basalt", 3).to_dict() == answer_before
    assert Simulator(second).fetch(new_url).status == 200
    assert sorted(list_snapshots(root)) == sorted([first.id, second.id])
    assert not list(root.glob(".building-*"))

    with pytest.raises(ValueError, match="latest"):
        remove_snapshot(second)
    remove_snapshot(first)
    assert list_snapshots(root) == [second.id]


def test_same_content_same_fingerprint(small_snapshot, small_store, tmp_path):
    again = build_snapshot(small_store.path, tmp_path / "snaps")
    assert again.manifest["fingerprint"] == small_snapshot.manifest["fingerprint"]


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path / "store.duckdb")
    with store.partition_writer("clickstream", "c.tsv"):
        pass  # a store with raw tables but no pages yet
    root = tmp_path / "snaps"
    with pytest.raises(RuntimeError, match="build pages"):
        build_snapshot(store.path, root)
    assert list(root.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        build_snapshot(tmp_path / "missing.duckdb", root)


def test_bm25s_index_kind(small_store, tmp_path):
    from pipeline.simulator.web import Simulator

    snap = build_snapshot(small_store.path, tmp_path / "snaps", index=IndexConfig(kind="bm25s", k1=1.5, b=0.7))
    assert snap.manifest["index"]["kind"] == "bm25s"
    assert snap.manifest["index"]["config"]["k1"] == 1.5
    sim = Simulator(snap)
    for title in ("Basalt", "Sextant", "Café"):
        assert sim.search(title, 3).results[0].title == title


def test_unknown_index_kind_is_refused():
    with pytest.raises(ValueError, match="index kind"):
        IndexConfig(kind="lucene")


# ---- query terms and snippets -----------------------------------------------------------------------

def test_query_terms():
    assert query_terms("The Capital of FRANCE, capital?") == ["capital", "france"]
    assert query_terms("the of") == ["the", "of"]  # nothing but stop words: keep them
    assert query_terms("'; DROP TABLE pages; --") == ["drop", "table", "pages"]
    assert query_terms("field:value AND (x OR y)") == ["field", "value", "x", "y"]
    assert query_terms("") == []


def test_snippet_centres_on_the_query_terms():
    text = ("Filler sentence about nothing. " * 40 + "The basalt columns cool from lava slowly. "
            + "More filler text here. " * 40)
    snip = make_snippet(text, ["basalt", "lava"], 120)
    assert "basalt" in snip and "lava" in snip
    assert len(snip) <= 122 and snip.startswith("…") and snip.endswith("…")


def test_snippet_prefers_the_window_with_most_terms():
    text = "alpha here. " + "x " * 200 + "beta and gamma and alpha together. " + "y " * 200
    snip = make_snippet(text, ["alpha", "beta", "gamma"], 80)
    assert "beta" in snip and "gamma" in snip and "alpha" in snip


def test_snippet_edge_cases():
    assert make_snippet("", ["x"], 100) == ""
    assert make_snippet("short text", ["absent"], 100) == "short text"
    assert make_snippet("Penguins swim.", ["penguin"], 100) == "Penguins swim."  # plural still matches
    long = "word " * 100
    assert make_snippet(long, [], 50).endswith("…") and len(make_snippet(long, [], 50)) <= 51
    # lower-casing that changes length (Turkish dotted I) must not shift offsets
    assert "target" in make_snippet("İ" * 300 + " target " + "z " * 100, ["target"], 40)
    assert make_snippet("abc", ["abc"], 0) == ""


def test_manifest_is_json_with_counts(small_snapshot):
    data = json.loads((small_snapshot.path / "manifest.json").read_text())
    assert data == small_snapshot.manifest
    assert os.access(small_snapshot.path / "snapshot.duckdb", os.R_OK)
