"""Evaluation assets: `evaluation` (every training stage, base -> sft -> grpo -> report_sft -> report_grpo, on the same
held-out questions, navigation tasks and report tasks, with a no-leakage check first)."""

import time
from pathlib import Path

import dagster as dg

from assets.handoffs import json_metadata, latest_path, md_image, model_dir, snapshot_of
from assets.llm_resource import LLMResource
from assets.plots import inline_bars
from assets.resources import PathsResource
from assets.simulator import SimulatorResource
from assets.training import grpo_model, sft_model
from assets.training_report import report_grpo_model, report_sft_model

EVAL_NEVER_TRAINED_ON = "No evaluation question, navigation task or report task was trained on: none of their ids, and " \
                        "no question's normalised text, is in any stage's SFT traces or GRPO training data; all are " \
                        "eval-split."
STAGES = (("sft", sft_model), ("grpo", grpo_model), ("report_sft", report_sft_model),
          ("report_grpo", report_grpo_model))
"""The trained stages in training order (`base` is the first SFT run's starting model)."""


class EvaluationConfig(dg.Config):
    questions_dir: str = ""
    """hard_queries folder (eval split); empty: `<data dir>/datasets/hard_queries`."""
    eval_questions: int = 100
    """Eval questions used (0: all)."""
    report_tasks_dir: str = ""
    """report_tasks folder (eval split); empty: the latest `report_tasks` materialization's, if any."""
    eval_report_tasks: int = 30
    """Eval report tasks each model writes (0: all; -1: none), taken round-robin across the task kinds."""
    navigation_dir: str = ""
    """navigation_tasks folder (eval split); empty: the latest `navigation_tasks` materialization's, if any."""
    eval_navigation_tasks: int = 100
    """Eval navigation tasks each model attempts (0: all; -1: none)."""
    navigation_max_turns: int = 6
    base_model: str = ""
    """Empty: the SFT run's base model."""
    sft_model_dir: str = ""
    """Empty: the latest `sft_model` materialization's model folder."""
    grpo_model_dir: str = ""
    """Empty: the latest `grpo_model` materialization's model folder."""
    report_sft_model_dir: str = ""
    """Empty: the latest `report_sft_model` materialization's model folder (none, or skipped: left out)."""
    report_grpo_model_dir: str = ""
    """Empty: the latest `report_grpo_model` materialization's model folder (none, or skipped: left out)."""
    max_turns: int = 6
    max_tokens: int = 96
    report_max_tokens: int = 256
    backend: str = "transformers"
    num_threads: int = 0
    output_dir: str = ""
    """Empty: `<data dir>/eval`."""


@dg.asset(
    deps=[sft_model, grpo_model, report_sft_model, report_grpo_model],
    group_name="training",
    kinds={"json"},
    check_specs=[dg.AssetCheckSpec("eval_never_trained_on", asset="evaluation", blocking=True,
                                   description=EVAL_NEVER_TRAINED_ON)],
    description="Every training stage (base, sft, grpo, report_sft, report_grpo; a skipped or never-trained report "
                "stage is left out) on the same eval split through the agent loop in the simulated web: accuracy, "
                "F1, tool calls, format validity, navigation success and efficiency, report-task scores, each with "
                "its count and 95% interval; a table and a plot per metric across stages here, every trajectory's "
                "answer and grades in a JSON file.",
)
def evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, simulator: SimulatorResource,
               llm: LLMResource, paths: PathsResource):
    from training.evaluate import (EvalConfig, check_never_trained_on, evaluate, plot_results, results_table_md,
                                   sft_run_of, write_results)
    from training.traces import read_questions

    stages = trained_stages(context, config)
    sft_run, provenance = sft_run_of(stages["sft"])
    qdir = paths.dataset_dir("hard_queries", config.questions_dir)
    questions = read_questions(qdir, "eval")[: config.eval_questions or None]
    if not questions:
        raise dg.Failure(f"no eval questions in {qdir}")
    reports, navigation = report_eval_rows(context.instance, config), navigation_eval_rows(context.instance, config)
    sft_runs = [sft_run_of(stages[s])[0] for s in ("sft", "report_sft") if s in stages]
    grpo_dirs = [stages[s] for s in ("grpo", "report_grpo") if s in stages]
    leak = check_never_trained_on(list(questions) + navigation, reports, sft_runs, grpo_dirs, qdir)
    yield dg.AssetCheckResult(check_name="eval_never_trained_on", metadata=json_metadata(leak),
                              passed=leak["passed"] and bool(leak["sources"]["grpo_train_ids"]))
    if not leak["passed"]:
        raise dg.Failure(f"eval questions were trained on: {leak['overlap_by_id'] or leak['overlap_by_text']}")
    snap = snapshot_of(simulator, provenance.get("snapshot_id", "") or (questions[0].get("snapshot_id") or ""))
    models = {"base": config.base_model or sft_run.get("base_model") or "embedded",
              **{name: str(path) for name, path in stages.items()}}
    context.log.info(f"evaluating {list(models)} on {len(questions)} eval questions, {len(navigation)} navigation "
                     f"tasks and {len(reports)} report tasks ({config.backend})")
    results = evaluate(models, questions, str(snap.path), EvalConfig(
        max_turns=config.max_turns, max_tokens=config.max_tokens, report_max_tokens=config.report_max_tokens,
        backend=config.backend, num_threads=config.num_threads, env=provenance.get("env", {}),
        navigation_max_turns=config.navigation_max_turns), report_tasks=reports, navigation_tasks=navigation,
        data_dir=llm.data_dir or None, log=context.log.info)
    results["leakage_check"] = leak
    out_dir = paths.eval_dir(config.output_dir)
    path = write_results(results, out_dir / f"evaluation-{time.strftime('%Y%m%dT%H%M%S')}-{context.run_id[:8]}.json")
    png = plot_results(results, path.with_suffix(".png"))
    context.log.info("\n" + results_table_md(results))
    yield dg.MaterializeResult(metadata={
        "results": dg.MetadataValue.path(str(path)), "table": results_table(results),
        "table_md": dg.MetadataValue.md(results_table_md(results)),
        "accuracy_by_stage": inline_bars([m["accuracy"] for m in results["models"].values()], "accuracy per stage",
                                         ", ".join(f"{n} {m['accuracy']:.2f}" for n, m in results["models"].items())),
        "plots": dg.MetadataValue.md(md_image(png.read_bytes(), "every metric per stage")),
        "plots_png": dg.MetadataValue.path(str(png)), "questions": len(questions), "report_tasks": len(reports),
        "navigation_tasks": len(navigation), "snapshot_id": snap.id, "models": dg.MetadataValue.json(models),
        **model_figures(results)})


def trained_stages(context: dg.AssetExecutionContext, config: EvaluationConfig) -> dict[str, Path]:
    """Stage name -> model folder: sft and grpo must exist; a report stage that was never materialized, or was
    skipped (its metadata says so), is left out and logged."""
    found: dict[str, Path] = {}
    for name, asset in STAGES:
        configured = getattr(config, f"{name}_model_dir")
        if name in ("sft", "grpo"):
            found[name] = model_dir(context.instance, configured, asset.key, name.upper(), f"{name}_model_dir")
            continue
        event = context.instance.get_latest_materialization_event(asset.key)
        metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
        skipped = bool(getattr(metadata.get("skipped"), "value", False))
        path = Path(configured) if configured else (
            Path(metadata["model_dir"].value) if "model_dir" in metadata and not skipped else None)
        if path is None or not path.is_dir():
            context.log.info(f"stage {name}: {'skipped' if skipped else 'no model'}; left out of the evaluation")
            continue
        found[name] = path
    return found


def report_eval_rows(instance: dg.DagsterInstance, config: EvaluationConfig) -> list[dict]:
    """Eval-split report tasks ([] when there is no report-task dataset, or none wanted)."""
    from training.evaluate import take_by_kind
    from training.grpo import read_report_tasks

    folder = Path(config.report_tasks_dir) if config.report_tasks_dir else latest_path(
        instance, dg.AssetKey("report_tasks"), "path")
    if folder is None or config.eval_report_tasks < 0:
        return []
    return take_by_kind(read_report_tasks(folder, "eval"), config.eval_report_tasks)


def navigation_eval_rows(instance: dg.DagsterInstance, config: EvaluationConfig) -> list[dict]:
    """Eval-split navigation tasks ([] when there is no navigation dataset, or none wanted)."""
    from pipeline.datasets.io import read_split

    folder = Path(config.navigation_dir) if config.navigation_dir else latest_path(
        instance, dg.AssetKey("navigation_tasks"), "path")
    if config.eval_navigation_tasks < 0 or folder is None:
        return []
    return read_split(folder, "eval")[: config.eval_navigation_tasks or None]


def results_table(results: dict) -> dg.TableMetadataValue:
    """The metric x stage table as a Dagster table (shown whole on the asset page): each cell the value, its 95%
    interval and its count."""
    from training.evaluate import stage_rows

    names = list(results["models"])
    records = [dg.TableRecord({"metric": label, **dict(zip(names, cells))}) for label, cells in stage_rows(results)]
    schema = dg.TableSchema(columns=[dg.TableColumn("metric", "string")] + [dg.TableColumn(n, "string") for n in names])
    return dg.MetadataValue.table(records=records, schema=schema)


def model_figures(results: dict) -> dict:
    """Every figure of the table per stage as a float (`<stage>_<metric>`), so the UI charts it across runs."""
    from training.evaluate import STAGE_METRICS, stage_metric

    out = {}
    for name, m in results["models"].items():
        for key, _, part in STAGE_METRICS:
            value, _, _ = stage_metric(m, key, part)
            if value is not None:
                prefix = {"search": "", "report": "report_", "navigation": "navigation_"}[part]
                out[f"{name}_{prefix}{key}"] = dg.MetadataValue.float(float(value))
    return out
