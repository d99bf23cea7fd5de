"""`trainer_exports`: websim's questions and snapshot in the formats other trainers and retrievers read.

veRL / Search-R1 RL parquet, a verifiers dataset, BrowseComp-Plus-style qrels with websim's BM25 run and its scores,
and the snapshot as Search-R1 corpus JSONL, in one folder (`pipeline.datasets.exports` has the layout).
"""

import dagster as dg
from pydantic import Field

from assets.handoffs import snapshot_of
from assets.questions import hard_queries
from assets.resources import PathsResource
from assets.simulator import SimulatorResource, snapshot


class TrainerExportsConfig(dg.Config):
    questions_dir: str = Field(default="", description="A hard_queries dataset folder; empty: the data dir's.")
    output_dir: str = Field(default="", description="Empty: <data dir>/datasets/trainer_exports.")
    verl: bool = True
    search_r1: bool = True
    verifiers: bool = True
    retrieval: bool = True
    retrieval_split: str = Field(default="eval", description='Questions the qrels judge: a split, or "" for all.')
    run_k: int = Field(default=100, ge=1, le=100, description="Depth of websim's BM25 run file.")
    corpus: bool = Field(default=True, description="Write the snapshot's pages as Search-R1 corpus JSONL.")


@dg.asset(
    deps=[hard_queries, snapshot],
    group_name="synthesis",
    kinds={"parquet"},
    description="The questions for other trainers (veRL and Search-R1 RL parquet, a verifiers dataset), a "
                "BrowseComp-Plus-style retrieval benchmark (evidence and gold qrels, websim's BM25 run, its recall "
                "and nDCG) and the snapshot as Search-R1 corpus JSONL, in one folder.",
)
def trainer_exports(context: dg.AssetExecutionContext, config: TrainerExportsConfig, simulator: SimulatorResource,
                    paths: PathsResource) -> dg.MaterializeResult:
    from pipeline.datasets.exports import ExportConfig, export_for_trainers
    from pipeline.datasets.io import read_split

    qdir = paths.dataset_dir("hard_queries", config.questions_dir)
    ids = sorted({r.get("snapshot_id") or "" for r in read_split(qdir, "train", ["snapshot_id"])} - {""})
    snap = snapshot_of(simulator, ids[0] if len(ids) == 1 else "")
    settings = ExportConfig(**config.model_dump(exclude={"questions_dir", "output_dir"}))
    manifest = export_for_trainers(qdir, snap, paths.dataset_dir("trainer_exports", config.output_dir), settings,
                                   log=context.log.info)
    retrieval = manifest.get("retrieval") or {}
    scores = {f"{which}_{name}": float(v) for which in ("evidence", "gold")
              for name, v in (retrieval.get(which) or {}).items() if name != "queries"}
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(paths.dataset_dir("trainer_exports", config.output_dir))),
        "snapshot_id": snap.id, "questions": manifest["questions"],
        "rows": dg.MetadataValue.json(manifest["rows"]), "files": dg.MetadataValue.json(manifest["files"]),
        **scores})
