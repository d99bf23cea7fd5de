"""Extraction stores what it stored before its speed-ups (issue 16): text, title, date, language and links of real
sample pages against digests written from the old extractor (tests/pipeline/ingest/golden.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.config import sample_data_dir
from pipeline.ingest.extract import ExtractionError, extract_many, extract_page
from tests.pipeline.ingest import golden

WARC = sample_data_dir() / "warc"
pytestmark = pytest.mark.skipif(not (WARC / "wikispeedia-2007-00000.warc.gz").is_file(),
                                reason=f"sample data not found at {WARC}")


@pytest.fixture(scope="module")
def recorded() -> dict:
    data = golden.load()
    if not golden.applies(data):
        pytest.skip(f"digests hold for {[data['libraries'], *data.get('verified_libraries', [])]}, this environment "
                    f"has {golden.library_versions()} (python -m tests.pipeline.ingest.golden --verify-libraries)")
    return data


def _extract(html: str, url: str):
    try:
        return extract_page(html, url)
    except ExtractionError as exc:
        return exc


def _mismatches(name: str, expected: dict[str, str], extract) -> list[str]:
    out = []
    for i, cap in enumerate(golden.captures(WARC / name)):
        if not golden.sampled(name, i):
            continue
        got = golden.page_digest(extract(cap.html, cap.url))
        want = expected.get(str(cap.offset))
        if got != want:
            fields = [f for f, g, w in zip(("text", "title/date/language", "links"), got.split(":"),
                                           (want or "").split(":")) if g != w]
            out.append(f"{name} {cap.url}: {fields or [got, want]}")
    return out


def test_the_digests_cover_every_sample_file_and_every_kind_of_page(recorded):
    files = recorded["files"]
    assert set(files) == {p.name for p in WARC.glob("*.warc.gz")}
    assert sum(f["pages"] for f in files.values()) == 4698  # HTML captures; 4,658 of them are stored pages
    sampled = [d for f in files.values() for d in f["sample"].values()]
    assert len(sampled) > 350
    assert len(set(sampled)) > 0.9 * len(sampled)  # digests of distinct pages, not of one empty value


@pytest.mark.parametrize("name", sorted(p.name for p in WARC.glob("*.warc.gz")))
def test_sampled_pages_extract_as_before(recorded, name):
    assert _mismatches(name, recorded["files"][name]["sample"], _extract) == []


def test_a_changed_extraction_is_caught(recorded):
    """The comparison itself: a page whose links lose one entry no longer matches."""
    def drop_a_link(html, url):
        page = _extract(html, url)
        if not isinstance(page, ExtractionError) and page.links:
            page.links.pop()
        return page

    name = "datagovuk-2014.warc.gz"
    bad = _mismatches(name, recorded["files"][name]["sample"], drop_a_link)
    assert bad and all(line.endswith("['links']") for line in bad)


def test_whole_small_files_match_through_the_worker_pool(recorded):
    """extract_many (2 workers, the ingest path) over every page of the non-Wikispeedia files, in order."""
    names = [n for n in sorted(recorded["files"]) if not n.startswith(golden.BIG_FILE_PREFIX)]
    for name in names:
        caps = list(golden.captures(WARC / name))
        digest = golden.FileDigest(name)
        for cap, result in zip(caps, extract_many(((c.html, c.url) for c in caps), workers=2, timeout_s=60)):
            digest.add(cap.offset, golden.page_digest(result))
        assert (digest.pages, digest.all) == (recorded["files"][name]["pages"], recorded["files"][name]["all"]), name


def test_fast_mode_is_an_option_that_changes_work_not_the_page_set(recorded):
    """fast=True keeps every page and all of its links and metadata on the Mona Lisa article; only the main
    text may differ (it skips trafilatura's readability/jusText comparison)."""
    name = "wikipedia-mona-lisa-2013.warc.gz"
    kinds = Counter()
    for cap in golden.captures(WARC / name):
        exact = golden.page_digest(_extract(cap.html, cap.url)).split(":")
        fast = golden.page_digest(extract_page(cap.html, cap.url, fast=True)).split(":")
        assert fast[1:] == exact[1:]
        kinds["same" if fast == exact else "text_changed"] += 1
    assert sum(kinds.values()) == recorded["files"][name]["pages"]
