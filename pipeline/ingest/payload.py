"""What a WARC payload is and how it decodes: MIME filtering (with sniffing for unknown types) and the
charset cascade (byte-order mark, HTTP header, `<meta>`, detection, UTF-8 with replacement).

Pure functions over bytes and header strings; `pipeline.ingest.warc` applies them to records.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Content types that say nothing about the payload: sniff it instead.
_UNKNOWN_TYPES = frozenset({
    "", "application/octet-stream", "binary/octet-stream", "application/unknown", "unknown",
    "unknown/unknown", "application/x-unknown", "application/x-unknown-content-type", "*/*",
    "none", "no-type", "x-unknown/x-unknown",
})
_SNIFF_BYTES = 1024
_META_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9_.:+-]{1,40})""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^"';,\s]+)""", re.I)
# WHATWG Encoding Standard: these labels mean a superset in every browser, and pages rely on it.
_WHATWG_SUPERSETS = {
    "ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "iso8859-11": "cp874",
    "tis-620": "cp874", "shift_jis": "cp932", "euc_kr": "cp949", "gb2312": "gbk", "big5": "big5hkscs",
}
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# A declared charset is kept if at most this share of the bytes fails to decode (one stray byte in
# a UTF-8 page is the page's bug, not a sign that the declaration is wrong).
_MAX_BAD_BYTE_SHARE = 0.002


def decode_html(payload: bytes, header_charset: str | None = None) -> tuple[str, str, str]:
    """(text, codec, source) for an HTML payload.

    Order: byte-order mark ("detected"), HTTP header charset ("header"), `<meta charset>` /
    `<meta http-equiv>` / XML declaration in the first 4 KB ("meta"), valid UTF-8 or
    charset_normalizer ("detected"), UTF-8 with replacement ("default"). A label that is not a
    text codec, or that fails to decode the bytes, falls through to the next source.
    """
    for bom, codec in _BOMS:
        if payload.startswith(bom):
            return payload[len(bom):].decode(codec, "replace"), codec, "detected"
    declared = (("header", header_charset), ("meta", sniff_meta_charset(payload)))
    for source, label in declared:
        codec = text_codec(label)
        if codec:
            text = _decode_declared(payload, codec)
            if text is not None:
                return text, codec, source
    try:
        return payload.decode("utf-8"), "utf-8", "detected"
    except UnicodeDecodeError:
        pass
    codec = _detect_charset(payload)
    if codec:
        return payload.decode(codec, "replace"), codec, "detected"
    return payload.decode("utf-8", "replace"), "utf-8", "default"


def sniff_meta_charset(payload: bytes) -> str | None:
    """The charset label declared in the first 4 KB of an HTML document, if any."""
    head = payload[:_META_BYTES]
    m = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    return m.group(1).decode("ascii", "replace") if m else None


@lru_cache(maxsize=256)
def text_codec(label: str | None) -> str | None:
    """Python codec name for a charset label, or None if it names no text encoding."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if not label or len(label) > 40:
        return None
    try:
        name = codecs.lookup(label).name
        b"a".decode(name)  # rejects bytes-to-bytes codecs such as "zlib" or "base64"
    except (LookupError, ValueError):
        return None
    return _WHATWG_SUPERSETS.get(name, name)


def is_html(mime: str, payload_head: bytes = b"") -> bool:
    """True for an HTML/XHTML mime type, or for an unknown one whose payload starts like HTML."""
    if mime in HTML_TYPES:
        return True
    if unknown_type(mime):
        head = payload_head[:_SNIFF_BYTES].lower()
        return b"<html" in head or b"<!doctype html" in head
    return False


def unknown_type(mime: str) -> bool:
    """True for a Content-Type that says nothing about the payload (sniff it instead)."""
    return mime in _UNKNOWN_TYPES or "/" not in mime


def mime_type(content_type: str | None) -> str:
    """The lower-case mime type of a Content-Type value ("" if none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def header_charset(content_type: str | None) -> str | None:
    m = _HEADER_CHARSET.search(content_type or "")
    return m.group(1) if m else None


def _decode_declared(payload: bytes, codec: str) -> str | None:
    try:
        return payload.decode(codec)
    except UnicodeDecodeError:
        pass
    except LookupError:
        return None
    text = payload.decode(codec, "replace")
    bad = text.count("\ufffd")
    return text if bad <= max(1, len(payload) * _MAX_BAD_BYTE_SHARE) else None


def _detect_charset(payload: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(payload[:65536]).best()
    return text_codec(best.encoding) if best is not None else None
