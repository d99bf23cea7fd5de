"""Supervised fine-tuning of the search agent on `sft_traces` with TRL's `SFTTrainer`.

    python -m training.sft --config run.json        # SFTRunConfig fields as JSON
    main(SFTRunConfig(dataset=..., output_dir=...))  # the same, programmatically

One run owns one folder (`output_dir`):

    checkpoints/checkpoint-N/   Trainer checkpoints; a run that finds one resumes from the last
    model/                      the final model + tokenizer (LoRA merged), loadable by every backend
    metrics.json                steps, losses, timings, data counts, the loss-token share
    log_history.jsonl           the Trainer's log events
    loss_curve.png              training loss per step

Loss on assistant turns only: the dataset is conversational (`messages` + `tools`) and `assistant_only_loss=True`;
TRL swaps the Qwen2.5 template (the embedded model's, see `pipeline.llm.model_setup`) for its training variant
with `{% generation %}` markers, so the question, the tool schemas and every tool result are context, and the
reasoning, the tool calls and each turn's end token are what the model learns. `metrics.json` records the share of
tokens that carry loss, measured on the tokenized dataset the trainer uses. Traces longer than `max_length` are
dropped and counted (truncating would cut off the answer).

CPU facts (ARCHITECTURE.md): `use_cpu=True, report_to="none"`, bf16 autocast only where the CPU computes bf16
natively (else float32); on a GPU machine bf16 is used. When run
under Dagster Pipes (`assets.training.sft_model`), progress goes to the run's event log.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from training.run import (RunConfig, cli as run_cli, finished_run, progress_callback, run_dir, use_bf16,
                          write_log_history)

logger = logging.getLogger(__name__)
DONE_FILE = "websim_sft.json"  # written last in model/: a folder without it is not a finished run


@dataclass
class SFTRunConfig(RunConfig):
    """One SFT run. Its defaults are the only ones: the `sft_model` asset's config is made from these fields."""

    PLUMBING = ("dataset", "output_dir", "data_dir", "num_threads", "retrain", "replay_dataset")
    KIND = "SFT"

    dataset: str
    """An `sft_traces` folder (export_dataset layout: hf/ or data/train.parquet)."""
    output_dir: str
    base_model: str = "embedded"
    """A local model folder, or "embedded" for the embedded SmolLM2-135M-Instruct."""
    data_dir: str = ""
    """websim data dir (for the embedded model); empty: $WEBSIM_HOME or <repo>/.websim."""
    epochs: float = 1.0
    max_steps: int = 8
    """> 0 overrides `epochs` (-1: train for `epochs`)."""
    learning_rate: float = 3e-4
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_length: int = 2048
    """Longer traces are dropped, not truncated."""
    max_examples: int = 0
    """Keep at most this many traces (shortest first); 0: all."""
    sources: list[str] = field(default_factory=lambda: ["teacher", "demonstration"])
    replay_dataset: str = ""
    """Another traces folder whose traces are mixed in (the report round replays the search traces)."""
    replay_fraction: float = 0.0
    """Share of the examples drawn from `replay_dataset` (0: none; 0.5: as many as `dataset`'s, if it has them)."""
    replay_sources: list[str] = field(default_factory=lambda: ["teacher", "demonstration"])
    """The `source`s of `replay_dataset` that may be replayed."""
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    seed: int = 0
    logging_steps: int = 1
    save_steps: int = 4
    save_total_limit: int = 2
    bf16: bool | None = None
    """bf16 autocast. None: on a GPU, and on CPUs with native bf16 (`pipeline.llm.cpu.native_bf16`: AVX-512 BF16 or
    AMX), where a step measured 1.9x faster than float32 here (2 threads); float32 on other CPUs."""
    num_threads: int = 0
    """torch intra-op threads (0: torch's default, every core). On CPUs that other work keeps busy, fewer can be
    faster; on a quiet 2-core machine 2 threads made a step 1.3x (float32) to 1.6x (bf16) faster than 1."""
    retrain: bool = False
    """Train again even if `output_dir/model` holds a finished run."""


# ---- data ----------------------------------------------------------------------------------------------------------

def load_traces(dataset: str | Path):
    """The train split of an `sft_traces` folder as a `datasets.Dataset` (messages as JSON objects)."""
    import datasets

    path = Path(dataset)
    if (path / "hf").is_dir():
        return datasets.load_from_disk(str(path / "hf"))["train"]
    if (path / "data" / "train.parquet").is_file():
        return datasets.load_dataset("parquet", data_files=str(path / "data" / "train.parquet"))["train"]
    return datasets.load_from_disk(str(path))["train"]


def prepare_dataset(ds, tokenizer, config: SFTRunConfig) -> tuple[Any, dict[str, int]]:
    """Keep train-split traces of the wanted sources that fit `max_length`; columns `messages` and `tools`."""
    if "split" in ds.column_names:
        splits = set(ds["split"])
        if splits - {"train"}:
            raise ValueError(f"SFT data must be train-split only, found {sorted(splits)}")
    counts = {"traces": len(ds)}
    if "source" in ds.column_names:
        ds = ds.filter(lambda s: s in config.sources, input_columns="source")
    counts["of_sources"] = len(ds)

    def length(example: dict) -> dict:
        ids = tokenizer.apply_chat_template(example["messages"], tools=example.get("tools"), tokenize=True,
                                            return_dict=False)
        return {"n_tokens": len(ids)}

    ds = ds.map(length)
    ds = ds.filter(lambda n: n <= config.max_length, input_columns="n_tokens")
    counts["too_long"] = counts["of_sources"] - len(ds)
    if config.max_examples and len(ds) > config.max_examples:
        ds = ds.sort("n_tokens").select(range(config.max_examples))
    counts["examples"] = len(ds)
    counts["tokens"] = int(sum(ds["n_tokens"])) if len(ds) else 0
    keep = [c for c in ("messages", "tools") if c in ds.column_names]
    return ds.select_columns(keep), counts


def with_replay(ds, replay, tokenizer, config: SFTRunConfig) -> tuple[Any, dict[str, int]]:
    """`ds` with a seeded sample of `replay`'s traces (its `replay_sources`, those that fit `max_length`) making up
    `replay_fraction` of the examples, shuffled together. A round that trains on one kind of chat only forgets the
    others: the report round's SFT on report golds alone left the search model making no tool call at all (demo,
    2026-12-07: 2.65 calls per question after search SFT, 0.0 after report SFT)."""
    import datasets

    if not 0 <= config.replay_fraction < 1:
        raise ValueError(f"replay_fraction must be in [0, 1), got {config.replay_fraction}")
    want = round(len(ds) * config.replay_fraction / (1 - config.replay_fraction))
    replay, _ = prepare_dataset(replay, tokenizer, replace(config, sources=list(config.replay_sources),
                                                                max_examples=0))
    picked = replay.shuffle(seed=config.seed).select(range(min(want, len(replay))))
    features = picked.features if "tools" in picked.column_names else None
    rows = [{"messages": r["messages"], "tools": r.get("tools")} for r in ds] + \
           [{"messages": r["messages"], "tools": r.get("tools")} for r in picked]
    mixed = datasets.Dataset.from_list(rows, features=features).shuffle(seed=config.seed)
    return mixed, {"wanted": want, "replayed": len(picked), "available": len(replay)}


def loss_token_share(train_dataset) -> float:
    """Share of the tokens that carry loss in the trainer's tokenized dataset (`labels` != -100)."""
    total = masked = 0
    for row in train_dataset:
        labels = row.get("labels")
        if labels is None:  # no mask column: every token is trained on
            return 1.0
        total += len(labels)
        masked += sum(1 for t in labels if t != -100)
    return round(masked / total, 4) if total else 0.0


# ---- the run -------------------------------------------------------------------------------------------------------

def sft_run_dir(root: str | Path, settings: dict[str, Any], data_provenance: dict[str, Any], name: str = "") -> Path:
    """`<root>/<name>`, or `<root>/sft-<hash of the run's settings and its data's provenance>`."""
    return run_dir(root, "sft", [settings, data_provenance], name)


def build_trainer(config: SFTRunConfig, log: Callable[[str], None] | None = None):
    """The `SFTTrainer` of a run, its data counts and the base model's inference chat template."""
    log = log or (lambda msg: logger.info(msg))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from pipeline.llm.model_setup import resolve_model

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    base = resolve_model(None if config.base_model in ("", "embedded") else config.base_model,
                         config.data_dir or None)
    tokenizer = AutoTokenizer.from_pretrained(base)
    ds, counts = prepare_dataset(load_traces(config.dataset), tokenizer, config)
    if config.replay_dataset and config.replay_fraction > 0 and len(ds):
        ds, counts["replay"] = with_replay(ds, load_traces(config.replay_dataset), tokenizer, config)
    if len(ds) == 0:
        raise ValueError(f"no SFT examples left in {config.dataset}: {counts}")
    log(f"SFT data: {counts}")
    gpu = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(Path(config.output_dir) / "checkpoints"), use_cpu=not gpu, bf16=use_bf16(config.bf16, gpu),
        report_to="none", assistant_only_loss=True, max_length=config.max_length, num_train_epochs=config.epochs,
        max_steps=config.max_steps, learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, logging_steps=config.logging_steps,
        save_steps=config.save_steps, save_total_limit=config.save_total_limit, seed=config.seed,
        data_seed=config.seed, model_init_kwargs={"dtype": "bfloat16" if gpu else "float32"},
        dataloader_num_workers=0, disable_tqdm=True,
    )
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.lora_target_modules, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=base, args=args, train_dataset=ds, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[progress_callback(log)])
    counts["base_model"] = base
    counts["device"] = "cuda" if gpu else "cpu"
    return trainer, counts, tokenizer.chat_template


def main(config: SFTRunConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or resume, or reuse a finished run) and return the run's metrics."""
    log = log or (lambda msg: logger.info(msg))
    out = Path(config.output_dir)
    if not config.retrain and (done := finished_run(out, DONE_FILE)) is not None:
        log(f"{out} already holds a finished run; reusing it (retrain=true trains again)")
        return {**done, "reused": True}
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers.trainer_utils import get_last_checkpoint

    started = time.perf_counter()
    trainer, counts, template = build_trainer(config, log)
    base, device = counts.pop("base_model"), counts.pop("device")
    share = loss_token_share(trainer.train_dataset)
    if share >= 1.0 or share <= 0.0:
        raise RuntimeError(f"assistant-only loss is not in effect (loss-token share {share})")
    ckpt_dir = out / "checkpoints"
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        log(f"resuming from {last}")
    result = trainer.train(resume_from_checkpoint=last)

    model = trainer.model
    if config.lora:
        model = model.merge_and_unload()
    model_dir = out / "model"
    model.save_pretrained(str(model_dir))
    tokenizer = trainer.processing_class
    tokenizer.chat_template = template  # the inference template, not TRL's training variant
    tokenizer.save_pretrained(str(model_dir))

    history = trainer.state.log_history
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    metrics = {
        "base_model": base,
        "steps": trainer.state.global_step,
        "resumed_from": last,
        "train_loss": round(float(result.training_loss), 4),
        "first_loss": losses[0][1] if losses else None,
        "last_loss": losses[-1][1] if losses else None,
        # one step's loss is one batch's: with a batch of 1 and mixed examples it swings by 10x between steps
        "start_loss": quarter_mean([v for _, v in losses], first=True),
        "end_loss": quarter_mean([v for _, v in losses], first=False),
        "train_runtime_s": round(float(result.metrics.get("train_runtime", 0.0)), 2),
        "wall_s": round(time.perf_counter() - started, 2),
        "s_per_step": round(float(result.metrics.get("train_runtime", 0.0)) / max(1, trainer.state.global_step), 2),
        "loss_token_share": share,
        "data": counts,
        "device": device,
        "lora": config.lora,
        "config": config.to_dict(),
    }
    write_log_history(history, out / "log_history.jsonl")
    plot_loss(losses, out / "loss_curve.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (model_dir / DONE_FILE).write_text(json.dumps({"steps": metrics["steps"], "train_loss": metrics["train_loss"]}))
    log(f"SFT done: {metrics['steps']} steps, mean loss of the first quarter of steps {metrics['start_loss']} -> last "
        f"quarter {metrics['end_loss']}, {metrics['train_runtime_s']} s; model in {model_dir}")
    return metrics


def quarter_mean(values: list[float], *, first: bool) -> float | None:
    """The mean of the first (or last) quarter of `values`, at least one: a loss curve's start and end, steadier than
    one step's loss."""
    if not values:
        return None
    n = max(1, len(values) // 4)
    part = values[:n] if first else values[-n:]
    return round(sum(part) / len(part), 4)


def plot_loss(losses: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if losses:
        steps, values = zip(*losses)
        ax.plot(steps, values, marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title("SFT loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cli(argv: list[str] | None = None) -> int:
    return run_cli(argv, description="SFT of the search agent on sft_traces (TRL SFTTrainer).",
                   config_cls=SFTRunConfig, main=main)


if __name__ == "__main__":
    sys.exit(cli())
