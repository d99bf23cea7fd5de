"""read_warc on the real sample WARCs, and on damaged files built from their records."""

from __future__ import annotations

import gzip
import io
import random
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.ingest import warc as warc_module
from pipeline.ingest.urls import normalize_url
from pipeline.ingest.warc import WarcCapture, WarcRedirect, WarcRejection, decode_html, read_warc, text_codec

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
WARCS = SHARED / "warc"
pytestmark = pytest.mark.skipif(not WARCS.is_dir(), reason=f"sample data not found at {WARCS}")

SPEEDIA0 = WARCS / "wikispeedia-2007-00000.warc.gz"
IANA = WARCS / "iana-2014.warc.gz"

# Measured on the sample files; every record is accounted for.
EXPECTED = {
    "cc-main-2020-34-excerpt.warc.gz": dict(captures=16, redirects=0, records=50, skipped_not_html=0),
    "cc-main-2024-22-whirlwind.warc.gz": dict(captures=1, redirects=0, records=4, skipped_not_html=0),
    "clueweb-quirk.warc.gz": dict(captures=29, redirects=0, records=30, skipped_not_html=0),
    "datagovuk-2014.warc.gz": dict(captures=36, redirects=1, records=190, skipped_not_html=28),
    "iana-2014.warc.gz": dict(captures=16, redirects=4, records=343, skipped_not_html=151),
    "wikipedia-mona-lisa-2013.warc.gz": dict(captures=2, redirects=0, records=82, skipped_not_html=37),
    "wikispeedia-2007-00000.warc.gz": dict(captures=1150, redirects=0, records=1151, skipped_not_html=0),
    "wikispeedia-2007-00001.warc.gz": dict(captures=1150, redirects=0, records=1151, skipped_not_html=0),
    "wikispeedia-2007-00002.warc.gz": dict(captures=1149, redirects=0, records=1150, skipped_not_html=0),
    "wikispeedia-2007-00003.warc.gz": dict(captures=1149, redirects=0, records=1150, skipped_not_html=0),
}


def read(path, **kw):
    counters = Counter()
    items = list(read_warc(path, counters=counters, **kw))
    return items, counters


def captures(items):
    return [x for x in items if isinstance(x, WarcCapture)]


def rejections(items):
    return [x for x in items if isinstance(x, WarcRejection)]


def warcio_survey(path):
    """What plain warcio sees: record types, and the target URIs of responses it yields before any error."""
    types, responses, error = Counter(), [], None
    with open(path, "rb") as fh:
        try:
            for record in ArchiveIterator(fh):
                types[record.rec_type] += 1
                if record.rec_type == "response":
                    responses.append(record.rec_headers.get_header("WARC-Target-URI"))
                record.content_stream().read()
        except Exception as exc:  # noqa: BLE001 - recording where warcio gives up
            error = exc
    return types, responses, error


def members(path):
    """(offset, length) of each gzip member (= record) of a well-formed .warc.gz."""
    out = []
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        for record in it:
            record.content_stream().read()
            out.append((it.get_record_offset(), it.get_record_length()))
    return out


@pytest.fixture(scope="module")
def small_gz(tmp_path_factory):
    """The warcinfo + first 10 responses of wikispeedia shard 0: (bytes, member spans, urls, path)."""
    spans = members(SPEEDIA0)[:11]
    data = SPEEDIA0.read_bytes()[: spans[-1][0] + spans[-1][1]]
    path = tmp_path_factory.mktemp("small") / "small.warc.gz"
    path.write_bytes(data)
    urls = [c.url for c in captures(read(path)[0])]
    assert len(urls) == 10
    return data, spans, urls, path


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# The real sample files


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_file_counts(name):
    path = WARCS / name
    items, counters = read(path)
    want = EXPECTED[name]
    assert rejections(items) == []
    assert len(captures(items)) == counters["html_captures"] == want["captures"]
    assert sum(isinstance(x, WarcRedirect) for x in items) == counters["redirects"] == want["redirects"]
    assert counters["skipped_not_html"] == want["skipped_not_html"]
    # Every record warcio sees is counted, and the skipped types match warcio's own count.
    types, _, error = warcio_survey(path)
    assert error is None
    assert counters["records"] == sum(types.values()) == want["records"]
    for rtype in ("request", "metadata", "warcinfo", "resource"):
        assert counters[f"skipped_{rtype}"] == types[rtype]
    accounted = counters["html_captures"] + counters["redirects"] + counters["skipped_not_html"]
    assert accounted == types["response"] + types["revisit"]
    for cap in captures(items):
        assert cap.url == normalize_url(cap.url)
        assert cap.html and cap.payload_bytes > 0
        assert cap.content_type in {"text/html", "application/xhtml+xml"}


def test_wikispeedia_shards_total():
    total = sum(len(captures(read(WARCS / f"wikispeedia-2007-0000{i}.warc.gz")[0])) for i in range(4))
    assert total == 4598


def test_capture_fields_and_offsets():
    items, _ = read(IANA)
    home = captures(items)[0]
    assert home.url == "http://www.iana.org/"
    assert home.http_status == 200
    assert (home.content_type, home.charset, home.charset_source) == ("text/html", "utf-8", "header")
    assert home.warc_date == datetime(2014, 1, 26, 20, 6, 24, tzinfo=timezone.utc)
    assert "<title>" in home.html and not home.from_revisit
    # The offset is a real record boundary: warcio re-reads the same record from there.
    with open(IANA, "rb") as fh:
        fh.seek(home.offset)
        record = next(iter(ArchiveIterator(fh)))
        assert record.rec_headers.get_header("WARC-Record-ID") == home.record_id


def test_redirects_resolved_and_normalised():
    redirects = [x for x in read(IANA)[0] if isinstance(x, WarcRedirect)]
    assert {(r.url, r.location) for r in redirects} >= {
        ("http://www.iana.org/dnssec", "https://www.iana.org/dnssec"),
        ("http://www.iana.org/domains/root/db/", "http://www.iana.org/domains/root/db"),
    }
    assert all(r.http_status == 302 and r.warc_date is not None and r.record_id for r in redirects)


def test_iana_revisits_are_all_accounted_for():
    _, counters = read(IANA)
    types, _, _ = warcio_survey(IANA)
    assert counters["revisits"] == types["revisit"] == 123
    # All of iana's revisits point at non-HTML payloads (css, js, svg, octet-stream): none is lost.
    assert counters["revisits_unresolved"] == 0
    assert counters["revisits_resolved"] == 49  # the octet-stream ones, whose type needs the original


def test_clueweb_quirks_and_charsets():
    items, counters = read(WARCS / "clueweb-quirk.warc.gz")
    caps = captures(items)
    assert len(caps) == 29 and counters["charset_header"] == 29
    assert all(c.charset == "euc_jp" and "\ufffd" not in c.html for c in caps)
    assert all(c.warc_date is None for c in caps)  # "2008-10-294T05:21:46-0700" is not a date


# ---------------------------------------------------------------------------------------------
# Damaged files, built from real records


def test_truncated_gzip_keeps_records_before_the_cut(tmp_path, small_gz):
    data, spans, urls, _ = small_gz
    offset, length = spans[6]
    path = write(tmp_path, "cut.warc.gz", data[: offset + length // 2])
    items, counters = read(path)
    assert [c.url for c in captures(items)] == urls[:5]
    [rej] = rejections(items)
    assert rej.reason == "truncated_file" and rej.location == f"offset={offset}"
    assert counters["rejected_truncated_file"] == 1
    # plain warcio yields the cut record as if it were whole; we keep everything else it yields
    _, plain, _ = warcio_survey(path)
    assert set(plain) - {c.url for c in captures(items)} == {urls[5]}


def test_truncated_inside_gzip_header(tmp_path, small_gz):
    data, spans, urls, _ = small_gz
    path = write(tmp_path, "cut.warc.gz", data[: spans[7][0] + 5])
    items, _ = read(path)
    assert [c.url for c in captures(items)] == urls[:6]
    assert [r.reason for r in rejections(items)] == ["truncated_file"]


def test_garbage_between_gzip_members(tmp_path, small_gz):
    data, spans, urls, _ = small_gz
    cut = spans[4][0]
    garbage = b"\x00garbage \x1f\x8b\x08 not a member\r\n" * 40
    path = write(tmp_path, "garbage.warc.gz", data[:cut] + garbage + data[cut:])
    items, counters = read(path)
    assert [c.url for c in captures(items)] == urls  # nothing lost on either side
    [rej] = rejections(items)
    assert rej.reason == "corrupt_record" and rej.location == f"offset={cut}"
    assert "garbage" in rej.detail and counters["resyncs"] == 1
    _, plain, error = warcio_survey(path)
    assert error is not None and plain == urls[:3]  # plain warcio stops at the garbage


def test_corrupt_bytes_inside_a_gzip_member(tmp_path, small_gz):
    data, spans, urls, _ = small_gz
    offset, length = spans[5]
    damaged = bytearray(data)
    for i in range(offset + 200, offset + 260):
        damaged[i] ^= 0x55
    items, _ = read(write(tmp_path, "flip.warc.gz", bytes(damaged)))
    assert [c.url for c in captures(items)] == urls[:4] + urls[5:]
    assert [r.reason for r in rejections(items)] == ["corrupt_record"]


def test_garbage_before_the_first_record(tmp_path, small_gz):
    data, _, urls, _ = small_gz
    items, _ = read(write(tmp_path, "lead.warc.gz", b"not a warc at all\n" * 20 + data))
    assert [c.url for c in captures(items)] == urls
    assert [(r.reason, r.location) for r in rejections(items)] == [("corrupt_record", "offset=0")]


def test_gzip_member_with_overstated_content_length_is_kept(tmp_path, small_gz):
    data, spans, urls, _ = small_gz
    offset, length = spans[3]
    record = gzip.decompress(data[offset : offset + length])
    m = re.search(rb"Content-Length: (\d+)\r\n\r\nHTTP", record)
    record = record[: m.start(1)] + str(int(m.group(1)) + 300).encode() + record[m.end(1) :]
    path = write(tmp_path, "long.warc.gz", data[:offset] + gzip.compress(record) + data[offset + length :])
    items, counters = read(path)
    # the gzip member frames the record, so its content is whole: kept, and counted
    assert [c.url for c in captures(items)] == urls and rejections(items) == []
    assert counters["content_length_mismatch"] == 1


@pytest.fixture(scope="module")
def small_warc(small_gz):
    """The same 11 records, uncompressed, with the byte range of each record's Content-Length value."""
    data, _, urls, _ = small_gz
    raw = gzip.decompress(data)
    lengths = list(re.finditer(rb"Content-Length: (\d+)\r\n\r\nHTTP", raw))
    starts = [m.start() for m in re.finditer(rb"(?:^|(?<=\n))WARC/1\.0\r\n", raw)]
    return raw, lengths, starts, urls


@pytest.mark.parametrize("delta", [-300, +300], ids=["too_short", "too_long"])
def test_lying_content_length_uncompressed(tmp_path, small_warc, delta):
    raw, lengths, starts, urls = small_warc
    m = lengths[3]  # the 4th response (record 5 of the file)
    lying = raw[: m.start(1)] + str(int(m.group(1)) + delta).encode() + raw[m.end(1) :]
    path = write(tmp_path, "lying.warc", lying)
    items, counters = read(path)
    # the lying record is rejected; the records before it and after it (even the one it swallowed) are kept
    assert [c.url for c in captures(items)] == urls[:3] + urls[4:]
    [rej] = rejections(items)
    assert rej.reason == "bad_content_length" and rej.location == f"offset={starts[4]}"
    assert counters["rejected_bad_content_length"] == 1 and counters["resyncs"] == 1
    _, plain, error = warcio_survey(path)
    assert error is not None and len(plain) == 4  # plain warcio: up to and including the liar, then gives up


def test_garbage_between_uncompressed_records(tmp_path, small_warc):
    raw, _, starts, urls = small_warc
    cut = starts[6]
    path = write(tmp_path, "garbage.warc", raw[:cut] + b"junk line\r\n\r\nmore WARC/1.0 junk\r\n" + raw[cut:])
    items, _ = read(path)
    assert [c.url for c in captures(items)] == urls
    assert [(r.reason, r.location) for r in rejections(items)] == [("corrupt_record", f"offset={cut}")]
    _, plain, error = warcio_survey(path)
    assert error is not None and plain == urls[:5]


def test_truncated_uncompressed(tmp_path, small_warc):
    raw, _, starts, urls = small_warc
    items, _ = read(write(tmp_path, "cut.warc", raw[: starts[-1] + 60]))  # cut inside the headers
    assert [c.url for c in captures(items)] == urls[:9]
    assert [r.reason for r in rejections(items)] == ["truncated_file"]
    middle = starts[-1] + (len(raw) - starts[-1]) // 2
    items, _ = read(write(tmp_path, "cut2.warc", raw[:middle]))  # cut inside the payload
    assert [c.url for c in captures(items)] == urls[:9]
    assert [r.reason for r in rejections(items)] == ["truncated_file"]


def test_whole_file_gzip(tmp_path, small_warc):
    """`gzip file.warc` (one gzip stream, not one member per record): warcio refuses it, we read it."""
    raw, _, starts, urls = small_warc
    path = write(tmp_path, "whole.warc.gz", gzip.compress(raw))
    items, counters = read(path)
    assert [c.url for c in captures(items)] == urls and rejections(items) == []
    assert counters["whole_file_gzip"] == 1
    assert [c.offset for c in captures(items)] == starts[1:]  # offsets into the decompressed stream
    assert warcio_survey(path)[2] is not None


def test_empty_and_missing_files(tmp_path):
    items, counters = read(write(tmp_path, "empty.warc.gz", b""))
    assert [(r.reason, r.location) for r in items] == [("empty_file", "offset=0")]
    assert counters["rejected_empty_file"] == 1
    items, _ = read(write(tmp_path, "empty-gzip.warc.gz", gzip.compress(b"")))
    assert [r.reason for r in items] == ["empty_file"]
    with pytest.raises(FileNotFoundError):
        read_warc(tmp_path / "nope.warc.gz")  # raised at call time, not at first iteration


def test_payload_too_large_is_rejected_and_reading_goes_on(small_gz):
    _, _, urls, path = small_gz
    sizes = [c.payload_bytes for c in captures(read(path)[0])]
    limit = sorted(sizes)[5]
    items, counters = read(path, max_payload_bytes=limit)
    n_big = sum(s > limit for s in sizes)
    assert [c.url for c in captures(items)] == [u for u, s in zip(urls, sizes) if s <= limit]
    assert [r.reason for r in rejections(items)] == ["payload_too_large"] * n_big
    assert counters["rejected_payload_too_large"] == n_big > 0


def test_random_damage_never_raises_and_never_invents_records(tmp_path, small_gz, small_warc):
    """Cuts, garbage and flipped bytes at random places: reading always ends, without an exception,
    and yields only URLs that are in the file (a damaged record may be lost, never made up)."""
    rng = random.Random(20240601)
    originals = set(small_gz[2])
    for n, source in enumerate([small_gz[0], small_warc[0]] * 15):
        data = bytearray(source)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            kind = rng.choice(["flip", "insert", "delete", "cut"])
            if kind == "flip":
                for i in range(pos, min(pos + rng.randint(1, 64), len(data))):
                    data[i] ^= rng.randrange(1, 256)
            elif kind == "insert":
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
            elif kind == "delete":
                del data[pos : pos + rng.randint(1, 200)]
            else:
                del data[pos:]
        path = write(tmp_path, f"fuzz{n}.warc" + (".gz" if source is small_gz[0] else ""), bytes(data))
        items, counters = read(path)
        assert {c.url for c in captures(items)} <= originals
        assert counters["records"] <= 11 + 2  # no record read twice


@pytest.mark.parametrize("compress", [False, True], ids=["arc", "arc.gz"])
def test_arc_files(tmp_path, compress):
    uri, body = _real_payload(IANA, "www.iana.org/")
    http = b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n" + body
    desc = b"1 0 IANA\nURL IP-address Archive-date Content-type Archive-length\n"
    records = [
        b"filedesc://iana.arc 0.0.0.0 20140126200624 text/plain %d\n%s\n" % (len(desc), desc),
        b"%s 192.0.32.8 20140126200624 text/html %d\n%s\n" % (uri.encode(), len(http), http),
    ]
    data = b"".join(gzip.compress(r) for r in records) if compress else b"".join(records)
    path = write(tmp_path, "iana.arc" + (".gz" if compress else ""), data)
    items, counters = read(path)
    [cap] = captures(items)
    assert (cap.url, cap.http_status, cap.charset_source) == ("http://www.iana.org/", 200, "header")
    assert cap.html == body.decode("utf-8") and cap.warc_date == datetime(2014, 1, 26, 20, 6, 24, tzinfo=timezone.utc)
    assert cap.record_id == captures(read(path)[0])[0].record_id  # stable across reads
    assert counters["skipped_warcinfo"] == 1 and rejections(items) == []


# ---------------------------------------------------------------------------------------------
# Revisits and charsets, on records built from real payloads


def _record(uri: str, body: bytes, content_type: str, *, date: str = "2014-01-26T20:06:24Z") -> bytes:
    http = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (content_type.encode(), len(body))
    block = http + body
    head = (
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:%s>\r\nWARC-Date: %s\r\n"
        "WARC-Target-URI: %s\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: %d\r\n\r\n"
    ) % (f"{abs(hash((uri, date))):032x}", date, uri, len(block))
    return head.encode() + block + b"\r\n\r\n"


def _real_payload(path: Path, url_part: str) -> tuple[str, bytes]:
    with open(path, "rb") as fh:
        for record in ArchiveIterator(fh):
            uri = record.rec_headers.get_header("WARC-Target-URI") or ""
            if record.rec_type == "response" and url_part in uri:
                return uri, record.content_stream().read()
    raise LookupError(url_part)


def test_non_utf8_page_without_any_charset_is_detected(tmp_path):
    uri, body = _real_payload(WARCS / "cc-main-2020-34-excerpt.warc.gz", "01spb.ru")
    body = re.sub(rb"<meta[^>]*charset[^>]*>", b"", body)  # the page declared windows-1251: remove it
    assert b"charset" not in body[:4096].lower()
    path = write(tmp_path, "ru.warc", _record(uri, body, "text/html"))
    [cap] = captures(read(path)[0])
    assert (cap.charset, cap.charset_source) == ("cp1251", "detected")
    assert cap.html == body.decode("cp1251") and "компании" in cap.html


def test_bogus_header_charset_falls_through():
    _, body = _real_payload(WARCS / "clueweb-quirk.warc.gz", "uraharajuku")
    assert decode_html(body, "EUC-JP")[1:] == ("euc_jp", "header")
    assert decode_html(body, "no-such-charset")[1:] == ("euc_jp", "meta")
    assert decode_html(body, "zlib")[1:] == ("euc_jp", "meta")  # a bytes codec is not a charset
    assert decode_html(body, "utf-8")[1:] == ("euc_jp", "meta")  # the bytes are not UTF-8
    stripped = re.sub(rb"charset=[A-Za-z0-9_-]+", b"", body)
    text, codec, source = decode_html(stripped, None)
    assert source == "detected" and text == stripped.decode("euc_jp")
    assert decode_html(b"\xef\xbb\xbf<p>caf\xc3\xa9</p>", "latin-1") == ("<p>café</p>", "utf-8", "detected")
    assert text_codec("ISO-8859-1") == "cp1252" and text_codec("base64") is None


def _revisit(uri: str, digest: str, date: str) -> bytes:
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=UTF-8")], protocol="HTTP/1.1")
    record = writer.create_revisit_record(uri, digest, uri, "2014-01-26T20:06:24Z", http_headers=http,
                                          warc_headers_dict={"WARC-Date": date})
    writer.write_record(record)
    return out.getvalue()


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "re-read"])
def test_html_revisit_resolved_within_the_file(tmp_path, monkeypatch, cache):
    if not cache:  # force the re-read of the original by offset
        monkeypatch.setattr(warc_module, "_CACHE_MAX_ENTRIES", 0)
    spans = members(IANA)
    home = captures(read(IANA)[0])[0]
    offset, length = next(s for s in spans if s[0] == home.offset)
    with open(IANA, "rb") as fh:
        fh.seek(offset)
        original = fh.read(length)
        fh.seek(offset)
        digest = next(iter(ArchiveIterator(fh))).rec_headers.get_header("WARC-Payload-Digest")
    data = (
        _revisit("http://www.iana.org/", "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "2014-01-26T20:00:00Z")  # before it
        + original
        + _revisit("http://www.iana.org/", digest, "2014-02-01T10:00:00Z")
        + _revisit("http://iana.org/index.html", digest, "2014-02-02T10:00:00Z")
    )
    items, counters = read(write(tmp_path, "revisits.warc.gz", data))
    caps = captures(items)
    assert [c.from_revisit for c in caps] == [False, True, True]
    assert all(c.html == home.html and c.charset == "utf-8" for c in caps)
    assert caps[1].url == "http://www.iana.org/" and caps[2].url == "http://iana.org/index.html"
    assert caps[1].warc_date == datetime(2014, 2, 1, 10, tzinfo=timezone.utc)
    assert caps[1].offset > caps[0].offset and caps[1].record_id != caps[0].record_id
    [rej] = rejections(items)
    assert rej.reason == "revisit_unresolved" and rej.location == "offset=0"
    assert (counters["revisits_resolved"], counters["revisits_unresolved"]) == (2, 1)
