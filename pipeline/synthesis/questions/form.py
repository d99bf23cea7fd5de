"""The form gate: is a text one readable question? Applied before any other rule, to every question text.

A question passes when it is one sentence ending in a single "?", has a question word (a wh-word anywhere, or an
auxiliary verb first, as in "Were Scott Derrickson and Ed Wood of the same nationality?"), has no placeholders
("a certain name", "a linked article", "a subject filed under", "that last article", "Start at the article"),
no repeated 4-gram of words, no JSON or markup, and a sane length. It is calibrated on real benchmark questions
(HotpotQA's dev sample in `shared/data/qa` passes it 99%+; see tests) and rejects what websim's v2 wrote.
`form_problems` returns every reason, `check_form` the first.
"""

from __future__ import annotations

import re

from pipeline.text.lexical import tokens

FORM_REASONS = ("not_a_question", "several_sentences", "no_question_word", "placeholder", "repeated_ngram",
                "markup", "too_short", "too_long")
WH_WORDS = frozenset("what which who whom whose when where why how".split())
AUX_FIRST = frozenset("""is are was were am do does did can could will would shall should may might must has have had
""".split())
PLACEHOLDERS = re.compile(
    r"\b(?:a certain (?:name|place|month|person|thing|year|date)|a linked (?:article|page)|"
    r"a subject filed under|filed under|that last article|in that (?:last )?article|start at the article|"
    r"a related page|a page on|the article on the article|\[\w+\]|<\w+>|\{\w+\})", re.IGNORECASE)
MARKUP = re.compile(r"[{}\[\]<>|\\]|\"\s*:|https?://|```")
# A full stop after a lower-case word of 3+ letters, then a capital: a second sentence (not "v.", "Dr.", "U.S.").
_SENTENCE_END = re.compile(r"(?<=\b[a-z]{3})(?<!\bvs)\.(?=\s+[A-Z])|\.\s+(?:In|It|This|That|The|Then|What|Which)\s")


def form_problems(question: str, min_words: int = 5, max_words: int = 80) -> list[str]:
    """Every form rule `question` breaks, in `FORM_REASONS` order (empty: it is a well-formed question)."""
    q = " ".join((question or "").split())
    out = []
    if not q.endswith("?") or q.count("?") != 1:
        out.append("not_a_question")
    if _SENTENCE_END.search(q.rstrip("?")):
        out.append("several_sentences")
    words = tokens(q)
    if not (WH_WORDS & set(words)) and not (words and words[0] in AUX_FIRST):
        out.append("no_question_word")
    if PLACEHOLDERS.search(q):
        out.append("placeholder")
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    if len(grams) != len(set(grams)):
        out.append("repeated_ngram")
    if MARKUP.search(q):
        out.append("markup")
    if len(words) < min_words:
        out.append("too_short")
    if len(words) > max_words:
        out.append("too_long")
    return out


def check_form(question: str, min_words: int = 5, max_words: int = 80) -> str | None:
    problems = form_problems(question, min_words, max_words)
    return problems[0] if problems else None
