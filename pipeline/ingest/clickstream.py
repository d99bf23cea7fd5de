"""Wikipedia clickstream dumps: `prev\\tcurr\\ttype\\tn`, no header, `.tsv` or `.tsv.gz`.

Rows are kept as the dump states them: `other-*` sources (other-search, other-empty, ...) stay
as they are, titles keep their underscores. A malformed row is a counted rejection with its line
number, never fatal.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

VALID_TYPES = frozenset({"link", "external", "other"})
_LANG_FROM_NAME = re.compile(r"clickstream-([a-z][a-z0-9_-]*?)wiki-", re.IGNORECASE)
_MAX_TITLE = 512


@dataclass(frozen=True)
class ClickRow:
    prev: str
    curr: str
    type: str
    n: int


@dataclass(frozen=True)
class ClickRejection:
    reason: str  # wrong_field_count | bad_count | bad_type | empty_title | title_too_long | undecodable | corrupt_file
    detail: str
    location: str  # "line=N"


def language_of(path: str | Path, default: str = "en") -> str:
    """The wiki language a dump is about, from its official name (`clickstream-dewiki-2024-10.tsv.gz` -> de)."""
    m = _LANG_FROM_NAME.search(Path(path).name)
    return m.group(1).lower() if m else default


def _title(raw: str) -> str:
    # Dumps write titles with underscores; be lenient with spaces from hand-made files.
    return raw.strip().replace(" ", "_")


def parse_line(line: str) -> ClickRow | tuple[str, str]:
    """One dump line -> a row, or (reason, detail) when it is malformed."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 4:
        return "wrong_field_count", f"{len(fields)} fields: {line[:200]!r}"
    prev, curr, typ, n_raw = fields
    prev, curr, typ = _title(prev), _title(curr), typ.strip()
    if not prev or not curr:
        return "empty_title", repr(line[:200])
    if len(prev) > _MAX_TITLE or len(curr) > _MAX_TITLE:
        return "title_too_long", repr(line[:200])
    if typ not in VALID_TYPES:
        return "bad_type", f"type {typ[:50]!r}"
    try:
        n = int(n_raw.strip())
    except ValueError:
        return "bad_count", f"n {n_raw[:50]!r}"
    if n <= 0:
        return "bad_count", f"n {n}"
    return ClickRow(prev, curr, typ, n)


def read_clickstream(path: str | Path) -> Iterator[ClickRow | ClickRejection]:
    """Rows and rejections of a clickstream dump, in file order.

    Lines are decoded one by one, so an undecodable byte costs its own row and nothing else;
    a truncated `.gz` keeps every row before the damage.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = 0
    with opener(path, "rb") as fh:
        try:
            for bline in fh:
                lineno += 1
                try:
                    line = bline.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield ClickRejection("undecodable", str(exc), f"line={lineno}")
                    continue
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]  # a byte-order mark (an editor's UTF-8 export) is not part of the first title
                if not line.strip():
                    continue
                parsed = parse_line(line)
                if isinstance(parsed, ClickRow):
                    yield parsed
                else:
                    yield ClickRejection(parsed[0], parsed[1], f"line={lineno}")
        except (EOFError, OSError, zlib.error) as exc:
            yield ClickRejection("corrupt_file", f"{type(exc).__name__}: {exc}", f"line={lineno + 1}")
