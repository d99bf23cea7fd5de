"""Dagster definitions of websim (thin: config and partitions in, `pipeline` calls, metadata out)."""

from assets.definitions import defs

__all__ = ["defs"]
