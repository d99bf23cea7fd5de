"""The training assets: `sft_traces` (with its checks) and `sft_model` (SFT out of process, before/after check)."""

import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.llm_resource import LLMResource
from assets.resources import PathsResource
from assets.simulator import SimulatorResource
from assets.training import TRACE_CHECKS, sft_model, sft_traces
from training.tool_parser import ToolCall, format_call
from tests.support import SeededTeacher, small_questions


def _call(name, **arguments):
    return "Step. " + format_call(ToolCall(name, arguments))


class FakeLLMResource(LLMResource):
    """The resource with a scripted teacher: solves "basalt", answers everything else wrong."""

    def get_backend(self):
        teacher = SeededTeacher({q["id"]: {"any": [_call("answer", answer="wrong")]} for q in small_questions()})
        teacher.plans["basalt"] = {"any": [_call("search", query="Quartz"), _call("answer", answer="watches")]}
        teacher.model_id = "fake-teacher"
        return teacher


@pytest.fixture()
def resources(small_snapshot):
    return {"llm": FakeLLMResource(), "simulator": SimulatorResource(snapshots_root=str(small_snapshot.path.parent)),
            "paths": PathsResource()}


ENV = {"search_k": 2, "snippet_chars": 60, "max_chars": 120, "max_links": 3}


def test_definitions_load(resources):
    defs = dg.Definitions(assets=[sft_traces, sft_model], resources=resources)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("hard_queries") in graph.get(sft_traces.key).parent_keys
    assert sft_traces.key in graph.get(sft_model.key).parent_keys


def test_sft_traces_materializes_a_checked_dataset(resources, questions_dir, tmp_path, small_snapshot):
    out = tmp_path / "sft_traces"
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([sft_traces], resources=resources, instance=instance, run_config={"ops": {"sft_traces": {
        "config": {"questions_dir": str(questions_dir), "output_dir": str(out), "teacher_tries": 2, **ENV}}}})
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == set(TRACE_CHECKS) and all(c.passed for c in checks.values())
    assert checks["demonstrations_replay"].metadata["replayed"].value == 4

    md = result.asset_materializations_for_node("sft_traces")[0].metadata
    assert md["traces_demonstration"].value == 4 and md["traces_teacher"].value == 1
    assert md["dagster/row_count"].value == 5 and md["questions"].value == 4
    assert md["teacher_model"].value == "fake-teacher" and md["snapshot_id"].value == small_snapshot.id
    assert md["rejections"].data == {"teacher_wrong_answer": 6}  # 3 questions x 2 tries
    assert md["teacher_summary"].data["try_0"]["trajectories"] == 4
    assert "[assistant]" in md["sample_trace"].value

    rows = pq.read_table(out / "data" / "train.parquet").to_pylist()
    assert {r["split"] for r in rows} == {"train"} and len(rows) == 5
    assert not (out / "data" / "eval.parquet").exists()
    eval_ids = {q["id"] for q in small_questions() if q["split"] == "eval"}
    assert not eval_ids & {r["question_id"] for r in rows}
    teacher = next(r for r in rows if r["source"] == "teacher")
    assert teacher["model"] == "fake-teacher" and teacher["final_answer"] == "watches"
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["env"]["max_chars"] == 120 and provenance["snapshot_id"] == small_snapshot.id
    assert "assistant_only_loss=True" in (out / "README.md").read_text()


@pytest.mark.slow
def test_sft_model_trains_out_of_process_and_compares_before_and_after(resources, questions_dir, tmp_path,
                                                                      tiny_model):  # noqa: F811
    instance = dg.DagsterInstance.ephemeral()
    traces = tmp_path / "sft_traces"
    assert dg.materialize([sft_traces], resources=resources, instance=instance, run_config={"ops": {"sft_traces": {
        "config": {"questions_dir": str(questions_dir), "output_dir": str(traces), "teacher": False, **ENV}}}}).success
    config = {"questions_dir": str(questions_dir), "base_model": str(tiny_model), "max_steps": 1, "max_examples": 1,
              "eval_questions": 2, "eval_max_turns": 2, "eval_max_tokens": 8}
    result = dg.materialize([sft_model], resources=resources, instance=instance,
                            run_config={"ops": {"sft_model": {"config": config}}})
    assert result.success
    md = result.asset_materializations_for_node("sft_model")[0].metadata
    model_dir = Path(md["model_dir"].value)
    assert md["steps"].value == 1 and (model_dir / "websim_sft.json").is_file()
    assert model_dir.parent.parent.name == "sft" and model_dir.parent.parent.parent.name == "models"
    run = json.loads((Path(md["run_dir"].value) / "run_config.json").read_text())
    assert run["dataset"] == str(traces) and run["base_model"] == str(tiny_model)
    assert 0 < md["loss_token_share"].value < 1 and md["first_loss"].value > 0
    assert "data:image/png;base64," in md["loss_curve"].value
    for name in ("base", "sft"):
        assert 0 <= md[f"{name}_valid_tool_call_rate"].value <= 1 and f"{name}_exact_match" in md
    assert md["eval"].data["questions"] == 2 and md["eval"].data["base"]["trajectories"] == 2
    # progress came back through Pipes into the run's event log
    messages = [e.message for e in instance.all_logs(result.run_id)]
    assert any("step 1/1" in (m or "") for m in messages)
    assert any("valid tool-call rate" in (m or "") for m in messages)
