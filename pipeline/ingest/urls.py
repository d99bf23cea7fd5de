"""URL normalisation shared by ingest and the simulator, and Wikipedia title <-> URL mapping.

One function decides what "the same URL" means everywhere: a link found at ingest, a page's own
address and a URL an agent asks the simulator for all go through `normalize_url`, so they meet.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote, urljoin, urlparse, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are in a path: RFC 3986 unreserved + sub-delims + ":" "@" "/".
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = "/:@!$&'()*+,;=-._~?"
_WIKI_HOST = re.compile(r"^(?P<lang>[a-z][a-z0-9-]*)\.(?:m\.)?wikipedia\.org$")
# A part made of these alone (no "%", nothing to encode) is its own canonical form.
_CANONICAL_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=._~-]*").fullmatch
_CANONICAL_QUERY = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=._~?-]*").fullmatch
# Where `urljoin` would do more than glue a path onto the base's origin: dot segments, "//" that it
# collapses, ";params" it re-serialises, tabs and newlines it drops.
_JOIN_WORK = re.compile(r"//|/\.|;|[\t\r\n]")
_ABSOLUTE_WORK = re.compile(r"[;\t\r\n]")
_CACHE_SIZE = 1 << 16


def _requote(part: str, safe: str) -> str:
    # Decode then re-encode so that "%c3%a9", "%C3%A9" and "é" all become "%C3%A9".
    # "%2F" and friends stay encoded: decoding them would change the path's structure.
    if (_CANONICAL_QUERY if "?" in safe else _CANONICAL_PATH)(part):
        return part
    protected = re.sub(r"%(2[fF]|3[fF]|23|25)", lambda m: "\x00" + m.group(1).upper(), part)
    out = quote(unquote(protected), safe=safe + "\x00")
    return out.replace("\x00", "%")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: resolve "." and ".." segments; other segments (empty ones too) are kept."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute, canonical form of `url` (resolved against `base`), or None if it is not a web URL.

    Scheme and host lower-cased, default port and fragment dropped, dot segments removed,
    percent-encoding made canonical (upper-case escapes, non-ASCII encoded), empty path -> "/".
    The common links (a path on the page's own site, an absolute http(s) URL) skip `urljoin`, and
    the canonical form of an absolute URL is cached: a site's pages link to the same URLs.
    """
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or len(url) > 8192:
        return None
    if base:
        url = _join(base, url)
        if url is None:
            return None
    return _canonical(url)


def _join(base: str, url: str) -> str | None:
    """`urljoin(base, url)`, or a string that `_canonical` maps to the same URL; None where urljoin fails."""
    origin = _origin(base)
    if origin is None:
        return None  # urljoin raises on this base
    if url[0] == "/":
        if origin and not _JOIN_WORK.search(url):
            return origin + url
    elif url.startswith(("https://", "http://")) and not _ABSOLUTE_WORK.search(url):
        if url[url.index("//") + 2:][:1] not in ("", "/", "?", "#"):
            return url  # urljoin returns an absolute URL with a host as it is (up to re-serialising it)
    try:
        return urljoin(base, url)
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _origin(base: str) -> str | None:
    """"scheme://netloc" that `urljoin(base, "/path")` puts before the path; "" for a base that is not
    http(s) with a host; None for one that urljoin cannot parse."""
    try:
        parts = urlparse(base)
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in _DEFAULT_PORTS and parts.netloc else ""


@lru_cache(maxsize=_CACHE_SIZE)
def _canonical(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c in host for c in " \t\n<>\"'{}|\\^`"):
        return None
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(parts.path or "/")
    path = _requote(path, _PATH_SAFE)
    query = _requote(parts.query, _QUERY_SAFE) if parts.query else ""
    return urlunsplit((scheme, netloc, path, query, ""))


def url_host(url: str) -> str:
    """Host part of a normalised URL ("" if none)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def normalize_title(title: str) -> str:
    """Wikipedia's canonical title key: percent-decoded, spaces as underscores, first letter upper."""
    t = unquote(title).strip().replace(" ", "_")
    return t[:1].upper() + t[1:] if t else t


def wikipedia_title(url: str) -> tuple[str, str] | None:
    """(lang, title) for a Wikipedia article URL, else None. Title as in clickstream dumps."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    m = _WIKI_HOST.match((parts.hostname or "").lower())
    if not m:
        return None
    if parts.path.startswith("/wiki/"):
        raw = parts.path[len("/wiki/"):]
    elif parts.path == "/w/index.php" and "title=" in parts.query:
        raw = next((q[6:] for q in parts.query.split("&") if q.startswith("title=")), "")
    else:
        return None
    title = normalize_title(raw)
    return (m.group("lang"), title) if title else None


def wikipedia_url(lang: str, title: str) -> str:
    """The normalised article URL of `title` on `lang`.wikipedia.org."""
    return normalize_url(f"https://{lang}.wikipedia.org/wiki/{quote(normalize_title(title), safe='/')}")
