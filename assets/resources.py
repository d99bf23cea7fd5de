"""Resources: where the store is and which folders hold the inputs.

Empty fields mean "the embedded default" (see `pipeline.config`), resolved when a run starts, so
a user points websim at their own data with env vars or run config and the demo needs neither.
"""


from pathlib import Path
from typing import Callable

import dagster as dg

from pipeline import config
from pipeline.ingest.run import CLICKSTREAM_SUFFIXES, WARC_SUFFIXES, list_inputs, resolve_input
from pipeline.ingest.store import Store


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
