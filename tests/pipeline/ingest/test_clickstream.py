import gzip
from collections import Counter

from pipeline.ingest.clickstream import ClickRejection, ClickRow, language_of, read_clickstream
from tests.support import sample


def _split(rows):
    good = [r for r in rows if isinstance(r, ClickRow)]
    bad = [r for r in rows if isinstance(r, ClickRejection)]
    return good, bad


def test_reads_every_row_of_the_real_dumps():
    expected = {"clickstream-enwiki-2024-10.sample10k.tsv": 9936, "clickstream-enwiki-2024-11.sample1k.tsv": 1039,
                "clickstream-wikispeedia-paths.tsv": 35477}
    for name, n in expected.items():
        good, bad = _split(list(read_clickstream(sample("clickstream", name))))
        assert (len(good), len(bad)) == (n, 0), name


def test_other_sources_are_kept_as_they_are():
    good, _ = _split(list(read_clickstream(sample("clickstream", "clickstream-enwiki-2024-10.sample10k.tsv"))))
    prevs = Counter(r.prev for r in good if r.prev.startswith("other-"))
    assert {"other-search", "other-empty", "other-internal", "other-external"} <= set(prevs)
    assert {r.type for r in good} == {"link", "external", "other"}
    assert ClickRow("other-empty", "Main_Page", "external", 120677075) in good


def test_bad_rows_are_counted_and_the_good_ones_kept(tmp_path):
    lines = [
        b"A\tB\tlink\t12\n",
        b"only\tthree\tfields\n",
        b"A\tC\tlink\tmany\n",
        b"A\tD\tteleport\t3\n",
        b"\tE\tlink\t4\n",
        b"A\tF\tlink\t-2\n",
        b"A\t\xff\xfeG\tlink\t5\n",
        b"\n",
        b"other-search\tH_(film)\texternal\t99\r\n",
    ]
    path = tmp_path / "clickstream-frwiki-2024-01.tsv.gz"
    with gzip.open(path, "wb") as fh:
        fh.writelines(lines)
    good, bad = _split(list(read_clickstream(path)))
    assert good == [ClickRow("A", "B", "link", 12), ClickRow("other-search", "H_(film)", "external", 99)]
    assert Counter(r.reason for r in bad) == Counter(
        {"wrong_field_count": 1, "bad_count": 2, "bad_type": 1, "empty_title": 1, "undecodable": 1})
    assert [r.location for r in bad][0] == "line=2"
    assert language_of(path) == "fr"


def test_truncated_gzip_keeps_the_rows_before_the_damage(tmp_path):
    path = tmp_path / "clickstream-enwiki-2024-01.tsv.gz"
    with gzip.open(path, "wb") as fh:
        for i in range(5000):
            fh.write(f"Page_{i}\tTarget_{i}\tlink\t{i + 1}\n".encode())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    good, bad = _split(list(read_clickstream(path)))
    assert 100 < len(good) < 5000
    assert good[:2] == [ClickRow("Page_0", "Target_0", "link", 1), ClickRow("Page_1", "Target_1", "link", 2)]
    assert [r.reason for r in bad] == ["corrupt_file"]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tsv"
    path.write_bytes(b"")
    assert list(read_clickstream(path)) == []
