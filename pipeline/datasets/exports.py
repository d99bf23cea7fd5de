"""One folder of everything other trainers and retrievers read, from a `hard_queries` dataset and its snapshot.

Layout of `out_dir` (built beside it and swapped in whole, like `export_dataset`):

    verl/{train,test}.parquet        veRL's search agent (data_source searchR1_hotpotqa, system + user prompt)
    search_r1/{train,test}.parquet   Search-R1's `train_ppo.sh`/`train_grpo.sh` (data_source hotpotqa, <search> prompt)
    verifiers/{train,test}.parquet   a verifiers environment's dataset (prompt, question, answer, info, task)
    retrieval/queries.tsv            BrowseComp-Plus-style retrieval benchmark over the questions of `retrieval_split`:
    retrieval/qrel_evidence.txt        every page the answer depends on, relevance 1 (TREC qrels)
    retrieval/qrel_gold.txt            the page that states the answer
    retrieval/run.websim-bm25.trec     websim's own search as a TREC run (the baseline)
    retrieval/metrics.json             recall@5/@100 and nDCG@10 of that run against both qrels
    corpus/corpus.jsonl              the snapshot's pages as Search-R1 corpus JSONL (ids = the qrels' doc ids)
    manifest.json                    what made it and what is where
    README.md                        how each trainer or tool reads its files

CLI: `python -m pipeline.datasets.exports --questions <hard_queries dir> [--snapshot latest] --out <dir>`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.datasets.export import swap_in
from pipeline.datasets.io import read_split
from pipeline.datasets.retrieval import (bm25_run, corpus_documents, evaluate_run, qrels, write_jsonl, write_qrels,
                                         write_queries, write_run)
from pipeline.datasets.trainers import by_split, trainer_split, verifiers_rows, verl_rows, write_split_parquet

SPLITS = ("train", "eval")


@dataclass(frozen=True)
class ExportConfig:
    verl: bool = True
    search_r1: bool = True
    verifiers: bool = True
    retrieval: bool = True
    retrieval_split: str = "eval"
    """The questions the retrieval benchmark judges: a split, or "" for all."""
    run_k: int = 100
    """Depth of websim's BM25 run (at most the simulator's max_k)."""
    corpus: bool = True


def export_for_trainers(questions_dir: str | Path, snapshot: Any, out_dir: str | Path,
                        config: ExportConfig = ExportConfig(), *, log: Callable[[str], None] | None = None
                        ) -> dict[str, Any]:
    """Write every export of `config` for the questions in `questions_dir` served by `snapshot` (a `Snapshot`);
    returns the manifest (paths, rows per split, retrieval metrics)."""
    from pipeline.simulator.web import Simulator

    log = log or (lambda msg: None)
    questions = [row for split in SPLITS for row in read_split(questions_dir, split)]
    if not questions:
        raise ValueError(f"no questions in {questions_dir} (expected data/train.parquet or data/eval.parquet)")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    manifest: dict[str, Any] = {"questions_dir": str(questions_dir), "snapshot_id": snapshot.id,
                                "config": asdict(config), "questions": len(questions), "files": {}, "rows": {}}
    try:
        def split_of(row: dict) -> str:
            return row["extra_info"]["split"]

        for name, wanted, flavor in (("verl", config.verl, "verl"), ("search_r1", config.search_r1, "search-r1")):
            if wanted:
                rows = verl_rows(questions, flavor=flavor)
                manifest["files"][name] = write_split_parquet(by_split(rows, split_of), tmp / name)
                manifest["rows"][name] = {s: len(r) for s, r in by_split(rows, split_of).items()}
        if config.verifiers:
            groups = by_split(verifiers_rows(questions), lambda r: trainer_split(r["info"]["websim_split"]))
            manifest["files"]["verifiers"] = write_split_parquet(groups, tmp / "verifiers")
            manifest["rows"]["verifiers"] = {s: len(r) for s, r in groups.items()}
        if config.retrieval:
            manifest["retrieval"] = _retrieval(questions, snapshot, Simulator(snapshot, call_log=False),
                                               tmp / "retrieval", config)
            manifest["files"]["retrieval"] = str(out_dir / "retrieval")
            log(f"retrieval: {manifest['retrieval']['counts']}; websim BM25 evidence "
                f"recall@100 {manifest['retrieval']['evidence']['recall@100']:.3f}")
        if config.corpus:
            n = write_jsonl(corpus_documents(snapshot), tmp / "corpus" / "corpus.jsonl")
            manifest["files"]["corpus"] = str(out_dir / "corpus" / "corpus.jsonl")
            manifest["rows"]["corpus"] = {"documents": n}
            log(f"corpus: {n} documents")
        # paths as they will be once the folder is in place
        manifest["files"] = json.loads(json.dumps(manifest["files"]).replace(str(tmp), str(out_dir)))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (tmp / "README.md").write_text(readme(manifest), encoding="utf-8")
        swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


USAGE = {
    "verl": "veRL's search agent: `data.train_files=verl/train.parquet data.val_files=verl/test.parquet`, its "
            "search tool's `retrieval_service_url` = websim's `http://127.0.0.1:8000/retrieve` (`websim serve`); "
            "`data_source` searchR1_hotpotqa is scored by veRL's `search_r1_like_qa_em`.",
    "search_r1": "Search-R1: `TRAIN_DATA_DIR=search_r1 TEST_DATA_DIR=search_r1` in `train_ppo.sh` / `train_grpo.sh`, "
                 "`retriever.url` = websim's `http://127.0.0.1:8000/retrieve`; `data_source` hotpotqa is scored by "
                 "its `qa_em`.",
    "verifiers": "verifiers: `datasets.load_dataset('parquet', data_files={'train': 'verifiers/train.parquet', 'test': "
                 "'verifiers/test.parquet'})` as an environment's dataset (`prompt`, `question`, `answer`, `info`), "
                 "websim's tools as its MCP server: verifiers 0.3's `MCPEnv(mcp_servers=[{'name': 'websim', "
                 "'command': 'python', 'args': ['-m', 'pipeline.simulator.mcp_server', '--snapshot', '<id>']}], "
                 "dataset=...)`.",
    "retrieval": "retrieval: `python -m pyserini.eval.trec_eval -c -m recall.5,100 -m ndcg_cut.10 "
                 "retrieval/qrel_evidence.txt <your run>` (and `qrel_gold.txt`); `metrics.json` holds websim's BM25 "
                 "run scored the same way.",
    "corpus": "corpus: `corpus/corpus.jsonl` (`id`, `contents`) for Search-R1's `index_builder.py` (e5 + FAISS) or "
              "Pyserini; its ids are the qrels' doc ids and `/retrieve`'s.",
}


def readme(manifest: dict[str, Any]) -> str:
    """The folder's card: what made it, what each file is for, the BM25 baseline."""
    lines = ["# websim exports for other trainers and retrievers", "",
             f"From `{manifest['questions_dir']}` ({manifest['questions']} questions) on snapshot "
             f"`{manifest['snapshot_id']}`. Rows: `{json.dumps(manifest['rows'], sort_keys=True)}`.", ""]
    lines += [f"- {USAGE[name]}" for name in USAGE if name in manifest["files"]]
    if manifest.get("retrieval"):
        r = manifest["retrieval"]
        lines += ["", f"websim BM25 (top {r['run_k']}) on {r['counts']['judged']} judged questions:", "",
                  "| qrels | recall@5 | recall@100 | nDCG@10 |", "|---|---|---|---|"]
        lines += [f"| {w} | {r[w]['recall@5']:.3f} | {r[w]['recall@100']:.3f} | {r[w]['ndcg@10']:.3f} |"
                  for w in ("evidence", "gold")]
    return "\n".join(lines) + "\n"


def _retrieval(questions: Sequence[dict], snapshot: Any, simulator: Any, folder: Path,
               config: ExportConfig) -> dict[str, Any]:
    chosen = [q for q in questions if not config.retrieval_split or q.get("split") == config.retrieval_split]
    folder.mkdir(parents=True)
    evidence, gold, counts = qrels(chosen, snapshot)
    run = bm25_run(chosen, simulator, k=config.run_k)
    write_queries(chosen, folder / "queries.tsv")
    write_qrels(evidence, folder / "qrel_evidence.txt")
    write_qrels(gold, folder / "qrel_gold.txt")
    write_run(run, folder / "run.websim-bm25.trec")
    metrics = {"counts": counts, "run_k": min(config.run_k, simulator.max_k)}
    for name, judged in (("evidence", evidence), ("gold", gold)):
        scores = evaluate_run(judged, run, recall_ks=(5, 100), ndcg_ks=(10,))
        metrics[name] = {k: v for k, v in scores.items() if k != "per_query"}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from pipeline.simulator.snapshot import resolve_snapshot

    parser = argparse.ArgumentParser(prog="python -m pipeline.datasets.exports", description=__doc__.split("\n")[0])
    parser.add_argument("--questions", required=True, help="a hard_queries dataset folder")
    parser.add_argument("--snapshot", default="latest", help="snapshot folder or id (default: the latest)")
    parser.add_argument("--out", required=True, help="folder to write (replaced whole)")
    parser.add_argument("--retrieval-split", default="eval", help='questions the qrels judge ("" = all)')
    parser.add_argument("--no-corpus", action="store_true", help="skip the corpus JSONL")
    args = parser.parse_args(argv)
    snapshot = resolve_snapshot(None if args.snapshot == "latest" else args.snapshot)
    manifest = export_for_trainers(args.questions, snapshot, args.out,
                                   ExportConfig(retrieval_split=args.retrieval_split, corpus=not args.no_corpus),
                                   log=print)
    print(json.dumps({k: manifest[k] for k in ("rows", "files")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
