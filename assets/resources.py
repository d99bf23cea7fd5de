"""Resources: where websim writes, where the store is and which folders hold the inputs.

Empty fields mean "the embedded default" (see `pipeline.config`), resolved when a run starts, so
a user points websim at their own data with env vars or run config and the demo needs neither.
"""


from pathlib import Path
from typing import Callable

import dagster as dg
from pydantic import PrivateAttr

from pipeline import config
from pipeline.ingest.run import CLICKSTREAM_SUFFIXES, WARC_SUFFIXES, list_inputs, resolve_input
from pipeline.ingest.store import Store


class PathsResource(dg.ConfigurableResource):
    """Where the assets write: datasets, models and evaluation results under one data dir.

    `data_dir` empty: `$WEBSIM_HOME`, else `<repo>/.websim` (`pipeline.config.data_dir`), read once when a run
    starts. A deployment that keeps the data dir in another variable sets `PathsResource(data_dir=dg.EnvVar("X"))`
    or run config `resources: {paths: {config: {data_dir: {env: X}}}}` (a bare `EnvVar` would make the variable
    mandatory; the empty default keeps a fresh clone working with none).
    """

    data_dir: str = ""
    _root: Path | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._root = self._resolve()

    def _resolve(self) -> Path:
        return Path(self.data_dir).expanduser().resolve() if self.data_dir else config.data_dir()

    def root(self) -> Path:
        """The data dir (as resolved at launch; resolved now outside a run)."""
        return self._root or self._resolve()

    def dataset_dir(self, name: str, configured: str = "") -> Path:
        """A dataset's folder: `configured` when set, else `<data dir>/datasets/<name>`."""
        return Path(configured) if configured else self.root() / "datasets" / name

    def models_dir(self, trainer: str) -> Path:
        """Where a trainer's runs go: `<data dir>/models/<trainer>` ("sft", "grpo")."""
        return self.root() / "models" / trainer

    def eval_dir(self, configured: str = "") -> Path:
        """Evaluation results: `configured` when set, else `<data dir>/eval`."""
        return Path(configured) if configured else self.root() / "eval"


class StoreResource(dg.ConfigurableResource):
    """The DuckDB store. `path` empty: `$WEBSIM_STORE` or `<$WEBSIM_HOME>/store.duckdb`."""

    path: str = ""

    def get(self, on_wait: Callable[[str], None] | None = None) -> Store:
        """The store; a writer waits for it as long as another holds it, telling `on_wait` who (every minute)."""
        return Store(self.path or config.store_path(), on_wait=on_wait)


class InputsResource(dg.ConfigurableResource):
    """Folders that hold WARC files and clickstream dumps (empty: `$WEBSIM_WARC_DIRS` etc., else the sample data)."""

    warc_dirs: list[str] = []
    clickstream_dirs: list[str] = []

    def _warc_dirs(self) -> list[str]:
        return self.warc_dirs or config.warc_dirs()

    def _clickstream_dirs(self) -> list[str]:
        return self.clickstream_dirs or config.clickstream_dirs()

    def warc_files(self) -> dict[str, Path]:
        return list_inputs(self._warc_dirs(), WARC_SUFFIXES)

    def clickstream_files(self) -> dict[str, Path]:
        return list_inputs(self._clickstream_dirs(), CLICKSTREAM_SUFFIXES)

    def warc_path(self, key: str) -> Path:
        return resolve_input(key, self._warc_dirs(), WARC_SUFFIXES)

    def clickstream_path(self, key: str) -> Path:
        return resolve_input(key, self._clickstream_dirs(), CLICKSTREAM_SUFFIXES)
