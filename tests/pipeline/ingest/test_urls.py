import pytest

from pipeline.ingest.urls import normalize_title, normalize_url, wikipedia_title, wikipedia_url


@pytest.mark.parametrize("raw, base, expected", [
    ("HTTP://Example.COM:80/a/../b/./c?x=1#frag", None, "http://example.com/b/c?x=1"),
    ("https://example.com", None, "https://example.com/"),
    ("https://example.com:443/x", None, "https://example.com/x"),
    ("https://example.com:8443/x", None, "https://example.com:8443/x"),
    ("/wiki/%c3%89ire", "https://en.wikipedia.org/wiki/Foo", "https://en.wikipedia.org/wiki/%C3%89ire"),
    ("/wiki/Éire", "https://en.wikipedia.org/wiki/Foo", "https://en.wikipedia.org/wiki/%C3%89ire"),
    ("Bar#section", "https://en.wikipedia.org/wiki/Foo", "https://en.wikipedia.org/wiki/Bar"),
    ("//cdn.example.org/a.js", "https://example.com/", "https://cdn.example.org/a.js"),
    ("/a%2Fb", "https://example.com/", "https://example.com/a%2Fb"),
    ("http://[::1]:8080/x", None, "http://[::1]:8080/x"),
    ("https://example.com/a//b/./c/../d", None, "https://example.com/a//b/d"),
    ("https://example.com/a/b/..", None, "https://example.com/a/"),
    ("https://example.com/../../x", None, "https://example.com/x"),
])
def test_normalize_url(raw, base, expected):
    assert normalize_url(raw, base) == expected


@pytest.mark.parametrize("raw", ["mailto:a@b.c", "javascript:void(0)", "data:text/html,x", "", "   ", "http://", "ftp://x/y",
                                 "http://[::1", None, "http://exa mple.com/"])
def test_normalize_url_rejects_non_web_urls(raw):
    assert normalize_url(raw) is None


def test_normalize_url_is_idempotent():
    for raw in ["HTTP://A.com/x/../y?q=%e2%82%ac", "https://en.wikipedia.org/wiki/Caf%C3%A9_(film)"]:
        once = normalize_url(raw)
        assert normalize_url(once) == once


def test_wikipedia_titles_round_trip():
    assert wikipedia_title("https://en.wikipedia.org/wiki/%C3%89ire") == ("en", "Éire")
    assert wikipedia_title("https://de.m.wikipedia.org/wiki/Albert%20Einstein") == ("de", "Albert_Einstein")
    assert wikipedia_title("https://en.wikipedia.org/w/index.php?title=Brain&action=edit") == ("en", "Brain")
    assert wikipedia_title("https://example.com/wiki/Brain") is None
    assert wikipedia_url("en", "Éire") == "https://en.wikipedia.org/wiki/%C3%89ire"
    assert wikipedia_url("en", "Wave–particle duality") == normalize_url("https://en.wikipedia.org/wiki/Wave%E2%80%93particle_duality")
    assert normalize_title("brain") == "Brain"
