"""Short-answer matching, SQuAD/HotpotQA style: normalisation, exact match, token F1, answer-in-text.

The one definition that question synthesis (is the gold answer on the evidence page?), rollouts and rewards
(did the agent answer it?) share, so a question verified here is graded by the same rule later.

- `normalize_answer`: the SQuAD rule (lower case, no punctuation, no articles a/an/the, single spaces), after
  Unicode NFKC and folding typographic quotes and dashes, so "Musée" == "musée" and "1,000" == "1000".
- `exact_match` / `squad_f1`: the best score over the gold answer and its aliases (HotpotQA's rule that
  yes/no/noanswer only ever match themselves included).
- `answer_in_text`: whether an answer (or any alias) occurs in a text as a whole-token sequence.

Every function accepts one gold string or a list of them (answer first, then aliases).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Iterable

from pipeline.text.lexical import TYPOGRAPHY_FOLD

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DIGIT_GROUP = re.compile(r"(?<=\d),(?=\d{3}\b)")
_SPECIAL = {"yes", "no", "noanswer"}


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFKC", s or "").translate(TYPOGRAPHY_FOLD).casefold()
    return _DIGIT_GROUP.sub("", s)


def normalize_answer(s: str) -> str:
    """SQuAD's normalisation (punctuation removed, articles dropped) after Unicode and case folding."""
    s = "".join(ch for ch in _fold(s) if not _is_punct(ch))
    return " ".join(_ARTICLES.sub(" ", s).split())


def _spaced(s: str) -> str:
    """Like `normalize_answer`, but punctuation becomes a space: "1889-1890" keeps "1889" as a token."""
    s = "".join(" " if _is_punct(ch) else ch for ch in _fold(s))
    return " ".join(_ARTICLES.sub(" ", s).split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else [g for g in golds if isinstance(g, str)]


def exact_match(pred: str, golds: str | Iterable[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(g) for g in _golds(golds)))


def _f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred), normalize_answer(gold)
    if (p in _SPECIAL or g in _SPECIAL) and p != g:
        return 0.0
    common = Counter(p.split()) & Counter(g.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p.split()), same / len(g.split())
    return 2 * precision * recall / (precision + recall)


def squad_f1(pred: str, golds: str | Iterable[str]) -> float:
    """SQuAD token F1 of the prediction against the best-matching gold answer (0.0 without golds)."""
    return max((_f1(pred, g) for g in _golds(golds)), default=0.0)


def answer_in_text(answer_or_aliases: str | Iterable[str], text: str) -> bool:
    """Whether the answer, or any alias, occurs in `text` as a whole-token sequence (after normalisation).

    Both sides are normalised alike: "1,000" finds "1000", "Eiffel Tower" finds "the Eiffel Tower's", "1889"
    finds "1889-1890", but "art" does not match inside "martial". An answer that normalises to nothing never
    matches.
    """
    hay = f" {_spaced(text)} "
    hay_squashed = f" {normalize_answer(text)} "
    for gold in _golds(answer_or_aliases):
        spaced, squashed = _spaced(gold), normalize_answer(gold)
        if spaced and f" {spaced} " in hay:
            return True
        if squashed and f" {squashed} " in hay_squashed:
            return True
    return False
