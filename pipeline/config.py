"""Where websim keeps its files, and where the sample data is.

Everything is resolved when called (never at import), from env vars with embedded defaults, so a
user points websim at their own data by setting `WEBSIM_HOME`, `WEBSIM_WARC_DIRS`, ... or through
Dagster config, and the demo works on a fresh clone with no configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Root of everything websim writes (store, snapshots, models, datasets): `$WEBSIM_HOME` or `<repo>/.websim`."""
    return Path(os.environ.get("WEBSIM_HOME") or REPO_ROOT / ".websim").resolve()


def sample_data_dir() -> Path:
    """The real sample data shipped beside the checkout (`../shared/data`), or `$WEBSIM_SAMPLE_DATA`."""
    return Path(os.environ.get("WEBSIM_SAMPLE_DATA") or REPO_ROOT.parent / "shared" / "data").resolve()


def _dirs(var: str, default: Path) -> list[str]:
    raw = os.environ.get(var)
    if raw:
        return [str(Path(p).expanduser().resolve()) for p in raw.split(os.pathsep) if p.strip()]
    return [str(default)]


def warc_dirs() -> list[str]:
    """Folders watched for WARC files: `$WEBSIM_WARC_DIRS` (os.pathsep-separated) or the sample WARCs."""
    return _dirs("WEBSIM_WARC_DIRS", sample_data_dir() / "warc")


def clickstream_dirs() -> list[str]:
    """Folders watched for clickstream dumps: `$WEBSIM_CLICKSTREAM_DIRS` or the sample clickstream files."""
    return _dirs("WEBSIM_CLICKSTREAM_DIRS", sample_data_dir() / "clickstream")


def store_path() -> Path:
    """The DuckDB store: `$WEBSIM_STORE` or `<data dir>/store.duckdb`."""
    return Path(os.environ.get("WEBSIM_STORE") or data_dir() / "store.duckdb").resolve()


def ingest_fast() -> bool:
    """Ingest with trafilatura's fast mode (`$WEBSIM_INGEST_FAST` = 1/true/yes; default off: exact). Faster
    extraction that changes a few pages' main text (README, "Ingest speed", has the measured trade-off)."""
    return os.environ.get("WEBSIM_INGEST_FAST", "").strip().lower() in ("1", "true", "yes", "on")
