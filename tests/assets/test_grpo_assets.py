"""The RL assets: `grpo_model` (GRPO out of process through Pipes, reward-sanity check first) and `evaluation`
(base vs SFT vs GRPO, with the proof that no eval question was trained on)."""

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.evaluation import evaluation
from assets.training import grpo_model, sft_model, sft_traces


@pytest.fixture()
def resources(training_resources):
    return training_resources


def test_definitions_load(resources):
    defs = dg.Definitions(assets=[sft_traces, sft_model, grpo_model, evaluation], resources=resources)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert sft_model.key in graph.get(grpo_model.key).parent_keys
    assert {sft_model.key, grpo_model.key} <= graph.get(evaluation.key).parent_keys
    checks = {key.name for key in graph.asset_check_keys}
    assert checks == {"reward_sanity", "eval_never_trained_on", *[c.name for c in sft_traces.check_specs]}


def test_a_reward_that_cannot_tell_right_from_wrong_stops_the_run(resources, questions_dir, tmp_path):
    from pipeline import config as websim_config

    runs = websim_config.data_dir() / "models" / "grpo"
    before = sorted(runs.iterdir()) if runs.is_dir() else []
    config = {"sft_model_dir": str(tmp_path), "questions_dir": str(questions_dir), "reward_exact_match": 0.0,
              "reward_f1": 0.0, "reward_tool_cost": 0.0}
    result = dg.materialize([grpo_model], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            run_config={"ops": {"grpo_model": {"config": config}}}, raise_on_error=False)
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "reward_sanity" and not check.passed
    assert check.metadata["mean_gold"].value == check.metadata["mean_random"].value  # format alone pays
    assert (sorted(runs.iterdir()) if runs.is_dir() else []) == before  # no run was started


def test_evaluation_refuses_questions_that_were_trained_on(resources, questions_dir, tmp_path):
    grpo_run = tmp_path / "grpo-run"
    (grpo_run / "model").mkdir(parents=True)
    (grpo_run / "train_ids.json").write_text(json.dumps({"questions": ["basalt", "fjord"], "report_tasks": []}))
    config = {"questions_dir": str(questions_dir), "sft_model_dir": str(tmp_path), "base_model": str(tmp_path),
              "grpo_model_dir": str(grpo_run / "model")}
    result = dg.materialize([evaluation], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            run_config={"ops": {"evaluation": {"config": config}}}, raise_on_error=False)
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "eval_never_trained_on" and not check.passed
    assert check.metadata["overlap_by_id"].data == ["fjord"]


@pytest.mark.slow
def test_grpo_then_evaluation_from_the_sft_model(resources, questions_dir, tiny_model, tmp_path):  # noqa: F811
    instance = dg.DagsterInstance.ephemeral()
    grpo_config = {"sft_model_dir": str(tiny_model), "questions_dir": str(questions_dir), "max_steps": 1,
                   "num_generations": 2, "max_completion_length": 16, "num_threads": 2}
    result = dg.materialize([grpo_model], resources=resources, instance=instance,
                            run_config={"ops": {"grpo_model": {"config": grpo_config}}})
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "reward_sanity" and check.passed and check.metadata["mean_gold"].value >= 0.9
    md = result.asset_materializations_for_node("grpo_model")[0].metadata
    model_dir = Path(md["model_dir"].value)
    assert (model_dir / "websim_grpo.json").is_file() and model_dir.parent.parent.name == "grpo"
    assert md["steps"].value == 1 and md["start_model"].value == str(tiny_model)
    assert "data:image/png;base64," in md["curves"].value
    assert set(md["curves_data"].data) == {"reward", "accuracy", "tool_calls", "kl"}
    assert md["data"].data["search_prompts"] == 4 and md["generation"].value == "transformers"
    run = json.loads((Path(md["run_dir"].value) / "run_config.json").read_text())
    assert run["model"] == str(tiny_model) and run["rewards"]["exact_match"] == 1.0
    messages = [e.message or "" for e in instance.all_logs(result.run_id)]
    assert any("step 1/1" in m for m in messages) and any("GRPO done" in m for m in messages)

    eval_config = {"questions_dir": str(questions_dir), "sft_model_dir": str(tiny_model),
                   "base_model": str(tiny_model), "max_turns": 1, "max_tokens": 8, "num_threads": 2,
                   "output_dir": str(tmp_path / "eval")}
    result = dg.materialize([evaluation], resources=resources, instance=instance,
                            run_config={"ops": {"evaluation": {"config": eval_config}}})
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "eval_never_trained_on" and check.passed
    assert check.metadata["trained_ids"].value == 4 and check.metadata["eval_questions"].value == 2
    md = result.asset_materializations_for_node("evaluation")[0].metadata
    assert md["models"].data == {"base": str(tiny_model), "sft": str(tiny_model), "grpo": str(model_dir)}
    assert [r.data["metric"] for r in md["table"].value.records][:2] == ["accuracy (EM)", "F1"]
    assert set(md["table"].value.records[0].data) == {"metric", "base", "sft", "grpo"}
    table = md["table_md"].value.splitlines()
    assert table[0] == "| metric | base | sft | grpo |" and table[2].startswith("| accuracy (EM) | ")
    assert "(n=2)" in table[2]
    assert "data:image/png;base64," in md["plots"].value
    results = json.loads(Path(md["results"].value).read_text())
    assert set(results["models"]) == {"base", "sft", "grpo"} and results["questions"] == 2
    assert results["leakage_check"]["passed"]
    for name in ("base", "sft", "grpo"):
        assert 0.0 <= md[f"{name}_accuracy"].value <= 1.0 and f"{name}_mean_reward" in md and len(results["per_question"][name]) == 2
