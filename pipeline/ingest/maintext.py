"""Main text, title and date of a parsed page with trafilatura: its result, for less work.

`main_content` is trafilatura's `bare_extraction(html, url, with_metadata=True, include_comments=False,
include_tables=True, date_extraction_params=DATE_PARAMS)` on a tree websim has already parsed, with the
metadata cut to what the store keeps (title and date).

While it runs, `exact_speedups` puts in place of some of trafilatura's internals equivalents that return the
same results with less work, and puts the originals back afterwards (so other users of trafilatura in the
process, such as datatrove in benchmarks/bench_ingest.py, run it as shipped):

- its XPath expressions with a regular-expression test on an attribute (`re:test(@class, '...')`) call back
  into Python for every element they visit, whether or not it has that attribute (an absent attribute tests
  as ''). The same expressions with each such test guarded by the attribute's presence,
  `((@class) and re:test(@class, '...'))`, select the same elements wherever the pattern cannot match ''
  (checked for each pattern when the expression is built; one that could match '' is left as it was);
- `prune_unwanted_sections` runs its link-density pass (div, list, p) twice; a second-pass test that would see
  the tree its first-pass twin saw and kept whole deletes nothing either, so it is skipped;
- readability's paragraph scoring measures the text of every link once per candidate container that holds it
  (a link in a paragraph counts for its parent and grandparent); it does not change the tree meanwhile, so
  each link is measured once;
- htmldate's last resorts scan the page's markup and text with date regular expressions that Python tries at
  every digit (~1 ms per page); each of them can only match where a shorter piece of it, which starts with a
  fixed character and is found ~20x faster, occurs (":12:34" for a timestamp, "-06-" for a loose date, ".6/"
  or "/6." for a date core), so where that piece is absent the search is not run: it would find nothing;
- htmldate tests every element of some tags for date cues in its id, class and itemprop; one with none of those
  has none (htmldate 1.11.0's `is_date_candidate` says False), and is not asked (`date_candidates`).

The module also holds the element class and parser settings of websim's parse (`TreeElement`, `html_parser`).

The replacements are written against trafilatura `TRAFILATURA_VERSION`, htmldate `HTMLDATE_VERSION` and htmldate's
date patterns as `_HTMLDATE_NEEDS` spells them, and used only with those; with others both run as shipped.
tests/pipeline/ingest/test_maintext.py holds them to the originals.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from contextlib import contextmanager
from typing import Iterator

from lxml import etree
from lxml import html as lxml_html

# htmldate's extensive search guesses a date from any date-like string in the text (on the
# Wikipedia sample: a random year from the article body) and costs ~2/3 of extraction time.
DATE_PARAMS = {"extensive_search": False, "original_date": True}
TRAFILATURA_VERSION = "2.3.1"
HTMLDATE_VERSION = "1.11.0"

# re:test(<attribute node-set>, '<pattern>'[, '<flags>']) as trafilatura writes it.
_RE_TEST = re.compile(r"re:test\(\s*(@[\w:-]+(?:\s*\|\s*@[\w:-]+)*)\s*,\s*'([^']*)'\s*(?:,\s*'([^']*)'\s*)?\)")


# ---------------------------------------------------------------------------------------------
# websim's parse of a page: lxml.html's elements with cheaper ways to the same answers

# ".//name" (".//*"): every descendant named `name` (every element), which lxml's ElementPath selects with
# `iterdescendants(name)` (`iterdescendants("*")`).
_DESCENDANTS_PATH = re.compile(r"\.//([A-Za-z][A-Za-z0-9]*|\*)")


class TreeElement(lxml_html.HtmlElement):
    """lxml.html's element with two shortcuts to the same results:

    - `text_content` from libxml2's text serialiser instead of an XPath `string()` evaluation (the golden test
      holds it to the same string on the sample pages); trafilatura asks for it some 300 times per page;
    - `find`/`findall` of ".//name" or ".//*" (trafilatura's link-density and readability tests, ~200 per page)
      straight from `iterdescendants(name)`, which is what lxml's ElementPath runs for that path, without parsing it;
    - `xpath(path)` with a compiled `etree.XPath(path)` kept for the next call (lxml compiles the string every time).
    """

    def text_content(self):
        return etree.tostring(self, method="text", encoding="unicode", with_tail=False)

    def find(self, path, namespaces=None):
        m = _DESCENDANTS_PATH.fullmatch(path) if namespaces is None and isinstance(path, str) else None
        if m is None:
            return super().find(path, namespaces)
        return next(self.iterdescendants(m.group(1)), None)

    def findall(self, path, namespaces=None):
        m = _DESCENDANTS_PATH.fullmatch(path) if namespaces is None and isinstance(path, str) else None
        if m is None:
            return super().findall(path, namespaces)
        return list(self.iterdescendants(m.group(1)))

    def xpath(self, _path, namespaces=None, extensions=None, smart_strings=True, **_variables):
        if namespaces is None and extensions is None and smart_strings and not _variables and isinstance(_path, str):
            return _compiled_xpath(_path)(self)  # what the call compiles each time, compiled once
        return super().xpath(_path, namespaces=namespaces, extensions=extensions, smart_strings=smart_strings,
                             **_variables)


@functools.lru_cache(maxsize=256)
def _compiled_xpath(path: str) -> etree.XPath:
    return etree.XPath(path)


def html_parser(**options) -> etree.HTMLParser:
    """lxml.html's parser settings with a C-level element class lookup: lxml.html's own lookup is a
    Python method called for every element proxy (~1,000 per page, 9% of extraction). Every element is
    a `TreeElement` (no form/input subclasses, which neither extraction nor the link pass uses)."""
    parser = etree.HTMLParser(collect_ids=False, default_doctype=False, remove_comments=True, remove_pis=True,
                              **options)
    parser.set_element_class_lookup(etree.ElementDefaultClassLookup(
        element=TreeElement, comment=lxml_html.HtmlComment, pi=lxml_html.HtmlProcessingInstruction,
        entity=lxml_html.HtmlEntity))
    return parser



def main_content(html: str, parsed: etree._Element, url: str, *, fast: bool = False):
    """trafilatura's `bare_extraction(html, url, with_metadata=True, include_comments=False,
    include_tables=True, date_extraction_params=DATE_PARAMS)`: a `Document` with text, title and date,
    or None where trafilatura finds no main text; the same result, with less work:

    - `parsed` (websim's parse of `html`, as `pipeline.ingest.extract` makes it) is trafilatura's tree where
      its own loader would parse the same string the same way (no markup repair needed; nearly every page),
      so the page is parsed once, and the tree is not copied first: it is pruned in place;
    - of the metadata only what the store keeps (title, date, and the URL the date search reads), not
      author (a copy of the whole tree), site name, categories, tags or licence;
    - `exact_speedups` while trafilatura runs.
    """
    from htmldate import find_date
    from trafilatura.core import trafilatura_sequence
    from trafilatura.metadata import Document, examine_meta, extract_meta_json, extract_title, extract_url
    from trafilatura.utils import is_dubious_html, load_html, repair_faulty_html
    from trafilatura.xml import xmltotxt

    options = copy.copy(_extractor(fast))  # cheaper than Extractor(...), which reads its config each time
    options.url, options.source = url, url and url.encode("utf-8", "replace").decode("utf-8")
    beginning = html[:50].lower()
    if parsed.getparent() is None and len(parsed) >= 1 and repair_faulty_html(html, beginning) == html:
        tree = parsed
        if is_dubious_html(beginning) and len(tree) < 2:
            return None  # trafilatura's loader: "not valid HTML"
    else:
        tree = load_html(html)  # trafilatura parses it its own way
        if tree is None:
            return None
    with exact_speedups():
        try:
            # trafilatura.metadata.extract_metadata, title and date only
            meta = examine_meta(tree)
            try:
                meta = extract_meta_json(tree, meta)
            except Exception:  # noqa: BLE001 - as trafilatura: bugs in its JSON-LD reader cost the JSON-LD only
                pass
            doc = Document()
            doc.title = meta.title or extract_title(tree)
            doc.date = find_date(tree, **{**options.date_params, "url": meta.url or extract_url(tree, url)})
            doc.clean_and_trim()
            # trafilatura.core.bare_extraction from here
            body, text, _, comments = trafilatura_sequence(tree, options, options.url)
            if options.max_tree_size and len(body) > options.max_tree_size:
                etree.strip_tags(body, "hi")
                if len(body) > options.max_tree_size:
                    return None
            if len(text) < options.min_output_size and len(comments) < options.min_output_comm_size:
                return None
        except (TypeError, ValueError):
            return None
        doc.text = xmltotxt(body, options.formatting)
    return doc


@functools.lru_cache(maxsize=2)
def _extractor(fast: bool):
    """trafilatura's options for `bare_extraction(with_metadata=True, include_comments=False, include_tables=True,
    date_extraction_params=DATE_PARAMS, fast=fast)`, without a URL."""
    from trafilatura.settings import DEFAULT_CONFIG, Extractor

    return Extractor(config=DEFAULT_CONFIG, output_format="python", fast=fast, comments=False, tables=True,
                     with_metadata=True, date_params=DATE_PARAMS)


# ---------------------------------------------------------------------------------------------
# Exact speed-ups of trafilatura's internals


def guarded_xpath(xpath: etree.XPath) -> etree.XPath:
    """`xpath` with every `re:test(@a|@b, 'p')` evaluated only where the element has @a or @b: the same
    selection (an absent attribute is tested as '', and a guarded pattern cannot match '')."""
    def guard(m: re.Match) -> str:
        if re.search(m.group(2), "", re.IGNORECASE if "i" in (m.group(3) or "") else 0) is not None:
            return m.group(0)  # matches '' as well: an absent attribute passes, no guard
        present = " or ".join(a.strip() for a in m.group(1).split("|"))
        return f"(({present}) and {m.group(0)})"

    path = _RE_TEST.sub(guard, xpath.path)
    if path == xpath.path:
        return xpath
    return etree.XPath(path, namespaces={"re": "http://exslt.org/regular-expressions"})


def _document_size(tree: etree._Element) -> int:
    return sum(1 for _ in tree.getroottree().getroot().iter())


def _prune_unwanted_sections(tree, potential_tags: set[str], options, keep_teasers: bool = False):
    """trafilatura 2.3.1's `main_extractor.prune_unwanted_sections` with the guarded XPath expressions, and the
    tests of its second link-density pass skipped where they would see a tree their first run kept whole."""
    from trafilatura.htmlprocessing import delete_by_link_density, prune_unwanted_nodes
    from trafilatura.main_extractor import link_density_test_tables
    from trafilatura.xml import delete_element

    xp = _speedups()["xpaths"]
    favor_precision = options.focus == "precision"
    tree = prune_unwanted_nodes(tree, xp["OVERALL_DISCARD_XPATH"], with_backup=True)
    if "graphic" not in potential_tags:
        tree = prune_unwanted_nodes(tree, xp["DISCARD_IMAGE_ELEMENTS"])
    if options.focus != "recall":
        if not keep_teasers:
            tree = prune_unwanted_nodes(tree, xp["TEASER_DISCARD_XPATH"])
        if favor_precision:
            tree = prune_unwanted_nodes(tree, xp["PRECISION_DISCARD_XPATH"])
    # delete_by_link_density only ever removes elements (and with them, tails moved up), so the document's
    # element count tells whether anything was removed. A call in the second pass whose first-pass twin started
    # on a document of the same size sees the tree that call saw, which kept everything: it is skipped.
    started: dict[str, int] = {}
    for _ in range(2):
        for tagname in ("div", "list", "p"):
            size = _document_size(tree)
            if started.get(tagname) == size:
                continue
            started[tagname] = size
            tree = delete_by_link_density(tree, tagname, backtracking=tagname == "div", favor_precision=favor_precision)
    if "table" in potential_tags or favor_precision:
        boilerplate_tables = [elem for elem in tree.iter("table") if link_density_test_tables(elem) is True]
        for elem in boilerplate_tables:
            delete_element(elem, keep_tail=False)
    if favor_precision:
        while len(tree) > 0 and (tree[-1].tag == "head"):
            delete_element(tree[-1], keep_tail=False)
        tree = delete_by_link_density(tree, "head", backtracking=False, favor_precision=True)
        tree = delete_by_link_density(tree, "quote", backtracking=False, favor_precision=True)
    etree.strip_tags(tree, "span", *(() if "ref" in potential_tags else ("ref",)))
    return tree


@functools.lru_cache(maxsize=1)
def _readability_class():
    """trafilatura's readability `Document`, with each link's text length measured once while paragraphs are scored."""
    from trafilatura.readability_lxml import Document, text_length

    class Readability(Document):
        __slots__ = ["link_lengths"]

        def __init__(self, doc, min_text_length: int = 25) -> None:
            super().__init__(doc, min_text_length)
            self.link_lengths = None

        def score_paragraphs(self):
            self.link_lengths = {}  # score_paragraphs reads the tree and changes nothing in it
            try:
                return super().score_paragraphs()
            finally:
                self.link_lengths = None

        def get_link_density(self, elem) -> float:
            lengths = self.link_lengths
            if lengths is None:  # sanitize() removes elements between measurements: measured as it asks
                return super().get_link_density(elem)
            total_length = text_length(elem) or 1
            link_length = 0
            for link in elem.findall(".//a"):
                n = lengths.get(link)
                if n is None:
                    n = lengths[link] = text_length(link)
                link_length += n
            return link_length / total_length

    return Readability


# htmldate's pattern (by name, as its source spells it) -> pieces of which every match contains at least one
_HTMLDATE_NEEDS = {
    # (YEAR-MONTH-DAY)([T ]hh:mm:ss...): a timestamp has ":mm:ss"
    "TIMESTAMP_PATTERN": (
        r"((?:199[0-9]|20[0-3][0-9])-[0-1]?[0-9]-[0-3]?[0-9])([T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
        r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)", (r":[0-9]{2}:[0-9]{2}",)),
    # (YEAR-MONTH-DAY)(time)?: "-MONTH-"
    "TIMESTAMP_LOOSE_PATTERN": (
        r"((?:199[0-9]|20[0-3][0-9])-[0-1]?[0-9]-[0-3]?[0-9])([T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
        r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?", (r"-[0-1]?[0-9]-",)),
    # d[./]d[./]d: its first separator and the digits after it, then the second separator
    "DATE_CORE_PATTERN": (r"[0-9]{1,4}[./][0-9]{1,2}[./][0-9]{2,4}", (r"\.[0-9]{1,2}[./]", r"/[0-9]{1,2}[./]")),
}


@functools.lru_cache(maxsize=1)
def _htmldate_searches() -> dict | None:
    """{htmldate's compiled pattern: its needed pieces compiled}, or None where htmldate's patterns are not the
    ones `_HTMLDATE_NEEDS` was written for."""
    from htmldate import core, extractors

    out = {}
    for name, (source, needs) in _HTMLDATE_NEEDS.items():
        pattern = getattr(core, name, None) or getattr(extractors, name, None)
        if pattern is None or pattern.pattern != source or pattern.flags & re.IGNORECASE:
            return None
        out[pattern] = tuple(re.compile(n) for n in needs)
    return out


def _can_match(pattern: re.Pattern, text: str) -> bool:
    needs = _htmldate_searches().get(pattern)
    return needs is None or any(n.search(text) is not None for n in needs)


def _pattern_search(text: str, date_pattern: re.Pattern, options) -> str | None:
    """htmldate's `extractors.pattern_search`, which returns None where `date_pattern` does not match."""
    from htmldate.extractors import pattern_search

    return pattern_search(text, date_pattern, options) if _can_match(date_pattern, text) else None


def _idiosyncrasies_search(htmlstring: str, options) -> str | None:
    """htmldate's `extractors.idiosyncrasies_search`, which returns None where DATE_CORE_PATTERN does not match."""
    from htmldate.extractors import DATE_CORE_PATTERN, idiosyncrasies_search

    return idiosyncrasies_search(htmlstring, options) if _can_match(DATE_CORE_PATTERN, htmlstring) else None


def _date_candidates(tree, extensive_search: bool, original, is_date_candidate) -> list:
    """htmldate 1.11.0's `core.date_candidates` (`original`): the same elements in the same order, without asking
    `is_date_candidate` (the original, passed in) about elements that have no id, class or itemprop."""
    from htmldate.core import ALWAYS_TAGS, FAST_TAGS

    if extensive_search:
        return original(tree, extensive_search)
    out = []
    for e in tree.iterdescendants(*FAST_TAGS, *ALWAYS_TAGS):
        if e.tag in ALWAYS_TAGS or (
                (e.get("id") is not None or e.get("class") is not None or e.get("itemprop") is not None)
                and is_date_candidate(e)):
            out.append(e)
    return out


# (module, attribute) -> replacement; the XPath lists by name for _prune_unwanted_sections
_SWAPPED_XPATHS = {
    "trafilatura.core": ("RAW_TREE_PRUNE_XPATH", "REMOVE_COMMENTS_AND_LISTS_XPATH", "REMOVE_COMMENTS_XPATH"),
    "trafilatura.main_extractor": ("BODY_XPATH",),
    "trafilatura.external": ("OVERALL_DISCARD_XPATH",),
}
_LOCAL_XPATHS = ("OVERALL_DISCARD_XPATH", "DISCARD_IMAGE_ELEMENTS", "TEASER_DISCARD_XPATH", "PRECISION_DISCARD_XPATH")


@functools.lru_cache(maxsize=1)
def _speedups() -> dict:
    """{"xpaths": name -> guarded list, "swaps": [(module, attribute, original, replacement)]}; no swaps for a
    trafilatura version other than TRAFILATURA_VERSION."""
    import importlib

    import trafilatura
    from trafilatura import xpaths

    names = set(_LOCAL_XPATHS).union(*_SWAPPED_XPATHS.values())
    guarded = {name: [guarded_xpath(x) for x in getattr(xpaths, name)] for name in names}
    swaps = []
    if _htmldate_searches() is not None:
        htmldate_core = importlib.import_module("htmldate.core")
        swaps.append((htmldate_core, "pattern_search", htmldate_core.pattern_search, _pattern_search))
        swaps.append((htmldate_core, "idiosyncrasies_search", htmldate_core.idiosyncrasies_search,
                      _idiosyncrasies_search))
    htmldate_core = importlib.import_module("htmldate.core")
    if importlib.import_module("htmldate").__version__ == HTMLDATE_VERSION:
        original = htmldate_core.date_candidates
        swaps.append((htmldate_core, "date_candidates", original, functools.partial(
            _date_candidates, original=original, is_date_candidate=htmldate_core.is_date_candidate)))
    if trafilatura.__version__ != TRAFILATURA_VERSION:
        return {"xpaths": guarded, "swaps": swaps}
    for module_name, attributes in _SWAPPED_XPATHS.items():
        module = importlib.import_module(module_name)
        for name in attributes:
            swaps.append((module, name, getattr(module, name), guarded[name]))
    main_extractor = importlib.import_module("trafilatura.main_extractor")
    swaps.append((main_extractor, "prune_unwanted_sections", main_extractor.prune_unwanted_sections,
                  _prune_unwanted_sections))
    external = importlib.import_module("trafilatura.external")
    swaps.append((external, "ReadabilityDocument", external.ReadabilityDocument, _readability_class()))
    return {"xpaths": guarded, "swaps": swaps}


_swap_lock = threading.Lock()
_swap_depth = 0


@contextmanager
def exact_speedups() -> Iterator[None]:
    """trafilatura with the replacements above in place (nested and concurrent uses share one installation;
    the originals are back once the last one ends)."""
    global _swap_depth
    swaps = _speedups()["swaps"]
    with _swap_lock:
        if _swap_depth == 0:
            for module, name, _, replacement in swaps:
                setattr(module, name, replacement)
        _swap_depth += 1
    try:
        yield
    finally:
        with _swap_lock:
            _swap_depth -= 1
            if _swap_depth == 0:
                for module, name, original, _ in swaps:
                    setattr(module, name, original)
