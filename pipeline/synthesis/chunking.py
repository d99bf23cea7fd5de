"""Structure of extracted page text, and chunking it on section, paragraph and sentence boundaries.

The extracted `text` of a page holds one paragraph per line; a heading is a short line without final
punctuation. `split_blocks` recovers headings and paragraphs with their character offsets, `profile_text`
measures how long and structured a page is, and `chunk_spans` cuts the text into chunks under a token budget
measured by any `count_tokens(str) -> int` (in production the embedded model's tokenizer):

- a heading opens a chunk (unless the chunk so far is below `min_tokens`), and always travels with the text
  that follows it, never alone at the end of a chunk;
- paragraphs are packed whole while they fit; a paragraph over the budget is cut between sentences, a sentence
  over the budget between words (and a single word over it between characters);
- every chunk is one contiguous slice `text[start:end]` of the page, so offsets are exact by construction and
  the chunks, in order, give back every paragraph of the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from pipeline.text.lexical import STOPWORDS, sentence_spans, tokens

CountTokens = Callable[[str], int]

_LINE = re.compile(r"[^\n]+")
_WORD_SPAN = re.compile(r"\S+")
_INNER_SENTENCE_END = re.compile(r"[.!?]\s+[A-Z]")
_LIST_MARK = re.compile(r"^(?:[-*\u2022\u2013>]|\d+[.)])\s")
_NO_FINAL_PUNCT = tuple(".!?:;,\u2026\"'\u201d\u2019")
_PROSE_END = tuple(".!?\"'\u201d\u2019)")
MAX_HEADING_CHARS = 80
MAX_HEADING_WORDS = 10
MAX_HEADING_RUN = 3  # more short lines than this in a row are a list or a menu, not headings


@dataclass(frozen=True)
class Block:
    """One non-empty line of the text: a heading or a paragraph, at `text[start:end]` (whitespace stripped)."""

    kind: str  # "heading" | "paragraph"
    start: int
    end: int


def looks_like_heading(line: str) -> bool:
    """A short line that starts like a title and ends without sentence punctuation."""
    s = line.strip()
    if not s or len(s) > MAX_HEADING_CHARS or len(s.split()) > MAX_HEADING_WORDS:
        return False
    if s.endswith(_NO_FINAL_PUNCT) or _LIST_MARK.match(s) or _INNER_SENTENCE_END.search(s):
        return False
    return s[0].isupper() or s[0].isdigit()


def split_blocks(text: str) -> list[Block]:
    """Headings and paragraphs of `text`, in order, with exact offsets."""
    spans = []
    for m in _LINE.finditer(text or ""):
        a, b = m.start(), m.end()
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            spans.append((a, b))
    kinds = ["heading" if looks_like_heading(text[a:b]) else "paragraph" for a, b in spans]
    if kinds:
        kinds[-1] = "paragraph"  # nothing follows it, so it heads nothing
    i = 0
    while i < len(kinds):  # runs of short lines are lists/menus
        j = i
        while j < len(kinds) and kinds[j] == "heading":
            j += 1
        if j - i > MAX_HEADING_RUN:
            kinds[i:j] = ["paragraph"] * (j - i)
        i = max(j, i + 1)
    return [Block(k, a, b) for k, (a, b) in zip(kinds, spans)]


@dataclass(frozen=True)
class PageProfile:
    """How long and how structured a page's text is."""

    n_chars: int
    n_headings: int
    n_paragraphs: int
    n_prose_paragraphs: int  # ends like a sentence and has at least 12 words
    prose_share: float  # characters in prose paragraphs / characters in all blocks
    stopword_share: float  # share of word tokens that are English stopwords (English prose: ~0.4)


def profile_text(text: str) -> PageProfile:
    blocks = split_blocks(text)
    paragraphs = [text[b.start:b.end] for b in blocks if b.kind == "paragraph"]
    prose = [p for p in paragraphs if p.endswith(_PROSE_END) and len(p.split()) >= 12]
    total = sum(b.end - b.start for b in blocks)
    words = tokens(text[:20_000])
    return PageProfile(
        n_chars=len(text or ""),
        n_headings=sum(b.kind == "heading" for b in blocks),
        n_paragraphs=len(paragraphs),
        n_prose_paragraphs=len(prose),
        prose_share=sum(map(len, prose)) / total if total else 0.0,
        stopword_share=sum(w in STOPWORDS for w in words) / len(words) if words else 0.0,
    )


@dataclass(frozen=True)
class Span:
    """A chunk of a text: `text[start:end]`, with the heading in force at its start ("" before any)."""

    start: int
    end: int
    section: str
    opens_section: bool = False


def _fit(text: str, a: int, b: int, count: CountTokens, budget: int, level: str) -> list[tuple[int, int]]:
    """Cut `text[a:b]` into units that each fit the budget: sentences, then words, then characters."""
    if count(text[a:b]) <= budget:
        return [(a, b)]
    if level == "sentence":
        parts = sentence_spans(text, a, b)
        if len(parts) > 1:
            return [u for s, e in parts for u in _fit(text, s, e, count, budget, "word")]
        level = "word"
    if level == "word":
        parts = [(m.start(), m.end()) for m in _WORD_SPAN.finditer(text, a, b)]
        if len(parts) > 1:
            return [u for s, e in parts for u in _fit(text, s, e, count, budget, "char")]
    if b - a <= 1:
        return [(a, b)]
    mid = (a + b) // 2
    return _fit(text, a, mid, count, budget, "char") + _fit(text, mid, b, count, budget, "char")


def _pack(text: str, units: list[tuple[int, int]], count: CountTokens, budget: int) -> list[tuple[int, int]]:
    """Greedily join consecutive units while the joined slice fits the budget (measured on the real slice)."""
    out: list[list[int]] = []
    for a, b in units:
        if out and count(text[out[-1][0]:b]) <= budget:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def chunk_spans(text: str, count_tokens: CountTokens, max_tokens: int, min_tokens: int = 0) -> list[Span]:
    """Chunks of `text` under `max_tokens` each, cut on section, paragraph and sentence boundaries."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    blocks = split_blocks(text)
    # 1. Pieces: a paragraph (with the headings just above it), cut down to the budget where needed.
    pieces: list[Span] = []
    section, headings = "", []
    for block in blocks:
        if block.kind == "heading":
            headings.append(block)
            continue
        if headings:
            section = text[headings[-1].start:headings[-1].end]
            a = headings[0].start
            if count_tokens(text[a:block.end]) <= max_tokens:
                units = [(a, block.end)]
            else:
                # cut the paragraph into sentences even if it fits alone: the heading must go with its start
                units = [(h.start, h.end) for h in headings]
                units += [u for s, e in sentence_spans(text, block.start, block.end)
                          for u in _fit(text, s, e, count_tokens, max_tokens, "word")]
        else:
            units = _fit(text, block.start, block.end, count_tokens, max_tokens, "sentence")
        for i, (a, b) in enumerate(_pack(text, units, count_tokens, max_tokens)):
            pieces.append(Span(a, b, section, opens_section=bool(headings) and i == 0))
        headings = []
    # 2. Chunks: consecutive pieces while they fit; a new section starts a new chunk once this one is big enough.
    chunks: list[Span] = []
    current: Span | None = None
    for piece in pieces:
        if current is not None:
            merged = text[current.start:piece.end]
            big_enough = count_tokens(text[current.start:current.end]) >= min_tokens
            if not (piece.opens_section and big_enough) and count_tokens(merged) <= max_tokens:
                current = Span(current.start, piece.end, current.section, current.opens_section)
                continue
            chunks.append(current)
        current = piece
    if current is not None:
        chunks.append(current)
    return chunks
