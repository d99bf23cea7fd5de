"""Evaluation of search agents: several models, the same questions, the same simulated web, the same agent loop.

    python -m training.evaluate --questions my_benchmark.jsonl --snapshot latest \\
        --model base=embedded --model sft=.websim/models/sft/<run>/model --out results.json

Questions are `hard_queries` rows or any JSONL of `{"question": ..., "answer": ...}` (optional `aliases`, `id`,
`hops`), so a benchmark whose corpus was ingested can be run against its snapshot. Every model answers every
question through `training.agent_loop.run_agent` (greedy, the tools of `training.env.SearchEnv`), and each
trajectory is graded by the training rewards (`training.rewards`), so a number here means what it meant in GRPO:

- `accuracy` (exact match against gold and aliases), `f1`, `answered_rate`;
- `tool_calls_per_question` (every call, `answer` included, as TRL's tool-call frequency counts them);
- `format_validity` (mean format rubric score) and `format_valid_rate` (share of trajectories that pass it all);
- `valid_tool_call_rate` (share of turns whose calls parsed and fit), `mean_reward` (the weighted training reward,
  divided by its best value);
- report tasks (optional): each model writes the answer of every eval report task in one generation, scored by
  the report verifiers (`pipeline.synthesis.report_tasks.scoring.score_completion`).

`leakage(eval_rows, trained)` is the proof that the eval questions were never trained on (by id and by normalised
question text). `results_table_md`, `plot_results` and `write_results` give the table, the figure and the JSON file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from training.agent_loop import AgentConfig, Trajectory, run_agent, summarize
from training.stats import interval
from training.rewards import (SEARCH_KIND, RewardConfig, format_score, make_rewards, read_rollout,
                              total_rewards)

logger = logging.getLogger(__name__)
SEARCH_METRICS = ("accuracy", "f1", "answered_rate", "tool_calls_per_question", "format_validity",
                  "format_valid_rate", "valid_tool_call_rate", "mean_reward")
REPORT_SCORES = ("order", "coverage", "citations", "distractors", "notes", "format")


@dataclass
class EvalConfig:
    max_turns: int = 6
    max_tokens: int = 160
    """Tokens per assistant turn."""
    report_max_tokens: int = 384
    backend: str = "transformers"
    num_threads: int = 0
    env: dict[str, Any] = field(default_factory=dict)
    """`SearchEnv` options (the SFT traces' ones, so that a model sees the views it was trained on)."""
    rewards: dict[str, Any] = field(default_factory=dict)
    """`RewardConfig` fields for `mean_reward` (the judge is never called here)."""
    navigation_max_turns: int = 6
    """Assistant turns per navigation task (open the start page, follow links, answer)."""


# ---- questions ------------------------------------------------------------------------------------------------------

def read_jsonl_questions(path: str | Path) -> list[dict[str, Any]]:
    """Question rows from a JSONL file of objects with `question` and `answer` (others optional); a missing id
    becomes the normalised question's hash (`pipeline.synthesis.questions.question_id`)."""
    from pipeline.synthesis.questions import question_id

    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if not isinstance(obj, dict) or not str(obj.get("question") or "").strip() or obj.get("answer") is None:
                raise ValueError(f"{path}:{n}: each line needs a question and an answer")
            aliases = obj.get("aliases") or []
            rows.append({**obj, "id": str(obj.get("id") or question_id(str(obj["question"]))),
                         "question": str(obj["question"]), "answer": str(obj["answer"]),
                         "aliases": [str(a) for a in (aliases if isinstance(aliases, list) else [aliases])],
                         "hops": int(obj.get("hops") or 1), "split": obj.get("split") or "eval"})
    return rows


def leakage(eval_rows: Sequence[Mapping[str, Any]], trained_ids: Sequence[str] = (),
            trained_questions: Sequence[str] = ()) -> dict[str, Any]:
    """Eval questions that a training set holds, by id and by normalised question text; the check passes when
    both lists are empty and every eval row is of the eval split."""
    from pipeline.text.answers import normalize_answer

    ids = set(map(str, trained_ids))
    texts = {normalize_answer(q) for q in trained_questions if q}
    by_id = sorted(str(r["id"]) for r in eval_rows if str(r["id"]) in ids)
    by_text = sorted(str(r["id"]) for r in eval_rows if normalize_answer(str(r["question"])) in texts)
    not_eval = sorted(str(r["id"]) for r in eval_rows if r.get("split") not in (None, "eval"))
    return {"passed": not (by_id or by_text or not_eval), "eval_questions": len(eval_rows),
            "trained_ids": len(ids), "trained_questions": len(texts), "overlap_by_id": by_id,
            "overlap_by_text": by_text, "not_eval_split": not_eval}


def sft_run_of(model_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the SFT run's config, its traces' provenance) when `model_dir` is an SFT run's model, else ({}, {})."""
    from training.run import read_run_config

    run = read_run_config(Path(model_dir).parent)
    if not run:
        return {}, {}
    provenance = Path(run.get("dataset", "")) / "provenance.json"
    return run, json.loads(provenance.read_text()) if provenance.is_file() else {}


def trained_on(sft_runs: Sequence[Mapping[str, Any]], grpo_model_dirs: Sequence[str | Path], questions_dir: str | Path
               ) -> tuple[list[str], list[str], dict[str, Any]]:
    """What was trained on: (ids, question texts, where they were read) of every SFT run's traces and every GRPO
    run's training data (its `train_ids.json`; question texts from the train split of `questions_dir`)."""
    from pipeline.datasets.io import read_split
    from training.traces import read_questions

    ids: list[str] = []
    texts: list[str] = []
    sources: dict[str, Any] = {"sft_traces": [], "grpo_train_ids": []}
    for traces_dir in [Path(run[key]) for run in sft_runs for key in ("dataset", "replay_dataset") if run.get(key)]:
        names = set(read_split_columns(traces_dir))
        traces = read_split(traces_dir, "train", [c for c in ("question_id", "question", "task_id") if c in names])
        ids += [str(r.get("question_id") or r.get("task_id")) for r in traces]
        texts += [r["question"] for r in traces if r.get("question")]
        if (traces_dir / "data" / "train.parquet").is_file():
            sources["sft_traces"].append(str(traces_dir / "data" / "train.parquet"))
    by_id = {str(r["id"]): r for r in read_questions(questions_dir, "train")}
    for model_dir in grpo_model_dirs:
        train_ids_file = Path(model_dir).parent / "train_ids.json"
        if not train_ids_file.is_file():
            continue
        grpo_ids = json.loads(train_ids_file.read_text())
        ids += grpo_ids.get("questions", []) + grpo_ids.get("report_tasks", []) + grpo_ids.get("navigation_tasks", [])
        texts += [by_id[i]["question"] for i in grpo_ids.get("questions", []) if i in by_id]
        sources["grpo_train_ids"].append(str(train_ids_file))
    return ids, texts, sources


def read_split_columns(dataset_dir: str | Path, split: str = "train") -> list[str]:
    """The column names of one split's Parquet file ([] when absent)."""
    import pyarrow.parquet as pq

    path = Path(dataset_dir) / "data" / f"{split}.parquet"
    return list(pq.read_schema(path).names) if path.is_file() else []


def check_never_trained_on(questions: Sequence[Mapping[str, Any]], report_tasks: Sequence[Mapping[str, Any]],
                           sft_runs: Sequence[Mapping[str, Any]], grpo_model_dirs: Sequence[str | Path],
                           questions_dir: str | Path) -> dict[str, Any]:
    """`leakage` of the eval questions and report tasks against what every SFT and GRPO run trained on, with
    `sources`: where that was read (an empty `grpo_train_ids`: no GRPO run's training ids were found)."""
    ids, texts, sources = trained_on(sft_runs, grpo_model_dirs, questions_dir)
    eval_rows = list(questions) + [{"id": t["task_id"], "question": "", "split": t["split"]} for t in report_tasks]
    leak = leakage(eval_rows, ids, texts)
    leak["sources"] = sources
    return leak


def before_after(models: Mapping[str, str], questions: Sequence[Mapping[str, Any]], snapshot: str | Path,
                 env: Mapping[str, Any], agent: AgentConfig, *, backend: str = "transformers",
                 data_dir: str | None = None, num_threads: int | None = None,
                 log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Trajectory]]:
    """Each model (name -> folder) through the agent loop on eval-split `questions` only: (summary per model,
    a sample trajectory per model)."""
    from training.agent_loop import evaluate_model
    from training.env import SearchEnv

    if any(q.get("split") != "eval" for q in questions):
        raise ValueError("the before/after check must use eval-split questions only")
    log = log or logger.info
    make_env = SearchEnv.factory(str(snapshot), session="sft-eval", **env)
    results, samples = {}, {}
    for name, model in models.items():
        log(f"evaluating the {name} model on {len(questions)} eval questions")
        results[name], trajs = evaluate_model(model, questions, make_env, agent, backend=backend, data_dir=data_dir,
                                              num_threads=num_threads, log=log)
        samples[name] = trajs[0]
    return results, samples


# ---- grading --------------------------------------------------------------------------------------------------------

def completion_of(traj: Trajectory) -> list[dict[str, Any]]:
    """The trajectory's messages after the prompt (system + user): what TRL calls the completion."""
    return traj.messages[2:]


def grade(trajs: Sequence[Trajectory], rows: Sequence[Mapping[str, Any]], rewards: RewardConfig = RewardConfig()
          ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Summary figures of one model's trajectories and one row per trajectory."""
    cfg = RewardConfig(**{**rewards.to_dict(), "judge": 0.0, "report": 0.0})
    funcs, weights = make_rewards(cfg)
    completions = [completion_of(t) for t in trajs]
    totals, _ = total_rewards(funcs, weights, completions, task_kind=[SEARCH_KIND] * len(rows),
                              answer=[r["answer"] for r in rows], aliases=[list(r.get("aliases") or []) for r in rows],
                              hops=[r.get("hops") for r in rows])
    best = cfg.search_max() or 1.0
    per_row = []
    for traj, completion, total in zip(trajs, completions, totals):
        rollout = read_rollout(completion)
        per_row.append({"id": traj.question_id, "question": traj.question, "gold": traj.gold,
                        "answer": traj.final_answer, "exact_match": traj.exact_match, "f1": round(traj.f1, 4),
                        "tool_calls": traj.tool_calls, "turns": traj.turns, "finish": traj.finish,
                        "format": round(format_score(rollout), 4), "reward": round((total or 0.0) / best, 4),
                        "errors": dict(traj.errors), "visited": traj.visited})
    n = len(per_row) or 1
    loop = summarize(trajs)
    per_traj = {
        "accuracy": ([r["exact_match"] for r in per_row], True),
        "f1": ([r["f1"] for r in per_row], False),
        "answered_rate": ([float(r["answer"] is not None) for r in per_row], True),
        "tool_calls_per_question": ([float(r["tool_calls"]) for r in per_row], False),
        "format_validity": ([r["format"] for r in per_row], False),
        "format_valid_rate": ([float(r["format"] == 1.0) for r in per_row], True),
        "valid_tool_call_rate": ([t.valid_turns / t.turns if t.turns else 0.0 for t in trajs], False),
        "mean_reward": ([r["reward"] for r in per_row], False),
    }
    summary = {
        "questions": len(per_row),
        "accuracy": loop["exact_match"],
        "f1": loop["f1"],
        "answered_rate": loop["answered_rate"],
        "tool_calls_per_question": round(sum(r["tool_calls"] for r in per_row) / n, 4),
        "format_validity": round(sum(r["format"] for r in per_row) / n, 4),
        "format_valid_rate": round(sum(r["format"] == 1.0 for r in per_row) / n, 4),
        "valid_tool_call_rate": loop["valid_tool_call_rate"],
        "mean_reward": round(sum(r["reward"] for r in per_row) / n, 4),
        "finish": loop["finish"],
        "errors": loop["errors"],
        "ci95": {k: interval(v, binary)["ci95"] for k, (v, binary) in per_traj.items()},
    }
    return summary, per_row


def take_by_kind(rows: Sequence[Mapping[str, Any]], n: int, key: str = "task_kind") -> list[Mapping[str, Any]]:
    """The first `n` rows (all when `n` is 0) taken round-robin across the values of `key`, each kind in its own
    order: a report-task dataset lists its 100 reorder tasks before the others, and a plain head of 30 would be
    reorder tasks only."""
    if not n or n >= len(rows):
        return list(rows)
    seen: Counter = Counter()
    depth = []  # the row's place within its kind
    for row in rows:
        depth.append(seen[row.get(key)])
        seen[row.get(key)] += 1
    chosen = sorted(range(len(rows)), key=lambda i: (depth[i], i))[:n]  # every kind's first, then every kind's second...
    return [rows[i] for i in sorted(chosen)]


def grade_reports(texts: Sequence[str], tasks: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[dict]]:
    from pipeline.synthesis.report_tasks.scoring import score_completion

    rows = []
    for text, task in zip(texts, tasks):
        rows.append({"task_id": task["task_id"], "task_kind": task["task_kind"],
                     "scores": score_completion(text, dict(task)), "answer": text})
    summary: dict[str, Any] = {"tasks": len(rows), "ci95": {}, "counts": {}}
    for name in REPORT_SCORES:
        values = [r["scores"][name] for r in rows if r["scores"].get(name) is not None]
        if values:
            summary[name] = round(sum(values) / len(values), 4)
            summary["ci95"][name], summary["counts"][name] = interval(values)["ci95"], len(values)
    per_task = []
    for r in rows:
        graded = [v for v in r["scores"].values() if v is not None]
        r["mean_score"] = round(sum(graded) / len(graded), 4) if graded else None
        if graded:
            per_task.append(r["mean_score"])
    summary["mean_score"] = round(sum(per_task) / len(per_task), 4) if per_task else None
    summary["ci95"]["mean_score"] = interval(per_task)["ci95"]
    return summary, rows


# ---- the run --------------------------------------------------------------------------------------------------------

def evaluate(models: Mapping[str, str], questions: Sequence[Mapping[str, Any]], snapshot: str | Path,
             config: EvalConfig = EvalConfig(), *, report_tasks: Sequence[Mapping[str, Any]] = (),
             navigation_tasks: Sequence[Mapping[str, Any]] = (), data_dir: str | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every model (name -> folder or "embedded") on every question (and report task); the results document."""
    from pipeline.llm import SamplingParams, make_backend
    from pipeline.simulator.snapshot import resolve_snapshot
    from training.env import SearchEnv

    log = log or logger.info
    snap = resolve_snapshot(str(snapshot))
    make_env = SearchEnv.factory(str(snap.path), session="eval", **config.env)
    agent = AgentConfig(max_turns=config.max_turns, max_tokens=config.max_tokens)
    rewards = RewardConfig.from_dict(config.rewards)
    results: dict[str, Any] = {"snapshot_id": snap.id, "questions": len(questions), "report_tasks": len(report_tasks),
                               "navigation_tasks": len(navigation_tasks), "config": asdict(config), "models": {}, "per_question": {}, "per_report_task": {}}
    for name, model in models.items():
        started = time.perf_counter()
        options = {"num_threads": config.num_threads} if config.backend == "transformers" and config.num_threads else {}
        llm = make_backend(config.backend, None if model in ("", "embedded") else model, data_dir=data_dir, **options)
        try:
            log(f"{name} ({model}): {len(questions)} questions")
            trajs = run_agent(llm, questions, make_env, agent, trajectory_prefix=f"eval-{name}-", log=log)
            summary, rows = grade(trajs, questions, rewards)
            report_summary: dict[str, Any] = {}
            if report_tasks:
                log(f"{name}: {len(report_tasks)} report tasks")
                outs = llm.generate([list(t["prompt"]) for t in report_tasks],
                                    SamplingParams(max_tokens=config.report_max_tokens, temperature=0.0, seed=0))
                report_summary, report_rows = grade_reports([o.text for o in outs], report_tasks)
                results["per_report_task"][name] = report_rows
            navigation: dict[str, Any] = {}
            if navigation_tasks:
                navigation, results.setdefault("per_navigation_task", {})[name] = evaluate_navigation(
                    llm, navigation_tasks, make_env, replace(agent, max_turns=config.navigation_max_turns), name, log)
        finally:
            llm.close()
        results["models"][name] = {"model": model, **summary, "report": report_summary, "navigation": navigation,
                                   "seconds": round(time.perf_counter() - started, 1)}
        results["per_question"][name] = rows
        log(f"{name}: accuracy {summary['accuracy']}, F1 {summary['f1']}, "
            f"{summary['tool_calls_per_question']} calls/question, format {summary['format_validity']}")
    return results


def evaluate_navigation(llm: Any, tasks: Sequence[Mapping[str, Any]], make_env: Callable, agent: AgentConfig,
                        name: str, log: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One model on navigation tasks through the same agent loop: `training.rewards_navigation.grade_navigation`."""
    from training.rewards_navigation import grade_navigation

    log(f"{name}: {len(tasks)} navigation tasks")
    trajs = run_agent(llm, tasks, make_env, agent, trajectory_prefix=f"eval-nav-{name}-", log=log)
    summary, rows = grade_navigation([completion_of(t) for t in trajs], tasks)
    log(f"{name}: navigation success {summary['success_rate']} (95% CI {summary['success_ci95']}), efficiency "
        f"{summary['efficiency_vs_shortest']}, {summary['invalid_moves_per_task']} invalid moves/task")
    return summary, rows


STAGE_METRICS = (
    ("accuracy", "accuracy (EM)", "search"), ("f1", "F1", "search"), ("answered_rate", "answered", "search"),
    ("tool_calls_per_question", "tool calls / question", "search"), ("format_validity", "format validity", "search"),
    ("valid_tool_call_rate", "valid tool-call rate", "search"), ("mean_reward", "mean reward", "search"),
    ("mean_score", "report score", "report"), ("order", "report: order", "report"),
    ("coverage", "report: key-point coverage", "report"), ("citations", "report: citation precision", "report"),
    ("success_rate", "navigation success", "navigation"),
    ("efficiency_vs_shortest", "navigation efficiency vs shortest", "navigation"),
)
"""(key, label, part) of every figure the evaluation table and plot show, per stage."""


def stage_metric(model: Mapping[str, Any], key: str, part: str) -> tuple[float | None, list[float] | None, int]:
    """(value, 95% interval, count) of one metric of one model's results (None where it was not measured)."""
    if part == "search":
        return model.get(key), (model.get("ci95") or {}).get(key), int(model.get("questions") or 0)
    block = model.get(part) or {}
    if key not in block or block.get(key) is None:
        return None, None, 0
    if part == "navigation":
        ci = block.get("success_ci95") if key == "success_rate" else block.get("efficiency_ci95")
        n = block.get("tasks", 0) if key == "success_rate" else block.get("reached", 0)
        return block[key], ci, int(n or 0)
    return block[key], (block.get("ci95") or {}).get(key), int((block.get("counts") or {}).get(key,
                                                                                            block.get("tasks", 0)))


def stage_rows(results: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(metric label, one cell per model) for every metric some model has: "value [lo, hi] (n=count)" or "-"."""
    rows = []
    for key, label, part in STAGE_METRICS:
        cells = []
        for model in results["models"].values():
            value, ci, n = stage_metric(model, key, part)
            cells.append("-" if value is None else
                         f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" (n={n})")
        if any(c != "-" for c in cells):
            rows.append((label, cells))
    return rows


def results_table_md(results: Mapping[str, Any]) -> str:
    """One row per metric, one column per model (stage): value, its 95% interval and the count it is over."""
    names = list(results["models"])
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in stage_rows(results)]
    note = (f"\n\n{results['questions']} eval questions"
            + (f", {results['report_tasks']} report tasks" if results.get("report_tasks") else "")
            + (f", {results['navigation_tasks']} navigation tasks" if results.get("navigation_tasks") else "")
            + f" on snapshot `{results['snapshot_id']}`; 95% intervals: Wilson for rates, normal approximation for "
              "means. n: items the figure is over (efficiency: tasks reached).")
    return "\n".join(lines) + note


def plot_results(results: Mapping[str, Any], path: str | Path) -> Path:
    """One panel per metric: its value per stage (in evaluation order) with the 95% interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    names = list(models)
    panels = [(key, label, part) for key, label, part in STAGE_METRICS
              if any(stage_metric(models[n], key, part)[0] is not None for n in names)]
    cols = min(4, len(panels)) or 1
    rows = (len(panels) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), dpi=100, squeeze=False)
    for ax, (key, label, part) in zip(axes.flat, panels):
        values, lows, highs = [], [], []
        for n in names:
            value, ci, _ = stage_metric(models[n], key, part)
            v = float("nan") if value is None else value  # not measured (no task reached): a gap, not a 0
            lo, hi = ci if ci and value is not None else (v, v)
            values.append(v)
            lows.append(0.0 if value is None else max(0.0, v - lo))
            highs.append(0.0 if value is None else max(0.0, hi - v))
        x = list(range(len(names)))
        ax.errorbar(x, values, yerr=[lows, highs], fmt="o-", capsize=3, markersize=4)
        ax.set_xticks(x, names, rotation=30, fontsize=8)
        ax.set_title(label, fontsize=9)
        if key != "tool_calls_per_question":
            ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{results['questions']} eval questions, {results.get('report_tasks', 0)} report tasks, "
                 f"{results.get('navigation_tasks', 0)} navigation tasks: per stage, 95% intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_results(results: Mapping[str, Any], out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str) + "\n")
    return out


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate search agents on a question set in a snapshot.")
    parser.add_argument("--questions", required=True,
                        help="JSONL of {question, answer[, aliases, id, hops]}, or a hard_queries folder (eval split)")
    parser.add_argument("--snapshot", default="latest", help="snapshot folder or id (default: the latest)")
    parser.add_argument("--model", action="append", required=True,
                        help="NAME=FOLDER or FOLDER (or 'embedded'); repeat to compare models")
    parser.add_argument("--out", default="eval_results.json", help="results JSON (a PNG is written beside it)")
    parser.add_argument("--limit", type=int, default=0, help="questions used at most (0: all)")
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--backend", default="transformers", help="generation backend (transformers, vllm, openai)")
    parser.add_argument("--env", default="{}", help='SearchEnv options as JSON, e.g. {"max_chars": 500}')
    parser.add_argument("--num-threads", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    source = Path(args.questions)
    if source.is_dir():
        from training.traces import read_questions

        rows = read_questions(source, "eval")
    else:
        rows = read_jsonl_questions(source)
    rows = rows[: args.limit or None]
    models = {}
    for spec in args.model:
        name, _, path = spec.partition("=") if "=" in spec else (Path(spec).name or spec, "", spec)
        models[name] = path
    config = EvalConfig(max_turns=args.max_turns, max_tokens=args.max_tokens, backend=args.backend,
                        num_threads=args.num_threads, env=json.loads(args.env))
    results = evaluate(models, rows, args.snapshot, config, data_dir=args.data_dir)
    out = write_results(results, args.out)
    plot_results(results, out.with_suffix(".png"))
    print(results_table_md(results))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
