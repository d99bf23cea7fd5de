"""GRPO of the search agent with TRL's `GRPOTrainer`: multi-turn rollouts in the simulated web, verifier rewards.

    python -m training.grpo --config run.json          # GRPORunConfig fields as JSON
    main(GRPORunConfig(questions=..., snapshot=..., model=..., output_dir=...))

Each rollout is an episode of `training.env.SearchEnv` (`environment_factory`: one env per rollout, its four tools
rendered into the prompt by the chat template, tool results masked from the loss, `max_tool_calling_iterations`
capping the turns); the prompt is the agent loop's (`training.agent_loop.initial_messages`), so training, SFT
traces and evaluation read the same. Rewards and their weights come from `training.rewards` (`RewardConfig`).
Report-writing tasks (`report_tasks` train split) can be mixed in (`report_fraction`): those rows select a tool-less
environment (TRL's dict `environment_factory`), and only the report verifiers grade them.

Train split only: `assert_train_only` raises on any other question, and the ids trained on are written to
`train_ids.json` (the evaluation's check reads them). One run owns one folder:

    checkpoints/checkpoint-N/   Trainer checkpoints; a run that finds one resumes from the last
    model/                      the final model + tokenizer (inference chat template), `websim_grpo.json` last
    metrics.json                steps, rewards, timings, data counts, config
    log_history.jsonl           the Trainer's log events (reward, per-reward means, KL, tool-call frequency, ...)
    rollouts.jsonl              every rollout's answer, tool calls and rewards, per step
    curves.png                  reward, accuracy (exact-match reward), tool calls per rollout and KL per step
    train_ids.json              the question / task ids of the training data

Profiles: CPU (default): transformers generation, `use_cpu=True`, bf16 where the CPU has it natively, a tiny
budget. GPU: `use_vllm=True, vllm_mode="colocate"` (generation in vLLM inside the trainer's process, weights synced
every step), bf16.
GRPO with vLLM does not work on CPU (ARCHITECTURE.md), so `use_vllm` without a GPU is refused up front.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.datasets.io import read_split
from training.agent_loop import initial_messages
from training.rewards import REPORT_KINDS, SEARCH_KIND, RewardConfig, read_rollout
from training.run import (RunConfig, cli as run_cli, finished_run, progress_callback, run_dir, use_bf16,
                          write_log_history)

logger = logging.getLogger(__name__)
DONE_FILE = "websim_grpo.json"  # written last in model/: a folder without it is not a finished run
CURVES = {"reward": "reward", "accuracy": "rewards/exact_match_reward/mean",
          "tool_calls": "tools/call_frequency", "kl": "kl"}
"""The curves plotted and reported: name -> key in the Trainer's log history."""


@dataclass
class GRPORunConfig(RunConfig):
    """One GRPO run. Its defaults are the only ones: the `grpo_model` asset's config is made from these fields."""

    PLUMBING = ("questions", "snapshot", "output_dir", "model", "data_dir", "report_tasks", "navigation_tasks",
                "rewards", "judge_backend",
                "judge_model", "judge_base_url", "env", "num_threads", "retrain")
    KIND = "GRPO"

    questions: str
    """A `hard_queries` folder (train split read from data/train.parquet)."""
    snapshot: str
    """The snapshot folder (or id) the questions were made on; the env serves it."""
    output_dir: str
    model: str = "embedded"
    """The starting model: an SFT model folder (the asset's default), any local model folder, or "embedded"."""
    data_dir: str = ""
    report_tasks: str = ""
    """A `report_tasks` folder; with `report_fraction` > 0 its train split is mixed in."""
    report_fraction: float = 0.0
    """Share of report tasks among the training prompts (0: search questions only)."""
    navigation_tasks: str = ""
    """A `navigation_tasks` folder; with `navigation_fraction` > 0 its train split is mixed in (same tools as
    search, graded by the navigation rewards)."""
    navigation_fraction: float = 0.0
    """Share of navigation tasks among the training prompts."""
    max_questions: int = 0
    """Train questions used at most (0: all), a seeded sample."""
    max_steps: int = 4
    learning_rate: float = 5e-6
    num_generations: int = 4
    """Rollouts per prompt (the group GRPO normalises rewards in)."""
    prompts_per_step: int = 1
    max_completion_length: int = 768
    """Tokens of one rollout, model turns and tool results together."""
    max_tool_calling_iterations: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.02
    """KL coefficient against the starting model (> 0 loads a reference model; the KL curve needs it)."""
    loss_type: str = "dapo"
    rewards: dict[str, Any] = field(default_factory=dict)
    """`RewardConfig` fields (weights, cost term)."""
    judge_backend: str = "transformers"
    judge_model: str = "embedded"
    judge_base_url: str = ""
    """For an `openai` judge backend: the server."""
    env: dict[str, Any] = field(default_factory=dict)
    """`SearchEnv` options (max_tool_calls, search_k, snippet_chars, max_chars, max_links): the SFT traces' by default."""
    seed: int = 0
    save_steps: int = 2
    save_total_limit: int = 2
    logging_steps: int = 1
    bf16: bool | None = None
    """bf16 autocast; None: on a GPU and on CPUs with native bf16 (`training.run.use_bf16`)."""
    num_threads: int = 0
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    retrain: bool = False


def grpo_run_dir(root: str | Path, settings: dict[str, Any], rewards: dict[str, Any], start_model: str | Path,
                 questions: str | Path, report_tasks: str | Path | None, snapshot_id: str, name: str = "", *,
                 navigation_tasks: str | Path | None = None, prefix: str = "grpo") -> Path:
    """`<root>/<name>`, or `<root>/<prefix>-<hash of the settings, rewards, starting model, data and snapshot>`."""
    data = [settings, rewards, str(start_model), str(questions), str(report_tasks or ""), snapshot_id]
    return run_dir(root, prefix, data + ([str(navigation_tasks)] if navigation_tasks else []), name)


# ---- data ----------------------------------------------------------------------------------------------------------

class ReportTaskEnv:
    """The environment of a report-writing task: no tools (the chunks are in the prompt), nothing to reset."""

    def reset(self, **row: Any) -> None:
        return None


REPORT_COLUMNS = ("chunk_ids", "chunks", "gold_order", "distractor_ids", "key_points", "min_words", "max_words")


def question_example(row: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": initial_messages(str(row["question"])), "task_kind": SEARCH_KIND, "id": str(row["id"]),
            "question": str(row["question"]), "answer": str(row["answer"]), "aliases": list(row.get("aliases") or []),
            "hops": int(row.get("hops") or 1)}


def report_example(row: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": [dict(m) for m in row["prompt"]], "task_kind": row["task_kind"], "id": str(row["task_id"]),
            **{k: row.get(k) for k in REPORT_COLUMNS}}


NAVIGATION_COLUMNS = ("start_url", "target_url", "shortest_path_length")


def navigation_example(row: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": initial_messages(str(row["question"])), "task_kind": "navigation", "id": str(row["id"]),
            "question": str(row["question"]), **{k: row.get(k) for k in NAVIGATION_COLUMNS}}


def training_examples(questions: list[dict], report_rows: list[dict], config: GRPORunConfig,
                      navigation_rows: list[dict] = ()) -> list[dict]:
    """The training prompts: train questions (a seeded sample of `max_questions`), plus report tasks at
    `report_fraction` and navigation tasks at `navigation_fraction` of the total; each row carries `environment`
    when tool-less report rows and tool rows are mixed."""
    from training.traces import assert_train_only

    assert_train_only(questions)
    for what, rows, key in (("report task", report_rows, "task_id"), ("navigation task", navigation_rows, "id")):
        bad = [r[key] for r in rows if r.get("split") != "train"]
        if bad:
            raise ValueError(f"{len(bad)} {what}(s) not of the train split would enter GRPO: {bad[:5]}")
    rng = random.Random(config.seed)
    questions = sorted(questions, key=lambda r: str(r["id"]))
    if config.max_questions and len(questions) > config.max_questions:
        questions = rng.sample(questions, config.max_questions)
    examples = [question_example(q) for q in questions]
    extra = [(report_rows, config.report_fraction, "task_id", report_example),
             (list(navigation_rows), config.navigation_fraction, "id", navigation_example)]
    fractions = [min(max(f, 0.0), 0.95) if rows else 0.0 for rows, f, _, _ in extra]
    rest = max(1.0 - sum(fractions), 0.05)
    for (rows, _, key, make), f in zip(extra, fractions):
        if f:
            n = max(1, round(len(questions) * f / rest)) if questions else len(rows)
            picked = rng.sample(sorted(rows, key=lambda r: str(r[key])), min(n, len(rows)))
            examples += [make(r) for r in picked]
    if any(e["task_kind"] in REPORT_KINDS for e in examples) and any(e["task_kind"] not in REPORT_KINDS
                                                                      for e in examples):
        for e in examples:
            e["environment"] = "report" if e["task_kind"] in REPORT_KINDS else "search"
    rng.shuffle(examples)
    return examples


def to_dataset(examples: list[dict]):
    """A `datasets.Dataset` of the examples; columns one kind of row lacks are None there."""
    import datasets

    columns = sorted({k for e in examples for k in e})
    return datasets.Dataset.from_list([{k: e.get(k) for k in columns} for e in examples])


def read_report_tasks(path: str | Path, split: str = "train") -> list[dict]:
    """The rows of one split of a `report_tasks` dataset folder; [] when absent."""
    return read_split(path, split)


# ---- the run -------------------------------------------------------------------------------------------------------

def record_rollouts(func: Callable[..., list], path: Path) -> Callable[..., list]:
    """`func` (a reward) that also appends each rollout's answer, calls and this reward to `path` (JSONL)."""

    def wrapped(completions, **kwargs):
        out = func(completions, **kwargs)
        state = kwargs.get("trainer_state")
        envs = kwargs.get("environments") or [None] * len(completions)
        ids = kwargs.get("id") or [None] * len(completions)
        with open(path, "a") as fh:
            for completion, value, env, rid in zip(completions, out, envs, ids):
                rollout = read_rollout(completion)
                fh.write(json.dumps({
                    "step": getattr(state, "global_step", -1) + 1, "id": rid, "reward": func.__name__, "value": value,
                    "answer": getattr(env, "final_answer", rollout.answer), "tool_calls": rollout.tool_calls,
                    "env_steps": getattr(env, "steps", None), "turns": rollout.graded_turns,
                    "completion": completion if isinstance(completion, str) else list(completion)},
                    default=str) + "\n")
        return out

    wrapped.__name__ = func.__name__
    wrapped.__doc__ = func.__doc__
    return wrapped


def build_trainer(config: GRPORunConfig, log: Callable[[str], None] | None = None):
    """The `GRPOTrainer` of a run, its data counts and the starting model's inference chat template."""
    log = log or logger.info
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from pipeline.llm.model_setup import resolve_model
    from pipeline.simulator.snapshot import resolve_snapshot
    from training.env import SearchEnv
    from training.rewards import make_rewards
    from training.traces import read_questions

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    gpu = torch.cuda.is_available()
    if config.use_vllm and not gpu:
        raise ValueError("use_vllm needs a CUDA GPU: GRPO with vLLM does not work on CPU (weight sync fails)")
    model = resolve_model(None if config.model in ("", "embedded") else config.model, config.data_dir or None)
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    template = tokenizer.chat_template

    questions = read_questions(config.questions, "train")
    reports = read_report_tasks(config.report_tasks) if config.report_tasks and config.report_fraction else []
    navigation = (read_split(config.navigation_tasks, "train")
                  if config.navigation_tasks and config.navigation_fraction else [])
    examples = training_examples(questions, reports, config, navigation)
    if not examples:
        raise ValueError(f"no train questions in {config.questions}")
    counts = {"train_questions": len(questions),
              "search_prompts": sum(e["task_kind"] == SEARCH_KIND for e in examples),
              "report_prompts": sum(e["task_kind"] in REPORT_KINDS for e in examples),
              "navigation_prompts": sum(e["task_kind"] == "navigation" for e in examples)}
    out = Path(config.output_dir)
    (out / "train_ids.json").write_text(json.dumps(
        {"questions": sorted(e["id"] for e in examples if e["task_kind"] == SEARCH_KIND),
         "report_tasks": sorted(e["id"] for e in examples if e["task_kind"] in REPORT_KINDS),
         "navigation_tasks": sorted(e["id"] for e in examples if e["task_kind"] == "navigation")}, indent=1) + "\n")

    snap = resolve_snapshot(config.snapshot)
    search_factory = SearchEnv.factory(str(snap.path), session="grpo", **config.env)
    mixed = any("environment" in e for e in examples)
    factory = {"search": search_factory, "report": ReportTaskEnv} if mixed else search_factory

    reward_config = RewardConfig.from_dict(config.rewards)
    judge = None
    if reward_config.judge:
        from pipeline.llm import make_backend

        judge = make_backend(config.judge_backend, None if config.judge_model in ("", "embedded") else
                             config.judge_model, data_dir=config.data_dir or None,
                             **({"base_url": config.judge_base_url} if config.judge_base_url else {}))
    funcs, weights = make_rewards(reward_config, judge)
    funcs[0] = record_rollouts(funcs[0], out / "rollouts.jsonl")

    batch = config.prompts_per_step * config.num_generations
    args = GRPOConfig(
        output_dir=str(out / "checkpoints"), use_cpu=not gpu, bf16=use_bf16(config.bf16, gpu), report_to="none",
        max_steps=config.max_steps, learning_rate=config.learning_rate, lr_scheduler_type="constant",
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        max_tool_calling_iterations=config.max_tool_calling_iterations, temperature=config.temperature,
        top_p=config.top_p, beta=config.beta, loss_type=config.loss_type, reward_weights=weights,
        logging_steps=config.logging_steps, save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        seed=config.seed, data_seed=config.seed, model_init_kwargs={"dtype": "bfloat16" if gpu else "float32"},
        use_vllm=config.use_vllm, vllm_mode=config.vllm_mode,
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization, dataloader_num_workers=0,
        disable_tqdm=True, log_completions=False)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=to_dataset(examples),
                          processing_class=tokenizer, environment_factory=factory,
                          callbacks=[progress_callback(log)])
    log(f"GRPO data: {counts}; rewards {dict(zip([f.__name__ for f in funcs], weights))}; "
        f"{batch} rollouts per step ({config.prompts_per_step} prompts x {config.num_generations})")
    counts["model"] = model
    counts["device"] = "cuda" if gpu else "cpu"
    return trainer, counts, template


def curves(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per curve in `CURVES` from the Trainer's log history."""
    out: dict[str, list[tuple[int, float]]] = {}
    for name, key in CURVES.items():
        out[name] = [(int(h["step"]), float(h[key])) for h in history if h.get(key) is not None and "step" in h]
    return out


def main(config: GRPORunConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or resume, or reuse a finished run) and return the run's metrics."""
    log = log or logger.info
    out = Path(config.output_dir)
    if not config.retrain and (done := finished_run(out, DONE_FILE)) is not None:
        log(f"{out} already holds a finished run; reusing it (retrain=true trains again)")
        return {**done, "reused": True}
    out.mkdir(parents=True, exist_ok=True)
    from transformers.trainer_utils import get_last_checkpoint

    started = time.perf_counter()
    trainer, counts, template = build_trainer(config, log)
    model_name, device = counts.pop("model"), counts.pop("device")
    ckpt_dir = out / "checkpoints"
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        log(f"resuming from {last}")
    result = trainer.train(resume_from_checkpoint=last)

    model_dir = out / "model"
    trainer.model.save_pretrained(str(model_dir))
    tokenizer = trainer.processing_class
    tokenizer.chat_template = template  # the inference template, whatever TRL rendered with in training
    tokenizer.save_pretrained(str(model_dir))

    history = trainer.state.log_history
    steps = [h for h in history if "reward" in h]
    series = curves(history)
    runtime = float(result.metrics.get("train_runtime", 0.0))
    metrics = {
        "model": model_name,
        "steps": trainer.state.global_step,
        "resumed_from": last,
        "first_reward": steps[0]["reward"] if steps else None,
        "last_reward": steps[-1]["reward"] if steps else None,
        "mean_reward": round(sum(h["reward"] for h in steps) / len(steps), 4) if steps else None,
        "mean_accuracy": _mean(series["accuracy"]),
        "mean_tool_calls": _mean(series["tool_calls"]),
        "last_kl": series["kl"][-1][1] if series["kl"] else None,
        "reward_means": reward_means(steps),
        "curves": series,
        "train_runtime_s": round(runtime, 2),
        "wall_s": round(time.perf_counter() - started, 2),
        "s_per_step": round(runtime / max(1, trainer.state.global_step), 2),
        "data": counts,
        "device": device,
        "generation": "vllm-" + config.vllm_mode if config.use_vllm else "transformers",
        "config": config.to_dict(),
    }
    write_log_history(history, out / "log_history.jsonl")
    plot_curves(series, out / "curves.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (model_dir / DONE_FILE).write_text(json.dumps({"steps": metrics["steps"], "last_reward": metrics["last_reward"]}))
    log(f"GRPO done: {metrics['steps']} steps, reward {metrics['first_reward']} -> {metrics['last_reward']}, "
        f"{metrics['s_per_step']} s/step; model in {model_dir}")
    return metrics


def reward_means(steps: list[dict]) -> dict[str, float]:
    """Mean over the logged steps of each reward that graded something (report rewards are None without reports)."""
    out = {}
    for key in sorted({k for h in steps for k in h if k.startswith("rewards/") and k.endswith("/mean")}):
        values = [h[key] for h in steps if h.get(key) is not None]
        if values:
            out[key.split("/")[1]] = round(sum(values) / len(values), 4)
    return out


def last_rollout(path: Path) -> dict | None:
    """The last line of a run's `rollouts.jsonl` (None without one)."""
    if not path.is_file():
        return None
    last = None
    with open(path) as fh:
        for line in fh:
            last = line
    return json.loads(last) if last else None


def _mean(points: list[tuple[int, float]]) -> float | None:
    return round(sum(v for _, v in points) / len(points), 4) if points else None


def plot_curves(series: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"reward": "reward (weighted sum)", "accuracy": "accuracy (exact-match reward)",
              "tool_calls": "tool calls per rollout", "kl": "KL to the starting model"}
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.2), dpi=100)
    for ax, (name, label) in zip(axes, labels.items()):
        points = series.get(name) or []
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=3)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle("GRPO")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cli(argv: list[str] | None = None) -> int:
    return run_cli(argv, description="GRPO of the search agent in the simulated web (TRL GRPOTrainer).",
                   config_cls=GRPORunConfig, main=main)


if __name__ == "__main__":
    sys.exit(cli())
