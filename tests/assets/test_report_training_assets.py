"""The second training round as assets: `report_sft_model` (from the search-GRPO model, on report tasks' verified
answers) and `report_grpo_model` (report verifiers as rewards, search mixed in), each skippable, and the
evaluation's stages."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from assets.evaluation import evaluation, trained_stages
from assets.training import grpo_model, sft_model
from assets.training_report import report_grpo_model, report_sft_model
from tests.support import report_task_rows


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from pipeline.datasets.export import export_dataset

    out = tmp_path_factory.mktemp("report") / "report_tasks"
    export_dataset(pa.Table.from_pylist(report_task_rows()), out, card="test", provenance={})
    return out


@pytest.fixture()
def resources(training_resources):
    return training_resources


def test_the_stages_chain_and_the_evaluation_reads_them_all(resources):
    defs = dg.Definitions(assets=[sft_model, grpo_model, report_sft_model, report_grpo_model, evaluation],
                          resources=resources)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert graph.get(report_sft_model.key).parent_keys == {grpo_model.key}
    assert graph.get(report_grpo_model.key).parent_keys == {report_sft_model.key}
    assert {report_sft_model.key, report_grpo_model.key} <= graph.get(evaluation.key).parent_keys


def test_a_skipped_round_passes_the_model_on_and_the_evaluation_leaves_it_out(resources, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    grpo_dir, sft_dir = tmp_path / "grpo" / "model", tmp_path / "sft" / "model"
    grpo_dir.mkdir(parents=True)
    sft_dir.mkdir(parents=True)
    result = dg.materialize([report_sft_model], resources=resources, instance=instance, run_config={
        "ops": {"report_sft_model": {"config": {"skip": True, "start_model_dir": str(grpo_dir)}}}})
    md = result.asset_materializations_for_node("report_sft_model")[0].metadata
    assert md["skipped"].value is True and md["model_dir"].value == str(grpo_dir)
    context = dg.build_asset_context(instance=instance)
    stages = trained_stages(context, _eval_config(sft_dir, grpo_dir))
    assert stages == {"sft": sft_dir, "grpo": grpo_dir}  # report_sft skipped, report_grpo never materialized


def _eval_config(sft_dir, grpo_dir):
    from assets.evaluation import EvaluationConfig

    return EvaluationConfig(sft_model_dir=str(sft_dir), grpo_model_dir=str(grpo_dir))


@pytest.mark.slow
def test_report_sft_then_report_grpo_from_a_grpo_model(resources, report_dir, questions_dir, tiny_model,
                                                       small_snapshot, tmp_path):  # noqa: F811
    from training.run import write_run_config
    from training.grpo import GRPORunConfig

    # a stand-in first round: the tiny model as the GRPO run's model, with the run config that names its snapshot
    grpo_run = tmp_path / "grpo-run"
    grpo_run.mkdir()
    (grpo_run / "model").symlink_to(tiny_model, target_is_directory=True)
    write_run_config(GRPORunConfig(questions=str(questions_dir), snapshot=str(small_snapshot.path),
                                   output_dir=str(grpo_run)), grpo_run)
    (grpo_run / "train_ids.json").write_text(json.dumps({"questions": [], "report_tasks": []}))
    instance = dg.DagsterInstance.ephemeral()
    sft_config = {"start_model_dir": str(grpo_run / "model"), "report_tasks_dir": str(report_dir), "max_steps": 1,
                  "num_threads": 2, "max_length": 1024, "max_kind_share": 1.0}  # both synthesise traces kept
    result = dg.materialize([report_sft_model], resources=resources, instance=instance,
                            run_config={"ops": {"report_sft_model": {"config": sft_config}}})
    md = result.asset_materializations_for_node("report_sft_model")[0].metadata
    assert md["traces_gold"].value == 2 and md["traces_reference"].value == 1 and md["steps"].value == 1
    report_sft = Path(md["model_dir"].value)
    assert (report_sft / "websim_sft.json").is_file() and report_sft.parent.parent.name == "report_sft"

    grpo_config = {"questions_dir": str(questions_dir), "report_tasks_dir": str(report_dir), "max_steps": 1,
                   "num_generations": 2, "max_completion_length": 16, "num_threads": 2, "max_questions": 1}
    result = dg.materialize([report_grpo_model], resources=resources, instance=instance,
                            run_config={"ops": {"report_grpo_model": {"config": grpo_config}}})
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["report"].data["passed"]
    md = result.asset_materializations_for_node("report_grpo_model")[0].metadata
    assert md["start_model"].value == str(report_sft) and md["data"].data["report_prompts"] == 2
    assert Path(md["model_dir"].value).parent.parent.name == "report_grpo"
