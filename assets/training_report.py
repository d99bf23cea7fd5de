"""The second training round, aimed at the last step of research, writing the report: `report_sft_model` (SFT on
report tasks' verified answers, from the search-GRPO model) and `report_grpo_model` (GRPO with the report verifiers
as rewards, search prompts mixed in so search is not forgotten). Same run folders, resume, Pipes and metadata as
the first round (`assets.training`); `skip: true` on either passes the previous stage's model on unchanged, and the
evaluation leaves a skipped stage out.
"""

from pathlib import Path

import dagster as dg

from assets.handoffs import json_metadata, latest_path, md_image, model_dir
from assets.llm_resource import LLMResource
from assets.resources import PathsResource
from assets.simulator import SimulatorResource
from assets.training import GRPOModelConfig, grpo_model, loss_inline, run_config_class, run_trainer, train_grpo
from training.sft import SFTRunConfig

REPORT_REWARD_SANITY = "The rewards tell right from wrong before training: the search check of grpo_model, and on " \
                       "report tasks the gold answer scores >= 0.8 while shuffled, fabricated and over-cited answers " \
                       "score below it (citing every fragment earns <= 0.5 citation reward)."


class _ReportSFTInputs(dg.Config):
    skip: bool = False
    """Skip this round: the value is the GRPO model, unchanged."""
    start_model_dir: str = ""
    """The starting model; empty: the latest `grpo_model` materialization's model folder."""
    report_tasks_dir: str = ""
    """report_tasks folder (train split); empty: the latest `report_tasks` materialization's."""
    min_score: float = 0.8
    """A teacher reference becomes a trace only when the mean of its verifier scores is at least this."""
    references: bool = True
    """Use the teacher references that pass `min_score` besides the deterministic golds."""
    max_kind_share: float = 0.5
    """No task kind is more than this share of the report traces (where other kinds exist): reorder golds need no
    teacher and outnumber the rest; trained on them alone the demo's model answered every task with fragment ids."""
    replay_fraction: float = 0.5
    """Share of the examples that are the first round's search traces (replayed so that search is not forgotten:
    report golds alone left the demo's model making no tool call); 0: report traces only."""
    search_traces_dir: str = ""
    """The search traces replayed; empty: the latest `sft_traces` materialization's."""
    run_name: str = ""


ReportSFTModelConfig = run_config_class(
    "ReportSFTModelConfig", SFTRunConfig,
    ("dataset", "output_dir", "data_dir", "base_model", "sources", "replay_dataset", "replay_fraction"),
    base=_ReportSFTInputs)


def passed_on(start: Path, stage: str) -> dg.Output:
    return dg.Output(str(start), metadata={"model_dir": dg.MetadataValue.path(str(start)), "skipped": True,
                                           "start_model": str(start), "stage": stage})


@dg.asset(
    deps=[grpo_model],
    group_name="training",
    kinds={"pytorch"},
    description="The agent after the report-writing SFT round: TRL SFT on the report tasks' deterministic golds "
                "(reorder order, extractive key-point reports and notes, each sentence citing its chunk) and the "
                "teacher references whose verifier scores pass min_score, starting from the search-GRPO model. "
                "Value: the model folder. Metadata: traces by source and kind, losses, loss curve.",
)
def report_sft_model(context: dg.AssetExecutionContext, config: ReportSFTModelConfig, llm: LLMResource,
                     paths: PathsResource) -> dg.Output[str]:
    from training.sft import sft_run_dir
    from training.traces_report import report_sft_data, write_report_traces

    start = model_dir(context.instance, config.start_model_dir, grpo_model.key, "GRPO", "start_model_dir")
    if config.skip:
        return passed_on(start, "report_sft")
    folder = Path(config.report_tasks_dir) if config.report_tasks_dir else latest_path(
        context.instance, dg.AssetKey("report_tasks"), "path")
    if folder is None:
        raise dg.Failure("no report_tasks dataset: materialize report_tasks first or set report_tasks_dir")
    sources = ("gold", "reference") if config.references else ("gold",)
    traces, counts, provenance = report_sft_data(folder, start, min_score=config.min_score, sources=sources,
                                                 max_kind_share=config.max_kind_share)
    if not traces:
        raise dg.Failure(f"no report task of {folder} has an answer that passes its verifiers: {counts}")
    settings = {f.name: getattr(config, f.name) for f in SFTRunConfig.setting_fields() if hasattr(config, f.name)}
    out = sft_run_dir(paths.models_dir("report_sft"), settings, provenance, config.run_name)
    export = write_report_traces(traces, out / "traces", provenance)
    replay = search_traces(context, config)
    run = SFTRunConfig(dataset=export["path"], output_dir=str(out), base_model=str(start), data_dir=llm.data_dir or "",
                       sources=list(sources), num_threads=config.num_threads, retrain=config.retrain,
                       replay_dataset=str(replay or ""), **settings)
    context.log.info(f"report SFT from {start} on {len(traces)} traces ({counts['by_source']}), search traces "
                     f"{replay or 'none'} replayed at {config.replay_fraction:.0%}, into {out}")
    metrics = run_trainer(context, "training.sft", run, out)
    return dg.Output(str(out / "model"), metadata={
        "model_dir": dg.MetadataValue.path(str(out / "model")), "run_dir": dg.MetadataValue.path(str(out)),
        "start_model": str(start), "skipped": False, "stage": "report_sft",
        "traces": dg.MetadataValue.path(export["path"]), "dagster/row_count": len(traces),
        **{f"traces_{k}": v for k, v in counts["by_source"].items()},
        **json_metadata({"traces_by_kind": counts["by_kind"], "rejected": counts["rejected"], "data": metrics["data"]}),
        **{k: metrics[k] for k in ("steps", "train_loss", "first_loss", "last_loss", "train_runtime_s", "s_per_step",
                                   "loss_token_share")},
        **{k: metrics[k] for k in ("start_loss", "end_loss") if metrics.get(k) is not None},
        "loss_curve": dg.MetadataValue.md(md_image((out / "loss_curve.png").read_bytes(), "report SFT loss")),
        "loss_inline": loss_inline(out, "report SFT loss"),
    })


def search_traces(context: dg.AssetExecutionContext, config: ReportSFTModelConfig) -> Path | None:
    """The search traces the report round replays (None when it replays none, or none exist: logged)."""
    if config.replay_fraction <= 0:
        return None
    folder = Path(config.search_traces_dir) if config.search_traces_dir else latest_path(
        context.instance, dg.AssetKey("sft_traces"), "path")
    if folder is None or not folder.is_dir():
        context.log.warning(f"no search traces to replay ({folder or 'sft_traces never materialized'}): the report "
                            "round trains on report traces only and may forget search")
        return None
    return folder


class ReportGRPOModelConfig(GRPOModelConfig):
    skip: bool = False
    """Skip this round: the value is the report-SFT model, unchanged."""
    report_fraction: float = 0.75
    """Share of report tasks among the prompts; the rest are search questions, so search is not forgotten."""


@dg.asset(
    deps=[report_sft_model],
    group_name="training",
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec("reward_sanity", asset="report_grpo_model", blocking=True,
                                   description=REPORT_REWARD_SANITY)],
    description="The agent after the report-writing GRPO round: TRL GRPO with the report verifiers as rewards "
                "(order, key-point coverage, citation precision against the fragments, distractors left out, "
                "format) on train report tasks, search questions mixed in at 1 - report_fraction, starting from "
                "the report-SFT model. Value: the model folder. Metadata: reward curves.",
)
def report_grpo_model(context: dg.AssetExecutionContext, config: ReportGRPOModelConfig,
                      simulator: SimulatorResource, llm: LLMResource, paths: PathsResource):
    start = model_dir(context.instance, config.sft_model_dir, report_sft_model.key, "report SFT", "sft_model_dir")
    if config.skip:
        yield dg.AssetCheckResult(check_name="reward_sanity", passed=True, metadata={"skipped": True})
        yield passed_on(start, "report_grpo")
        return
    yield from train_grpo(context, config, start, simulator, llm, paths, "report_grpo", "report_grpo_model")
