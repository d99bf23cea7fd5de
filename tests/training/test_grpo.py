"""GRPO with TRL in the simulated web: training data (train split only, report tasks mixed by config), the tool loop
running `SearchEnv` with rewards reading its answers, checkpoints that resume, a finished run that is reused.

The trainer runs on the tiny random model of `test_sft` (the embedded model's tokenizer and tool-call template): its
rollouts are noise, so the tool-loop test scripts the generations instead (TRL's own tool loop, env and rewards
run unchanged around them).
"""

import json
import re
import shutil

import pytest
from tests.support import small_questions, train_questions
from training.grpo import GRPORunConfig, ReportTaskEnv, to_dataset, training_examples
from training.tool_parser import ToolCall, format_call

ENV = {"search_k": 2, "snippet_chars": 60, "max_chars": 120, "max_links": 3}


def report_task(tid, split="train"):
    return {"task_id": tid, "task_kind": "reorder", "split": split,
            "prompt": [{"role": "user", "content": "Order the chunks C1 C2 C3."}], "chunk_ids": ["C1", "C2", "C3"],
            "chunks": [{"chunk_id": "C1", "text": "a"}], "gold_order": ["C2", "C1", "C3"], "distractor_ids": [],
            "key_points": [], "min_words": 0, "max_words": 0}


def config(tmp_path, **kw):
    return GRPORunConfig(questions="", snapshot="", output_dir=str(tmp_path), **kw)


@pytest.fixture(scope="module")
def questions_dir(tmp_path_factory):
    from pipeline.datasets.export import export_dataset
    from pipeline.synthesis.questions import hard_query_table

    out = tmp_path_factory.mktemp("grpo_questions") / "hard_queries"
    export_dataset(hard_query_table(small_questions()), out, card="test", provenance={})
    return out


# ---- data -----------------------------------------------------------------------------------------------------------

def test_examples_are_train_questions_in_the_agent_prompt(tmp_path):
    examples = training_examples(train_questions(), [], config(tmp_path))
    assert sorted(e["id"] for e in examples) == sorted(q["id"] for q in train_questions())
    e = next(e for e in examples if e["id"] == "basalt")
    assert [m["role"] for m in e["prompt"]] == ["system", "user"] and e["prompt"][1]["content"].startswith("Question")
    assert (e["task_kind"], e["answer"], e["hops"]) == ("search", "watches", 2) and "environment" not in e
    assert len(training_examples(train_questions(), [], config(tmp_path, max_questions=2))) == 2
    with pytest.raises(ValueError, match="train split"):
        training_examples(small_questions(), [], config(tmp_path))  # two eval questions among them
    with pytest.raises(ValueError, match="report task"):
        training_examples(train_questions(), [report_task("r1", split="eval")], config(tmp_path, report_fraction=0.5))


def test_report_tasks_are_mixed_at_the_configured_share_with_their_own_environment(tmp_path):
    reports = [report_task(f"r{i}") for i in range(10)]
    assert not any(e["task_kind"] == "reorder" for e in training_examples(train_questions(), reports,
                                                                           config(tmp_path)))
    examples = training_examples(train_questions(), reports, config(tmp_path, report_fraction=0.5))
    kinds = [e["task_kind"] for e in examples]
    assert kinds.count("search") == 4 and kinds.count("reorder") == 4
    assert {e["environment"] for e in examples if e["task_kind"] == "reorder"} == {"report"}
    assert {e["environment"] for e in examples if e["task_kind"] == "search"} == {"search"}
    ds = to_dataset(examples)
    row = next(r for r in ds if r["task_kind"] == "reorder")
    assert row["gold_order"] == ["C2", "C1", "C3"] and row["answer"] is None
    assert next(r for r in ds if r["task_kind"] == "search")["gold_order"] is None
    assert ReportTaskEnv().reset(**row) is None


def test_vllm_is_refused_without_a_gpu(tmp_path, questions_dir, small_snapshot):  # noqa: F811
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from training.grpo import build_trainer

    with pytest.raises(ValueError, match="CUDA GPU"):
        build_trainer(GRPORunConfig(questions=str(questions_dir), snapshot=str(small_snapshot.path),
                                    output_dir=str(tmp_path), use_vllm=True))


# ---- training -----------------------------------------------------------------------------------------------------

def run_config(questions_dir, snapshot, model, out, **overrides):
    return GRPORunConfig(questions=str(questions_dir), snapshot=str(snapshot.path), output_dir=str(out),
                         model=str(model), env=ENV, **{"max_steps": 1, "num_generations": 2,
                                                       "max_completion_length": 24, "save_steps": 1, **overrides})


@pytest.mark.slow
def test_grpo_trains_checkpoints_resumes_and_reuses(questions_dir, small_snapshot, tiny_model, tmp_path):  # noqa: F811
    from training.grpo import main

    out = tmp_path / "run"
    logs = []
    metrics = main(run_config(questions_dir, small_snapshot, tiny_model, out), logs.append)
    assert metrics["steps"] == 1 and metrics["resumed_from"] is None and metrics["device"] == "cpu"
    assert (out / "model" / "websim_grpo.json").is_file() and (out / "checkpoints" / "checkpoint-1").is_dir()
    for name in ("reward", "accuracy", "tool_calls", "kl"):
        assert [s for s, _ in metrics["curves"][name]] == [1], name  # beta > 0: the KL is logged
    assert set(metrics["reward_means"]) == {"exact_match_reward", "f1_reward", "tool_format_reward",
                                            "tool_cost_reward"}  # report rewards graded nothing
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    trained = json.loads((out / "train_ids.json").read_text())
    assert set(trained["questions"]) == {q["id"] for q in train_questions()} and trained["report_tasks"] == []
    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 2 and {r["step"] for r in rollouts} == {1}
    assert any("step 1/1" in m for m in logs)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out / "model").chat_template == \
        AutoTokenizer.from_pretrained(tiny_model).chat_template

    # a crash after the checkpoint: the next run of a longer config resumes from it
    shutil.rmtree(out / "model")
    (out / "metrics.json").unlink()
    metrics = main(run_config(questions_dir, small_snapshot, tiny_model, out, max_steps=2))
    assert metrics["steps"] == 2 and metrics["resumed_from"].endswith("checkpoint-1")
    assert main(run_config(questions_dir, small_snapshot, tiny_model, out, max_steps=2))["reused"] is True


@pytest.mark.slow
def test_the_tool_loop_runs_search_env_tools_and_rewards_read_the_env_answer(questions_dir, small_snapshot,
                                                                          tiny_model, tmp_path):  # noqa: F811
    from training.grpo import build_trainer

    gold = {q["id"]: q["answer"] for q in small_questions()}
    out = tmp_path / "scripted"
    out.mkdir()
    trainer, counts, _ = build_trainer(run_config(questions_dir, small_snapshot, tiny_model, out,
                                                  max_completion_length=400, max_questions=1))
    assert counts["search_prompts"] == 1
    tok = trainer.processing_class
    seen = []

    def scripted(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """Turn 1 searches ("Quartz" for the first rollout, "Nebula" for the second); turn 2 answers: gold after
        the Quartz search, a wrong answer after the Nebula one; turn 3 closes without a call."""
        outs = []
        for i, ids in enumerate(prompt_ids):
            text = tok.decode(ids)
            qid = re.search(r"Question (\w+):", text).group(1)
            responses = text.count("<tool_response>")
            if responses == 0:
                reply = "I search. " + format_call(ToolCall("search", {"query": ["Quartz", "Nebula"][i % 2]}))
            elif responses == 1:
                answer = gold[qid] if '"query": "Quartz"' in text else "not the answer"
                reply = "I know it. " + format_call(ToolCall("answer", {"answer": answer}))
            else:
                reply = "Done."
            seen.append(text)
            outs.append(tok(reply + "<|im_end|>", add_special_tokens=False)["input_ids"])
        return outs, None

    trainer._generate_single_turn = scripted
    trainer.train()
    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert sorted(r["value"] for r in rollouts) == [0.0, 1.0]
    right = next(r for r in rollouts if r["value"] == 1.0)
    assert right["answer"] == gold[right["id"]] and right["env_steps"] == 1 and right["tool_calls"] == 1
    tool_message = right["completion"][1]
    assert tool_message["role"] == "tool" and "https://en.wikipedia.org/wiki/Quartz" in tool_message["content"]
    step = next(h for h in trainer.state.log_history if "reward" in h)
    assert step["tools/call_frequency"] == 2.0 and step["reward_std"] > 0
    assert step["rewards/exact_match_reward/mean"] == 0.5
    assert step["rewards/tool_format_reward/mean"] == 1.0
    # the tool result went back into the model's context through the chat template
    assert any("<tool_response>\nResults for" in s for s in seen)
