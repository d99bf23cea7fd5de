"""The file sensors on a real (ephemeral) instance: a file whose partition was materialized after it was last written
gets no run, even with an empty cursor (the first `make ui` after `make demo`), and gets one again once it changes."""

import os
import time

import dagster as dg

from assets.resources import InputsResource
from assets.sensors import clickstream_files_sensor, materialized_after_write, warc_files_sensor


def _inputs(tmp_path) -> InputsResource:
    (tmp_path / "warc").mkdir()
    (tmp_path / "clicks").mkdir()
    for name in ("a.warc.gz", "b.warc.gz"):
        (tmp_path / "warc" / name).write_bytes(b"not read by the sensor")
    (tmp_path / "clicks" / "clickstream-enwiki-2024-11.tsv").write_text("prev\tcurr\ttype\tn\n")
    return InputsResource(warc_dirs=[str(tmp_path / "warc")], clickstream_dirs=[str(tmp_path / "clicks")])


def _materialized(instance, asset: str, partition: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))


def test_empty_cursor_skips_what_is_already_materialized(tmp_path):
    inputs = _inputs(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("warc_files", ["a.warc.gz", "b.warc.gz"])
    instance.add_dynamic_partitions("clickstream_files", ["clickstream-enwiki-2024-11.tsv"])
    _materialized(instance, "warc_pages", "a.warc.gz")  # as `websim run` leaves it: ingested, no sensor cursor
    _materialized(instance, "clickstream", "clickstream-enwiki-2024-11.tsv")

    first = warc_files_sensor(dg.build_sensor_context(instance=instance, resources={"inputs": inputs}))
    assert [r.partition_key for r in first.run_requests] == ["b.warc.gz"]  # never ingested
    assert first.dynamic_partitions_requests == []
    clicks = clickstream_files_sensor(dg.build_sensor_context(instance=instance, resources={"inputs": inputs}))
    assert clicks.run_requests == []

    # a.warc.gz rewritten after its materialization: a run again
    changed = tmp_path / "warc" / "a.warc.gz"
    later = time.time() + 60
    os.utime(changed, (later, later))
    again = warc_files_sensor(dg.build_sensor_context(instance=instance, resources={"inputs": inputs},
                                                      cursor=first.cursor))
    assert [r.partition_key for r in again.run_requests] == ["a.warc.gz"]


def test_a_new_file_is_registered_and_run(tmp_path):
    inputs = _inputs(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = warc_files_sensor(dg.build_sensor_context(instance=instance, resources={"inputs": inputs}))
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == ["a.warc.gz", "b.warc.gz"]
    assert sorted(r.partition_key for r in result.run_requests) == ["a.warc.gz", "b.warc.gz"]


def test_materialized_after_write_reads_the_latest_event_per_partition(tmp_path):
    files = _inputs(tmp_path).warc_files()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("warc_files", list(files))
    key = dg.AssetKey("warc_pages")
    assert materialized_after_write(instance, key, files, list(files)) == set()
    _materialized(instance, "warc_pages", "b.warc.gz")
    assert materialized_after_write(instance, key, files, list(files)) == {"b.warc.gz"}
    assert materialized_after_write(instance, key, files, ["a.warc.gz"]) == set()
    assert materialized_after_write(instance, key, files, []) == set()
