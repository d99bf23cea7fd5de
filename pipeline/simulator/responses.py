"""The simulator's wire format: response types (plain dataclasses with `to_dict()` / `from_dict()` for JSON), the
argument limits and checks that the in-process simulator and the HTTP server share, and `InvalidRequest`."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, fields
from typing import Any

MAX_QUERY_CHARS = 2048
MAX_URL_CHARS = 8192
MAX_K = 100
MAX_SNIPPET_CHARS = 5000
MAX_SITEMAP_LIMIT = 1000
MAX_LINKS_LIMIT = 100_000
MAX_OFFSET = 10**12
READ_CHARS = 4000
"""`read`: characters of a page per call unless told otherwise."""
MAX_READ_CHARS = 100_000
MAX_FIND_TEXT_CHARS = 512
MAX_FIND_MATCHES = 100
MAX_FIND_CONTEXT = 1000
# Control characters other than tab, newline and carriage return, and lone surrogates: binary junk.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class InvalidRequest(ValueError):
    """An argument no call can succeed with (wrong type, out of range, empty, binary)."""


# ---- responses -------------------------------------------------------------------------------

class _Response:
    """Plain data with `to_dict()` / `from_dict()` for JSON (the HTTP server and client).

    The dataclasses keep their fields in `__dict__` (no `slots=True`): orjson encodes those 2.5x faster (a page
    with 27 links: 18 us against 45 us), which is most of what the server adds to a call."""

    __slots__ = ()

    def to_dict(self) -> dict:
        out = {}
        for name in _field_names(type(self)):
            v = getattr(self, name)
            if v.__class__ is list and v and isinstance(v[0], _Response):
                v = [x.to_dict() for x in v]
            out[name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict):
        kwargs = {}
        for name in _field_names(cls):
            if name not in d:
                continue
            v = d[name]
            item = _ITEM_TYPES.get((cls.__name__, name))
            if item is not None and v is not None:
                v = [item.from_dict(x) for x in v]
            kwargs[name] = v
        return cls(**kwargs)


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass
class SearchResult(_Response):
    rank: int
    url: str
    title: str
    snippet: str
    score: float
    page_id: int


@dataclass
class SearchResponse(_Response):
    status: int
    query: str
    results: list[SearchResult] = field(default_factory=list)
    error: str | None = None


@dataclass
class Link(_Response):
    url: str
    title: str
    anchor: str
    clicks: int
    page_id: int


@dataclass
class FetchResponse(_Response):
    status: int
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    final_url: str | None = None
    """The page's own URL when status is 200 (differs from `url` for a duplicate)."""
    canonical_url: str | None = None
    """Set when `url` is a duplicate of another page: the page whose content this is."""
    title: str = ""
    text: str = ""
    outlinks: list[Link] = field(default_factory=list)
    page_id: int | None = None
    error: str | None = None


@dataclass
class LinksResponse(_Response):
    status: int
    url: str
    page_id: int | None = None
    outlinks: list[Link] = field(default_factory=list)
    backlinks: list[Link] | None = None
    n_outlinks: int = 0
    n_backlinks: int = 0
    error: str | None = None


@dataclass
class SitemapEntry(_Response):
    url: str
    path: str
    title: str


@dataclass
class SitemapResponse(_Response):
    status: int
    host: str
    prefix: str = ""
    total: int = 0
    offset: int = 0
    limit: int = 0
    entries: list[SitemapEntry] = field(default_factory=list)
    next_offset: int | None = None
    error: str | None = None


@dataclass
class ReadResponse(_Response):
    """A window of a page's text: `text` is characters [offset, offset + len(text)) of `total_chars`."""

    status: int
    url: str
    final_url: str | None = None
    title: str = ""
    offset: int = 0
    text: str = ""
    total_chars: int = 0
    next_offset: int | None = None
    page_id: int | None = None
    error: str | None = None


@dataclass
class FindMatch(_Response):
    offset: int
    """Where the match starts in the page's text, in characters (read it there with `read(url, offset)`)."""
    snippet: str


@dataclass
class FindResponse(_Response):
    """Where `text` occurs in a page (case and runs of whitespace ignored): the first matches and how many."""

    status: int
    url: str
    text: str = ""
    final_url: str | None = None
    title: str = ""
    total: int = 0
    matches: list[FindMatch] = field(default_factory=list)
    page_id: int | None = None
    error: str | None = None


_ITEM_TYPES = {("SearchResponse", "results"): SearchResult, ("FetchResponse", "outlinks"): Link,
               ("LinksResponse", "outlinks"): Link, ("LinksResponse", "backlinks"): Link,
               ("SitemapResponse", "entries"): SitemapEntry, ("FindResponse", "matches"): FindMatch}
RESPONSE_TYPES = {"search": SearchResponse, "fetch": FetchResponse, "links": LinksResponse, "sitemap": SitemapResponse,
                  "read": ReadResponse, "find": FindResponse}


# ---- argument checks (shared with the HTTP server) --------------------------------------------

def check_text(name: str, value: Any, max_chars: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > max_chars:
        raise InvalidRequest(f"{name} is longer than {max_chars} characters")
    if _CONTROL.search(value):
        raise InvalidRequest(f"{name} contains control characters or unpaired surrogates (binary data?)")
    if not allow_empty and not value.strip():
        raise InvalidRequest(f"{name} is empty")
    return value


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value
