"""The whole sample data set ingested once (session fixture `full_store`): the store's promises at real scale."""

import pytest

from pipeline.ingest.run import ingest_warc
from tests.support import sample

pytestmark = pytest.mark.slow


def test_every_wikispeedia_article_is_in_the_store_once(full_store):
    wiki_urls = {r["url"] for r in full_store.query(
        "SELECT DISTINCT url FROM warc_pages WHERE partition LIKE 'wikispeedia-%'")}
    assert len(wiki_urls) == 4598
    reachable = full_store.query("""
        SELECT count(*) AS n FROM (
          SELECT url FROM pages WHERE partition LIKE 'wikispeedia-%'
          UNION SELECT a.url FROM url_aliases a JOIN warc_pages w ON w.url = a.url
          WHERE w.partition LIKE 'wikispeedia-%')""")[0]["n"]
    assert reachable == 4598                      # a page, or an alias of its exact duplicate
    dupes = full_store.query("SELECT count(*) - count(DISTINCT url) AS d FROM pages")[0]["d"]
    assert dupes == 0


def test_the_other_sample_sites_are_pages_too(full_store):
    hosts = {r["host"] for r in full_store.query("SELECT DISTINCT host FROM pages")}
    assert {"www.iana.org", "data.gov.uk", "en.wikipedia.org", "an.wikipedia.org"} <= hosts


def test_link_graph_is_large_and_weighted_by_navigation(full_store):
    assert full_store.link_stats["edges"] > 100_000
    assert full_store.link_stats["outlinks_resolved"] > 100_000
    assert full_store.link_stats["edges_with_clicks"] > 10_000
    for table in ("pages", "link_graph"):
        violations = {k: v for k, (v, _) in full_store.contract_violations(table).items() if v}
        assert violations == {}, table


def test_all_valid_clickstream_rows_are_kept(full_store):
    assert full_store.counts()["clickstream"] == 9936 + 1039 + 35477
    assert full_store.query("SELECT count(*) AS n FROM rejects WHERE source = 'clickstream'")[0]["n"] == 0
    # Wikispeedia navigation joins to pages by title
    assert full_store.page_stats["pages_with_clicks"] > 3000


def test_reingesting_a_partition_changes_no_count(full_store):
    before = full_store.counts()
    ingest_warc(sample("warc", "iana-2014.warc.gz"), full_store, "iana-2014.warc.gz")
    full_store.build_pages()
    full_store.build_link_graph()
    assert full_store.counts() == before
