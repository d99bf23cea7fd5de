"""Small ingest faults of issue 15: a byte-order mark in a clickstream dump, ARC length fields that are not byte
counts, and a script that calls the ingest API without an `if __name__ == "__main__":` guard."""

import gzip
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from pipeline.ingest.clickstream import ClickRow, read_clickstream
from pipeline.ingest.warc import WarcCapture, WarcRejection, read_warc
from tests.support import sample

REPO = Path(__file__).resolve().parents[3]


def test_a_byte_order_mark_is_not_part_of_the_first_title(tmp_path):
    path = tmp_path / "clickstream-enwiki-2024-10.tsv"
    path.write_bytes("\ufeffother-search\tPenguin\texternal\t500\nPenguin\tAardvark\tlink\t15\n".encode("utf-8"))
    rows = list(read_clickstream(path))
    assert rows[0] == ClickRow("other-search", "Penguin", "external", 500)
    assert rows[1] == ClickRow("Penguin", "Aardvark", "link", 15)


BODY = b"<html><head><title>Hi</title></head><body><p>" + b"Hello world text here. " * 20 + b"</p></body></html>"
HTTP = b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n" + BODY
DESC = b"1 0 test\nURL IP-address Archive-date Content-type Archive-length\n"


def _arc(tmp_path, length_field: bytes, compress: bool, where: str) -> Path:
    filedesc = b"filedesc://t.arc 0.0.0.0 20140126200624 text/plain %d\n%s\n" % (len(DESC), DESC)
    good = b"http://a.example/good 192.0.32.8 20140126200624 text/html %d\n%s\n" % (len(HTTP), HTTP)
    if where == "filedesc":
        records = [b"filedesc://t.arc 0.0.0.0 20140126200624 text/plain %s\n%s\n" % (length_field, DESC), good]
    else:
        records = [filedesc, b"http://a.example/bad 192.0.32.8 20140126200624 text/html %s\n%s\n"
                   % (length_field, HTTP), good]
    data = b"".join(gzip.compress(r) for r in records) if compress else b"".join(records)
    path = tmp_path / ("t.arc.gz" if compress else "t.arc")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["arc", "arc.gz"])
@pytest.mark.parametrize("length_field,where", [(b"abc", "record"), (b"-5", "record"), (b"12x", "record"),
                                                (b"abc", "filedesc"), (b"-1", "filedesc")])
def test_arc_length_fields_that_are_not_byte_counts_are_rejections(tmp_path, length_field, compress, where):
    counters: Counter = Counter()
    items = list(read_warc(_arc(tmp_path, length_field, compress, where), counters=counters))
    rejections = [i for i in items if isinstance(i, WarcRejection)]
    assert [r.reason for r in rejections] == ["bad_content_length"]
    assert repr(length_field.decode()) in rejections[0].detail
    assert [c.url for c in items if isinstance(c, WarcCapture)] == ["http://a.example/good"]  # the next one is kept
    assert counters["skipped_not_html"] == 0


NO_GUARD = textwrap.dedent("""
    import sys, time
    from pipeline.ingest.run import ingest_warc
    from pipeline.ingest.store import Store

    started = time.monotonic()
    try:
        ingest_warc(sys.argv[1], Store(sys.argv[2]), workers=2)
        print("NO ERROR")
    except RuntimeError as exc:
        print("ERROR", exc)
    print(f"SECONDS {time.monotonic() - started:.1f}")
""")


def test_a_script_without_a_main_guard_fails_fast_with_a_clear_error(tmp_path):
    warc = sample("warc", "iana-2014.warc.gz")
    script = tmp_path / "ingest_script.py"
    script.write_text(NO_GUARD)
    out = subprocess.run([sys.executable, str(script), str(warc), str(tmp_path / "store.duckdb")], cwd=tmp_path,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=120).stdout
    assert "ERROR" in out and 'if __name__ == "__main__":' in out and f"{script}:8" in out, out
    assert float(out.split("SECONDS ")[1]) < 30, out
    assert not (tmp_path / "store.duckdb").exists()  # failed before touching the store


def test_a_guarded_script_ingests(tmp_path):
    warc = sample("warc", "iana-2014.warc.gz")
    script = tmp_path / "guarded.py"
    script.write_text("import sys\nfrom pipeline.ingest.run import ingest_warc\nfrom pipeline.ingest.store import Store\n"
                      "if __name__ == '__main__':\n    print('KEPT', ingest_warc(sys.argv[1], Store(sys.argv[2]), "
                      "workers=2).kept)\n")
    out = subprocess.run([sys.executable, str(script), str(warc), str(tmp_path / "store.duckdb")], cwd=tmp_path,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=300)
    assert "KEPT 16" in out.stdout, out.stdout + out.stderr[-2000:]
