"""Corpus inputs: a wiki-18-style JSONL and a Parquet corpus ingested into the store, served as a snapshot."""

import gzip
import json

import pytest

from pipeline.ingest.corpus import CorpusDoc, CorpusRejection, corpus_name, read_corpus, split_contents

WIKI18 = [
    {"id": "0", "contents": '"Aardvark"\nThe aardvark is a burrowing mammal that feeds on termites at night.'},
    {"id": "1", "contents": '"Aardvark"\nAardvarks dig with spoon-shaped claws; their name means earth pig.'},
    {"id": "2", "contents": '"Zanzibar"\nZanzibar is an archipelago famous for cloves and nutmeg.'},
    {"contents": '"Nobody"\nA passage without an id.'},
    {"id": "3", "contents": '"Empty"\n   '},
    {"id": "2", "contents": '"Zanzibar"\nThe same id again.'},
]


def write_wiki18(path):
    lines = [json.dumps(r) for r in WIKI18]
    lines.insert(3, '{"id": "broken", "contents": ')  # a truncated line
    lines.insert(4, "[1, 2]")
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def write_parquet(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "docid": ["d1", "d2", "d3"],
        "title": ["Quokka", "Basalt columns", "Bad"],
        "text": ["The quokka is a small marsupial of Rottnest Island that seems to smile.",
                 "Basalt columns form when thick lava cools and contracts into hexagonal prisms.",
                 "A document whose URL is not a web URL."],
        "url": ["https://example.org/animals/quokka", "", "mailto:someone@example.org"],
    }), path)


def test_wiki18_jsonl_is_read_with_title_lines_and_named_rejections(tmp_path):
    path = tmp_path / "wiki-18.jsonl.gz"
    write_wiki18(path)
    items = list(read_corpus(path))
    docs = [i for i in items if isinstance(i, CorpusDoc)]
    assert [(d.id, d.title) for d in docs] == [("0", "Aardvark"), ("1", "Aardvark"), ("2", "Zanzibar")]
    assert docs[0].text.startswith("The aardvark is") and '"' not in docs[0].text
    assert docs[0].url == "https://wiki-18.corpus.invalid/doc/0"  # one page per passage, a URL no real site has
    assert sorted((r.reason, r.location) for r in items if isinstance(r, CorpusRejection)) == [
        ("duplicate_id", "line 8"), ("empty_text", "line 7"), ("invalid_json", "line 4"), ("missing_id", "line 6"),
        ("not_an_object", "line 5")]
    assert corpus_name(path) == "wiki-18"
    assert split_contents('"A title"\nbody') == ("A title", "body")
    assert split_contents("no title line") == ("", "no title line")


def test_parquet_corpus_columns_are_found_by_their_usual_names(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "web-docs.parquet"
    write_parquet(path)
    items = list(read_corpus(path))
    assert [(i.id, i.url) for i in items if isinstance(i, CorpusDoc)] == [
        ("d1", "https://example.org/animals/quokka"), ("d2", "https://web-docs.corpus.invalid/doc/d2")]
    assert [(i.reason, i.location) for i in items if isinstance(i, CorpusRejection)] == [("bad_url", "row 2")]
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "no-id.parquet")
    assert [i.reason for i in read_corpus(tmp_path / "no-id.parquet")] == ["no_id_column"]
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert [i.reason for i in read_corpus(tmp_path / "junk.parquet")] == ["unreadable_file"]
    with pytest.raises(ValueError, match="not a corpus file"):
        read_corpus(tmp_path / "x.csv")


def test_both_corpora_are_ingested_and_served_as_a_snapshot(tmp_path):
    from pipeline.ingest.corpus import ingest_corpus
    from pipeline.ingest.store import Store
    from pipeline.simulator.snapshot import build_snapshot
    from pipeline.simulator.web import Simulator, search_r1_documents

    write_wiki18(tmp_path / "wiki-18.jsonl.gz")
    write_parquet(tmp_path / "web-docs.parquet")
    store = Store(tmp_path / "store.duckdb")
    wiki = ingest_corpus(tmp_path / "wiki-18.jsonl.gz", store)
    web = ingest_corpus(tmp_path / "web-docs.parquet", store)
    assert (wiki.kept, dict(wiki.rejected)) == (3, {"corpus_duplicate_id": 1, "corpus_empty_text": 1,
                                                    "corpus_invalid_json": 1, "corpus_missing_id": 1,
                                                    "corpus_not_an_object": 1})
    assert (web.kept, dict(web.rejected)) == (2, {"corpus_bad_url": 1})
    assert ingest_corpus(tmp_path / "web-docs.parquet", store).kept == 2  # a re-run replaces the partition
    assert store.build_pages()["pages"] == 5
    store.build_link_graph()
    assert store.query("SELECT count(*) AS n FROM rejects WHERE partition = 'wiki-18.jsonl.gz'")[0]["n"] == 5

    sim = Simulator(build_snapshot(store.path, tmp_path / "snapshots"))
    hit = sim.search("burrowing mammal termites", k=3).results[0]
    assert (hit.title, hit.url) == ("Aardvark", "https://wiki-18.corpus.invalid/doc/0")
    page = sim.fetch("https://example.org/animals/quokka")
    assert page.status == 200 and "Rottnest Island" in page.text
    assert sim.search("hexagonal prisms lava", k=1).results[0].url == "https://web-docs.corpus.invalid/doc/d2"
    doc = search_r1_documents(sim.search("cloves nutmeg archipelago", k=1), False)[0]
    assert doc["contents"].startswith('"Zanzibar"\n')


def test_the_cli_ingests_each_file_as_a_partition(tmp_path, capsys):
    from pipeline.ingest.corpus import main
    from pipeline.ingest.store import Store

    write_parquet(tmp_path / "web-docs.parquet")
    assert main([str(tmp_path / "web-docs.parquet"), "--store", str(tmp_path / "s.duckdb")]) == 0
    assert "web-docs.parquet: 2 documents kept, rejected {'corpus_bad_url': 1}" in capsys.readouterr().out
    assert Store(tmp_path / "s.duckdb").partitions("warc") == ["web-docs.parquet"]
