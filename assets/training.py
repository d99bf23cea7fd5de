"""Training assets: `sft_traces` (tool-calling chats for SFT), `sft_model` (TRL SFT, with a before/after check) and
`grpo_model` (TRL GRPO in the simulated web). The trainers run out of process through Dagster Pipes.

The trainers' settings are defined once, in their run dataclasses (`training.sft.SFTRunConfig`,
`training.grpo.GRPORunConfig`, `training.rewards.RewardConfig`): the asset config classes here are made from their
fields and defaults (`run_config_class`), and the asset passes them on unchanged.
"""

import dataclasses
import json
import typing
from pathlib import Path

import dagster as dg
from pydantic import create_model

from assets.handoffs import json_metadata, latest_path, md_image, model_dir, sample_md, snapshot_of
from assets.llm_resource import LLMResource
from assets.navigation import navigation_tasks
from assets.plots import inline_curves, legend
from assets.questions import hard_queries
from assets.resources import PathsResource
from assets.simulator import SimulatorResource
from pipeline import config as websim_config
from training.grpo import GRPORunConfig
from training.rewards import RewardConfig
from training.sft import SFTRunConfig
from training.traces import TRACE_CHECKS

REWARD_SANITY = "Rewards tell right from wrong: on a sample of train questions, a rollout answering the gold answer " \
                "scores >= 0.9 of the best total and one answering another question's answer <= 0.3, gold above " \
                "wrong on every question (checked before training; a failure stops the run)."


def run_config_class(name: str, run_cls: type, exclude: typing.Iterable[str], base: type = dg.Config,
                     rename: typing.Callable[[str], str] = lambda n: n) -> type:
    """A Dagster config class with `base`'s fields plus every field of the dataclass `run_cls` not in `exclude`,
    typed and defaulted as there (so a default is never written twice)."""
    hints = typing.get_type_hints(run_cls)
    fields = {}
    for f in dataclasses.fields(run_cls):
        if f.name not in exclude:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            fields[rename(f.name)] = (hints[f.name], default)
    return create_model(name, __base__=base, **fields)


class SFTTracesConfig(dg.Config):
    questions_dir: str = ""
    """The hard_queries dataset folder; empty: `<data dir>/datasets/hard_queries`."""
    output_dir: str = ""
    """Empty: `<data dir>/datasets/sft_traces`."""
    max_questions: int = 0
    """Train questions used at most (0: all)."""
    demonstrations: bool = True
    teacher: bool = True
    """Teacher rollouts with the `llm` resource's model (rejection-sampled against gold)."""
    teacher_questions: int = 16
    """Train questions the teacher tries (0: all); each try is a full agent rollout."""
    teacher_tries: int = 2
    teacher_temperature: float = 0.7
    teacher_min_f1: float = 0.8
    max_turns: int = 6
    max_tokens: int = 160
    seed: int = 0
    max_tool_calls: int = 8
    """Tool calls per rollout before tools refuse."""
    search_k: int = 3
    snippet_chars: int = 120
    max_chars: int = 500
    """Page text one view shows (characters)."""
    max_links: int = 8
    replay_sample: int = 20
    """Demonstrations re-run for the replay check (0: all)."""
    navigation_dir: str = ""
    """The navigation_tasks folder; empty: the latest `navigation_tasks` materialization's, if any."""
    navigation_tasks: int = 0
    """Train navigation tasks demonstrated at most (0: all; -1: none)."""
    navigation_human: bool = True
    """Human-path demonstrations (replayed Wikispeedia paths) of the navigation tasks."""
    navigation_shortest: bool = True
    """Shortest-path demonstrations of the navigation tasks."""


def navigation_train_rows(instance: dg.DagsterInstance, config: SFTTracesConfig) -> list[dict]:
    """Train-split navigation tasks for demonstrations ([] when there is no navigation dataset, or none wanted)."""
    from pipeline.datasets.io import read_split

    folder = Path(config.navigation_dir) if config.navigation_dir else latest_path(
        instance, dg.AssetKey("navigation_tasks"), "path")
    if config.navigation_tasks < 0 or folder is None:
        return []
    return read_split(folder, "train")[: config.navigation_tasks or None]


@dg.asset(
    deps=[hard_queries, navigation_tasks],
    group_name="training",
    kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec(name, asset="sft_traces", description=promise)
                 for name, promise in TRACE_CHECKS.items()],
    description="Tool-calling chats of the search agent for SFT (TRL conversational format, messages + tools): "
                "navigation demonstrations executed on the simulator along each train question's evidence chain, "
                "and teacher rollouts kept only when their answer matches gold. Train split only.",
)
def sft_traces(context: dg.AssetExecutionContext, config: SFTTracesConfig, llm: LLMResource,
               simulator: SimulatorResource, paths: PathsResource) -> dg.MaterializeResult:
    from training.agent_loop import AgentConfig
    from training.traces import TeacherConfig, TracesConfig, make_sft_traces, read_questions

    qdir = paths.dataset_dir("hard_queries", config.questions_dir)
    rows = read_questions(qdir, "train")[: config.max_questions or None]
    snapshot_ids = sorted({r.get("snapshot_id") or "" for r in rows} - {""})
    snap = snapshot_of(simulator, snapshot_ids[0] if len(snapshot_ids) == 1 else "")
    if snapshot_ids and snap.id not in snapshot_ids:
        context.log.warning(f"questions are of snapshot(s) {snapshot_ids}; serving {snap.id}")
    env = dict(max_tool_calls=config.max_tool_calls, search_k=config.search_k, snippet_chars=config.snippet_chars,
               max_chars=config.max_chars, max_links=config.max_links)
    context.log.info(f"{len(rows)} train questions from {qdir}; snapshot {snap.id}; env {env}")
    teacher = TeacherConfig(tries=config.teacher_tries, seed=config.seed, temperature=config.teacher_temperature,
                            min_f1=config.teacher_min_f1,
                            agent=AgentConfig(max_turns=config.max_turns, max_tokens=config.max_tokens))
    run = make_sft_traces(
        rows, str(snap.path), paths.dataset_dir("sft_traces", config.output_dir),
        config=TracesConfig(demonstrations=config.demonstrations, teacher=config.teacher,
                            teacher_questions=config.teacher_questions, teacher_config=teacher, env=env,
                            replay_sample=config.replay_sample, navigation_human=config.navigation_human,
                            navigation_shortest=config.navigation_shortest),
        teacher=llm.get_backend() if config.teacher else None, teacher_model=llm.model_id() if config.teacher else "",
        snapshot_id=snap.id, run_tag=context.run_id[:8], log=context.log.info,
        provenance={"questions_dir": str(qdir)}, navigation_tasks=navigation_train_rows(context.instance, config))
    checks = [dg.AssetCheckResult(check_name=name, passed=bad == 0, metadata={
        "violations": bad, "examples": dg.MetadataValue.json(examples),
        **({"replayed": run.replayed} if name == "demonstrations_replay" else {})})
        for name, (bad, examples) in run.checks.items()]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(run.export["path"]), "dagster/row_count": len(run.rows),
        **{f"traces_{s}": n for s, n in run.stats["by_source"].items()},
        "questions": len(rows),
        "rejections": dg.MetadataValue.json(run.stats["rejections"]),
        "teacher_model": run.provenance["teacher_model"], "snapshot_id": snap.id, "env": dg.MetadataValue.json(env),
        "teacher_summary": dg.MetadataValue.json(run.stats["teacher_summary"]),
        "sample_trace": dg.MetadataValue.md(sample_md(run.rows[0]["messages"]) if run.rows else "(no traces)"),
        "dataset_card": dg.MetadataValue.path(str(Path(run.export["path"]) / "README.md")),
        "llm_usage": dg.MetadataValue.json(llm.usage() if config.teacher else {}),
    }, check_results=checks)


# ---- SFT -----------------------------------------------------------------------------------------------------------

class _SFTModelInputs(dg.Config):
    traces_dir: str = ""
    """The sft_traces folder; empty: the path of its latest materialization, else `<data dir>/datasets/sft_traces`."""
    questions_dir: str = ""
    """hard_queries folder for the before/after check (eval split); empty: `<data dir>/datasets/hard_queries`."""
    run_name: str = ""
    """Folder name under `<data dir>/models/sft`; empty: derived from the settings and the traces, so that a crashed
    run of the same config resumes from its last checkpoint."""
    eval_questions: int = 8
    """Eval-split questions for the before/after check (0: skip it)."""
    eval_max_turns: int = 6
    eval_max_tokens: int = 96
    eval_backend: str = "transformers"


SFTModelConfig = run_config_class("SFTModelConfig", SFTRunConfig, ("dataset", "output_dir", "data_dir", "replay_dataset",
                                                                  "replay_fraction", "replay_sources"),
                                  base=_SFTModelInputs)


def loss_inline(run_dir: Path, title: str) -> dg.MetadataValue:
    """The training loss per logged step of a run (its `log_history.jsonl`) as an inline plot."""
    path = run_dir / "log_history.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    series = {"loss": [r["loss"] for r in rows if "loss" in r]}
    return inline_curves(series, title, legend(series))


def run_trainer(context: dg.AssetExecutionContext, module: str, run, out: Path) -> dict:
    """Write the run config into `out`, run `module`'s CLI on it through Pipes, and return the run's metrics."""
    from training.run import trainer_command, trainer_env, write_run_config

    path = write_run_config(run, out)
    dg.PipesSubprocessClient(cwd=str(websim_config.REPO_ROOT)).run(
        context=context, command=trainer_command(module, path), env=trainer_env())
    return json.loads((out / "metrics.json").read_text())


def sft_run(config, traces: Path, data_dir: str, runs: Path) -> SFTRunConfig:
    """The SFT run of an `sft_model` config on `traces`: its settings, in a folder named by them and the data."""
    from training.sft import sft_run_dir

    provenance = json.loads((traces / "provenance.json").read_text())
    # the first round has no replay settings: its runs keep their folders (and a finished one is reused)
    settings = {f.name: getattr(config, f.name) for f in SFTRunConfig.setting_fields() if hasattr(config, f.name)}
    out = sft_run_dir(runs, settings, provenance, config.run_name)
    return SFTRunConfig(dataset=str(traces), output_dir=str(out), data_dir=data_dir, retrain=config.retrain,
                        num_threads=config.num_threads, **settings)


@dg.asset(
    deps=[sft_traces],
    group_name="training",
    kinds={"pytorch"},
    description="The search agent after SFT on sft_traces (TRL SFTTrainer run out of process through Dagster "
                "Pipes; assistant-only loss; resumes a crashed run). Value: the model folder. Metadata: losses, "
                "loss curve, and the valid tool-call rate and accuracy of the base and the SFT model on eval "
                "questions through the agent loop.",
)
def sft_model(context: dg.AssetExecutionContext, config: SFTModelConfig, simulator: SimulatorResource,
              llm: LLMResource, paths: PathsResource) -> dg.Output[str]:
    from training.agent_loop import AgentConfig
    from training.evaluate import before_after
    from training.traces import read_questions

    traces = Path(config.traces_dir) if config.traces_dir else (
        latest_path(context.instance, sft_traces.key, "path") or paths.dataset_dir("sft_traces"))
    run = sft_run(config, traces, llm.data_dir or "", paths.models_dir("sft"))
    out = Path(run.output_dir)
    context.log.info(f"SFT on {traces} into {out}")
    metrics = run_trainer(context, "training.sft", run, out)
    metadata = {
        "model_dir": dg.MetadataValue.path(str(out / "model")),  # "path" is the IO manager's (where the value is)
        "run_dir": dg.MetadataValue.path(str(out)),
        **{k: metrics[k] for k in ("base_model", "steps", "train_loss", "first_loss", "last_loss", "train_runtime_s",
                                   "s_per_step", "loss_token_share")},
        # a finished run from before these two were recorded has none
        **{k: metrics[k] for k in ("start_loss", "end_loss") if metrics.get(k) is not None},
        "resumed_from": metrics.get("resumed_from") or "", "reused_finished_run": bool(metrics.get("reused")),
        "data": dg.MetadataValue.json(metrics["data"]),
        "loss_curve": dg.MetadataValue.md(md_image((out / "loss_curve.png").read_bytes(), "SFT loss")),
        "loss_curve_png": dg.MetadataValue.path(str(out / "loss_curve.png")),
        "loss_inline": loss_inline(out, "SFT loss"),
    }
    if config.eval_questions:
        qdir = paths.dataset_dir("hard_queries", config.questions_dir)
        questions = read_questions(qdir, "eval")[: config.eval_questions]
        provenance = json.loads((traces / "provenance.json").read_text())
        results, samples = before_after(
            {"base": metrics["base_model"], "sft": str(out / "model")}, questions,
            snapshot_of(simulator, provenance.get("snapshot_id", "")).path, provenance.get("env", {}),
            AgentConfig(max_turns=config.eval_max_turns, max_tokens=config.eval_max_tokens),
            backend=config.eval_backend, data_dir=llm.data_dir or None, num_threads=config.num_threads or None,
            log=context.log.info)
        for name, result in results.items():
            metadata[f"{name}_sample_rollout"] = dg.MetadataValue.md(sample_md(samples[name].messages))
            metadata.update({f"{name}_{k}": result[k] for k in ("valid_tool_call_rate", "exact_match", "f1",
                                                                 "answered_rate")})
        metadata["eval"] = dg.MetadataValue.json({"questions": len(questions), **results})
        context.log.info(f"valid tool-call rate {results['base']['valid_tool_call_rate']} (base) -> "
                         f"{results['sft']['valid_tool_call_rate']} (SFT)")
    return dg.Output(str(out / "model"), metadata=metadata)


# ---- GRPO ----------------------------------------------------------------------------------------------------------

def _reward_field(name: str) -> str:
    return name if name in ("call_slack", "cost_per_extra_call") else f"reward_{name}"


class _GRPOModelInputs(dg.Config):
    sft_model_dir: str = ""
    """The starting model; empty: the latest `sft_model` materialization's model folder."""
    questions_dir: str = ""
    """hard_queries folder (train split); empty: `<data dir>/datasets/hard_queries`."""
    report_tasks_dir: str = ""
    """report_tasks folder; empty: the latest `report_tasks` materialization's, if any."""
    navigation_tasks_dir: str = ""
    """navigation_tasks folder; empty: the latest `navigation_tasks` materialization's, if any."""
    run_name: str = ""
    """Folder under `<data dir>/models/grpo`; empty: a hash of the settings and the data, so a crash resumes."""
    sanity_sample: int = 32


_GRPOWithRewards = run_config_class("_GRPOWithRewards", RewardConfig, (), base=_GRPOModelInputs,
                                    rename=_reward_field)
GRPOModelConfig = run_config_class(
    "GRPOModelConfig", GRPORunConfig, set(GRPORunConfig.PLUMBING) - {"num_threads", "retrain"},
    base=_GRPOWithRewards)


def grpo_run(config, start: Path, qdir: Path, reports: Path | None, snap, llm: LLMResource,
             env: dict, runs: Path, navigation: Path | None = None, prefix: str = "grpo") -> GRPORunConfig:
    """The GRPO run of a `grpo_model` config: its settings and rewards, in a folder named by them and the data."""
    from training.grpo import grpo_run_dir

    rewards = {f.name: getattr(config, _reward_field(f.name)) for f in dataclasses.fields(RewardConfig)}
    settings = {f.name: getattr(config, f.name) for f in GRPORunConfig.setting_fields()}
    out = grpo_run_dir(runs, settings, rewards, start, qdir, reports, snap.id, config.run_name,
                       navigation_tasks=navigation, prefix=prefix)
    return GRPORunConfig(questions=str(qdir), snapshot=str(snap.path), output_dir=str(out), model=str(start),
                         data_dir=llm.data_dir or "", report_tasks=str(reports or ""),
                         navigation_tasks=str(navigation or ""), rewards=rewards,
                         judge_backend=llm.backend_name, judge_model=llm.model or "embedded", judge_base_url=llm.base_url,
                         env=env, num_threads=config.num_threads, retrain=config.retrain, **settings)


def task_folder(instance: dg.DagsterInstance, configured: str, asset: str, wanted: bool) -> Path | None:
    """A task dataset folder: the configured one, else the latest `asset` materialization's when `wanted`."""
    if configured:
        return Path(configured)
    return latest_path(instance, dg.AssetKey(asset), "path") if wanted else None


def train_grpo(context: dg.AssetExecutionContext, config, start: Path, simulator: SimulatorResource,
               llm: LLMResource, paths: PathsResource, runs: str, check_asset: str):
    """The body of a GRPO asset (`grpo_model`, `report_grpo_model`): the reward sanity check first (search
    rewards, and report rewards when report tasks are mixed in), then the run through Pipes; yields the check
    and the model folder with its curves."""
    from training.evaluate import sft_run_of
    from training.grpo import last_rollout
    from training.rewards import reward_sanity
    from training.rewards_report import report_reward_sanity
    from training.traces import read_questions

    sft, provenance = sft_run_of(start)
    qdir = paths.dataset_dir("hard_queries", config.questions_dir)
    reports = task_folder(context.instance, config.report_tasks_dir, "report_tasks", bool(config.report_fraction))
    navigation = task_folder(context.instance, config.navigation_tasks_dir, "navigation_tasks",
                             bool(config.navigation_fraction))
    rewards = RewardConfig(**{f.name: getattr(config, _reward_field(f.name)) for f in dataclasses.fields(RewardConfig)})
    sanity = reward_sanity(read_questions(qdir, "train"), rewards, sample=config.sanity_sample, seed=config.seed)
    if reports is not None and config.report_fraction:
        from pipeline.datasets.io import read_split

        sanity["report"] = report_reward_sanity(read_split(reports, "train"), sample=config.sanity_sample,
                                                seed=config.seed)
        sanity["passed"] = sanity["passed"] and sanity["report"]["passed"]
    yield dg.AssetCheckResult(check_name="reward_sanity", asset_key=dg.AssetKey(check_asset),
                              passed=sanity["passed"], metadata=json_metadata(sanity))
    if not sanity["passed"]:
        raise dg.Failure(f"reward sanity failed (gold {sanity['mean_gold']}, random {sanity['mean_random']}"
                         f"{', report: ' + str(sanity['report']['mean_total']) if 'report' in sanity else ''}): "
                         "not training on a reward that cannot tell right from wrong")
    snap = snapshot_of(simulator, provenance.get("snapshot_id", ""))
    run = grpo_run(config, start, qdir, reports, snap, llm, provenance.get("env", {}), paths.models_dir(runs),
                   navigation, prefix=runs.replace("_", "-"))
    out = Path(run.output_dir)
    context.log.info(f"GRPO from {start} on {qdir} (snapshot {snap.id}; report tasks {reports}, navigation tasks "
                     f"{navigation}) into {out}")
    metrics = run_trainer(context, "training.grpo", run, out)
    metadata = {
        "model_dir": dg.MetadataValue.path(str(out / "model")), "run_dir": dg.MetadataValue.path(str(out)),
        "start_model": str(start), "sft_base_model": sft.get("base_model", ""),
        **{k: metrics[k] for k in ("steps", "first_reward", "last_reward", "mean_reward", "mean_accuracy",
                                   "mean_tool_calls", "last_kl", "train_runtime_s", "s_per_step", "generation")},
        "resumed_from": metrics.get("resumed_from") or "", "reused_finished_run": bool(metrics.get("reused")),
        **json_metadata({k: metrics[k] for k in ("reward_means", "data")}),
        "curves_data": dg.MetadataValue.json(metrics["curves"]), "snapshot_id": snap.id,
        "curves": dg.MetadataValue.md(md_image((out / "curves.png").read_bytes(),
                                               "GRPO reward, accuracy, tool calls, KL")),
        "curves_png": dg.MetadataValue.path(str(out / "curves.png")),
        "curves_inline": inline_curves(rewards_seen := {k: [v for _, v in metrics["curves"].get(k, [])]
                                                         for k in ("reward", "accuracy")},
                                       "GRPO reward and accuracy per step", legend(rewards_seen)),
    }
    if (sample := last_rollout(out / "rollouts.jsonl")) is not None:
        metadata["sample_rollout"] = dg.MetadataValue.md(
            f"step {sample['step']}, question `{sample['id']}`, answer {sample['answer']!r}\n\n"
            + sample_md(sample["completion"] if isinstance(sample["completion"], list) else
                        [{"role": "assistant", "content": sample["completion"]}]))
    yield dg.Output(str(out / "model"), metadata=metadata)


@dg.asset(
    deps=[sft_model],
    group_name="training",
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec("reward_sanity", asset="grpo_model", blocking=True, description=REWARD_SANITY)],
    description="The search agent after GRPO in the simulated web (TRL GRPOTrainer, environment_factory=SearchEnv, "
                "verifier rewards), starting from the SFT model, on train-split questions (plus navigation and "
                "report tasks by config). Run out of process through Dagster Pipes; resumes from its last "
                "checkpoint. Value: the model folder. Metadata: reward, accuracy, tool-call frequency and KL curves.",
)
def grpo_model(context: dg.AssetExecutionContext, config: GRPOModelConfig, simulator: SimulatorResource,
               llm: LLMResource, paths: PathsResource):
    start = model_dir(context.instance, config.sft_model_dir, sft_model.key, "SFT", "sft_model_dir")
    yield from train_grpo(context, config, start, simulator, llm, paths, "grpo", "grpo_model")
