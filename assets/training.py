"""Training assets: `sft_traces` (tool-calling chats for SFT) and `sft_model` (TRL SFT, with a before/after check)."""


import base64
import json
import os
import sys
from pathlib import Path

import dagster as dg

from assets.llm_resource import LLMResource
from assets.questions import hard_queries
from assets.simulator import SimulatorResource
from pipeline import config as websim_config
from training.traces import TRACE_CHECKS


class SFTTracesConfig(dg.Config):
    questions_dir: str = ""
    """The hard_queries dataset folder; empty: <data dir>/datasets/hard_queries."""
    output_dir: str = ""
    """Empty: <data dir>/datasets/sft_traces."""
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
    max_steps: int = 8
    """Tool calls per rollout before tools refuse."""
    search_k: int = 3
    snippet_chars: int = 120
    max_chars: int = 500
    """Page text one view shows (characters)."""
    max_links: int = 8
    replay_sample: int = 20
    """Demonstrations re-run for the replay check (0: all)."""


def _md_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _snapshot(simulator: SimulatorResource, snapshot_id: str):
    """The snapshot a dataset was made on when it is still there, else the simulator's (latest or pinned) one."""
    from pipeline.simulator.snapshot import resolve_snapshot

    if snapshot_id and (simulator.root() / snapshot_id).is_dir():
        return resolve_snapshot(snapshot_id, simulator.root())
    return simulator.get_snapshot()


def _dataset_dir(configured: str, name: str) -> Path:
    return Path(configured) if configured else websim_config.data_dir() / "datasets" / name


def _sample_md(messages: list[dict], limit: int = 2500) -> str:
    lines = []
    for m in messages:
        calls = "".join(f"\n→ {c['function']['name']}({json.dumps(c['function']['arguments'])})"
                        for c in m.get("tool_calls") or [])
        lines.append(f"[{m['role']}] {m.get('content') or ''}{calls}")
    text = "\n\n".join(lines)
    return f"```\n{text[:limit]}{' ...' if len(text) > limit else ''}\n```"


@dg.asset(
    deps=[hard_queries],
    group_name="training",
    kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec(name, asset="sft_traces", description=promise)
                 for name, promise in TRACE_CHECKS.items()],
    description="Tool-calling chats of the search agent for SFT (TRL conversational format, messages + tools): "
                "navigation demonstrations executed on the simulator along each train question's evidence chain, "
                "and teacher rollouts kept only when their answer matches gold. Train split only.",
)
def sft_traces(context: dg.AssetExecutionContext, config: SFTTracesConfig, llm: LLMResource,
               simulator: SimulatorResource) -> dg.MaterializeResult:
    from training.agent_loop import AgentConfig
    from training.traces import TeacherConfig, TracesConfig, make_sft_traces, read_questions

    qdir = _dataset_dir(config.questions_dir, "hard_queries")
    rows = read_questions(qdir, "train")[: config.max_questions or None]
    snapshot_ids = sorted({r.get("snapshot_id") or "" for r in rows} - {""})
    snap = _snapshot(simulator, snapshot_ids[0] if len(snapshot_ids) == 1 else "")
    if snapshot_ids and snap.id not in snapshot_ids:
        context.log.warning(f"questions are of snapshot(s) {snapshot_ids}; serving {snap.id}")
    env = dict(max_steps=config.max_steps, search_k=config.search_k, snippet_chars=config.snippet_chars,
               max_chars=config.max_chars, max_links=config.max_links)
    context.log.info(f"{len(rows)} train questions from {qdir}; snapshot {snap.id}; env {env}")
    teacher = TeacherConfig(tries=config.teacher_tries, seed=config.seed, temperature=config.teacher_temperature,
                            min_f1=config.teacher_min_f1,
                            agent=AgentConfig(max_turns=config.max_turns, max_tokens=config.max_tokens))
    run = make_sft_traces(
        rows, str(snap.path), _dataset_dir(config.output_dir, "sft_traces"),
        config=TracesConfig(demonstrations=config.demonstrations, teacher=config.teacher,
                            teacher_questions=config.teacher_questions, teacher_config=teacher, env=env,
                            replay_sample=config.replay_sample),
        teacher=llm.get_backend() if config.teacher else None, teacher_model=llm.model_id() if config.teacher else "",
        snapshot_id=snap.id, run_tag=context.run_id[:8], log=context.log.info,
        provenance={"questions_dir": str(qdir)})
    checks = [dg.AssetCheckResult(check_name=name, passed=bad == 0, metadata={
        "violations": bad, "examples": dg.MetadataValue.json(examples),
        **({"replayed": run.replayed} if name == "demonstrations_replay" else {})})
        for name, (bad, examples) in run.checks.items()]
    by_source = run.stats["by_source"]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(run.export["path"]),
        "dagster/row_count": len(run.rows),
        "traces_demonstration": by_source["demonstration"],
        "traces_teacher": by_source["teacher"],
        "questions": len(rows),
        "rejections": dg.MetadataValue.json(run.stats["rejections"]),
        "teacher_model": run.provenance["teacher_model"],
        "teacher_summary": dg.MetadataValue.json(run.stats["teacher_summary"]),
        "snapshot_id": snap.id,
        "env": dg.MetadataValue.json(env),
        "sample_trace": dg.MetadataValue.md(_sample_md(run.rows[0]["messages"]) if run.rows else "(no traces)"),
        "dataset_card": dg.MetadataValue.path(str(Path(run.export["path"]) / "README.md")),
        "llm_usage": dg.MetadataValue.json(llm.usage() if config.teacher else {}),
    }, check_results=checks)


class SFTModelConfig(dg.Config):
    traces_dir: str = ""
    """The sft_traces folder; empty: the path of its latest materialization, else <data dir>/datasets/sft_traces."""
    questions_dir: str = ""
    """hard_queries folder for the before/after check (eval split); empty: <data dir>/datasets/hard_queries."""
    base_model: str = "embedded"
    run_name: str = ""
    """Folder name under <data dir>/models/sft; empty: derived from the config and the traces, so that a crashed
    run of the same config resumes from its last checkpoint."""
    epochs: float = 1.0
    max_steps: int = 8
    learning_rate: float = 3e-4
    lr_scheduler_type: str = "constant"
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_length: int = 2048
    max_examples: int = 0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    bf16: bool = False
    num_threads: int = 1
    save_steps: int = 4
    seed: int = 0
    retrain: bool = False
    eval_questions: int = 8
    """Eval-split questions for the before/after check (0: skip it)."""
    eval_max_turns: int = 6
    eval_max_tokens: int = 96
    eval_backend: str = "transformers"


def _traces_path(context: dg.AssetExecutionContext, configured: str) -> Path:
    if configured:
        return Path(configured)
    event = context.instance.get_latest_materialization_event(sft_traces.key)
    path = event.asset_materialization.metadata.get("path") if event and event.asset_materialization else None
    return Path(path.value) if path is not None else _dataset_dir("", "sft_traces")


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
              llm: LLMResource) -> dg.Output[str]:
    from training.agent_loop import AgentConfig, evaluate_model
    from training.env import SearchEnv
    from training.sft import SFTRunConfig, run_dir
    from training.traces import read_questions

    traces = _traces_path(context, config.traces_dir)
    provenance = json.loads((traces / "provenance.json").read_text())
    data_dir = llm.data_dir or None
    settings = {k: v for k, v in config.model_dump().items() if not k.startswith("eval_") and k not in (
        "traces_dir", "questions_dir", "run_name", "retrain", "num_threads")}
    out = run_dir(websim_config.data_dir() / "models" / "sft", settings, provenance, config.run_name)
    out.mkdir(parents=True, exist_ok=True)
    run = SFTRunConfig(dataset=str(traces), output_dir=str(out), data_dir=data_dir or "", retrain=config.retrain,
                       num_threads=config.num_threads, **settings)
    config_path = out / "run_config.json"
    config_path.write_text(json.dumps(run.to_dict(), indent=2) + "\n")
    context.log.info(f"SFT on {traces} into {out}")
    dg.PipesSubprocessClient(cwd=str(websim_config.REPO_ROOT)).run(
        context=context, command=[sys.executable, "-m", "training.sft", "--config", str(config_path)],
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(websim_config.REPO_ROOT), os.environ.get("PYTHONPATH")])),
             "HF_HUB_OFFLINE": "1"})
    metrics = json.loads((out / "metrics.json").read_text())
    model_dir = out / "model"
    metadata = {
        "model_dir": dg.MetadataValue.path(str(model_dir)),  # "path" is the IO manager's (where the value is)
        "run_dir": dg.MetadataValue.path(str(out)),
        **{k: metrics[k] for k in ("base_model", "steps", "train_loss", "first_loss", "last_loss", "train_runtime_s",
                                   "s_per_step", "loss_token_share")},
        "resumed_from": metrics.get("resumed_from") or "",
        "reused_finished_run": bool(metrics.get("reused")),
        "data": dg.MetadataValue.json(metrics["data"]),
        "loss_curve": dg.MetadataValue.md(_md_image((out / "loss_curve.png").read_bytes(), "SFT loss")),
        "loss_curve_png": dg.MetadataValue.path(str(out / "loss_curve.png")),
    }
    if config.eval_questions:
        questions = read_questions(_dataset_dir(config.questions_dir, "hard_queries"), "eval")[: config.eval_questions]
        if any(q.get("split") != "eval" for q in questions):
            raise ValueError("the before/after check must use eval-split questions only")
        snap = _snapshot(simulator, provenance.get("snapshot_id", ""))
        make_env = SearchEnv.factory(str(snap.path), session="sft-eval", **provenance.get("env", {}))
        agent = AgentConfig(max_turns=config.eval_max_turns, max_tokens=config.eval_max_tokens)
        results = {}
        for name, model in (("base", metrics["base_model"]), ("sft", str(model_dir))):
            context.log.info(f"evaluating the {name} model on {len(questions)} eval questions")
            results[name], trajs = evaluate_model(model, questions, make_env, agent, backend=config.eval_backend,
                                                  data_dir=data_dir, num_threads=config.num_threads or None,
                                                  log=context.log.info)
            metadata[f"{name}_sample_rollout"] = dg.MetadataValue.md(_sample_md(trajs[0].messages))
            for key in ("valid_tool_call_rate", "exact_match", "f1", "answered_rate"):
                metadata[f"{name}_{key}"] = results[name][key]
        metadata["eval"] = dg.MetadataValue.json({"questions": len(questions), **results})
        context.log.info(f"valid tool-call rate {results['base']['valid_tool_call_rate']} (base) -> "
                         f"{results['sft']['valid_tool_call_rate']} (SFT)")
    return dg.Output(str(model_dir), metadata=metadata)
