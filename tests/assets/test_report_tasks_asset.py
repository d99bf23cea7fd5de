"""The `report_tasks` asset: from a snapshot built of real sample WARCs to a checked dataset folder."""

import json

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.llm_resource import LLMResource
from assets.report_tasks import report_tasks
from assets.resources import PathsResource, StoreResource
from assets.simulator import SimulatorResource
from pipeline.synthesis.report_tasks import CHECKS, TASK_KINDS
from tests.support import sample, FakeTeacher

WARCS = ["datagovuk-2014.warc.gz", "wikipedia-mona-lisa-2013.warc.gz", "wikispeedia-2007-00000.warc.gz"]


@pytest.fixture(scope="module")
def built_snapshot(tmp_path_factory):
    """A store of three real WARCs (the data.gov.uk crawl, Mona Lisa, a Wikispeedia shard) and its snapshot."""
    from pipeline.ingest.run import ingest_warc
    from pipeline.simulator.snapshot import build_snapshot
    from pipeline.ingest.store import Store

    root = tmp_path_factory.mktemp("report_tasks_asset")
    store = Store(root / "store.duckdb")
    for name in WARCS:
        ingest_warc(sample("warc", name), store, name)
    store.build_pages()
    store.build_link_graph()
    snap = build_snapshot(store.path, root / "snapshots")
    return store, snap


@pytest.fixture(scope="module")
def gguf_tokenizer():
    from pipeline.llm.model_setup import embedded_gguf_path

    return str(embedded_gguf_path())


class FakeLLMResource(LLMResource):
    """The resource with a scripted teacher (see FakeTeacher): no model, no engine."""

    def get_backend(self):
        return FakeTeacher()


def _run(resources, config, instance=None):
    return dg.materialize([report_tasks], resources=resources, instance=instance or dg.DagsterInstance.ephemeral(),
                          run_config={"ops": {"report_tasks": {"config": config}}})


def test_asset_materializes_a_checked_dataset(built_snapshot, gguf_tokenizer, tmp_path):
    store, snap = built_snapshot
    out = tmp_path / "out"
    resources = {"llm": FakeLLMResource(), "store": StoreResource(path=str(store.path)),
                 "simulator": SimulatorResource(snapshots_root=str(snap.path.parent)), "paths": PathsResource()}
    config = {"n_reorder": 3, "n_synthesise": 3, "n_analyse_merge": 2, "chunks_per_task": 4, "distractors": 1,
              "max_pages_per_host": 40, "tokenizer": gguf_tokenizer, "output_dir": str(out)}
    instance = dg.DagsterInstance.ephemeral()
    result = _run(resources, config, instance)
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == set(CHECKS) and all(c.passed for c in checks.values())

    md = instance.fetch_materializations(report_tasks.key, limit=1).records[0].asset_materialization.metadata
    assert [md[f"tasks_{k}"].value for k in TASK_KINDS] == [3, 3, 2]
    assert md["snapshot_id"].value == snap.id
    assert "data:image/png;base64," in md["chunk_tokens_histogram"].value
    assert md["rejections"].data["kp_invalid_json"] > 0 and md["key_point_chunks"].data["requests"] > 0
    assert {"sample_task", "llm_usage", "prompt_tokens", "completion_tokens", "seconds", "dataset_card"} <= set(md)

    for name in ("README.md", "provenance.json", "chunk_tokens.png", "hf/dataset_dict.json"):
        assert (out / name).is_file(), name
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["snapshot_id"] == snap.id and provenance["model"] == "fake-teacher"
    rows = [r for split in provenance["rows_by_split"] for r in pq.read_table(out / "data" / f"{split}.parquet").to_pylist()]
    assert len(rows) == 8 and all(r["snapshot_id"] == snap.id and r["seed"] == 0 for r in rows)
    hosts = {c["url"].split("/")[2] for r in rows for c in r["chunks"]}
    assert "data.gov.uk" in hosts and "en.wikipedia.org" in hosts
    assert "Open Government Licence" in (out / "README.md").read_text()

    # same inputs, same tasks: the split (and everything else) is deterministic
    assert _run(resources, config).success
    again = [r for split in provenance["rows_by_split"] for r in pq.read_table(out / "data" / f"{split}.parquet").to_pylist()]
    assert [(r["task_id"], r["split"]) for r in again] == [(r["task_id"], r["split"]) for r in rows]


def test_asset_refuses_the_live_store_when_no_snapshot_exists(built_snapshot, gguf_tokenizer, tmp_path):
    store, _ = built_snapshot
    resources = {"llm": FakeLLMResource(), "store": StoreResource(path=str(store.path)),
                 "simulator": SimulatorResource(snapshots_root=str(tmp_path / "no_snapshots")),
                 "paths": PathsResource()}
    config = {"n_reorder": 1, "n_synthesise": 1, "n_analyse_merge": 0, "max_pages_per_host": 10,
              "tokenizer": gguf_tokenizer, "output_dir": str(tmp_path / "out")}
    with pytest.raises(dg.Failure, match="materialize `snapshot` first"):
        _run(resources, config)
    assert not (tmp_path / "out").exists()  # tasks come from an immutable snapshot, never the store being written


@pytest.mark.slow
def test_end_to_end_with_the_embedded_model(built_snapshot, tmp_path):
    """The real teacher (SmolLM2-135M through the transformers backend) on two pages: whatever it writes, the
    tasks' checks pass, and its failures are counted rejections."""
    store, snap = built_snapshot
    resources = {"llm": LLMResource(backend="transformers", max_json_retries=0),
                 "store": StoreResource(path=str(store.path)),
                 "simulator": SimulatorResource(snapshots_root=str(snap.path.parent)), "paths": PathsResource()}
    config = {"n_reorder": 1, "n_synthesise": 1, "n_analyse_merge": 1, "chunks_per_task": 2, "distractors": 1,
              "max_sources_per_task": 1, "max_pages_per_host": 10, "key_points_max_tokens": 96,
              "reference_max_tokens": 96, "output_dir": str(tmp_path / "out")}
    instance = dg.DagsterInstance.ephemeral()
    result = _run(resources, config, instance)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    md = instance.fetch_materializations(report_tasks.key, limit=1).records[0].asset_materialization.metadata
    assert md["completion_tokens"].value > 0 and md["model"].value.startswith("transformers:SmolLM2-135M-Instruct")
    rows = pq.read_table(tmp_path / "out" / "data" / "train.parquet").to_pylist() if (
        tmp_path / "out" / "data" / "train.parquet").exists() else []
    rows += pq.read_table(tmp_path / "out" / "data" / "eval.parquet").to_pylist() if (
        tmp_path / "out" / "data" / "eval.parquet").exists() else []
    assert sorted(r["task_kind"] for r in rows) == sorted(TASK_KINDS)
    for r in rows:
        assert r["model"].startswith("SmolLM2-135M-Instruct")
        if r["reference_source"] and r["reference_source"].startswith("model:"):
            assert r["reference_scores"]["format"] is not None
