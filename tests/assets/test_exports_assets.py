"""`trainer_exports`: the export folder from the questions dataset and the snapshot, scores in its metadata."""

import dagster as dg

from assets.exports import trainer_exports
from assets.resources import PathsResource
from assets.simulator import SimulatorResource
from tests.support import small_questions


def test_trainer_exports_materializes_the_folder(small_snapshot, tmp_path):
    from pipeline.datasets.export import export_dataset
    from pipeline.synthesis.questions import hard_query_table

    qdir = tmp_path / "hard_queries"
    export_dataset(hard_query_table(small_questions()), qdir, card="test", provenance={})
    resources = {"simulator": SimulatorResource(snapshots_root=str(small_snapshot.path.parent)),
                 "paths": PathsResource(data_dir=str(tmp_path))}
    defs = dg.Definitions(assets=[trainer_exports], resources=resources)
    dg.Definitions.validate_loadable(defs)
    result = dg.materialize([trainer_exports], resources=resources, run_config={"ops": {"trainer_exports": {
        "config": {"questions_dir": str(qdir), "corpus": False}}}})
    assert result.success
    md = result.asset_materializations_for_node("trainer_exports")[0].metadata
    out = tmp_path / "datasets" / "trainer_exports"
    assert md["path"].value == str(out) and md["snapshot_id"].value == small_snapshot.id
    assert md["rows"].value["verl"] == {"train": 4, "test": 2}
    assert 0.0 <= md["evidence_recall@100"].value <= 1.0 and "gold_ndcg@10" in md
    assert (out / "verl" / "train.parquet").is_file() and not (out / "corpus").exists()
