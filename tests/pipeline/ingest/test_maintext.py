"""The exact speed-ups of pipeline.ingest.maintext give what trafilatura's and htmldate's own code gives, piece by
piece, on real sample pages and on made-up cases; the whole-page proof is test_extract_golden.py."""

from __future__ import annotations

import random
from copy import copy, deepcopy
from itertools import islice

import pytest
from lxml import etree

from pipeline.config import sample_data_dir
from pipeline.ingest import maintext
from pipeline.ingest.extract import _parse
from tests.pipeline.ingest import golden

WARC = sample_data_dir() / "warc"
needs_sample = pytest.mark.skipif(not (WARC / "wikispeedia-2007-00000.warc.gz").is_file(),
                                  reason=f"sample data not found at {WARC}")
trafilatura_as_written = pytest.mark.skipif(
    not any(name == "prune_unwanted_sections" for _, name, *_ in maintext._speedups()["swaps"]),
    reason=f"the trafilatura replacements are written for trafilatura {maintext.TRAFILATURA_VERSION}")


def _sample_trees(per_file: int = 6) -> list[etree._Element]:
    trees = []
    for path in sorted(WARC.glob("*.warc.gz")):
        for cap in islice(golden.captures(path), per_file):
            trees.append(_parse(cap.html))
    return trees


@pytest.fixture(scope="module")
def trees():
    return _sample_trees()


MADE_UP = """<html><body>
<div id="comments" class="x">a</div><div class="comments x" id="y">b</div><div class="navbox">c</div>
<section id="" class="share-this">d</section><span style="display:none">e</span><p class="hidden">f</p>
<div class="article-body" id="main">g<div class="post-content">h</div></div><article>i</article>
<div id="related-links" class="related"><p class="caption">j</p></div><div data-lp-replacement-content="1">k</div>
<div class="teaser">l</div><div aria-hidden="true">m</div><div class="" id="">n</div>
<ul id="comment-list"><li>o</li></ul>
<div class="infinite-scroll"><p>s</p></div><div class="link" id="bottom">t</div><header>u</header>
<div class="content" id="content"><p>p</p></div><main>q</main><div role="navigation">r</div>
</body></html>"""


def _guarded_names() -> list[str]:
    return sorted(set(maintext._LOCAL_XPATHS).union(*maintext._SWAPPED_XPATHS.values()))


@needs_sample
@pytest.mark.parametrize("name", _guarded_names())
def test_guarded_xpaths_select_what_trafilaturas_select(trees, name):
    from trafilatura import xpaths

    originals = getattr(xpaths, name)
    guarded = maintext._speedups()["xpaths"][name]
    assert len(guarded) == len(originals)
    made_up = _parse(MADE_UP)
    for tree in [*trees, made_up]:
        for element in [tree, *islice(tree.iter("div", "section"), 8)]:
            for original, fast in zip(originals, guarded):
                assert fast(element) == original(element), (name, original.path)
    assert any(original(made_up) for original in originals)  # the made-up page has something each one selects


def test_a_guard_is_added_only_where_the_pattern_cannot_match_the_empty_string():
    xpath = etree.XPath(".//*[re:test(@id|@class, 'nav') or re:test(@class, '^x?$') or re:test(@id, 'a', 'i')]",
                        namespaces={"re": "http://exslt.org/regular-expressions"})
    path = maintext.guarded_xpath(xpath).path
    assert "((@id or @class) and re:test(@id|@class, 'nav'))" in path
    assert " re:test(@class, '^x?$')" in path and "(@class) and re:test(@class, '^x?$')" not in path
    assert "((@id) and re:test(@id, 'a', 'i'))" in path
    tree = _parse("<html><body><p class='x'>1</p><p>2</p><p id='A'>3</p><p class='nav' id='q'>4</p>"
                  "<p id='nav' class='q'>5</p><p id='q' class='nav'>6</p><p title='y'>7</p></body></html>")
    ns = {"re": "http://exslt.org/regular-expressions"}
    for path, selected in ((".//p[re:test(@id|@class, 'nav') or re:test(@id, 'a', 'i')]", ["3", "4", "5"]),
                           (".//p[re:test(@title, '^x?$')]", ["1", "2", "3", "4", "5", "6"])):
        xpath = etree.XPath(path, namespaces=ns)
        assert [p.text for p in maintext.guarded_xpath(xpath)(tree)] == [p.text for p in xpath(tree)] == selected


@needs_sample
@trafilatura_as_written
def test_pruning_sections_deletes_what_trafilatura_deletes(trees):
    from trafilatura.htmlprocessing import convert_tags, tree_cleaning
    from trafilatura.main_extractor import prune_unwanted_sections
    from trafilatura.settings import TAG_CATALOG

    options = maintext._extractor(False)
    changed = 0
    for tree in [*trees, _parse(MADE_UP)]:
        cleaned = convert_tags(tree_cleaning(deepcopy(tree), options), options)
        for focus in ("balanced", "precision", "recall"):
            opts = copy(options)
            opts.focus = focus
            for tags in (set(TAG_CATALOG), {*TAG_CATALOG, "table", "graphic", "ref"}) if focus == "balanced" else (
                    {*TAG_CATALOG, "table"},):
                ours, theirs = deepcopy(cleaned), deepcopy(cleaned)
                maintext._prune_unwanted_sections(ours, set(tags), opts)
                prune_unwanted_sections(theirs, set(tags), opts)
                assert etree.tostring(ours) == etree.tostring(theirs)
                changed += etree.tostring(ours) != etree.tostring(cleaned)
    assert changed  # the comparison saw deletions


LINKY = "<html><body><div id='x'>" + "".join(
    f"<div><p>Some words {i}.</p><ul>" + "".join(f"<li><a href='/{i}/{j}'>link {j}</a></li>" for j in range(6)) +
    "</ul></div>" for i in range(4)) + "<p>" + "A long paragraph of text. " * 20 + "</p></div></body></html>"


@trafilatura_as_written
def test_the_second_link_density_pass_runs_where_the_first_deleted_something():
    from trafilatura.htmlprocessing import convert_tags, tree_cleaning
    from trafilatura.main_extractor import prune_unwanted_sections
    from trafilatura.settings import TAG_CATALOG

    options = maintext._extractor(False)
    cleaned = convert_tags(tree_cleaning(_parse(LINKY), options), options)
    ours, theirs = deepcopy(cleaned), deepcopy(cleaned)
    maintext._prune_unwanted_sections(ours, set(TAG_CATALOG), options)
    prune_unwanted_sections(theirs, set(TAG_CATALOG), options)
    assert etree.tostring(ours) == etree.tostring(theirs) != etree.tostring(cleaned)


@needs_sample
@trafilatura_as_written
def test_readability_scores_paragraphs_as_trafilaturas(trees):
    from trafilatura.readability_lxml import Document

    fast_class = maintext._readability_class()
    for tree in trees:
        ours, theirs = fast_class(deepcopy(tree)), Document(deepcopy(tree))
        for doc in (ours, theirs):
            doc.remove_unlikely_candidates()
            doc.transform_misused_divs_into_paragraphs()
        ours_scores = [(c.elem.tag, c.score) for c in ours.score_paragraphs().values()]
        theirs_scores = [(c.elem.tag, c.score) for c in theirs.score_paragraphs().values()]
        assert ours_scores == theirs_scores
        assert fast_class(deepcopy(tree)).summary() == Document(deepcopy(tree)).summary()


def _date_like_strings(n: int) -> list[str]:
    """Random runs of date pieces (years, months, days, separators, times) and of single characters."""
    rng = random.Random(16)
    pieces = ["2007", "1999", "2031", "1887", "06", "6", "13", "31", "07", "-", ".", "/", ":", "T", " ", "12:30:45",
              ":30", "Z", "+02:00", "x", "on ", "posted "]
    alphabet = "0123456789-./: TZ+x"
    out = ["2007-06-01", "2007-06-01T10:20:30Z", "01.06.2007", "1/6/07", "on 2019/1/5", "12:30:45", "--", ""]
    for _ in range(n):
        if rng.random() < 0.3:  # near-dates: year, day and month in some order, some separators, maybe a time
            parts = [rng.choice(["2007", "1999", "07", "1887"]), rng.choice(["06", "6", "13"]),
                     rng.choice(["01", "1", "31"])]
            rng.shuffle(parts)
            seps = [rng.choice("-./ :") for _ in range(2)]
            date = (f"{parts[0]}{seps[0]}{parts[1]}{seps[1]}{parts[2]}"
                    + rng.choice(["", "T12:30:45", " 12:30:45Z", ":30"]))
            out.append(rng.choice(["", "x", "on ", "date: "]) + date + rng.choice(["", " ", "1", "/5"]))
        elif rng.random() < 0.7:
            out.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))))
        else:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))))
    return out


def test_htmldate_searches_are_skipped_only_where_they_find_nothing():
    from htmldate.core import TIMESTAMP_LOOSE_PATTERN, TIMESTAMP_PATTERN
    from htmldate.extractors import DATE_CORE_PATTERN, idiosyncrasies_search, pattern_search
    from htmldate.utils import Extractor
    from htmldate.validators import get_max_date, get_min_date

    searches = maintext._htmldate_searches()
    if searches is None:
        pytest.skip("htmldate's patterns are not the ones the shortcuts were written for")
    assert set(searches) == {TIMESTAMP_PATTERN, TIMESTAMP_LOOSE_PATTERN, DATE_CORE_PATTERN}
    options = Extractor(False, get_max_date(None), get_min_date(None), True, "%Y-%m-%d")
    skipped = found = 0
    for text in _date_like_strings(10000):
        for pattern in (TIMESTAMP_PATTERN, TIMESTAMP_LOOSE_PATTERN, DATE_CORE_PATTERN):
            matches = pattern.search(text) is not None
            assert maintext._can_match(pattern, text) or not matches, (pattern.pattern, text)
            skipped += not maintext._can_match(pattern, text)
            found += matches
        assert (maintext._pattern_search(text, TIMESTAMP_PATTERN, options)
                == pattern_search(text, TIMESTAMP_PATTERN, options))
        assert (maintext._pattern_search(text, TIMESTAMP_LOOSE_PATTERN, options)
                == pattern_search(text, TIMESTAMP_LOOSE_PATTERN, options))
        assert (maintext._idiosyncrasies_search("date: " + text, options)
                == idiosyncrasies_search("date: " + text, options))
    assert skipped > 1000 and found > 200  # both sides of the shortcut were exercised


def test_speedups_are_in_place_only_while_extraction_runs():
    swaps = maintext._speedups()["swaps"]
    assert swaps  # htmldate's patterns at least
    def current():
        return [getattr(module, name) for module, name, *_ in swaps]
    originals = [original for *_, original, _ in swaps]
    replacements = [replacement for *_, replacement in swaps]
    assert current() == originals
    with maintext.exact_speedups():
        assert current() == replacements
        with maintext.exact_speedups():
            assert current() == replacements
        assert current() == replacements
    assert current() == originals
    with pytest.raises(RuntimeError), maintext.exact_speedups():
        raise RuntimeError("a failing page")
    assert current() == originals


@needs_sample
def test_find_and_findall_of_descendant_paths_match_elementpath(trees):
    from lxml import _elementpath

    for tree in trees:
        for element in [tree, *islice(tree.iter("div", "p", "ul"), 10)]:
            for path in (".//a", ".//ref", ".//img", ".//p", ".//table", ".//head", ".//title", ".//a[@href]", ".//*"):
                assert element.findall(path) == _elementpath.findall(element, path)
                assert element.find(path) == _elementpath.find(element, path)
    tree = _parse("<html><body><p>x <a href='1'>1</a><b><a href='2'>2</a></b></p></body></html>")
    assert [a.get("href") for a in tree.findall(".//a")] == ["1", "2"]
    assert tree.find(".//b").find(".//a").get("href") == "2" and tree.find(".//nothing") is None
    assert tree.findall(".//h1") == [] and tree.findall(".//b") == [tree.find(".//p")[1]]


@needs_sample
def test_xpath_with_compiled_expressions_matches_lxmls(trees):
    paths = ("//p//text()", ".//*", ".//title|.//h1", "text()[normalize-space()]", "count(.//a)", ".//p//text()",
             './/script[@type="application/ld+json" or @type="application/settings+json"]', "string(.)")
    for tree in trees:
        for element in [tree, *islice(tree.iter("div", "p"), 6)]:
            for path in paths:
                ours, theirs = element.xpath(path), etree._Element.xpath(element, path)
                assert ours == theirs and type(ours) is type(theirs), path
                if isinstance(ours, list) and ours and isinstance(ours[0], str):
                    assert [s.getparent() for s in ours] == [s.getparent() for s in theirs]


def test_collapse_is_the_regex_collapse_it_replaced():
    """extract._collapse joins str.split()'s words, for `_WS.sub(" ", text).strip()`, and extract._spaced for
    `_WS.sub(" ", text)` (the ends kept): the same whitespace, the same string."""
    from pipeline.ingest.extract import _WS, _collapse, _spaced

    assert [c for c in range(0x110000) if (_WS.fullmatch(chr(c)) is not None) != chr(c).isspace()] == []
    spaces = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(spaces + "ab.\u00e9\ue000") for _ in range(rng.randint(0, 12)))
        assert _collapse(text) == _WS.sub(" ", text).strip()
        assert _spaced(text) == _WS.sub(" ", text)


@needs_sample
def test_date_candidates_are_htmldates(trees):
    """The same elements in the same order, and some of them (the made-up page) found by their attributes."""
    from htmldate.core import date_candidates, is_date_candidate

    made_up = _parse("<html><body><div itemprop='datePublished'>1</div><div itemprop='name'>2</div><span id='x' "
                     "class='meta'>3</span><p class='Date'>4</p><footer>5</footer><div>6</div></body></html>")
    for tree in [*trees, made_up]:
        fast = maintext._date_candidates(tree, False, original=date_candidates, is_date_candidate=is_date_candidate)
        assert fast == date_candidates(tree, False)
        assert maintext._date_candidates(tree, True, original=date_candidates,
                                         is_date_candidate=is_date_candidate) == date_candidates(tree, True)
    with maintext.exact_speedups():  # in place, htmldate's own functions are still reached
        import htmldate.core

        assert htmldate.core.date_candidates(made_up, False) == date_candidates(made_up, False) != []