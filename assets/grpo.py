"""RL assets: `grpo_model` (TRL GRPO in the simulated web, out of process) and `evaluation` (base vs SFT vs GRPO)."""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import dagster as dg

from assets.llm_resource import LLMResource
from assets.simulator import SimulatorResource
from assets.training import _dataset_dir, _md_image, _sample_md, _snapshot, sft_model
from pipeline import config as websim_config

REWARD_SANITY = "Rewards tell right from wrong: on a sample of train questions, a rollout answering the gold answer " \
                "scores >= 0.9 of the best total and one answering another question's answer <= 0.3, gold above " \
                "wrong on every question (checked before training; a failure stops the run)."
EVAL_NEVER_TRAINED_ON = "No evaluation question or report task was trained on: none of their ids, and no question's " \
                        "normalised text, is in the SFT traces or the GRPO run's training data; all are eval-split."


class GRPOModelConfig(dg.Config):
    sft_model_dir: str = ""
    """The starting model; empty: the latest `sft_model` materialization's model folder."""
    questions_dir: str = ""
    """hard_queries folder (train split); empty: <data dir>/datasets/hard_queries."""
    report_tasks_dir: str = ""
    """report_tasks folder; empty: the latest `report_tasks` materialization's, if any."""
    report_fraction: float = 0.0
    """Share of report-writing tasks among the training prompts (0: search questions only)."""
    run_name: str = ""
    """Folder under <data dir>/models/grpo; empty: a hash of the settings and the data, so a crash resumes."""
    max_questions: int = 0
    max_steps: int = 4
    learning_rate: float = 5e-6
    num_generations: int = 4
    prompts_per_step: int = 1
    max_completion_length: int = 768
    max_tool_calling_iterations: int = 4
    temperature: float = 1.0
    beta: float = 0.02
    """KL coefficient (> 0: a reference model is kept and the KL curve is logged)."""
    loss_type: str = "dapo"
    reward_exact_match: float = 1.0
    reward_f1: float = 0.5
    reward_format: float = 0.25
    reward_tool_cost: float = 0.25
    reward_report: float = 1.0
    reward_judge: float = 0.0
    """Weight of the LLM-judge reward (the `llm` resource's backend and model); 0: off."""
    call_slack: int = 1
    cost_per_extra_call: float = 0.25
    sanity_sample: int = 32
    use_vllm: bool = False
    """GPU profile: generation in vLLM (`vllm_mode`="colocate"); needs a CUDA GPU."""
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    bf16: bool = False
    num_threads: int = 0
    save_steps: int = 2
    seed: int = 0
    retrain: bool = False

    def rewards(self) -> dict:
        return {"exact_match": self.reward_exact_match, "f1": self.reward_f1, "format": self.reward_format,
                "tool_cost": self.reward_tool_cost, "report": self.reward_report, "judge": self.reward_judge,
                "call_slack": self.call_slack, "cost_per_extra_call": self.cost_per_extra_call}


def _latest_path(context: dg.AssetExecutionContext, key: dg.AssetKey, name: str) -> Path | None:
    event = context.instance.get_latest_materialization_event(key)
    value = event.asset_materialization.metadata.get(name) if event and event.asset_materialization else None
    return Path(value.value) if value is not None else None


def _sft_dir(context: dg.AssetExecutionContext, configured: str) -> Path:
    path = Path(configured) if configured else _latest_path(context, sft_model.key, "model_dir")
    if path is None or not path.is_dir():
        raise dg.Failure(f"no SFT model folder ({path}): materialize sft_model first or set sft_model_dir")
    return path


def _sft_run(model_dir: Path) -> tuple[dict, dict]:
    """(the SFT run's config, its traces' provenance) when `model_dir` is an SFT run's model, else ({}, {})."""
    run_config = model_dir.parent / "run_config.json"
    if not run_config.is_file():
        return {}, {}
    run = json.loads(run_config.read_text())
    provenance = Path(run.get("dataset", "")) / "provenance.json"
    return run, json.loads(provenance.read_text()) if provenance.is_file() else {}


def _python_env() -> dict:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(websim_config.REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1"}


@dg.asset(
    deps=[sft_model],
    group_name="training",
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec("reward_sanity", asset="grpo_model", blocking=True, description=REWARD_SANITY)],
    description="The search agent after GRPO in the simulated web (TRL GRPOTrainer, environment_factory=SearchEnv, "
                "verifier rewards), starting from the SFT model, on train-split questions (plus report tasks by "
                "config). Run out of process through Dagster Pipes; resumes from its last checkpoint. Value: the "
                "model folder. Metadata: reward, accuracy, tool-call frequency and KL curves.",
)
def grpo_model(context: dg.AssetExecutionContext, config: GRPOModelConfig, simulator: SimulatorResource,
               llm: LLMResource):
    from training.grpo import GRPORunConfig
    from training.rewards import RewardConfig, reward_sanity
    from training.traces import read_questions

    start = _sft_dir(context, config.sft_model_dir)
    sft_run, provenance = _sft_run(start)
    qdir = _dataset_dir(config.questions_dir, "hard_queries")
    train = read_questions(qdir, "train")
    rewards = RewardConfig.from_dict(config.rewards())
    sanity = reward_sanity(train, rewards, sample=config.sanity_sample, seed=config.seed)
    yield dg.AssetCheckResult(check_name="reward_sanity", passed=sanity["passed"], metadata={
        k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v) for k, v in sanity.items()})
    if not sanity["passed"]:
        raise dg.Failure(f"reward sanity failed (gold {sanity['mean_gold']}, random {sanity['mean_random']}): "
                         "not training on a reward that cannot tell right from wrong")

    reports = Path(config.report_tasks_dir) if config.report_tasks_dir else (
        _latest_path(context, dg.AssetKey("report_tasks"), "path") if config.report_fraction else None)
    snap = _snapshot(simulator, provenance.get("snapshot_id", ""))
    settings = {k: v for k, v in config.model_dump().items() if k not in (
        "sft_model_dir", "questions_dir", "report_tasks_dir", "run_name", "retrain", "num_threads", "sanity_sample")
        and not k.startswith(("reward_", "call_slack", "cost_per"))}
    blob = json.dumps([settings, rewards.to_dict(), str(start), str(qdir), str(reports or ""), snap.id], sort_keys=True)
    out = websim_config.data_dir() / "models" / "grpo" / (
        config.run_name or f"grpo-{hashlib.sha256(blob.encode()).hexdigest()[:12]}")
    out.mkdir(parents=True, exist_ok=True)
    run = GRPORunConfig(
        questions=str(qdir), snapshot=str(snap.path), output_dir=str(out), model=str(start),
        data_dir=llm.data_dir or "", report_tasks=str(reports or ""), report_fraction=config.report_fraction,
        max_questions=config.max_questions, max_steps=config.max_steps, learning_rate=config.learning_rate,
        num_generations=config.num_generations, prompts_per_step=config.prompts_per_step,
        max_completion_length=config.max_completion_length,
        max_tool_calling_iterations=config.max_tool_calling_iterations, temperature=config.temperature,
        beta=config.beta, loss_type=config.loss_type, rewards=rewards.to_dict(), judge_backend=llm.backend,
        judge_model=llm.model or "embedded", judge_base_url=llm.base_url, env=provenance.get("env", {}),
        seed=config.seed,
        save_steps=config.save_steps, bf16=config.bf16, num_threads=config.num_threads, use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode, vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        retrain=config.retrain)
    config_path = out / "run_config.json"
    config_path.write_text(json.dumps(run.to_dict(), indent=2) + "\n")
    context.log.info(f"GRPO from {start} on {qdir} (snapshot {snap.id}) into {out}")
    dg.PipesSubprocessClient(cwd=str(websim_config.REPO_ROOT)).run(
        context=context, command=[sys.executable, "-m", "training.grpo", "--config", str(config_path)],
        env=_python_env())
    metrics = json.loads((out / "metrics.json").read_text())
    model_dir = out / "model"
    metadata = {
        "model_dir": dg.MetadataValue.path(str(model_dir)),
        "run_dir": dg.MetadataValue.path(str(out)),
        "start_model": str(start),
        "sft_base_model": sft_run.get("base_model", ""),
        **{k: metrics[k] for k in ("steps", "first_reward", "last_reward", "mean_reward", "mean_accuracy",
                                   "mean_tool_calls", "last_kl", "train_runtime_s", "s_per_step", "generation")},
        "resumed_from": metrics.get("resumed_from") or "",
        "reused_finished_run": bool(metrics.get("reused")),
        "reward_means": dg.MetadataValue.json(metrics["reward_means"]),
        "curves_data": dg.MetadataValue.json(metrics["curves"]),
        "data": dg.MetadataValue.json(metrics["data"]),
        "snapshot_id": snap.id,
        "curves": dg.MetadataValue.md(_md_image((out / "curves.png").read_bytes(),
                                                "GRPO reward, accuracy, tool calls, KL")),
        "curves_png": dg.MetadataValue.path(str(out / "curves.png")),
    }
    sample = _last_rollout(out / "rollouts.jsonl")
    if sample is not None:
        metadata["sample_rollout"] = dg.MetadataValue.md(
            f"step {sample['step']}, question `{sample['id']}`, answer {sample['answer']!r}\n\n"
            + _sample_md(sample["completion"] if isinstance(sample["completion"], list) else
                         [{"role": "assistant", "content": sample["completion"]}]))
    yield dg.Output(str(model_dir), metadata=metadata)


def _last_rollout(path: Path) -> dict | None:
    if not path.is_file():
        return None
    last = None
    with open(path) as fh:
        for line in fh:
            last = line
    return json.loads(last) if last else None


class EvaluationConfig(dg.Config):
    questions_dir: str = ""
    """hard_queries folder (eval split); empty: <data dir>/datasets/hard_queries."""
    eval_questions: int = 8
    """Eval questions used (0: all)."""
    report_tasks_dir: str = ""
    """report_tasks folder (eval split); empty: the latest `report_tasks` materialization's, if any."""
    eval_report_tasks: int = 2
    """Eval report tasks each model writes (0: none)."""
    base_model: str = ""
    """Empty: the SFT run's base model."""
    sft_model_dir: str = ""
    """Empty: the latest `sft_model` materialization's model folder."""
    grpo_model_dir: str = ""
    """Empty: the latest `grpo_model` materialization's model folder."""
    max_turns: int = 6
    max_tokens: int = 96
    report_max_tokens: int = 256
    backend: str = "transformers"
    num_threads: int = 0
    output_dir: str = ""
    """Empty: <data dir>/eval."""


@dg.asset(
    deps=[sft_model, grpo_model],
    group_name="training",
    kinds={"json"},
    check_specs=[dg.AssetCheckSpec("eval_never_trained_on", asset="evaluation", blocking=True,
                                   description=EVAL_NEVER_TRAINED_ON)],
    description="Base vs SFT vs GRPO on the eval split through the agent loop in the simulated web: accuracy, F1, "
                "tool calls per question, format validity, report-task scores; a table and plots here, the full "
                "results (every trajectory's answer and grades) in a JSON file.",
)
def evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, simulator: SimulatorResource,
               llm: LLMResource):
    from training.evaluate import EvalConfig, evaluate, leakage, plot_results, results_table_md, write_results
    from training.grpo import read_report_tasks
    from training.traces import read_questions

    sft_dir = _sft_dir(context, config.sft_model_dir)
    grpo_dir = Path(config.grpo_model_dir) if config.grpo_model_dir else _latest_path(
        context, dg.AssetKey("grpo_model"), "model_dir")
    if grpo_dir is None or not grpo_dir.is_dir():
        raise dg.Failure(f"no GRPO model folder ({grpo_dir}): materialize grpo_model first or set grpo_model_dir")
    sft_run, provenance = _sft_run(sft_dir)
    base = config.base_model or sft_run.get("base_model") or "embedded"
    qdir = _dataset_dir(config.questions_dir, "hard_queries")
    questions = read_questions(qdir, "eval")[: config.eval_questions or None]
    if not questions:
        raise dg.Failure(f"no eval questions in {qdir}")
    reports_dir = Path(config.report_tasks_dir) if config.report_tasks_dir else _latest_path(
        context, dg.AssetKey("report_tasks"), "path")
    reports = (read_report_tasks(reports_dir, "eval")[: config.eval_report_tasks]
               if reports_dir and config.eval_report_tasks else [])

    # what was trained on: the SFT traces' questions and the GRPO run's data
    trained_ids, trained_texts = [], []
    traces = Path(sft_run.get("dataset", "")) / "data" / "train.parquet"
    if traces.is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(traces, columns=["question_id", "question"]).to_pylist()
        trained_ids += [r["question_id"] for r in table]
        trained_texts += [r["question"] for r in table]
    train_ids_file = grpo_dir.parent / "train_ids.json"
    grpo_ids = json.loads(train_ids_file.read_text()) if train_ids_file.is_file() else {}
    trained_ids += grpo_ids.get("questions", []) + grpo_ids.get("report_tasks", [])
    by_id = {str(r["id"]): r for r in read_questions(qdir, "train")}
    trained_texts += [by_id[i]["question"] for i in grpo_ids.get("questions", []) if i in by_id]
    eval_rows = questions + [{"id": t["task_id"], "question": "", "split": t["split"]} for t in reports]
    leak = leakage(eval_rows, trained_ids, trained_texts)
    leak["sources"] = {"sft_traces": str(traces) if traces.is_file() else "", "grpo_train_ids": str(train_ids_file)
                       if train_ids_file.is_file() else ""}
    yield dg.AssetCheckResult(check_name="eval_never_trained_on", passed=leak["passed"] and bool(
        leak["sources"]["grpo_train_ids"]), metadata={k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict))
                                                          else v) for k, v in leak.items()})
    if not leak["passed"]:
        raise dg.Failure(f"eval questions were trained on: {leak['overlap_by_id'] or leak['overlap_by_text']}")

    snap = _snapshot(simulator, provenance.get("snapshot_id", "") or (questions[0].get("snapshot_id") or ""))
    eval_config = EvalConfig(max_turns=config.max_turns, max_tokens=config.max_tokens,
                             report_max_tokens=config.report_max_tokens, backend=config.backend,
                             num_threads=config.num_threads, env=provenance.get("env", {}))
    models = {"base": base, "sft": str(sft_dir), "grpo": str(grpo_dir)}
    context.log.info(f"evaluating {models} on {len(questions)} eval questions and {len(reports)} report tasks")
    results = evaluate(models, questions, str(snap.path), eval_config, report_tasks=reports,
                       data_dir=llm.data_dir or None, log=context.log.info)
    results["leakage_check"] = leak
    out_dir = Path(config.output_dir) if config.output_dir else websim_config.data_dir() / "eval"
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{context.run_id[:8]}"
    path = write_results(results, out_dir / f"evaluation-{stamp}.json")
    png = plot_results(results, path.with_suffix(".png"))
    table = results_table_md(results)
    context.log.info("\n" + table)
    metadata = {
        "results": dg.MetadataValue.path(str(path)),
        "table": dg.MetadataValue.md(table),
        "plots": dg.MetadataValue.md(_md_image(png.read_bytes(), "base vs SFT vs GRPO")),
        "plots_png": dg.MetadataValue.path(str(png)),
        "questions": len(questions),
        "report_tasks": len(reports),
        "snapshot_id": snap.id,
        "models": dg.MetadataValue.json(models),
    }
    for name, m in results["models"].items():
        for key in ("accuracy", "f1", "tool_calls_per_question", "format_validity"):
            metadata[f"{name}_{key}"] = m[key]
        if m.get("report"):
            metadata[f"{name}_report_score"] = m["report"].get("mean_score") or 0.0
    yield dg.MaterializeResult(metadata=metadata)
