"""`normalize_url` as it was before its issue-16 speed-up, verbatim: the reference the faster one is compared with"""
# (tests/pipeline/ingest/test_urls_reference.py). Do not optimise this copy.

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are in a path: RFC 3986 unreserved + sub-delims + ":" "@" "/".
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = "/:@!$&'()*+,;=-._~?"
_WIKI_HOST = re.compile(r"^(?P<lang>[a-z][a-z0-9-]*)\.(?:m\.)?wikipedia\.org$")


def _requote(part: str, safe: str) -> str:
    # Decode then re-encode so that "%c3%a9", "%C3%A9" and "é" all become "%C3%A9".
    # "%2F" and friends stay encoded: decoding them would change the path's structure.
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
    """
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or len(url) > 8192:
        return None
    if base:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
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
