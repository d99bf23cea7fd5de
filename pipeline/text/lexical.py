"""Lexical text matching shared by task synthesis and the reward functions that grade the tasks.

Pure string functions, no models: normalisation (case, whitespace, typographic quotes and dashes), content
tokens, token overlap (F1, recall), literal quote containment, and sentence boundaries with their character
offsets. The same definitions are used when a gold key point is verified and when a completion is graded, so
a quote that passes one passes the other.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Iterable

TYPOGRAPHY_FOLD = str.maketrans({  # typographic quotes, dashes and spaces -> ASCII
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u200b": "",
})
_WS = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_EDGE_PUNCT = " \t\n\"'`.,;:!?()[]{}\u2026-"

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off
on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves s t d ll m re ve one two may many
much must upon within without became become becomes although though however thus
""".split())


def normalize(text: str) -> str:
    """NFKC, typographic quotes/dashes folded to ASCII, case-folded, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "").translate(TYPOGRAPHY_FOLD)
    return _WS.sub(" ", text.casefold()).strip()


def tokens(text: str) -> list[str]:
    """Word tokens of the normalised text (letters and digits; inner apostrophes kept)."""
    return _WORD.findall(normalize(text))


def content_tokens(text: str) -> list[str]:
    """Tokens without stopwords: what overlap scores compare."""
    return [t for t in tokens(text) if t not in STOPWORDS]


def bag_f1(candidate: Iterable[str] | str, reference: Iterable[str] | str) -> float:
    """Bag-of-content-tokens F1 (SQuAD style); strings are tokenised with `content_tokens`."""
    cand = Counter(content_tokens(candidate) if isinstance(candidate, str) else candidate)
    ref = Counter(content_tokens(reference) if isinstance(reference, str) else reference)
    common = sum((cand & ref).values())
    if not common:
        return 0.0
    precision, recall = common / sum(cand.values()), common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def token_recall(part: Iterable[str] | str, whole: Iterable[str] | str) -> float:
    """Share of the distinct content tokens of `part` that occur in `whole` (0 when `part` has none)."""
    p = set(content_tokens(part) if isinstance(part, str) else part)
    w = set(content_tokens(whole) if isinstance(whole, str) else whole)
    return len(p & w) / len(p) if p else 0.0


def strip_quote(quote: str) -> str:
    """A quote without the quotation marks, ellipses and punctuation a model wraps around it."""
    return normalize(quote).strip(_EDGE_PUNCT)


def quote_in(quote: str, text: str) -> bool:
    """Whether `quote` occurs literally in `text` after whitespace, case and quote-mark normalisation."""
    q = strip_quote(quote)
    return bool(q) and q in normalize(text)


# A sentence ends at . ! ? (or an ellipsis), possibly followed by closing quotes/brackets, then whitespace and
# something that can start a sentence. Abbreviations and initials are not ends.
_SENT_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9\u00c0-\u024f])")
_ABBREV = frozenset("""
mr mrs ms dr st mt jr sr vs etc e.g i.e no nos fig figs gen col lt sgt capt cpt prof rev inc ltd co corp approx
ca cf jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.d b.c op vol pp ed eds dept est univ
""".split())


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of `text[start:end]`, edges stripped of whitespace."""
    end = len(text) if end is None else end
    spans, s = [], start
    for m in _SENT_END.finditer(text, start, end):
        word = text[max(start, m.start() - 12):m.start() + 1].split()[-1:] or [""]
        stem = word[0].rstrip(".").lstrip("(\"'").casefold()
        if stem in _ABBREV or (len(stem) == 1 and stem.isalpha()):
            continue
        stop = m.start() + len(m.group(0).rstrip())
        spans.append((s, stop))
        s = m.end()
    if s < end:
        spans.append((s, end))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (see `sentence_spans`); newlines always end a sentence."""
    out = []
    for line in (text or "").split("\n"):
        out += [line[a:b] for a, b in sentence_spans(line)]
    return out
