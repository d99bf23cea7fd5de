"""Evaluation: user question sets, the leakage proof, grading trajectories with the training rewards, several models
through the agent loop on the simulator (scripted backends), the CLI on a real (tiny) model."""

import json

import pytest

from pipeline.llm import Completion
from tests.support import small_questions
from training.agent_loop import Trajectory
from training.evaluate import (
    EvalConfig,
    evaluate,
    grade,
    grade_reports,
    leakage,
    plot_results,
    read_jsonl_questions,
    results_table_md,
    take_by_kind,
)
from training.tool_parser import ToolCall, format_call

EVAL = [q for q in small_questions() if q["split"] == "eval"]
ENV = {"search_k": 2, "snippet_chars": 60, "max_chars": 120, "max_links": 3}


def test_a_jsonl_question_set_needs_only_question_and_answer(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text('{"question": "Who painted the Mona Lisa?", "answer": "Leonardo da Vinci"}\n\n'
                    '{"id": "q2", "question": "Capital of France?", "answer": "Paris", "aliases": "City of Light"}\n')
    rows = read_jsonl_questions(path)
    assert [r["answer"] for r in rows] == ["Leonardo da Vinci", "Paris"]
    assert len(rows[0]["id"]) == 16 and rows[1]["id"] == "q2" and rows[1]["aliases"] == ["City of Light"]
    assert rows[0]["hops"] == 1 and rows[0]["split"] == "eval"
    path.write_text('{"question": "no answer here"}\n')
    with pytest.raises(ValueError, match="bench.jsonl:1"):
        read_jsonl_questions(path)


def test_leakage_finds_trained_ids_texts_and_train_split_rows():
    clean = leakage(EVAL, trained_ids=["basalt", "penguin"], trained_questions=["Question basalt: follow 2 links"])
    assert clean["passed"] and clean["eval_questions"] == 2
    leaked = leakage(EVAL, trained_ids=["fjord"], trained_questions=[" question ORIGAMI: follow 1 links and find the "
                                                                     "answer "])
    assert not leaked["passed"] and leaked["overlap_by_id"] == ["fjord"] and leaked["overlap_by_text"] == ["origami"]
    assert leakage(small_questions())["not_eval_split"] == ["basalt", "detour", "nebula", "penguin"]


def traj(qid, messages, gold, answer=None, **counts):
    return Trajectory(question_id=qid, question=f"Question {qid}?", trajectory_id=qid,
                      messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}] + messages,
                      gold=gold, final_answer=answer, **counts)


def call_turn(name, **arguments):
    return [{"role": "assistant", "content": "Step.",
             "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "name": name, "content": "ok"}]


def test_grade_uses_the_training_rewards():
    rows = [{"id": "a", "answer": "watches", "aliases": [], "hops": 1},
            {"id": "b", "answer": "termites", "aliases": [], "hops": 1}]
    trajs = [traj("a", call_turn("search", query="x") + call_turn("answer", answer="watches"), ["watches"], "watches",
                  finish="answered", turns=2, valid_turns=2, tool_calls=2),
             traj("b", [{"role": "assistant", "content": "I do not know."}], ["termites"], finish="no_tool_call",
                  turns=1, no_call_turns=1)]
    summary, per_row = grade(trajs, rows)
    assert summary["accuracy"] == 0.5 and summary["f1"] == 0.5 and summary["answered_rate"] == 0.5
    assert summary["tool_calls_per_question"] == 1.0
    assert per_row[0]["format"] == 1.0 and per_row[1]["format"] == 0.0
    assert summary["format_validity"] == 0.5 and summary["format_valid_rate"] == 0.5
    assert per_row[0]["reward"] == 1.0 and per_row[1]["reward"] == 0.0 and summary["mean_reward"] == 0.5


def test_report_grading_and_the_table():
    task = {"task_id": "t1", "task_kind": "reorder", "gold_order": ["C1", "C2", "C3"], "chunk_ids": ["C1", "C2", "C3"],
            "chunks": [], "key_points": [], "distractor_ids": [], "min_words": 0, "max_words": 0}
    summary, rows = grade_reports(["C1 C2 C3", "C3 C2 C1"], [task, {**task, "task_id": "t2"}])
    assert rows[0]["scores"]["order"] == 1.0 and rows[1]["scores"]["order"] == 0.0
    assert summary["order"] == 0.5 and summary["tasks"] == 2 and "coverage" not in summary
    results = {"questions": 2, "report_tasks": 2, "snapshot_id": "snap", "models": {
        name: {"accuracy": acc, "f1": acc, "answered_rate": 1.0, "tool_calls_per_question": 3.0,
               "format_validity": 0.9, "format_valid_rate": 0.5, "valid_tool_call_rate": 0.8, "mean_reward": acc,
               "report": {"mean_score": 0.25}} for name, acc in (("base", 0.0), ("grpo", 0.5))}}
    results["models"]["grpo"]["ci95"] = {"accuracy": [0.1, 0.9]}
    results["models"]["grpo"]["questions"] = results["models"]["base"]["questions"] = 2
    table = results_table_md(results)
    lines = table.splitlines()
    assert lines[0] == "| metric | base | grpo |"
    assert "| accuracy (EM) | 0.000 (n=2) | 0.500 [0.10, 0.90] (n=2) |" in lines
    assert "| report score | 0.250 (n=0) | 0.250 (n=0) |" in lines
    assert "2 eval questions, 2 report tasks on snapshot `snap`" in table


def test_intervals_wilson_for_rates_normal_for_means():
    from training.stats import interval

    rate = interval([1.0] * 3 + [0.0] * 7, binary=True)
    assert rate["n"] == 10 and rate["mean"] == 0.3 and rate["ci95"][0] < 0.3 < rate["ci95"][1]
    wide, narrow = interval([0.0, 1.0] * 5), interval([0.0, 1.0] * 500)
    assert wide["ci95"][1] - wide["ci95"][0] > 3 * (narrow["ci95"][1] - narrow["ci95"][0])
    assert interval([]) == {"n": 0, "mean": None, "ci95": [0.0, 0.0]} and interval([0.4])["ci95"] == [0.4, 0.4]


class ScriptedAgent:
    """A generation-layer backend: searches, then answers `answers[question id]` (or gives up without a call)."""

    def __init__(self, answers):
        self.answers = answers
        self.closed = False

    def generate(self, chats, params, schema=None, tools=None):
        out = []
        for chat in chats:
            if chat[-1]["role"] == "user" and "Order the chunks" in chat[-1]["content"]:
                out.append(Completion(text="C1 C2 C3" if self.answers else "C3 C1 C2"))
                continue
            qid = chat[1]["content"].split(":")[0].split()[-1]
            if chat[-1]["role"] == "user":
                out.append(Completion(text="Search. " + format_call(ToolCall("search", {"query": "Fjord"}))))
            elif qid in self.answers:
                out.append(Completion(text="So. " + format_call(ToolCall("answer", {"answer": self.answers[qid]}))))
            else:
                out.append(Completion(text="I give up."))
        return out

    def close(self):
        self.closed = True


def test_evaluate_runs_every_model_through_the_agent_loop(monkeypatch, small_snapshot, tmp_path):  # noqa: F811
    import pipeline.llm

    backends = {"good": ScriptedAgent({"fjord": "reefs", "origami": "Punched cards"}), "bad": ScriptedAgent({})}
    monkeypatch.setattr(pipeline.llm, "make_backend", lambda backend, model, **kw: backends[model])
    task = {"task_id": "t1", "task_kind": "reorder", "prompt": [{"role": "user", "content": "Order the chunks."}],
            "gold_order": ["C1", "C2", "C3"], "chunk_ids": ["C1", "C2", "C3"], "chunks": [], "key_points": [],
            "distractor_ids": [], "min_words": 0, "max_words": 0}
    results = evaluate({"base": "bad", "grpo": "good"}, EVAL, small_snapshot.path, EvalConfig(max_turns=3, env=ENV),
                       report_tasks=[task])
    good, bad = results["models"]["grpo"], results["models"]["base"]
    assert (good["accuracy"], good["f1"], good["format_valid_rate"], good["tool_calls_per_question"]) == (1.0, 1.0,
                                                                                                          1.0, 2.0)
    assert (bad["accuracy"], bad["answered_rate"], bad["tool_calls_per_question"]) == (0.0, 0.0, 1.0)
    assert bad["format_validity"] == round(1 / 6, 4)  # one valid turn of two, no answer
    assert good["report"]["order"] == 1.0 and bad["report"]["order"] == 0.0
    assert all(b.closed for b in backends.values())
    rows = results["per_question"]["grpo"]
    assert [r["id"] for r in rows] == ["fjord", "origami"] and rows[0]["visited"] == []
    assert results["snapshot_id"] == small_snapshot.id and results["per_report_task"]["grpo"][0]["answer"] == "C1 C2 C3"
    png = plot_results(results, tmp_path / "r.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cli_on_a_user_question_set_with_a_real_model(small_snapshot, tiny_model, tmp_path):  # noqa: F811
    from training.evaluate import cli

    questions = tmp_path / "bench.jsonl"
    questions.write_text("".join(json.dumps({"question": q["question"], "answer": q["answer"]}) + "\n" for q in EVAL))
    out = tmp_path / "results.json"
    assert cli(["--questions", str(questions), "--snapshot", str(small_snapshot.path), "--model",
                f"tiny={tiny_model}", "--out", str(out), "--max-turns", "1", "--max-tokens", "8", "--env",
                json.dumps(ENV)]) == 0
    results = json.loads(out.read_text())
    assert list(results["models"]) == ["tiny"] and results["questions"] == 2
    assert len(results["per_question"]["tiny"]) == 2 and results["models"]["tiny"]["model"] == str(tiny_model)
    assert 0.0 <= results["models"]["tiny"]["format_validity"] <= 1.0
    assert out.with_suffix(".png").is_file()


def test_what_a_run_replayed_counts_as_trained_on(tmp_path):
    from training.evaluate import trained_on
    from training.traces_report import write_report_traces

    def traces(task_id, folder):
        row = {"id": f"{task_id}-gold", "task_id": task_id, "task_kind": "reorder", "source": "gold",
               "split": "train", "score": 1.0, "messages": [{"role": "user", "content": "x"}]}
        write_report_traces([row], tmp_path / folder, {})
        return str(tmp_path / folder)

    run = {"dataset": traces("own", "own"), "replay_dataset": traces("replayed", "replayed")}
    ids, _, sources = trained_on([run], [], tmp_path / "no_questions")
    assert sorted(ids) == ["own", "replayed"] and len(sources["sft_traces"]) == 2


def test_a_metric_a_stage_did_not_measure_is_a_gap_in_the_plot(monkeypatch, tmp_path):
    """Navigation efficiency is over the tasks reached: a stage that reached none has no value, drawn as a gap
    (NaN), not as 0 (the demo's plot showed base/sft/grpo at efficiency 0)."""
    import math

    import matplotlib.axes

    drawn = []
    real = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, *a, **k):
        drawn.append(list(y))
        return real(self, x, y, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    nav = lambda reached: {"tasks": 20, "success_rate": reached / 20, "success_ci95": [0.0, 0.2],  # noqa: E731
                           "reached": reached, "efficiency_vs_shortest": 1.0 if reached else None,
                           "efficiency_ci95": [1.0, 1.0] if reached else None}
    models = {name: {"accuracy": 0.0, "questions": 100, "ci95": {"accuracy": [0.0, 0.04]}, "navigation": nav(r)}
              for name, r in (("sft", 0), ("report_sft", 1))}
    plot_results({"models": models, "questions": 100}, tmp_path / "p.png")
    sft, report_sft = drawn[-1]  # the last panel: navigation efficiency vs shortest
    assert math.isnan(sft) and report_sft == 1.0


def test_a_capped_report_eval_keeps_every_kind():
    rows = [{"task_id": f"r{i}", "task_kind": "reorder"} for i in range(100)]
    rows += [{"task_id": f"s{i}", "task_kind": "synthesise"} for i in range(6)]
    rows += [{"task_id": f"a{i}", "task_kind": "analyse_merge"} for i in range(4)]
    picked = take_by_kind(rows, 30)
    kinds = [r["task_kind"] for r in picked]
    assert len(picked) == 30 and kinds.count("synthesise") == 6 and kinds.count("analyse_merge") == 4
    assert [r["task_id"] for r in picked if r["task_kind"] == "reorder"] == [f"r{i}" for i in range(20)]
    assert picked == sorted(picked, key=rows.index)  # the dataset's order
    assert take_by_kind(rows, 0) == rows and take_by_kind(rows, 500) == rows
    assert [r["task_id"] for r in take_by_kind(rows, 3)] == ["r0", "s0", "a0"]
