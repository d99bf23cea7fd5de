"""Robust WARC reading: one WARC (or ARC) file in; HTML captures, redirects and named rejections out.

This module owns everything between the bytes on disk and a decoded HTML string: record framing
and recovery from damage, record-type filtering and revisit resolution; the payload rules (MIME
filtering, charset decoding) live in `pipeline.ingest.payload` and are re-exported here.
As in datatrove's `process_record`, nothing here raises for bad content. Every record is either
yielded (`WarcCapture`, `WarcRedirect`), counted as skipped (`counters["skipped_<why>"]`), or
yielded as a `WarcRejection` with a snake_case reason that is also counted as `rejected_<reason>`.

Damage handling. warcio's `ArchiveIterator` is run over a *segment* of the file that starts at a
known record boundary. A segment ends cleanly at end of file, or at damage: a record that cannot
be parsed, a record whose Content-Length does not match its framing (warcio's "not followed by a
blank line" warning, or a block shorter than declared), or a gzip stream that fails to decompress.
The damaged record is rejected and a new segment starts at the next plausible record start after
the damaged record's first byte: the next gzip member header that decompresses to a WARC/ARC
header (gzip files), or the next line that reads `WARC/x.y` (uncompressed files). Every new
segment starts strictly after the previous one, so reading always terminates, and records that
frame correctly before and after the damage are all kept.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import zlib
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from warcio.archiveiterator import ArchiveIterator
from warcio.limitreader import LimitReader

from pipeline.ingest.payload import (  # noqa: F401 - decode_html, text_codec, ... are also this module's API
    HTML_TYPES,
    decode_html,
    header_charset,
    is_html,
    mime_type,
    sniff_meta_charset,
    text_codec,
    unknown_type,
)
from pipeline.ingest.urls import normalize_url

_RECORD_START = re.compile(rb"WARC/\d\.\d{1,2}\r?\n|filedesc://|\S{1,4096} \S{1,64} \d{14} \S{1,256} \d{1,12}\r?\n")
_SECOND_RECORD = re.compile(rb"\r?\n\r?\nWARC/\d\.\d{1,2}\r?\n")
_RESYNC = re.compile(rb"\x1f\x8b\x08|(?<=\n)WARC/\d\.\d{1,2}\r?\n")
# Uncompressed ARC: a record starts at a header line `URL IP DATE MIME LENGTH`.
_ARC_RESYNC = re.compile(rb"\x1f\x8b\x08|(?<=\n)(?:[a-z][a-z0-9+.-]{0,15}://\S{1,4096}) \S{1,64} \d{14} \S{1,256} \d{1,12}\r?\n")
_ARC_LENGTH = re.compile(r"\d{1,15}")
_RESYNC_CHUNK = 1 << 20
_CACHE_MAX_BYTES = 16 << 20
_CACHE_MAX_ENTRIES = 64


@dataclass
class WarcCapture:
    """An HTML/XHTML response (or a revisit resolved to one) ready for extraction."""

    url: str  # normalised WARC-Target-URI
    record_id: str  # WARC-Record-ID
    offset: int  # byte offset of the record in the file (as warcio reports), -1 if unknown
    warc_date: datetime | None  # WARC-Date, tz-aware UTC
    http_status: int | None
    content_type: str  # mime type only, lower-case, e.g. "text/html"
    html: str  # decoded payload
    charset: str  # python codec name used to decode
    charset_source: str  # "header" | "meta" | "detected" | "default"
    payload_bytes: int
    from_revisit: bool = False


@dataclass
class WarcRedirect:
    """A 3xx response with a Location header (resolved against the target URI, normalised)."""

    url: str
    location: str
    http_status: int
    warc_date: datetime | None
    record_id: str


@dataclass
class WarcRejection:
    """A record (or a stretch of the file) that yields nothing, and why."""

    reason: str  # snake_case, e.g. "corrupt_record", "truncated_file", "payload_too_large"
    detail: str  # human-readable, includes exception text
    location: str  # "offset=12345"


WarcItem = WarcCapture | WarcRedirect | WarcRejection


def read_warc(
    path: str | Path,
    *,
    max_payload_bytes: int = 5_000_000,
    counters: Counter | None = None,
) -> Iterator[WarcItem]:
    """Yield the HTML captures, redirects and rejections of one WARC/ARC file (gzip or not), in file order.

    Raises FileNotFoundError (at call time) for a missing path; never raises for bad content.
    `counters` (if given) is updated as records are read: `records`, `html_captures`, `redirects`,
    `skipped_<record type>`, `skipped_not_html`, `revisits`, `revisits_resolved`, `revisits_unresolved`,
    `rejected_<reason>`, `resyncs`, `charset_<source>`, `content_length_mismatch`, ...
    """
    path = Path(path)
    size = path.stat().st_size
    if path.is_dir():
        raise IsADirectoryError(str(path))
    reader = _WarcFileReader(path, size, max_payload_bytes, counters if counters is not None else Counter())
    return reader.items()


# ---------------------------------------------------------------------------------------------
# Record headers


def parse_warc_date(value: str | None) -> datetime | None:
    """WARC-Date as a tz-aware UTC datetime, None if missing or malformed."""
    if not value:
        return None
    v = value.strip()
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _http_status(http) -> int | None:
    if not http:
        return None
    try:
        code = int(http.get_statuscode())
    except (TypeError, ValueError):
        return None
    return code if 100 <= code <= 999 else None


@dataclass
class _Payload:
    data: bytes
    charset_label: str | None
    mime: str
    status: int | None


# ---------------------------------------------------------------------------------------------
# The reader


class _WarcFileReader:
    def __init__(self, path: Path, size: int, max_payload_bytes: int, counters: Counter):
        self.path = path
        self.size = size
        self.max_payload = max_payload_bytes
        self.counters = counters
        self.gzip = False  # the current segment is gzip members
        self.stream_mode = False  # the whole file is one gzip stream, read decompressed
        self.arc = False
        self.fh: io.BufferedReader | None = None
        self._reread: io.BufferedReader | None = None
        # warcio reports framing problems only on stderr: captured around each warcio call (a
        # process-wide redirect, never held across a yield).
        self._stderr = io.StringIO()
        # revisit resolution: payload digest / record id / (uri, date) -> (offset, is_html)
        self._originals: dict[object, tuple[int, bool]] = {}
        self._cache: OrderedDict[int, _Payload] = OrderedDict()
        self._cache_bytes = 0
        self._yielded_any = False
        self._records = 0

    # -- driving ---------------------------------------------------------------------------

    def items(self) -> Iterator[WarcItem]:
        if self.size == 0:
            yield self._reject("empty_file", "file is empty", 0)
            return
        self.fh = open(self.path, "rb")
        try:
            if self._whole_file_gzip():
                # One gzip stream around many records (`gzip file.warc`): warcio refuses these; read
                # the decompressed stream instead. Offsets are then positions in the decompressed data.
                self.fh.close()
                self.fh = gzip.open(self.path, "rb")
                self.stream_mode = True
                self.counters["whole_file_gzip"] += 1
            pos: int | None = 0
            while pos is not None:
                pos = yield from self._segment(pos)
            if self._records == 0 and not self._yielded_any:
                yield self._reject("empty_file", "no WARC/ARC records in file", 0)
        finally:
            self.fh.close()
            if self._reread is not None:
                self._reread.close()

    def _whole_file_gzip(self) -> bool:
        """Sniff the format; True if the first gzip member holds more than one record."""
        head = self.fh.read(1 << 20)
        self.fh.seek(0)
        gzipped = head.startswith(b"\x1f\x8b")
        if gzipped:
            try:  # decompresses the first gzip member only: one record if the file is record-per-member
                head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4 << 20)
            except zlib.error:
                head = b""
        name = self.path.name.lower()
        self.arc = head.startswith(b"filedesc://") or (
            not head.startswith(b"WARC/") and (name.endswith(".arc") or name.endswith(".arc.gz"))
        )
        return gzipped and head.startswith(b"WARC/") and _SECOND_RECORD.search(head, 10) is not None

    def _iterator(self) -> ArchiveIterator:
        it = ArchiveIterator(self.fh, arc2warc=self.arc)
        if not self.arc:
            it.known_format = "warc"  # a non-WARC line is damage, not an ARC header
        return it

    def _segment(self, start: int):
        """Yield items from `start` to the end of file or to damage; return where to resume (or None)."""
        self.fh.seek(start)
        self.gzip = not self.stream_mode and self.fh.read(2) == b"\x1f\x8b"
        self.fh.seek(start)
        it = self._iterator()
        while True:
            try:
                with contextlib.redirect_stderr(self._stderr):
                    record = next(it)
            except StopIteration:
                return (yield from self._segment_end(it))
            except Exception as exc:  # noqa: BLE001 - any parse failure is damage to recover from
                fail = max(it.offset, start)
                self._take_stderr()
                yield self._reject("corrupt_record", f"{type(exc).__name__}: {exc}".strip()[:500], fail)
                return self._find_next(fail + 1)
            self._records += 1
            offset = it.offset
            self.counters["records"] += 1
            item, action = self._record(record, offset, it)
            if item is not None:
                self._yielded_any = True
                yield item
            if action == "stop":
                return None
            if action == "resync":
                return self._find_next(offset + 1)

    def _segment_end(self, it: ArchiveIterator):
        """warcio stopped without an error: check that it really reached the end of the file."""
        warn = self._take_stderr()
        end = it.offset
        self.fh.seek(end)
        tail = self.fh.read(64)
        if not warn and (not tail.strip() if not self.gzip else not tail or self._blank_members(end)):
            return None
        nxt = self._find_next(end + 1)
        starts_record = tail.startswith(b"\x1f\x8b") if self.gzip else bool(_RECORD_START.match(tail))
        if nxt is None and starts_record and not warn:
            yield self._reject("truncated_file", "incomplete record at end of file", end)
        else:
            detail = warn.strip()[:500] or f"unparsed bytes {tail[:32]!r}"
            yield self._reject("corrupt_record", detail, end)
        return nxt

    def _blank_members(self, pos: int) -> bool:
        """True if the file from `pos` on is whole gzip members holding only whitespace (e.g. an empty member)."""
        self.fh.seek(pos)
        raw = self.fh.read(1 << 16)
        while raw:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = d.decompress(raw, 4096)
            except zlib.error:
                return False
            if out.strip() or not d.eof:
                return False
            raw = d.unused_data
        return True

    def _at_eof(self, pos: int) -> bool:
        here = self.fh.tell()  # warcio is reading from this handle: put it back
        self.fh.seek(pos)
        eof = not self.fh.read(1)
        self.fh.seek(here)
        return eof

    # -- one record ------------------------------------------------------------------------

    def _record(self, record, offset: int, it: ArchiveIterator) -> tuple[WarcItem | None, str]:
        """Turn one parsed record into (item or None, "next" | "resync" | "stop")."""
        rtype = (record.rec_type or "unknown").lower()
        headers = record.rec_headers
        if self.arc:
            # warcio reads an ARC length that is not a byte count as 0 and goes on: the record is damage.
            raw_length = headers.get_header("Content-Length")
            if raw_length is None or not _ARC_LENGTH.fullmatch(raw_length.strip()):
                return self._reject("bad_content_length", f"ARC length field {raw_length!r} is not a byte count",
                                    offset), "resync"
        http = record.http_headers
        status = _http_status(http)
        content_type = http.get_header("Content-Type") if http else None
        if not http and rtype == "response" and not (record.content_type or "").startswith("application/http"):
            content_type = record.content_type  # a response without HTTP headers: the WARC type is the payload's
        mime = mime_type(content_type)
        location = http.get_header("Location") if http and status and 300 <= status < 400 else None

        payload, too_large, payload_error = None, False, None
        wants_payload = rtype == "response" and not location and (mime in HTML_TYPES or unknown_type(mime))
        if wants_payload:
            try:
                with contextlib.redirect_stderr(self._stderr):
                    payload = record.content_stream().read(self.max_payload + 1)
            except Exception as exc:  # noqa: BLE001 - brotli/chunked decoding of one payload
                payload_error = f"{type(exc).__name__}: {exc}"
            too_large = payload is not None and len(payload) > self.max_payload

        framing = self._finish(record, it, offset)
        if framing is not None:
            reason, detail, action = framing
            return self._reject(reason, detail, offset), action

        if rtype not in ("response", "revisit"):
            self.counters[f"skipped_{rtype}"] += 1
            return None, "next"

        uri = headers.get_header("WARC-Target-URI") or ""
        date_raw = headers.get_header("WARC-Date")
        record_id = headers.get_header("WARC-Record-ID") or ""
        if self.arc:  # ARC has no record ids; warcio invents a random one per read: make it stable
            record_id = f"<urn:arc:{self.path.name}:{offset}>"
        if rtype == "response":
            self._remember(headers, offset, mime, payload)
        url = normalize_url(uri)

        if rtype == "revisit":
            self.counters["revisits"] += 1
        if location is not None:
            target = normalize_url(location, url or uri)
            if url is None or target is None:
                return self._reject("bad_redirect", f"cannot resolve {uri!r} -> {location!r}", offset), "next"
            self.counters["redirects"] += 1
            return WarcRedirect(url, target, status, parse_warc_date(date_raw), record_id), "next"

        if rtype == "revisit":
            return self._revisit(record, offset, url, uri, status, mime), "next"

        if payload_error is not None:
            return self._reject("undecodable", f"payload content-encoding: {payload_error}", offset), "next"
        if not wants_payload or not is_html(mime, payload or b""):
            self.counters["skipped_not_html"] += 1
            return None, "next"
        if too_large:
            return self._reject("payload_too_large", f"payload over {self.max_payload} bytes", offset), "next"
        if url is None:
            return self._reject("bad_target_uri", f"WARC-Target-URI {uri!r}", offset), "next"
        if not payload:
            return self._reject("empty_payload", "HTML response with an empty payload", offset), "next"
        payload_info = _Payload(payload, header_charset(content_type), mime, status)
        self._cache_put(offset, payload_info)
        return self._capture(url, record_id, offset, date_raw, payload_info, from_revisit=False), "next"

    def _finish(self, record, it: ArchiveIterator, offset: int) -> tuple[str, str, str] | None:
        """Read the record to its end and check its framing: None if sound, else (reason, detail, action)."""
        err_before = it.err_count
        try:
            with contextlib.redirect_stderr(self._stderr):
                it.read_to_end()
        except Exception as exc:  # noqa: BLE001
            self._take_stderr()
            return "corrupt_record", f"{type(exc).__name__}: {exc}"[:500], "resync"
        warn = self._take_stderr()
        zlib_error = "decompress" in warn or "Error -" in warn
        declared = record.length
        if declared is None:
            nxt = self._find_next(offset + 1, count=False)
            if nxt is None and self._at_eof(it.offset):
                return "truncated_file", "record without Content-Length at end of file", "stop"
            return "bad_content_length", "record has no Content-Length", "resync"
        missing = record.raw_stream.limit if isinstance(record.raw_stream, LimitReader) else 0
        if missing > 0:
            if zlib_error:
                return "corrupt_record", f"gzip stream broken inside the record: {warn.strip()[:300]}", "resync"
            if self._at_eof(it.offset):
                return (
                    "truncated_file",
                    f"file ends {missing} bytes before the record's Content-Length {declared}",
                    "stop",
                )
            if self.gzip:
                # The gzip member ended first: the member is the record, Content-Length overstated it.
                self.counters["content_length_mismatch"] += 1
                return None
            return "bad_content_length", f"block {missing} bytes shorter than Content-Length {declared}", "resync"
        if it.err_count > err_before:
            return (
                "bad_content_length",
                f"record not followed by a blank line: Content-Length {declared} does not match the record",
                "resync",
            )
        if zlib_error:
            self.counters["content_encoding_error"] += 1
        return None

    def _revisit(self, record, offset, url, uri, status, mime) -> WarcItem | None:
        headers = record.rec_headers
        if not unknown_type(mime) and not is_html(mime):
            self.counters["skipped_not_html"] += 1
            return None
        original = None
        for key in self._revisit_keys(headers):
            original = self._originals.get(key)
            if original is not None:
                break
        if original is None:
            self.counters["revisits_unresolved"] += 1
            digest = headers.get_header("WARC-Payload-Digest")
            refers = headers.get_header("WARC-Refers-To-Target-URI") or headers.get_header("WARC-Refers-To")
            detail = f"no earlier response for digest={digest} refers_to={refers}"
            return self._reject("revisit_unresolved", detail, offset)
        orig_offset, orig_html = original
        if not orig_html:
            self.counters["revisits_resolved"] += 1
            self.counters["skipped_not_html"] += 1
            return None
        loaded = self._load_original(orig_offset)
        if isinstance(loaded, str):
            self.counters["revisits_unresolved"] += 1
            return self._reject("revisit_unresolved", f"original at offset={orig_offset}: {loaded}", offset)
        self.counters["revisits_resolved"] += 1
        if url is None:
            return self._reject("bad_target_uri", f"WARC-Target-URI {uri!r}", offset)
        if status is not None and status != 304:
            loaded = _Payload(loaded.data, loaded.charset_label, loaded.mime, status)
        return self._capture(
            url,
            headers.get_header("WARC-Record-ID") or "",
            offset,
            headers.get_header("WARC-Date"),
            loaded,
            from_revisit=True,
        )

    def _capture(self, url, record_id, offset, date_raw, payload: _Payload, *, from_revisit: bool) -> WarcCapture:
        html, codec, source = decode_html(payload.data, payload.charset_label)
        self.counters["html_captures"] += 1
        self.counters[f"charset_{source}"] += 1
        return WarcCapture(
            url=url,
            record_id=record_id,
            offset=offset,
            warc_date=parse_warc_date(date_raw),
            http_status=payload.status,
            content_type=payload.mime if payload.mime in HTML_TYPES else "text/html",
            html=html,
            charset=codec,
            charset_source=source,
            payload_bytes=len(payload.data),
            from_revisit=from_revisit,
        )

    # -- revisits --------------------------------------------------------------------------

    @staticmethod
    def _revisit_keys(headers):
        digest = headers.get_header("WARC-Payload-Digest")
        if digest:
            yield ("digest", digest.strip())
        refers_id = headers.get_header("WARC-Refers-To")
        if refers_id:
            yield ("id", refers_id.strip())
        target = headers.get_header("WARC-Refers-To-Target-URI")
        date = parse_warc_date(headers.get_header("WARC-Refers-To-Date"))
        if target and date:
            yield ("uri_date", target.strip(), date)

    def _remember(self, headers, offset: int, mime: str, payload: bytes | None) -> None:
        html = is_html(mime, payload or b"")
        keys = []
        digest = headers.get_header("WARC-Payload-Digest")
        if digest:
            keys.append(("digest", digest.strip()))
        record_id = headers.get_header("WARC-Record-ID")
        if record_id:
            keys.append(("id", record_id.strip()))
        uri, date = headers.get_header("WARC-Target-URI"), parse_warc_date(headers.get_header("WARC-Date"))
        if uri and date:
            keys.append(("uri_date", uri.strip(), date))
        for key in keys:
            self._originals.setdefault(key, (offset, html))

    def _cache_put(self, offset: int, payload: _Payload) -> None:
        if len(payload.data) > _CACHE_MAX_BYTES // 4:
            return
        self._cache[offset] = payload
        self._cache_bytes += len(payload.data)
        while self._cache_bytes > _CACHE_MAX_BYTES or len(self._cache) > _CACHE_MAX_ENTRIES:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= len(old.data)

    def _load_original(self, offset: int) -> _Payload | str:
        """The payload of the response at `offset` (cached, else re-read); an error string on failure."""
        cached = self._cache.get(offset)
        if cached is not None:
            self._cache.move_to_end(offset)
            return cached
        if self._reread is None:
            self._reread = gzip.open(self.path, "rb") if self.stream_mode else open(self.path, "rb")
        self._reread.seek(offset)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                it = ArchiveIterator(self._reread, arc2warc=self.arc)
                record = next(it)
                http = record.http_headers
                content_type = http.get_header("Content-Type") if http else record.content_type
                data = record.content_stream().read(self.max_payload + 1)
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"[:300]
        if len(data) > self.max_payload:
            return f"payload over {self.max_payload} bytes"
        if not data:
            return "empty payload"
        payload = _Payload(data, header_charset(content_type), mime_type(content_type), _http_status(http))
        self._cache_put(offset, payload)
        return payload

    # -- damage ----------------------------------------------------------------------------

    def _find_next(self, pos: int, *, count: bool = True) -> int | None:
        """Offset of the first plausible record start after `pos - 1`: a gzip member that
        decompresses to a WARC/ARC header, or a `WARC/x.y` line. None if there is none."""
        fh = self.fh
        here = fh.tell()
        try:
            return self._scan(fh, pos, count)
        finally:
            fh.seek(here)

    def _scan(self, fh, pos: int, count: bool) -> int | None:
        while True:
            fh.seek(pos - 1)
            buf = fh.read(_RESYNC_CHUNK + 16)
            if len(buf) <= 1:
                return None
            for m in (_ARC_RESYNC if self.arc else _RESYNC).finditer(buf, 1):
                cand = pos - 1 + m.start()
                if not m.group().startswith(b"\x1f\x8b") or self._gzip_record_at(cand):
                    if count:
                        self.counters["resyncs"] += 1
                    return cand
            if len(buf) < _RESYNC_CHUNK + 16:
                return None
            pos += _RESYNC_CHUNK

    def _gzip_record_at(self, offset: int) -> bool:
        if self.stream_mode:
            return False
        self.fh.seek(offset)
        raw = self.fh.read(8192)
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, 4096)
        except zlib.error:
            return False
        return bool(_RECORD_START.match(head))

    def _take_stderr(self) -> str:
        text = self._stderr.getvalue()
        if text:
            self._stderr.seek(0)
            self._stderr.truncate()
        return text

    def _reject(self, reason: str, detail: str, offset: int) -> WarcRejection:
        self.counters[f"rejected_{reason}"] += 1
        self._yielded_any = True
        return WarcRejection(reason, detail, f"offset={offset}")
