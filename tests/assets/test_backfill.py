"""A backfill of every WARC partition, run twice through the project's own Dagster jobs, leaves the same store.

The WARC folder is configured the way a user does it (`WEBSIM_WARC_DIRS`) and holds the six small sample WARCs
(every sample file but the four 10 MB Wikispeedia shards, which would take minutes per pass on two cores); the
backfill is what `websim backfill warc_pages --all` runs: one `warc_ingest` run per partition on a persistent
instance, then `store_build`. The second pass goes in the reverse order.
"""

import os

import dagster as dg
import pytest

from assets import defs
from assets.resources import InputsResource, StoreResource
from tests.support import SHARED_DATA, sample

STATE_SQL = {
    "warc_pages": "SELECT partition, count(*), bit_xor(md5_number(concat_ws('|', url, http_status, content_hash, "
                  "record_id))) FROM warc_pages GROUP BY ALL ORDER BY ALL",
    "warc_links": "SELECT partition, count(*), bit_xor(md5_number(concat_ws('|', src_record_id, dst_url, anchor, "
                  "ordinal))) FROM warc_links GROUP BY ALL ORDER BY ALL",
    "pages": "SELECT count(*), bit_xor(md5_number(concat_ws('|', page_id, url, content_hash))) FROM pages",
    "url_aliases": "SELECT count(*), bit_xor(md5_number(concat_ws('|', url, page_id, reason))) FROM url_aliases",
    "link_graph": "SELECT count(*), bit_xor(md5_number(concat_ws('|', src_id, dst_id, anchor, clicks))) "
                  "FROM link_graph",
    "rejects": "SELECT source, partition, reason, count(*) FROM rejects GROUP BY ALL ORDER BY ALL",
}


@pytest.fixture
def small_warc_dir(tmp_path, monkeypatch):
    sample("warc")
    folder = tmp_path / "warc"
    folder.mkdir()
    for name in sorted(os.listdir(SHARED_DATA / "warc")):
        if not name.startswith("wikispeedia-"):
            (folder / name).symlink_to(SHARED_DATA / "warc" / name)
    monkeypatch.setenv("WEBSIM_WARC_DIRS", str(folder))
    monkeypatch.setenv("WEBSIM_STORE", str(tmp_path / "store.duckdb"))
    return folder


def _store_state(store) -> dict:
    with store.connect(read_only=True) as con:
        state = {name: con.execute(sql).fetchall() for name, sql in STATE_SQL.items()}
    return {"counts": store.counts(), "partitions": store.partitions_signature(), **state}


def test_backfilling_every_warc_partition_twice_gives_the_same_store(small_warc_dir):
    keys = sorted(InputsResource().warc_files())  # every partition of the configured folder
    assert len(keys) == 6
    store = StoreResource().get()
    assert store.path == small_warc_dir.parent / "store.duckdb"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("warc_files", keys)

        def backfill(order: list[str]) -> dict:
            for key in order:
                result = defs.resolve_job_def("warc_ingest").execute_in_process(partition_key=key, instance=instance)
                assert result.success, key
            assert defs.resolve_job_def("store_build").execute_in_process(instance=instance).success
            return _store_state(store)

        first = backfill(keys)
        second = backfill(keys[::-1])
        counts = first["counts"]
        assert counts["warc_pages"] >= 90 and counts["pages"] >= 50 and counts["link_graph"] > 0
        assert {row[0] for row in first["warc_pages"]} == set(keys)  # every partition holds pages
        assert second == first

        runs = instance.get_run_records(dg.RunsFilter(job_name="warc_ingest"))
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == sorted(keys * 2)
        materialized = instance.get_materialized_partitions(dg.AssetKey("warc_pages"))
        assert materialized == set(keys)
