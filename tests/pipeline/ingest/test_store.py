import multiprocessing as mp
import os
import signal
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


def _writer_in_step(path, partition, inside, go_on, text="slow"):
    """Write `partition` of the store at `path`; once inside the writer, set `inside` and wait for `go_on`."""
    store = Store(path)
    with store.partition_writer("warc", partition) as w:
        w.add("warc_pages", _page(partition, W + partition, text, 1))
        inside.set()
        assert go_on.wait(60), "nobody let the writer finish"


def _two_at_once(path, partition, mine, other):
    """A writer that is inside the store at the same time as another one, or fails."""
    store = Store(path)
    with store.partition_writer("warc", partition) as w:
        w.add("warc_pages", _page(partition, W + partition, partition, 1))
        mine.set()
        assert other.wait(60), "the other writer never got in while this one was writing"


def test_writers_of_different_partitions_write_at_once(tmp_path):
    """No shared writer: two processes are inside their partitions at the same moment (each waits, inside, for the
    other to get in; a store that serialised them would leave the first waiting in vain)."""
    path = tmp_path / "store.duckdb"
    ctx = mp.get_context("spawn")
    events = [ctx.Event(), ctx.Event()]
    procs = [ctx.Process(target=_two_at_once, args=(path, f"p{i}", events[i], events[1 - i])) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert Store(path).partitions("warc") == ["p0", "p1"]


def test_writers_of_one_partition_queue_and_say_who_holds_it(tmp_path):
    path = tmp_path / "store.duckdb"
    ctx = mp.get_context("spawn")
    inside, go_on = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_writer_in_step, args=(path, "p0", inside, go_on))
    holder.start()
    try:
        assert inside.wait(120)
        messages = []
        waiting = Store(path, write_timeout_s=1.0, on_wait=messages.append, wait_report_s=0.3)
        assert waiting.lock_held()
        with pytest.raises(TimeoutError, match=f"pid {holder.pid} "):
            with waiting.partition_writer("warc", "p0"):
                pass
        assert messages and all(f"pid {holder.pid} " in m for m in messages), messages
        with Store(path, write_timeout_s=1.0).partition_writer("warc", "p1") as w:  # another partition: no wait
            w.add("warc_pages", _page("p1", W + "p1", "p1", 1))
    finally:
        go_on.set()
        holder.join(60)
    assert holder.exitcode == 0 and not Store(path).lock_held()
    with Store(path, write_timeout_s=5.0).partition_writer("warc", "p0") as w:
        w.add("warc_pages", _page("p0b", W + "p0", "p0 again", 1))
    assert Store(path).query("SELECT partition, record_id FROM warc_pages ORDER BY 1") == [
        {"partition": "p0", "record_id": "p0b"}, {"partition": "p1", "record_id": "p1"}]


def test_a_reader_never_waits_and_never_sees_a_partition_half_written(tmp_path):
    path = tmp_path / "store.duckdb"
    store = Store(path)
    _fill(store, "p0", [_page("old", W + "p0", "old text", 1)])
    ctx = mp.get_context("spawn")
    inside, go_on = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_writer_in_step, args=(path, "p0", inside, go_on, "new text"))
    writer.start()
    try:
        assert inside.wait(120)
        started = time.monotonic()
        assert store.query("SELECT record_id FROM warc_pages") == [{"record_id": "old"}]  # the previous version
        assert time.monotonic() - started < 10
        assert list((store.parts / "warc" / "p0").glob(".tmp-*"))  # the new one is being written, out of sight
    finally:
        go_on.set()
        writer.join(60)
    assert writer.exitcode == 0
    assert store.query("SELECT record_id, text FROM warc_pages") == [{"record_id": "p0", "text": "new text"}]


def test_a_writer_killed_mid_write_leaves_the_previous_version_and_no_lock(tmp_path):
    path = tmp_path / "store.duckdb"
    store = Store(path)
    _fill(store, "p0", [_page("old", W + "p0", "old text", 1)])
    store.build_pages()
    before = store.counts()
    ctx = mp.get_context("spawn")
    inside, never = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_writer_in_step, args=(path, "p0", inside, never, "new text"))
    writer.start()
    assert inside.wait(120)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(30)
    assert writer.exitcode == -signal.SIGKILL
    assert store.counts() == before and not store.lock_held()
    assert store.query("SELECT record_id FROM warc_pages") == [{"record_id": "old"}]
    with Store(path, write_timeout_s=5.0).partition_writer("warc", "p0") as w:  # the next writer gets in at once
        w.add("warc_pages", _page("again", W + "p0", "again", 1))
    folder = store.parts / "warc" / "p0"
    assert not list(folder.glob(".tmp-*"))  # what the dead writer left is gone
    assert [p.name for p in sorted(folder.iterdir())] == ["v000001", "v000002"]


def test_re_ingesting_keeps_the_current_version_and_the_one_before(store):
    for i in range(3):
        _fill(store, "p", [_page(f"r{i}", W + "P", f"text {i}", 1)])
    assert [p.name for p in sorted((store.parts / "warc" / "p").iterdir())] == ["v000002", "v000003"]
    assert store.query("SELECT record_id FROM warc_pages WHERE partition = 'p'") == [{"record_id": "r2"}]
    store.drop_partition("warc", "p")
    assert "p" not in store.partitions("warc") and not (store.parts / "warc" / "p").exists()


def test_a_reader_keeps_its_build_while_a_new_one_replaces_it(store):
    store.build_pages()
    with store.connect() as con:
        _fill(store, "more.warc.gz", [_page("m1", W + "More", "more text", 2)])
        store.build_pages()
        assert con.execute("SELECT count(*) FROM pages").fetchone()[0] == 3  # the file it opened
    assert store.counts()["pages"] == 4
    assert not list(store.path.parent.glob(f".{store.path.name}.build-*"))


def test_link_graph_reads_the_partition_versions_pages_was_built_from(store):
    store.build_pages()
    # a.warc.gz re-ingested after pages: the link graph still joins the links of the version pages saw
    _fill(store, "a.warc.gz", [_page("r1", W + "A", "alpha text", 1)], links=[("r1", W + "A", W + "Z")])
    stats = store.build_link_graph()
    assert stats["edges"] == 3 and stats["outlinks"] == 6
    built = store.query("SELECT version FROM store.build_inputs WHERE partition = 'a.warc.gz'")
    assert built == [{"version": "v000001"}]


def _legacy_store(path, source_store):
    """A store of the single-file layout (raw tables inside the DuckDB file), from another store's rows."""
    import duckdb

    from pipeline.ingest.store import RAW_TABLES

    with source_store.connect() as src:
        tables = {t: src.sql(f"SELECT * FROM {t} ORDER BY ALL").to_arrow_table() for t in RAW_TABLES}
    con = duckdb.connect(str(path))
    for name, table in tables.items():
        con.register("_t", table)
        con.execute(f"CREATE TABLE {name} AS FROM _t")
        con.unregister("_t")
    con.close()


def test_a_single_file_store_is_read_as_it_is_then_converted(store, tmp_path):
    expected_pages = store.build_pages()
    expected_links = store.build_link_graph()
    want = {t: store.query(f"SELECT * EXCLUDE (page_id) FROM {t} ORDER BY ALL") for t in ("pages",)}
    legacy = Store(tmp_path / "old" / "store.duckdb")
    legacy.path.parent.mkdir()
    _legacy_store(legacy.path, store)
    raw = {t: n for t, n in store.counts().items() if t not in ("pages", "url_aliases", "link_graph")}
    assert {t: n for t, n in legacy.counts().items() if t in raw} == raw  # read as it is
    _fill(legacy, "new.warc.gz", [])  # the first partition write converts it
    assert sorted(p for _, p in legacy.current_partitions()) == ["a.warc.gz", "clickstream-enwiki-2024-10.tsv",
                                                                 "new.warc.gz"]
    assert legacy.build_pages() == expected_pages and legacy.build_link_graph() == expected_links
    assert {t: legacy.query(f"SELECT * EXCLUDE (page_id) FROM {t} ORDER BY ALL") for t in ("pages",)} == want
    assert "warc_pages" not in {r["table_name"] for r in legacy.query(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'store'")}


def test_unknown_source_and_bad_keys_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        with Store(tmp_path / "s.duckdb").partition_writer("pdf", "x"):
            pass
    for key in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="partition key"):
            with Store(tmp_path / "s.duckdb").partition_writer("warc", key):
                pass
    with pytest.raises(ValueError, match="reads"):
        with Store(tmp_path / "s.duckdb").connect(read_only=False):
            pass
