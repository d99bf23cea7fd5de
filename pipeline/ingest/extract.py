"""Main text, metadata and outlinks of HTML pages.

`extract_page` turns one decoded HTML page into an `ExtractedPage`: main text, title and
publication date from trafilatura, outlinks (with the sentence around each anchor) from the whole
document with lxml, from one parse of the page (`pipeline.ingest.maintext.main_content` runs trafilatura on
that tree, with the metadata cut to what the store keeps). It raises `ExtractionError` with a reason
("empty_text", "parse_error").
`extract_many` runs it over a stream of pages in a process pool, in input order, with a time limit
per page enforced inside the worker, and turns every failure into an `ExtractionError` *value* for
that page only (reasons "timeout", "parse_error", "empty_text"), so one bad page never sinks a batch.
"""

from __future__ import annotations

import bisect
import multiprocessing
import os
import re
import signal
import threading
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable, Iterator

from lxml import etree
from lxml import html as lxml_html

from pipeline.ingest.maintext import html_parser, main_content
from pipeline.ingest.urls import normalize_url

MAX_ANCHOR_CHARS = 300
MAX_CONTEXT_CHARS = 300

_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head", "title", "svg", "math", "iframe"})
_BLOCK_TAGS = frozenset({
    "p", "div", "li", "dd", "dt", "td", "th", "tr", "caption", "figcaption", "blockquote", "pre",
    "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "aside", "header", "footer", "nav",
    "main", "body", "html", "address", "ul", "ol", "dl", "table", "tbody", "thead", "tfoot", "form",
    "fieldset", "figure", "details", "summary", "center", "hr", "br",
})
_A_START, _A_END, _BREAK = "\ue000", "\ue001", "\ue002"
_MARKS_SPLIT = re.compile("([\ue000\ue001\ue002])")
_WS = re.compile(r"\s+")
# End of a sentence: terminal punctuation, optional closing quotes/brackets, then whitespace.
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*\s+")
_CJK_SENTENCE_END = re.compile(r"[\u3002\uff01\uff1f]")


_PARSER = html_parser()
_BYTES_PARSER = html_parser(encoding="utf-8")


@dataclass
class Link:
    url: str  # absolute, normalised (pipeline.ingest.urls.normalize_url), fragment dropped
    anchor: str  # anchor text, whitespace-collapsed, <= 300 chars
    context: str  # the sentence around the anchor (or ~300 chars of its block); "" if none


@dataclass
class ExtractedPage:
    title: str
    text: str
    published: str | None  # ISO date (YYYY-MM-DD) or None
    language: str | None  # primary language subtag from <html lang> / content-language, lower-case
    links: list[Link] = field(default_factory=list)


class ExtractionError(Exception):
    """Extraction of one page failed; `reason` is "timeout", "empty_text" or "parse_error"."""

    def __init__(self, reason: str, detail: str = "", url: str = ""):
        super().__init__(reason, detail, url)  # args round-trip through pickle (worker -> parent)
        self.reason = reason
        self.detail = detail
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"{self.reason}: {self.detail}{where}" if self.detail else f"{self.reason}{where}"


# ---------------------------------------------------------------------------------------------
# One page


def parse_html(html: str) -> etree._Element:
    """lxml tree of an HTML string (raises ExtractionError("parse_error") if there is none)."""
    return _parse(html).getroottree().getroot()


def _parse(html: str) -> etree._Element:
    """What `lxml.html.fromstring` returns for `html` (the root, or for a fragment the element it picked)."""
    if not html or not html.strip():
        raise ExtractionError("empty_text", "empty document")
    try:
        tree = lxml_html.fromstring(html, parser=_PARSER)
    except ValueError:  # a str with an XML encoding declaration: lxml wants bytes for that
        tree = lxml_html.fromstring(html.encode("utf-8", "surrogatepass"), parser=_BYTES_PARSER)
    except (etree.ParserError, etree.XMLSyntaxError) as exc:
        raise ExtractionError("parse_error", f"{type(exc).__name__}: {exc}") from exc
    if tree is None:
        raise ExtractionError("parse_error", "no document element")
    return tree


def extract_page(html: str, url: str, *, fast: bool = False) -> ExtractedPage:
    """Title, main text, date, language and outlinks of one page. Raises ExtractionError.

    One lxml parse serves the link pass and trafilatura (see `main_content`). `fast` is trafilatura's
    fast mode: no readability/jusText comparison (see README, "Ingest speed", for what it changes).
    """
    try:
        parsed = _parse(html)
    except ExtractionError as exc:
        raise ExtractionError(exc.reason, exc.detail, url) from None
    tree = parsed.getroottree().getroot()
    links = extract_links(tree, url)
    language = page_language(tree)
    html_title = _collapse(tree.findtext(".//title") or "")
    try:
        doc = main_content(html, parsed, url, fast=fast)  # prunes `tree`: every read of it is above
    except Exception as exc:  # noqa: BLE001 - trafilatura's own failure on this page
        raise ExtractionError("parse_error", f"trafilatura: {type(exc).__name__}: {exc}"[:500], url) from exc
    text = (doc.text or "").strip() if doc is not None else ""
    if not text:
        text = visible_text(parse_html(html))
    if not text:
        raise ExtractionError("empty_text", "no main text and no visible body text", url)
    title = (doc.title or "").strip() if doc is not None else ""
    published = doc.date if doc is not None and doc.date else None
    return ExtractedPage(title=title or html_title, text=text, published=published, language=language, links=links)


def page_language(tree: etree._Element) -> str | None:
    """Primary language subtag declared by the page (`<html lang>`, `xml:lang`, content-language)."""
    root = tree.getroottree().getroot()
    lang = root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang")
    if not lang:
        for meta in root.iter("meta"):
            equiv, name = (meta.get("http-equiv") or "").lower(), (meta.get("name") or "").lower()
            if equiv == "content-language" or name == "language":
                lang = meta.get("content")
                break
    if not lang:
        return None
    primary = re.split(r"[-_,;\s]", lang.strip().lower(), maxsplit=1)[0]
    return primary if primary.isascii() and primary.isalpha() and 2 <= len(primary) <= 3 else None


def visible_text(tree: etree._Element) -> str:
    """The visible text of `<body>` (scripts, styles and the like removed), one line per block."""
    body = tree.find(".//body")
    text = _flatten(body if body is not None else tree, {})
    lines = (_collapse(line) for line in text.replace(_A_START, "").replace(_A_END, "").split(_BREAK))
    return "\n".join(line for line in lines if line)


def extract_links(html: str | etree._Element, base_url: str) -> list[Link]:
    """Every `<a href>` of the whole document as an absolute, normalised web URL with its anchor
    text and context. Resolved against `<base href>` if present; in-page `#fragment` links and
    non-web schemes (javascript:, mailto:, tel:, data:, ...) are skipped; exact duplicate
    (url, anchor) pairs are kept once, in document order."""
    tree = parse_html(html) if isinstance(html, str) else html
    base = base_url
    base_el = tree.find(".//base[@href]")
    if base_el is not None:
        base = normalize_url(base_el.get("href"), base_url) or base_url

    found: list[tuple[etree._Element, str, str]] = []
    by_block: dict[etree._Element, dict[etree._Element, int]] = {}
    for a in tree.iter("a"):
        href = (a.get("href") or "").strip()
        if not href or href.startswith("#"):
            continue
        url = normalize_url(href, base)
        if url is None:
            continue
        anchor = _collapse(a.text_content())
        if not anchor:
            img = a.find(".//img")
            anchor = _collapse((img.get("alt") if img is not None else None) or a.get("title") or "")
        found.append((a, url, anchor[:MAX_ANCHOR_CHARS]))
        block = _owner_block(a)
        anchors = by_block.setdefault(block, {})
        anchors[a] = len(anchors)

    contexts: dict[etree._Element, str] = {}
    for block, anchors in by_block.items():
        if len(anchors) > 1 or not _is_bare_link(block, next(iter(anchors))):
            contexts.update(_block_contexts(block, anchors))

    links, seen = [], set()
    for a, url, anchor in found:
        if (url, anchor) in seen:
            continue
        seen.add((url, anchor))
        context = contexts.get(a, "")
        if anchor and anchor not in context:
            context = ""
        links.append(Link(url=url, anchor=anchor, context=context))
    return links


def _collapse(text: str) -> str:
    """Whitespace runs as one space, none at the ends: `_WS.sub(" ", text).strip()` (re's \\s and str.split's
    whitespace are the same characters), in a third of the time."""
    return " ".join(text.split())


def _spaced(text: str) -> str:
    """`_WS.sub(" ", text)` (every whitespace run one space, the ends kept) in half the time."""
    inner = " ".join(text.split())
    if not inner:
        return " " if text else ""
    return (" " if text[0].isspace() else "") + inner + (" " if text[-1].isspace() else "")


def _is_bare_link(block: etree._Element, a: etree._Element) -> bool:
    """The block holds the anchor and nothing else (a menu item, a navbox cell): its sentence is the anchor,
    so it has no context; `_block_contexts` would find the same, at some cost."""
    return (len(block) == 1 and block[0] is a and len(a) == 0 and not (block.text or "").strip()
            and not (a.tail or "").strip())


def _owner_block(el: etree._Element) -> etree._Element:
    for anc in el.iterancestors():
        if isinstance(anc.tag, str) and anc.tag in _BLOCK_TAGS:
            return anc
    return el.getroottree().getroot()


def _flatten(block: etree._Element, anchors: dict[etree._Element, int]) -> str:
    """Text of `block` with markers around the anchors in `anchors` and at nested block edges."""
    parts: list[str] = []
    walker = etree.iterwalk(block, events=("start", "end"))
    for event, el in walker:
        tag = el.tag if isinstance(el.tag, str) else None
        if event == "start":
            if tag is None:
                continue
            if tag in _SKIP_TAGS:
                walker.skip_subtree()
                if el is not block and el.tail:
                    parts.append(el.tail)
                continue
            if el is not block and tag in _BLOCK_TAGS:
                parts.append(_BREAK)
            if el in anchors:
                parts.append(_A_START)
            if el.text:
                parts.append(el.text)
        else:
            if tag is not None and el in anchors:
                parts.append(_A_END)
            if el is not block:
                if tag in _BLOCK_TAGS:
                    parts.append(_BREAK)
                if el.tail:
                    parts.append(el.tail)
    return "".join(parts)


def _block_contexts(block: etree._Element, anchors: dict[etree._Element, int]) -> dict[etree._Element, str]:
    raw = _flatten(block, anchors)
    raw = _spaced(raw).replace(_A_START + " ", " " + _A_START).replace(" " + _A_END, _A_END + " ")
    parts = _MARKS_SPLIT.split(raw)  # text, mark, text, mark, ..., text
    spans, starts, breaks = [], [], []
    length = len(parts[0])
    for i in range(1, len(parts), 2):
        mark = parts[i]
        if mark == _A_START:
            starts.append(length)
        elif mark == _A_END:
            spans.append((starts.pop() if starts else length, length))
        else:
            breaks.append(length)
        length += len(parts[i + 1])
    text = "".join(parts[::2])
    bounds = sorted({0, len(text), *breaks, *(m.end() for m in _SENTENCE_END.finditer(text)),
                     *(m.end() for m in _CJK_SENTENCE_END.finditer(text))})
    # `anchors` maps each anchor to its position in insertion (document) order
    return {a: _context(text, bounds, span) for a, span in zip(anchors, spans)}


def _context(text: str, bounds: list[int], span: tuple[int, int]) -> str:
    start, end = span
    lo = bounds[max(bisect.bisect_right(bounds, start) - 1, 0)]
    hi = bounds[min(bisect.bisect_left(bounds, max(end, start + 1)), len(bounds) - 1)]
    sentence = text[lo:hi].strip()
    anchor = text[start:end].strip()
    if len(sentence) <= len(anchor):
        return ""  # the anchor is all there is (a menu item, a navbox cell)
    if len(sentence) <= MAX_CONTEXT_CHARS + 100:
        return _collapse(sentence)
    # No usable sentence: a window of the block's text centred on the anchor, cut at spaces.
    room = max(MAX_CONTEXT_CHARS - (end - start), 0)
    left = max(lo, start - room // 2)
    right = min(hi, end + (room - (start - left)))
    if left > lo:
        cut = text.find(" ", left, start)
        left = cut + 1 if cut != -1 else left
    if right < hi:
        cut = text.rfind(" ", end, right)
        right = cut if cut != -1 else right
    return _collapse(text[left:right])


# ---------------------------------------------------------------------------------------------
# Many pages


class _PageTimeout(BaseException):
    """Raised by SIGALRM inside a page; a BaseException so library `except Exception` can't eat it."""


_timer_armed = False


def _on_alarm(signum, frame):
    if _timer_armed:
        raise _PageTimeout


def _warm_up() -> None:
    """Import trafilatura and fill its lazy caches, so the first page's time limit is its own."""
    page = "<html lang='en'><head><title>t</title></head><body><p>" + "Warm up text. " * 40 + "</p></body></html>"
    try:
        extract_page(page, "https://example.org/")
    except Exception:  # noqa: BLE001 - a failed warm-up only costs the first page some time
        pass


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tears the pool down
    _warm_up()


def _extract_timed(html: str, url: str, timeout_s: float, fast: bool = False) -> ExtractedPage | ExtractionError:
    """extract_page under a SIGALRM time limit (main thread only); never raises."""
    global _timer_armed
    use_timer = (
        bool(timeout_s and timeout_s > 0)
        and hasattr(signal, "setitimer")  # POSIX only; elsewhere the pool's watchdog still bounds a page
        and threading.current_thread() is threading.main_thread()
    )
    old_handler = old_timer = None
    try:
        if use_timer:
            old_handler = signal.signal(signal.SIGALRM, _on_alarm)
            _timer_armed = True
            old_timer = signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return extract_page(html, url, fast=fast)
        finally:
            if use_timer:
                _timer_armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _PageTimeout:
        return ExtractionError("timeout", f"extraction took over {timeout_s:g}s", url)
    except ExtractionError as exc:
        return exc if exc.url else ExtractionError(exc.reason, exc.detail, url)
    except RecursionError as exc:
        return ExtractionError("parse_error", f"RecursionError: {exc}", url)
    except Exception as exc:  # noqa: BLE001 - one page's failure is that page's result
        return ExtractionError("parse_error", f"{type(exc).__name__}: {exc}"[:500], url)
    finally:
        if use_timer:
            signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
            if old_timer and old_timer[0] > 0:
                signal.setitimer(signal.ITIMER_REAL, *old_timer)


def _extract_chunk(chunk: list[tuple[str, str]], timeout_s: float,
                   fast: bool = False) -> list[ExtractedPage | ExtractionError]:
    out = []
    for html, url in chunk:
        try:
            out.append(_extract_timed(html, url, timeout_s, fast))
        except _PageTimeout:  # the alarm landed between the page's end and the timer's reset
            out.append(ExtractionError("timeout", f"extraction took over {timeout_s:g}s", url))
    return out


def unguarded_main_call(start_method: str | None = None) -> str | None:
    """Where the calling script starts worker processes from its top level without an `if __name__ == "__main__":`
    guard ("script.py:12"), else None.

    Such workers import the script again, run its top level (another ingest, waiting for the store this one
    holds) and never answer: every page would be rejected as a timeout minutes later. Found by reading the main
    module's source at the line of the call: a top-level statement that is not an `if` on `__name__`.
    """
    import ast
    import sys

    method = start_method or default_start_method()
    if method not in ("spawn", "forkserver"):
        return None  # fork does not import the main module again
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return None  # -c, a REPL, a notebook: nothing to import again
    frame = sys._getframe(1)
    line = None
    while frame is not None:
        if (frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__"
                and os.path.abspath(frame.f_code.co_filename) == os.path.abspath(path)):
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    for stmt in tree.body:
        if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
            guarded = isinstance(stmt, ast.If) and any(
                isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(stmt.test))
            return None if guarded else f"{path}:{line}"
    return None


def check_main_guard(what: str, start_method: str | None = None) -> None:
    """Raise RuntimeError (at once, before any work) where `unguarded_main_call` finds a problem."""
    from pipeline.ingest.store import refuse_in_worker_bootstrap

    refuse_in_worker_bootstrap(what)
    where = unguarded_main_call(start_method)
    if where is not None:
        raise RuntimeError(
            f"{what} starts extraction worker processes, which import the calling script again; it is called at "
            f"{where}, outside an `if __name__ == \"__main__\":` guard, so every worker would run that call again and "
            "every page would end as an extraction timeout. Put the script's calls under the guard (see README, "
            "\"Ingest from a script\"), or pass workers=1.")


def default_start_method() -> str:
    """"forkserver" where available: forking a process that runs threads (a Dagster step does) can
    deadlock the child; the fork server is started once per process and preloads this module."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def extract_many(
    items: Iterable[tuple[str, str]],
    *,
    workers: int = 2,
    timeout_s: float = 10.0,
    chunksize: int = 8,
    start_method: str | None = None,
    fast: bool | None = None,
) -> Iterator[ExtractedPage | ExtractionError]:
    """`extract_page` over `(html, url)` pairs, yielding one result per pair in input order.

    Failures come back as `ExtractionError` values ("timeout", "empty_text", "parse_error"). With
    workers > 1 the pages run in a pool of worker processes, at most 2 * workers chunks in flight
    (the input is consumed lazily). Each page has `timeout_s` seconds, enforced in its worker with
    SIGALRM; a worker that does not answer at all (stuck in native code, or killed) is caught by a
    watchdog in the parent, the pool is replaced and only the pages of the stuck chunk are retried.
    workers <= 1 runs in this process (time limit only when called from the main thread).
    The default start method ("forkserver") re-imports the calling script's main module: a script
    that calls this at top level needs an `if __name__ == "__main__":` guard.
    `fast` is `extract_page`'s; None means `pipeline.config.ingest_fast()` (`$WEBSIM_INGEST_FAST`, off).
    """
    if fast is None:
        from pipeline.config import ingest_fast

        fast = ingest_fast()
    if workers <= 1:
        _warm_up()
        for html, url in items:
            yield _extract_chunk([(html, url)], timeout_s, fast)[0]
        return
    method = start_method or default_start_method()
    check_main_guard("extract_many", method)
    yield from _PoolRunner(workers, timeout_s, chunksize, method, fast).run(iter(items))


class _PoolRunner:
    """Ordered, bounded, watchdog-guarded chunk submission to a multiprocessing pool."""

    GRACE_S = 30.0  # per chunk, on top of the per-page limits: pickling, start-up, scheduling

    def __init__(self, workers: int, timeout_s: float, chunksize: int, start_method: str, fast: bool = False):
        self.workers = workers
        self.timeout_s = timeout_s
        self.fast = fast
        self.chunksize = max(1, chunksize)
        self.ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self.ctx.set_forkserver_preload(["trafilatura", "pipeline.ingest.extract"])
        self.pool = None

    def _start(self) -> None:
        self.pool = self.ctx.Pool(self.workers, initializer=_worker_init)

    def _stop(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def _deadline(self, n: int) -> float | None:
        return n * self.timeout_s + self.GRACE_S if self.timeout_s and self.timeout_s > 0 else None

    def run(self, items: Iterator[tuple[str, str]]) -> Iterator[ExtractedPage | ExtractionError]:
        pending: deque = deque()

        def submit() -> bool:
            chunk = list(islice(items, self.chunksize))
            if chunk:
                pending.append((chunk, self.pool.apply_async(_extract_chunk, (chunk, self.timeout_s, self.fast))))
            return bool(chunk)

        self._start()
        try:
            while len(pending) < 2 * self.workers and submit():
                pass
            while pending:
                chunk, result = pending.popleft()
                try:
                    out = result.get(self._deadline(len(chunk)))
                except Exception:  # noqa: BLE001 - the watchdog fired, or the worker itself failed
                    out = self._rescue(chunk)
                    resubmit = [c for c, _ in pending]
                    pending.clear()
                    for c in resubmit:
                        pending.append((c, self.pool.apply_async(_extract_chunk, (c, self.timeout_s, self.fast))))
                submit()
                yield from out
        finally:
            self._stop()

    def _rescue(self, chunk: list[tuple[str, str]]) -> list[ExtractedPage | ExtractionError]:
        """The pool stopped answering on `chunk`: replace it and run the chunk's pages one by one."""
        out = []
        self._stop()
        self._start()
        for html, url in chunk:
            try:
                result = self.pool.apply_async(_extract_chunk, ([(html, url)], self.timeout_s, self.fast))
                out.append(result.get(self._deadline(1))[0])
            except multiprocessing.TimeoutError:
                out.append(ExtractionError("timeout", "worker gave no answer (stuck in native code or killed)", url))
                self._stop()
                self._start()
            except Exception as exc:  # noqa: BLE001 - e.g. MemoryError or an unpicklable result
                out.append(ExtractionError("parse_error", f"worker failed: {type(exc).__name__}: {exc}"[:500], url))
        return out


__all__ = [
    "ExtractedPage",
    "ExtractionError",
    "Link",
    "extract_links",
    "extract_many",
    "extract_page",
    "main_content",
    "parse_html",
    "visible_text",
]
