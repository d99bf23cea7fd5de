"""Report tasks: key points verified against their chunk (a literal quote), and the extractive fallback."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pipeline.synthesis.chunking import split_blocks
from pipeline.text.lexical import normalize, quote_in, sentence_spans, strip_quote, token_recall, tokens

MIN_QUOTE_WORDS = 4
MAX_QUOTE_WORDS = 60
MAX_SENTENCE_WORDS = 60
REPEAT_WORDS = 6
"""A key point with a run of this many words twice is refused (`repeated_text`)."""
SUPPORT_RECALL = 0.5
"""Share of a key point's content words its own quote must hold: a literal quote that says something else (the
teacher's "The Wealth of Nations, 1776" for a point on Adam Smith's theory) does not support it."""
_URL = re.compile(r"https?://|www\.")
_STARTS_WELL = re.compile(r"^[\"'“‘(]?[A-Z]")
_ENDS_WELL = re.compile(r"[.!?][\"'”’)\]]*$")
_SUBJECTS = frozenset({"nsubj", "nsubjpass", "csubj", "csubjpass", "expl"})


def fragment_reason(sentence: str) -> str | None:
    """Why `sentence` is not one a person would write, or None. Extractive text carries all of these:
    - `starts_mid_sentence`: it starts with a digit, a bracket or a lower-case word;
    - `ends_mid_sentence`: no full stop, question or exclamation mark at its end (a teacher's point cut at its
      token limit or short of its clause: "The Associated Press named her its 1976");
    - `unbalanced_brackets`: parentheses or quotation marks left open (a quote cut by the sentence split);
    - `table_or_list_dump`: an infobox or a table (over `MAX_SENTENCE_WORDS` words, list bullets inside, several
      "Label:" fields, or mostly capitalised words: "Flag of Grenada Coat of arms Motto: ... Capital St. George's");
    - `url`;
    - `repeated_text`: the same run of `REPEAT_WORDS` words twice (an image caption printed again around Wikipedia's
      "Enlarge" link: "... (demolished in 1929) Enlarge The expanded East India House, ...");
    - `no_clause`: no subject with its verb and no finite verb (a heading, a caption)."""
    if not _STARTS_WELL.match(sentence):
        return "starts_mid_sentence"
    if not _ENDS_WELL.search(sentence.rstrip()):
        return "ends_mid_sentence"
    if (sentence.count("(") != sentence.count(")") or sentence.count('"') % 2
            or sentence.count("\u201c") != sentence.count("\u201d")):
        return "unbalanced_brackets"
    words = sentence.split()
    capitalised = sum(w[:1].isupper() for w in words)
    if (len(words) > MAX_SENTENCE_WORDS or " * " in f" {sentence} " or sentence.count(":") > 1
            or (len(words) >= 12 and capitalised > 0.6 * len(words))):
        return "table_or_list_dump"
    if _URL.search(sentence):
        return "url"
    if repeats_words(tokens(sentence)):
        return "repeated_text"
    if not has_clause(sentence):
        return "no_clause"
    return None


def repeats_words(words: list[str], n: int | None = None) -> bool:
    """Whether some run of `n` (`REPEAT_WORDS`) words occurs twice in `words` (`pipeline.text.lexical.tokens`)."""
    n = n or REPEAT_WORDS
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        run = tuple(words[i:i + n])
        if run in seen:
            return True
        seen.add(run)
    return False


def has_clause(sentence: str) -> bool:
    """Whether `sentence` has a subject and its verb, or a finite verb (spaCy's parse, the one the questions use): a
    heading, a caption or an infobox row ("The Iron Cross, Second Class", "Escalation 617.54 km/s") has none."""
    from pipeline.synthesis.questions.parse import load_parser

    doc = load_parser()(sentence)
    return any((t.dep_ in _SUBJECTS and t.head.pos_ in ("VERB", "AUX"))
               or (t.pos_ in ("VERB", "AUX") and "Fin" in t.morph.get("VerbForm")) for t in doc)



def verify_key_points(items: Any, chunk_text: str, limit: int) -> tuple[list[dict], Counter]:
    """Key points a chunk supports: each must come with a quote that occurs literally in the chunk (whitespace,
    case and quote marks normalised) and holds at least `SUPPORT_RECALL` of the point's content words, and say
    something the chunk's words cover. Rejections by reason."""
    kept: list[dict] = []
    rejected: Counter = Counter()
    seen: set[str] = set()
    for item in items if isinstance(items, list) else []:
        point = str((item or {}).get("point") or "").strip() if isinstance(item, dict) else ""
        quote = str((item or {}).get("quote") or "").strip() if isinstance(item, dict) else ""
        n_quote = len(tokens(strip_quote(quote)))
        if not point or not quote:
            rejected["kp_empty"] += 1
        elif n_quote < MIN_QUOTE_WORDS:
            rejected["kp_quote_too_short"] += 1
        elif n_quote > MAX_QUOTE_WORDS:
            rejected["kp_quote_too_long"] += 1
        elif not quote_in(quote, chunk_text):
            rejected["kp_quote_not_in_chunk"] += 1
        elif token_recall(point, chunk_text) < 0.5:
            rejected["kp_point_not_grounded"] += 1
        elif token_recall(point, strip_quote(quote)) < SUPPORT_RECALL:
            rejected["kp_quote_not_supporting"] += 1
        elif fragment_reason(point):
            rejected["kp_point_fragmentary"] += 1
        elif normalize(point) in seen or normalize(strip_quote(quote)) in seen:
            rejected["kp_duplicate"] += 1
        elif len(kept) >= limit:
            rejected["kp_over_limit"] += 1
        else:
            seen |= {normalize(point), normalize(strip_quote(quote))}
            kept.append({"point": point, "quote": strip_quote_keep_case(quote, chunk_text)})
    return kept, rejected


def strip_quote_keep_case(quote: str, chunk_text: str) -> str:
    """The quote as the chunk writes it when it can be located exactly, else the model's (stripped) wording."""
    q = quote.strip().strip("\"'`\u201c\u201d\u2018\u2019\u2026 .")
    i = chunk_text.find(q)
    return chunk_text[i:i + len(q)] if i >= 0 and q else q


def lead_key_point(chunk_text: str) -> dict | None:
    """The extractive fallback: the first sentence of the chunk's paragraphs (not a heading) that a person would
    write: at least 6 words and no `fragment_reason` (a chunk may start mid-sentence, or with an infobox)."""
    for block in split_blocks(chunk_text):
        if block.kind != "paragraph":
            continue
        for a, b in sentence_spans(chunk_text, block.start, block.end):
            sentence = chunk_text[a:b].strip()
            if len(tokens(sentence)) >= 6 and fragment_reason(sentence) is None:
                return {"point": sentence, "quote": sentence}
    return None
