import multiprocessing as mp
import time
from datetime import datetime, timezone

import pytest

from pipeline.ingest.run import content_hash
from pipeline.ingest.store import Store


def _page(record_id, url, text, date, status=200, title="t"):
    return {"record_id": record_id, "record_offset": 0, "url": url, "http_status": status,
            "warc_date": datetime(2020, 1, date, tzinfo=timezone.utc), "content_type": "text/html",
            "charset": "utf-8", "charset_source": "header", "title": title, "text": text, "published": None,
            "language": "en", "payload_bytes": len(text), "content_hash": content_hash(text), "from_revisit": False}


def _fill(store, partition, pages, links=(), redirects=()):
    with store.partition_writer("warc", partition) as w:
        for p in pages:
            w.add("warc_pages", p)
        for i, (rid, src, dst) in enumerate(links):
            w.add("warc_links", {"src_record_id": rid, "src_url": src, "dst_url": dst, "anchor": dst[-1],
                                 "context": f"see {dst[-1]}", "ordinal": i})
        for rid, src, dst in redirects:
            w.add("warc_redirects", {"record_id": rid, "url": src, "location": dst, "http_status": 301,
                                     "warc_date": None})


W = "https://en.wikipedia.org/wiki/"


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.duckdb")
    _fill(s, "a.warc.gz", [
        _page("r1", W + "A", "alpha text", 1),
        _page("r2", W + "B", "beta text", 1),
        _page("r3", "https://mirror.example/A", "alpha  text", 3),      # same text (whitespace differs): later copy
        _page("r4", W + "C", "old gamma", 1),
        _page("r5", W + "C", "new gamma", 5),                             # later capture of the same URL wins
        _page("r6", W + "Missing", "not found page", 1, status=404),
    ], links=[("r1", W + "A", W + "B"), ("r1", W + "A", W + "B"), ("r1", W + "A", "https://mirror.example/A"),
              ("r2", W + "B", W + "Old_C"), ("r2", W + "B", "https://nowhere.example/"), ("r4", W + "C", W + "A"),
              ("r5", W + "C", W + "B")],
       redirects=[("r7", W + "Old_C", W + "C")])
    with s.partition_writer("clickstream", "clickstream-enwiki-2024-10.tsv") as w:
        for prev, curr, n in [("A", "B", 7), ("B", "C", 3), ("other-search", "A", 100)]:
            w.add("clickstream", {"lang": "en", "prev": prev, "curr": curr,
                                  "type": "external" if prev.startswith("other") else "link", "n": n})
    return s


def test_pages_dedup_rules(store):
    stats = store.build_pages()
    rows = {r["url"]: r for r in store.query("SELECT * FROM pages")}
    assert sorted(rows) == [W + "A", W + "B", W + "C"]
    assert rows[W + "C"]["text"] == "new gamma"                      # latest capture of a URL
    assert rows[W + "A"]["clicks_in"] == 100 and rows[W + "A"]["clicks_in_search"] == 100
    assert rows[W + "A"]["wiki_title"] == "A" and rows[W + "A"]["wiki_lang"] == "en"
    aliases = {r["url"]: r for r in store.query("SELECT * FROM url_aliases")}
    assert aliases["https://mirror.example/A"]["reason"] == "duplicate_content"   # earliest capture wins
    assert aliases["https://mirror.example/A"]["page_id"] == rows[W + "A"]["page_id"]
    assert aliases[W + "Old_C"]["reason"] == "redirect"
    assert aliases[W + "Old_C"]["page_id"] == rows[W + "C"]["page_id"]
    assert stats["pages"] == 3 and stats["non_2xx_captures"] == 1 and stats["redirect_aliases"] == 1


def test_link_graph_resolves_through_aliases_and_weights_by_clicks(store):
    store.build_pages()
    stats = store.build_link_graph()
    edges = {(r["src"], r["dst"]): r for r in store.query("""
        SELECT ps.wiki_title AS src, pd.wiki_title AS dst, g.* FROM link_graph g
        JOIN pages ps ON ps.page_id = g.src_id JOIN pages pd ON pd.page_id = g.dst_id""")}
    # A->B twice (one edge, n_links 2), A->mirror of A is a self link (dropped), B->Old_C via redirect to C,
    # C's links come from its latest capture only (C->B, not C->A), B->nowhere unresolved.
    assert set(edges) == {("A", "B"), ("B", "C"), ("C", "B")}
    assert edges[("A", "B")]["n_links"] == 2 and edges[("A", "B")]["clicks"] == 7
    assert edges[("B", "C")]["clicks"] == 3 and edges[("B", "C")]["context"] == "see C"
    assert stats["edges"] == 3 and stats["outlinks"] == 6 and stats["outlinks_resolved"] == 5
    for table in ("pages", "link_graph"):
        assert all(bad == 0 for bad, _ in store.contract_violations(table).values())


def test_replacing_a_partition_never_duplicates(store):
    before = store.counts()
    _fill(store, "a.warc.gz", [_page("r1", W + "A", "alpha text", 1)])
    assert store.counts()["warc_pages"] == 1
    _fill(store, "a.warc.gz", [_page("r1", W + "A", "alpha text", 1)])
    assert store.counts()["warc_pages"] == 1
    assert before["warc_pages"] == 6


def test_a_failed_partition_write_keeps_the_previous_version(store):
    with pytest.raises(RuntimeError):
        with store.partition_writer("warc", "a.warc.gz") as w:
            w.add("warc_pages", _page("x", W + "X", "x", 1))
            raise RuntimeError("crash mid-partition")
    assert store.counts()["warc_pages"] == 6


def test_rejects_and_stats_are_replaced_with_the_partition(store):
    for _ in range(2):
        with store.partition_writer("warc", "b.warc.gz") as w:
            w.reject("corrupt_record", "bad bytes", "offset=10")
            w.stats = {"records": 3}
    assert store.query("SELECT reason, count(*) AS n FROM rejects WHERE partition = 'b.warc.gz' GROUP BY 1") == [
        {"reason": "corrupt_record", "n": 1}]
    stats = {r["stat"]: r["value"] for r in store.query(
        "SELECT stat, value FROM partition_stats WHERE partition = ?", ["b.warc.gz"])}
    assert stats == {"records": 3.0, "rejected_corrupt_record": 1.0}


def _slow_writer(path, partition, hold_s):
    store = Store(path)
    with store.partition_writer("warc", partition) as w:
        w.add("warc_pages", _page(partition, W + partition, partition, 1))
        time.sleep(hold_s)


def test_two_writer_processes_are_serialised(tmp_path):
    path = tmp_path / "store.duckdb"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_writer, args=(path, f"p{i}", 1.0)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert Store(path).partitions("warc") == ["p0", "p1"]


def _reader(path, out):
    out.put([r["partition"] for r in Store(path).query("SELECT DISTINCT partition FROM warc_pages ORDER BY 1")])


def test_a_reader_waits_for_a_writer_in_another_process(tmp_path):
    """DuckDB refuses a read-only connection while another process writes (an asset check beside a writing step
    of the multiprocess executor): the reader queues on the store's lock and then sees the finished write."""
    path = tmp_path / "store.duckdb"
    _fill(Store(path), "p0", [_page("p0", W + "p0", "p0", 1)])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    writer = ctx.Process(target=_slow_writer, args=(path, "p1", 2.0))
    writer.start()
    deadline = time.monotonic() + 60
    while not Store(path).lock_held() and time.monotonic() < deadline:
        time.sleep(0.05)
    reader = ctx.Process(target=_reader, args=(path, out))
    reader.start()
    writer.join(60)
    reader.join(60)
    assert [writer.exitcode, reader.exitcode] == [0, 0]
    assert out.get(timeout=5) == ["p0", "p1"]


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        with Store(tmp_path / "s.duckdb").partition_writer("pdf", "x"):
            pass
