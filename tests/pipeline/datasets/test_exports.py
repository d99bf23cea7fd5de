"""The trainers' export folder from a hard_queries dataset and its snapshot, replaced whole on a re-run."""

import json

from pipeline.datasets.exports import ExportConfig, export_for_trainers, main
from pipeline.datasets.retrieval import evaluate_run, read_qrels, read_run
from tests.support import small_questions


def write_questions(folder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    for split in ("train", "eval"):
        rows = [q for q in small_questions() if q["split"] == split]
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}.parquet")
    return folder


def test_every_export_is_written_and_the_run_scores_as_its_metrics_say(small_snapshot, tmp_path):
    import pandas as pd

    qdir = write_questions(tmp_path / "hard_queries")
    out = tmp_path / "exports"
    manifest = export_for_trainers(qdir, small_snapshot, out)
    assert manifest["rows"]["verl"] == {"train": 4, "test": 2} == manifest["rows"]["verifiers"]
    assert pd.read_parquet(out / "search_r1" / "test.parquet")["data_source"].tolist() == ["hotpotqa"] * 2
    assert manifest["rows"]["corpus"]["documents"] == small_snapshot.manifest["counts"]["pages"]
    retrieval = out / "retrieval"
    assert (retrieval / "queries.tsv").read_text().splitlines()[0].startswith("fjord\t")  # the eval questions
    evidence = read_qrels(retrieval / "qrel_evidence.txt")
    assert sorted(evidence) == ["fjord", "origami"]
    metrics = json.loads((retrieval / "metrics.json").read_text())
    again = evaluate_run(evidence, read_run(retrieval / "run.websim-bm25.trec"))
    assert metrics["evidence"]["recall@100"] == again["recall@100"] and metrics["counts"]["judged"] == 2
    assert json.loads((out / "manifest.json").read_text())["files"]["verl"]["train"] == str(out / "verl" / "train.parquet")
    card = (out / "README.md").read_text()
    assert "| evidence |" in card and "qrel_evidence.txt" in card and "index_builder.py" in card
    # a re-run with less replaces the folder whole
    export_for_trainers(qdir, small_snapshot, out, ExportConfig(retrieval=False, corpus=False, verifiers=False))
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "manifest.json", "search_r1", "verl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exports")]


def test_the_cli_writes_the_folder(small_snapshot, tmp_path, capsys):
    qdir = write_questions(tmp_path / "hq")
    assert main(["--questions", str(qdir), "--snapshot", str(small_snapshot.path), "--out", str(tmp_path / "x"),
                 "--no-corpus", "--retrieval-split", ""]) == 0
    assert not (tmp_path / "x" / "corpus").exists()
    assert len(read_qrels(tmp_path / "x" / "retrieval" / "qrel_gold.txt")) == 6
