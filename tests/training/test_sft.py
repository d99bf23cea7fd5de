"""SFT with TRL on the traces: loss on assistant turns only, a finished model folder, resume after a crash, LoRA.

Runs on a tiny random model with the embedded model's tokenizer and tool-call chat template (`tiny_model` in
tests/conftest.py): the trainer's mechanics are the same, and a step takes well under a second.
"""

import json
import shutil

import pytest

from tests.support import small_questions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def traces_dir(small_snapshot, tmp_path_factory):
    """An sft_traces folder of demonstrations on the small snapshot (train questions only)."""
    from training.env import SearchEnv
    from training.traces import demonstrations, export_traces, trace_rows

    train = [q for q in small_questions() if q["split"] == "train"]
    # small views: a step's cost is mostly the 49k-word vocabulary over every token, even for a tiny model
    make_env = SearchEnv.factory(small_snapshot.path, session="test-sft", search_k=2, snippet_chars=60,
                                 max_chars=120, max_links=3)
    traces, _ = demonstrations(train, make_env)
    out = tmp_path_factory.mktemp("sft") / "sft_traces"
    export_traces(trace_rows(traces, snapshot_id=small_snapshot.id), out, card="test",
                  provenance={"snapshot_id": small_snapshot.id, "env": {}})
    return out


def run_config(traces_dir, tiny_model, out, **overrides):
    from training.sft import SFTRunConfig

    return SFTRunConfig(dataset=str(traces_dir), output_dir=str(out), base_model=str(tiny_model),
                        **{"max_steps": 2, "max_examples": 2, "save_steps": 1, "learning_rate": 1e-3, **overrides})


def test_only_assistant_turns_carry_loss(traces_dir, tiny_model, tmp_path):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from training.sft import build_trainer, loss_token_share

    trainer, counts, template = build_trainer(run_config(traces_dir, tiny_model, tmp_path / "run", max_examples=0))
    assert counts["examples"] == 4 and counts["too_long"] == 0
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert template == tok.chat_template
    messages = load_from_disk(str(traces_dir / "hf"))["train"][0]["messages"]
    row = trainer.train_dataset[0]  # the trainer keeps the dataset's order until its sampler shuffles
    trained = tok.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
    # exactly the assistant turns as the chat template writes them, each with its end-of-turn token
    expected = ""
    for m in messages:
        if m["role"] != "assistant":
            continue
        expected += "\n" + m["content"]
        for c in m.get("tool_calls") or []:
            expected += ('\n<tool_call>\n{"name": "' + c["function"]["name"] + '", "arguments": '
                         + json.dumps(c["function"]["arguments"]) + "}\n</tool_call>")
        expected += "<|im_end|>\n"
    assert trained == expected
    everything = tok.decode(row["input_ids"])
    assert "<tool_response>" in everything and "<tool_response>" not in trained and "# Tools" not in trained
    assert 0.05 < loss_token_share(trainer.train_dataset) < 0.5


def test_a_run_writes_model_metrics_and_curve_and_resumes_after_a_crash(traces_dir, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.llm.model_setup import TOOL_CHAT_TEMPLATE
    from training.sft import main

    out = tmp_path / "run"
    logs = []
    metrics = main(run_config(traces_dir, tiny_model, out), log=logs.append)
    assert metrics["steps"] == 2 and metrics["resumed_from"] is None
    assert metrics["first_loss"] > 0 and metrics["last_loss"] > 0 and 0 < metrics["loss_token_share"] < 1
    assert metrics["start_loss"] > 0 and metrics["end_loss"] > 0
    assert metrics["data"] == {"traces": 4, "of_sources": 4, "too_long": 0, "examples": 2,
                               "tokens": metrics["data"]["tokens"]}
    assert any(line.startswith("step 1/2: ") and '"loss"' in line for line in logs)
    for name in ("metrics.json", "log_history.jsonl", "loss_curve.png", "model/config.json", "model/websim_sft.json"):
        assert (out / name).is_file(), name
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert AutoTokenizer.from_pretrained(out / "model").chat_template == TOOL_CHAT_TEMPLATE
    AutoModelForCausalLM.from_pretrained(out / "model")

    assert main(run_config(traces_dir, tiny_model, out))["reused"] is True  # a finished run is not redone

    # a crash after the first checkpoint: no final model, no metrics, the second checkpoint never written
    shutil.rmtree(out / "model")
    (out / "metrics.json").unlink()
    shutil.rmtree(out / "checkpoints" / "checkpoint-2")
    resumed = main(run_config(traces_dir, tiny_model, out), log=logs.append)
    assert resumed["resumed_from"].endswith("checkpoint-1") and resumed["steps"] == 2
    assert sum(line.startswith("step 2/2: ") and '"loss"' in line for line in logs) == 2  # step 1 not redone
    assert sum(line.startswith("step 1/2: ") for line in logs) == 1


def test_lora_is_merged_into_a_plain_model(traces_dir, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from training.sft import main

    out = tmp_path / "lora"
    metrics = main(run_config(traces_dir, tiny_model, out, max_steps=1, lora=True, lora_r=4, lora_alpha=8))
    assert metrics["lora"] and metrics["steps"] == 1
    assert not (out / "model" / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(out / "model")


def test_data_preparation_drops_long_traces_and_refuses_eval_rows(traces_dir, tiny_model, tmp_path):
    from datasets import Dataset, load_from_disk
    from transformers import AutoTokenizer

    from training.sft import prepare_dataset

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ds = load_from_disk(str(traces_dir / "hf"))["train"]
    lengths = sorted(prepare_dataset(ds, tok, run_config(traces_dir, tiny_model, tmp_path, max_examples=0))[0].map(
        lambda e: {"n": len(tok.apply_chat_template(e["messages"], tools=e["tools"], return_dict=False))})["n"])
    short, counts = prepare_dataset(ds, tok, run_config(traces_dir, tiny_model, tmp_path, max_length=lengths[1]))
    assert counts["too_long"] == 2 and counts["examples"] == len(short) == 2
    assert short.column_names == ["messages", "tools"]
    one, counts = prepare_dataset(ds, tok, run_config(traces_dir, tiny_model, tmp_path, max_examples=1))
    assert counts["examples"] == 1 and counts["tokens"] == lengths[0]  # the shortest
    none, counts = prepare_dataset(ds, tok, run_config(traces_dir, tiny_model, tmp_path, sources=["teacher"]))
    assert counts["of_sources"] == 0 and len(none) == 0
    bad = Dataset.from_dict({"messages": [[{"role": "user", "content": "x"}]], "split": ["eval"]})
    with pytest.raises(ValueError, match="train-split only"):
        prepare_dataset(bad, tok, run_config(traces_dir, tiny_model, tmp_path))


def test_trl_grpo_takes_the_env_as_environment_factory(tiny_model, small_snapshot, tmp_path, monkeypatch):
    """TRL 1.16's contract: one env per rollout from a zero-argument factory, its public methods as tools."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from training.env import TOOL_NAMES, SearchEnv

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_steps=1,
                      per_device_train_batch_size=2, num_generations=2, max_completion_length=8)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q["question"]}], "answer": q["answer"]}
                              for q in small_questions()[:2]])
    trainer = GRPOTrainer(model=str(tiny_model), reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=args, train_dataset=data, environment_factory=SearchEnv.factory(small_snapshot.path))
    assert sorted(t.__name__ for t in trainer.tools) == sorted(TOOL_NAMES)
    assert isinstance(trainer._environment_pool[None][0], SearchEnv)


def test_a_round_replays_another_rounds_traces_unchanged(traces_dir, tiny_model, tmp_path):
    """The report round mixes the search traces back in (`replay_fraction`): both kinds in the trainer's data, each
    rendered by the chat template exactly as alone (the search calls' arguments with no keys of other calls)."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from training.sft import build_trainer
    from training.traces_report import write_report_traces

    reports = [{"id": f"r{i}-gold", "task_id": f"r{i}", "task_kind": "reorder", "source": "gold", "split": "train",
                "score": 1.0, "messages": [{"role": "user", "content": f"Put C1..C3 in order ({i})."},
                                           {"role": "assistant", "content": "C2, C1, C3"}]} for i in range(4)]
    report_dir = tmp_path / "report_traces"
    write_report_traces(reports, report_dir, {"min_score": 0.8})
    config = run_config(report_dir, tiny_model, tmp_path / "run", max_examples=0, sources=["gold"],
                        replay_dataset=str(traces_dir), replay_fraction=0.5, replay_sources=["demonstration"])
    trainer, counts, _ = build_trainer(config)
    assert counts["examples"] == 4 and counts["replay"] == {"wanted": 4, "replayed": 4, "available": 4}
    assert len(trainer.train_dataset) == 8
    tok = AutoTokenizer.from_pretrained(tiny_model)
    searches = load_from_disk(str(traces_dir / "hf"))["train"]
    alone = {tok.apply_chat_template(r["messages"], tools=r["tools"], tokenize=False) for r in searches}
    alone |= {tok.apply_chat_template(r["messages"], tokenize=False) for r in reports}
    mixed = [tok.decode(row["input_ids"]) for row in trainer.train_dataset]
    assert sum("<tool_call>" in m for m in mixed) == 4 and all(m in alone or m.rstrip() in {a.rstrip() for a in alone}
                                                               for m in mixed)
    assert not any("null" in m for m in mixed)
    none, counts, _ = build_trainer(run_config(report_dir, tiny_model, tmp_path / "run0", max_examples=0,
                                               sources=["gold"], replay_dataset=str(traces_dir), replay_fraction=0))
    assert len(none.train_dataset) == 4 and "replay" not in counts
    with pytest.raises(ValueError, match="replay_fraction"):
        build_trainer(run_config(report_dir, tiny_model, tmp_path / "run1", sources=["gold"],
                                 replay_dataset=str(traces_dir), replay_fraction=1.0))


def test_the_loss_curves_start_and_end_are_quarter_means():
    from training.sft import quarter_mean

    # a report round's steps (the demo of 2026-12-07): one step's loss says little, a quarter's mean more
    steps = [0.032, 0.171, 0.083, 0.212, 1.647, 0.846, 0.135, 0.642, 0.462, 0.559, 0.148, 0.884, 0.395, 0.524, 0.118,
             1.964]
    assert quarter_mean(steps, first=True) == 0.1245 and quarter_mean(steps, first=False) == 0.7502
    assert quarter_mean([2.0, 1.0], first=True) == 2.0 and quarter_mean([2.0, 1.0], first=False) == 1.0
    assert quarter_mean([], first=True) is None
