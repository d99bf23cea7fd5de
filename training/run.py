"""What every trainer run shares (SFT and GRPO): its config's (de)serialisation, its folder, the CLI, Dagster Pipes.

A run's config is a dataclass whose fields split in two: `settings` (what decides the result: the trainer's own
keys, data limits, seeds; hashed into the run folder's name) and plumbing (where the data is, where the run writes,
threads, retrain): `RunConfig.PLUMBING` names the latter. The Dagster assets build their config class from the
settings fields and their defaults (`assets.training`), so a default is written once, here in `training/`.

    python -m training.sft --config run.json     # every trainer: `cli(...)` over its `main(config, log)`

One run owns one folder (`run_dir`): the same settings on the same data land in the same folder, so a crashed run
resumes from its last checkpoint and a finished one (`finished_run`: its model folder has the trainer's done file)
is reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from pipeline import config as websim_config

logger = logging.getLogger(__name__)
C = TypeVar("C", bound="RunConfig")
RUN_CONFIG_FILE = "run_config.json"


class RunConfig:
    """Mixin of a trainer's run dataclass: `from_dict` refuses unknown fields, `settings` leaves out plumbing."""

    PLUMBING: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = "run"

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown {cls.KIND} config fields: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def setting_fields(cls) -> list[dataclasses.Field]:
        """The fields that decide a run's result (everything but `PLUMBING`), with their defaults."""
        return [f for f in dataclasses.fields(cls) if f.name not in cls.PLUMBING]


def run_dir(root: str | Path, prefix: str, parts: Any, name: str = "") -> Path:
    """`<root>/<name>`, or `<root>/<prefix>-<hash of parts>` (the run's settings and its data's identity)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return Path(root) / (name or f"{prefix}-{hashlib.sha256(blob).hexdigest()[:12]}")


def finished_run(output_dir: str | Path, done_file: str) -> dict | None:
    """The metrics of a finished run in `output_dir` (its model folder holds `done_file`), or None."""
    done = Path(output_dir) / "model" / done_file
    metrics = Path(output_dir) / "metrics.json"
    if done.is_file() and metrics.is_file():
        return json.loads(metrics.read_text())
    return None


def write_run_config(config: RunConfig, output_dir: str | Path) -> Path:
    """`<output_dir>/run_config.json`: the config the trainer process reads (and later runs read back)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_CONFIG_FILE
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return path


def read_run_config(output_dir: str | Path) -> dict[str, Any]:
    """The run config a run folder was trained with ({} if it has none: not a run folder)."""
    path = Path(output_dir) / RUN_CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_log_history(history: list[dict], path: Path) -> None:
    with open(path, "w") as fh:
        for h in history:
            fh.write(json.dumps(h) + "\n")


def progress_callback(log: Callable[[str], None]):
    """A `TrainerCallback` that sends every logged step to `log` (the Dagster run's log under Pipes)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in logs.items()}
                log(f"step {state.global_step}/{state.max_steps}: {json.dumps(shown)}")

    return Progress()


# ---- out of process: the command, its environment, Pipes ----------------------------------------------------------

def trainer_command(module: str, config_path: str | Path) -> list[str]:
    """The command that runs a trainer module's CLI on a run config file."""
    return [sys.executable, "-m", module, "--config", str(config_path)]


def trainer_env() -> dict[str, str]:
    """Environment for a trainer subprocess: the repository importable, the Hub offline."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(websim_config.REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1"}


def pipes_logger() -> tuple[Callable[[str], None], Any]:
    """Log to the Dagster run when launched through Pipes, else to stderr."""
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if PipesEnvVarParamsLoader().is_dagster_pipes_process():
        pipes = open_dagster_pipes()
        return pipes.log.info, pipes
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return logger.info, None


def cli(argv: list[str] | None, *, description: str, config_cls: type[RunConfig],
        main: Callable[[Any, Callable[[str], None]], dict[str, Any]]) -> int:
    """`--config run.json` -> `main(config, log)`; under Pipes, the metrics path and steps go back to the run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help=f"JSON file with {config_cls.__name__} fields")
    args = parser.parse_args(argv)
    config = config_cls.from_dict(json.loads(Path(args.config).read_text()))
    log, pipes = pipes_logger()
    try:
        metrics = main(config, log)
        if pipes is not None:
            pipes.report_custom_message({"metrics_path": str(Path(config.output_dir) / "metrics.json"),
                                         "steps": metrics["steps"]})
    finally:
        if pipes is not None:
            pipes.close()
    return 0


def use_bf16(setting: bool | None, gpu: bool) -> bool:
    """The trainer's `bf16`: as set, else on a GPU or a CPU with native bf16."""
    if setting is not None:
        return setting
    from pipeline.llm.cpu import native_bf16

    return gpu or native_bf16()
