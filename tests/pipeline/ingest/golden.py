"""Digests of what extraction stores for the sample WARCs, to prove that a faster extractor stores the same.

`data/extract_golden.json` was written by this module from the extractor *before* the issue-16 speed-ups
(`python -m tests.pipeline.ingest.golden`); tests and `benchmarks/bench_ingest.py` compare today's
extractor with it. It holds hashes only (no page content): one per sampled page, keyed by file and record
offset, and one per file over every page in file order. A page's digest covers everything the store keeps
of an extraction: text | title, date, language | links (url, anchor, context), or the rejection reason.
Writing it again from today's extractor makes the tests compare the extractor with itself: do it only for a
deliberate change of output (new library versions, a fix), and say which in the commit.

The digests hold for the library versions they were written with ("libraries") and for those under which the
pre-speed-up extractor itself (commit PRE_SPEEDUP_COMMIT, read from git) was run again over every sample page and
gave every digest unchanged ("verified_libraries"; `python -m tests.pipeline.ingest.golden --verify-libraries`
checks the installed versions and adds them if so). Elsewhere the comparison cannot tell a library's change from
the extractor's, and tests skip it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

GOLDEN = Path(__file__).resolve().parent / "data" / "extract_golden.json"
SAMPLE_EVERY = 16  # every 16th page of the big (Wikispeedia) files; every page of the others
BIG_FILE_PREFIX = "wikispeedia-"
LIBRARIES = ("trafilatura", "lxml", "htmldate", "justext", "courlan")
PRE_SPEEDUP_COMMIT = "9919bd0"  # the commit that wrote the digests, with the extractor before the issue-16 speed-ups
REPO = Path(__file__).resolve().parents[3]


def _h(value) -> str:
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:8]


def page_digest(result) -> str:
    """"<text>:<meta>:<links>" hashes of an ExtractedPage, or "error:<reason>" for an ExtractionError (of this
    extractor or of the pre-speed-up one, whose classes are its own)."""
    if isinstance(result, Exception):
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


def applies(recorded: dict, versions: dict[str, str] | None = None) -> bool:
    """The digests are known to hold for these library versions (default: the installed ones)."""
    versions = versions or library_versions()
    return versions == recorded["libraries"] or versions in recorded.get("verified_libraries", [])


def pre_speedup_extractor(workdir: Path) -> Callable:
    """`extract(html, url)` of the extractor at PRE_SPEEDUP_COMMIT (its extract.py and urls.py from git, imported
    from `workdir`), returning an ExtractedPage-like object or an exception with `reason`."""
    def source(path: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), "show", f"{PRE_SPEEDUP_COMMIT}:{path}"], check=True,
                              capture_output=True, text=True).stdout

    (workdir / "pre_speedup_urls.py").write_text(source("pipeline/ingest/urls.py"), encoding="utf-8")
    code = source("pipeline/ingest/extract.py")
    old_import = "from pipeline.ingest.urls import normalize_url"
    assert old_import in code, "the old extractor's import of normalize_url has moved"
    code = code.replace(old_import, "from pre_speedup_urls import normalize_url")
    (workdir / "pre_speedup_extract.py").write_text(code, encoding="utf-8")
    sys.path.insert(0, str(workdir))
    try:
        spec = importlib.util.spec_from_file_location("pre_speedup_extract", workdir / "pre_speedup_extract.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(workdir))

    def extract(html, url):
        try:
            return module.extract_page(html, url)
        except module.ExtractionError as exc:
            return exc

    return extract


def verify_libraries() -> bool:
    """Run the pre-speed-up extractor over every sample page with the installed libraries; where every digest is
    the recorded one, add these versions to "verified_libraries". True if they (now) apply."""
    from pipeline.config import sample_data_dir

    recorded = load()
    versions = library_versions()
    if applies(recorded, versions):
        print(f"already verified: {versions}")
        return True
    with tempfile.TemporaryDirectory() as tmp:
        extract = pre_speedup_extractor(Path(tmp))
        same = True
        for path in sorted((sample_data_dir() / "warc").glob("*.warc.gz")):
            got = digest_file(path, extract)
            want = recorded["files"][path.name]
            ok = (got.pages, got.all, got.sample) == (want["pages"], want["all"], want["sample"])
            same &= ok
            print(path.name, got.pages, "same" if ok else "DIFFERENT", flush=True)
    if not same:
        print(f"the pre-speed-up extractor stores something else with {versions}: the digests do not apply")
        return False
    recorded.setdefault("verified_libraries", []).append(versions)
    GOLDEN.write_text(json.dumps(recorded, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"added {versions} to verified_libraries")
    return True


def main() -> None:
    if "--verify-libraries" in sys.argv[1:]:
        sys.exit(0 if verify_libraries() else 1)
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
