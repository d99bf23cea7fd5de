"""Run budgets for `websim run --profile`: Dagster run config per job, nothing else.

- `demo`: the sample data and the embedded 135M model on a 2-core CPU, end to end in about 47 minutes (a quiet CPU
  with bf16, measured 2026-12-07, 19 of them the evaluation; about 2 hours in float32 under load); every stage runs
  for real, on few items and few steps.
- `full`: the budget of a real run (a larger model through the `llm` resource, a GPU or a vLLM fleet): many
  questions and tasks, SFT for epochs, GRPO for hundreds of steps.

A YAML file given with `--config` is merged over the profile (same shape: `{job: {ops: {...}, resources: {...}}}`),
so a user changes one number without copying the rest. Every value is checked by Dagster's config schema before
the job's first step runs.
"""

import copy
from pathlib import Path
from typing import Any

JOBS = ("warc_ingest", "clickstream_ingest", "store_build", "synthesis", "training")

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "demo": {
        "synthesis": {"ops": {
            # reorder tasks need no teacher (their gold is the page's order): many of them give the evaluation >= 30
            # held-out report tasks; the teacher writes key points for the 24 report tasks only (no references: the
            # 135M model's passed their own verifiers on 9 of 23 in the last demo)
            "report_tasks": {"config": {"n_reorder": 100, "n_synthesise": 12, "n_analyse_merge": 12,
                                        "eval_fraction": 0.3, "with_references": False}},
            # every answer the four Wikispeedia shards allow: 245 seeds built -> 177 verified (2026-12-07, since a link
            # quote must be running text; 266 -> 201 before); 65% held out: >= 100 eval questions (0.6 gave 103 of
            # 177, 0.65 gives 120), 57 train questions
            "evidence_chains": {"config": {"count": 480}},
            # ~10 s on the four Wikispeedia shards (BFS per distinct target of 4,000 candidates)
            "navigation_tasks": {"config": {"n_tasks": 600}},
            "hard_queries": {"config": {"eval_fraction": 0.65}},
        }},
        "training": {"ops": {
            # navigation: 100 train tasks -> about 160 human-path and shortest-path demonstrations, ~1 s
            # teacher rollouts (the base model on train questions, kept when right): 16 x 2 tries ran > 10 min at load 7
            "sft_traces": {"config": {"teacher_questions": 8, "teacher_tries": 1, "navigation_tasks": 100}},
            # a demonstration opens 3-6 pages of ~350 tokens each: 2,048 tokens would drop most of them
            # the before/after check through vLLM (transformers took 44-101 s a turn on 2 cores)
            "sft_model": {"config": {"max_steps": 8, "eval_questions": 8, "max_length": 4096,
                                     "eval_max_turns": 4, "eval_backend": "vllm"}},
            # a quarter of the prompts are navigation tasks (graded by the navigation rewards)
            "grpo_model": {"config": {"max_steps": 2, "num_generations": 2, "max_completion_length": 384,
                                      "navigation_fraction": 0.25}},
            # the second round: report SFT on the golds (no kind over half of them; as many search traces replayed),
            # then report GRPO (3 report prompts per search prompt)
            "report_sft_model": {"config": {"max_steps": 16, "max_length": 4096}},
            "report_grpo_model": {"config": {"max_steps": 2, "num_generations": 2, "max_completion_length": 256,
                                             "max_questions": 2}},
            # five stages, each on >= 100 eval questions, every eval report task (>= 30) and 20 navigation tasks,
            # generation batched through vLLM (one batched call per turn over every live trajectory); 100 navigation
            # tasks per stage cost ~5 min each on 2 cores: the navigation evaluation of 100 is `--config`'s
            "evaluation": {"config": {"eval_questions": 100, "max_turns": 4, "max_tokens": 64,
                                      "eval_navigation_tasks": 20, "navigation_max_turns": 4,
                                      "eval_report_tasks": 0, "backend": "vllm"}},
        }},
    },
    "full": {
        "synthesis": {"ops": {
            "report_tasks": {"config": {"n_reorder": 500, "n_synthesise": 500, "n_analyse_merge": 500}},
            "evidence_chains": {"config": {"count": 5000}},
            "candidate_questions": {"config": {"samples": 4}},
            "navigation_tasks": {"config": {"n_tasks": 5000, "max_candidates": 40000}},
        }},
        "training": {"ops": {
            "sft_traces": {"config": {"teacher_questions": 0, "teacher_tries": 4}},
            "sft_model": {"config": {"epochs": 2.0, "max_steps": -1, "learning_rate": 5e-5,
                                     "lr_scheduler_type": "cosine", "batch_size": 4, "num_threads": 0,
                                     "save_steps": 200, "eval_questions": 200}},
            "grpo_model": {"config": {"max_steps": 300, "num_generations": 8, "max_completion_length": 2048}},
            # the second round on every train report task, then report RL with a quarter search prompts
            "report_sft_model": {"config": {"epochs": 2.0, "max_steps": -1, "batch_size": 4, "max_length": 8192}},
            "report_grpo_model": {"config": {"max_steps": 200, "num_generations": 8, "max_completion_length": 2048,
                                             "max_questions": 0}},
            "evaluation": {"config": {"eval_questions": 0, "eval_report_tasks": 0, "eval_navigation_tasks": 0}},
        }},
    },
}


def deep_merge(base: dict, override: dict) -> dict:
    """`override` over `base`, dicts merged key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_overrides(path: str | Path | None) -> dict:
    """The `--config` YAML file: a mapping of job name to run config."""
    if not path:
        return {}
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:  # a stream, so the parser's marks name the file, line and column
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML:\n{exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of job name to run config, got {type(data).__name__}")
    unknown = sorted(set(data) - set(JOBS))
    if unknown:
        raise ValueError(f"{path}: unknown job(s) {unknown}; jobs are {list(JOBS)}")
    return data


def run_configs(profile: str, overrides_path: str | Path | None = None) -> dict[str, dict]:
    """Run config per job for `profile`, with the `--config` file merged over it."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    configs = deep_merge(PROFILES[profile], load_overrides(overrides_path))
    return {job: configs.get(job, {}) for job in JOBS}
