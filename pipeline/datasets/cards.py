"""Dataset-card pieces every websim dataset shares: the licences of the source sites, and Markdown table rows for
the fields and the licences of a card."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

import pyarrow as pa

SOURCE_LICENCES = [  # host suffix -> (hub licence id, what it means)
    ("wikipedia.org", "cc-by-sa-3.0", "Wikipedia article text (the Wikispeedia 2007 selection): CC BY-SA"),
    ("data.gov.uk", "other", "data.gov.uk pages: Open Government Licence, Crown copyright"),
]


def licence_of(url: str) -> tuple[str, str]:
    """(hub licence id, description) of a source page, by its host."""
    host = (re.match(r"^https?://([^/:]+)", url or "") or [None, ""])[1]
    for suffix, hub_id, text in SOURCE_LICENCES:
        if host == suffix or host.endswith("." + suffix):
            return hub_id, text
    return "other", f"{host}: licence of the source site unknown; check it before redistributing"


def licence_counts(urls: Iterable[str]) -> Counter:
    """How many of `urls` fall under each (hub licence id, description)."""
    return Counter(licence_of(u) for u in urls)


def licence_rows(licences: Mapping[tuple[str, str], int]) -> str:
    """Markdown rows `| description | licence id | count |`, one per licence (empty string for none)."""
    return "\n".join(f"| {text} | `{hub}` | {n} |" for (hub, text), n in sorted(licences.items()))


def cell(value) -> str:
    """A Markdown table cell: a `|` in the value must not open a new column."""
    return str(value).replace("|", "\\|")


def field_rows(schema: pa.Schema, docs: Mapping[str, str]) -> str:
    """Markdown rows `| field | type | meaning |`, one per field of `schema`."""
    return "\n".join(f"| `{f.name}` | {cell(f.type)} | {cell(docs.get(f.name, ''))} |" for f in schema)
