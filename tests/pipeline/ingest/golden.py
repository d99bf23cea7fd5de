"""Digests of what extraction stores for the sample WARCs, to prove that a faster extractor stores the same.

`data/extract_golden.json` was written by this module from the extractor *before* the issue-16 speed-ups
(`python -m tests.pipeline.ingest.golden`); tests and `benchmarks/bench_ingest.py` compare today's
extractor with it. It holds hashes only (no page content): one per sampled page, keyed by file and record
offset, and one per file over every page in file order. A page's digest covers everything the store keeps
of an extraction: text | title, date, language | links (url, anchor, context), or the rejection reason.
Writing it again from today's extractor makes the tests compare the extractor with itself: do it only for a
deliberate change of output (new library versions, a fix), and say which in the commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

GOLDEN = Path(__file__).resolve().parent / "data" / "extract_golden.json"
SAMPLE_EVERY = 16  # every 16th page of the big (Wikispeedia) files; every page of the others
BIG_FILE_PREFIX = "wikispeedia-"
LIBRARIES = ("trafilatura", "lxml", "htmldate", "justext", "courlan")


def _h(value) -> str:
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:8]


def page_digest(result) -> str:
    """"<text>:<meta>:<links>" hashes of an ExtractedPage, or "error:<reason>" for an ExtractionError."""
    from pipeline.ingest.extract import ExtractedPage

    if not isinstance(result, ExtractedPage):
        return f"error:{result.reason}"
    links = [[link.url, link.anchor, link.context] for link in result.links]
    return f"{_h(result.text)}:{_h([result.title, result.published, result.language])}:{_h(links)}"


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in LIBRARIES}


def captures(path: Path) -> Iterator:
    from pipeline.ingest.warc import WarcCapture, read_warc

    return (item for item in read_warc(path) if isinstance(item, WarcCapture))


def sampled(name: str, index: int) -> bool:
    return not name.startswith(BIG_FILE_PREFIX) or index % SAMPLE_EVERY == 0


class FileDigest:
    """Running digest of one file's pages in order, with the sampled pages' digests by record offset."""

    def __init__(self, name: str):
        self.name = name
        self.pages = 0
        self.sample: dict[str, str] = {}
        self._all = hashlib.sha256()

    def add(self, offset: int, digest: str) -> None:
        if sampled(self.name, self.pages):
            self.sample[str(offset)] = digest
        self._all.update(digest.encode() + b"\n")
        self.pages += 1

    @property
    def all(self) -> str:
        return self._all.hexdigest()[:16]

    def as_json(self) -> dict:
        return {"pages": self.pages, "all": self.all, "sample": self.sample}


def digest_file(path: Path, extract) -> FileDigest:
    """`extract(html, url)` (returning an ExtractedPage or an ExtractionError) over every capture of `path`."""
    out = FileDigest(path.name)
    for cap in captures(path):
        out.add(cap.offset, page_digest(extract(cap.html, cap.url)))
    return out


def load() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def main() -> None:
    from pipeline.config import sample_data_dir
    from pipeline.ingest.extract import ExtractionError, extract_page

    def extract(html, url):
        try:
            return extract_page(html, url)
        except ExtractionError as exc:
            return exc

    files = {}
    for path in sorted((sample_data_dir() / "warc").glob("*.warc.gz")):
        files[path.name] = digest_file(path, extract).as_json()
        print(path.name, files[path.name]["pages"], files[path.name]["all"])
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"libraries": library_versions(), "sample_every": SAMPLE_EVERY, "files": files},
                                 indent=0, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
