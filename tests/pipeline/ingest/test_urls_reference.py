"""The fast `normalize_url` (join shortcuts, cached canonical form) against the one it replaced
(tests/pipeline/ingest/reference_urls.py): the same answer for every link of real sample pages, for those links
mutated, and for generated URLs built from the parts that make normalisation hard."""

from __future__ import annotations

from itertools import islice

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import sample_data_dir
from pipeline.ingest.extract import parse_html
from pipeline.ingest.urls import normalize_url
from pipeline.ingest.warc import WarcCapture, read_warc
from tests.pipeline.ingest.reference_urls import normalize_url as reference

WARC = sample_data_dir() / "warc"
needs_data = pytest.mark.skipif(not (WARC / "wikispeedia-2007-00000.warc.gz").is_file(),
                                reason=f"sample data not found at {WARC}")


@pytest.fixture(scope="module")
def sample_links() -> list[tuple[str, str]]:
    """(href as written, page URL) of every `<a href>` and `<base href>` of the small sample WARCs and of the first
    200 Wikispeedia articles."""
    out = []
    for path in sorted(WARC.glob("*.warc.gz")):
        if path.name.startswith("wikispeedia-") and path.name != "wikispeedia-2007-00000.warc.gz":
            continue
        caps = (c for c in read_warc(path) if isinstance(c, WarcCapture))
        for cap in islice(caps, 200 if path.name.startswith("wikispeedia-") else None):
            tree = parse_html(cap.html)
            out += [(el.get("href"), cap.url) for el in tree.iter("a", "base", "link") if el.get("href") is not None]
    return out


@needs_data
def test_every_sample_link_normalises_as_before(sample_links):
    assert len(sample_links) > 10_000
    assert len({base for _, base in sample_links}) > 250  # many pages, not one page's links
    kinds = {"root": 0, "absolute": 0, "relative": 0}
    for href, base in sample_links:
        kind = "root" if href.strip().startswith("/") else "absolute" if "://" in href else "relative"
        kinds[kind] += 1
        assert normalize_url(href, base) == reference(href, base), (href, base)
        assert normalize_url(href) == reference(href), href
    assert min(kinds.values()) > 50  # every branch of the fast join is exercised, and the urljoin fallback


_NOISE = ["/", "//", ".", "..", "/./", "/../", ";", ";p=1", "?", "?a=1&b=%2f", "#", "#f", "%", "%2F", "%2e", "%c3%a9",
          "%C3%A9", "é", " ", "\t", "\n", ":", ":8080", "@", "[", "]", "\\", "~", "%25", "%3F", "%23", "+", "http://",
          "https://", "HTTPS://", "//Example.ORG", "x"]


@needs_data
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_sample_links_normalise_as_before(sample_links, data):
    href, base = data.draw(st.sampled_from(sample_links))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(href)))
        href = href[:at] + data.draw(st.sampled_from(_NOISE)) + href[at:]
    assert normalize_url(href, base) == reference(href, base)


_BASES = ["https://en.wikipedia.org/wiki/Foo", "http://www.iana.org/domains/example/", "https://a.example:8443/x/y?q=1",
          "HTTPS://User@Example.COM:443/a/b/c", "https://[::1]:8000/", "http://xn--bcher-kva.example/", "https://h",
          "ftp://files.example/pub/", "https://[bad/", "mailto:x@y.z", "https:///nohost", "https://h/a;p?q#f"]
_PART = st.lists(st.sampled_from(_NOISE + ["a", "b", "wiki", "Caf%C3%A9", "index.html", "A_(b)", "x=1"]), max_size=8)


@settings(max_examples=3000, deadline=None)
@given(prefix=st.sampled_from(["", "/", "//h.example", "https://", "http://", "https://Host.Example.",
                               "https://h.example:443", "http://h.example:80", "https://ü.example", "HTTP://h"]),
       parts=_PART, base=st.sampled_from(_BASES + [None]))
def test_generated_urls_normalise_as_before(prefix, parts, base):
    url = prefix + "".join(parts)
    assert normalize_url(url, base) == reference(url, base)
