"""Hard multi-hop questions with gold answers: back-translated from evidence chains, verified on the simulator.

Chains in (`pipeline.synthesis.chains`), question rows and rejections out:

1. Clues (`chain_clues`): every page of a chain gets a description that does not name it (`describe_page`: the
   predicate of its defining sentence, else its subject category), and the answer fact becomes a question clause
   (`fact_clause`: the clause around the answer, the answer replaced by a wh-phrase). Dates, years and numbers in
   clues are obfuscated by fixed rules (`obfuscate_year(1889) == "the late 1880s"`, `obfuscate_number(450) ==
   "between 400 and 500"`), names of chain pages become descriptions (`obfuscate_name`). `draft_question`
   assembles them deterministically.
2. Back-translation (`question_chat` + `question_schema`): the model gets the clues from start to answer, the
   evidence (URL and a short literal quote per page), the answer and the draft, after two worked examples
   (few-shot: a 135M model copies passages when asked zero-shot), and returns JSON: the question and other names
   of the answer. The candidate's answer and evidence (url + quote per page) are the chain's own: the answer is
   the fact the chain was built on, the quotes are cut literally from its pages. (Prompt v1 had the model copy
   both into its reply; the 135M model changed the answer or ran out of tokens copying URLs in three quarters of
   the candidates, and a copy can only be as good as what it copies.)
3. Verification (`verify_candidates`), never loosened to raise the yield; each rule is a pure function that
   returns a rejection reason or None, applied in the order of `REJECTION_REASONS` (the first failing one is the
   candidate's `reason`, all deterministic failures are kept in `reasons`):
   - generation: the JSON parsed and matched the schema;
   - answerable: the answer (or an alias) occurs in the final evidence page,
     fetched through the simulator; every evidence URL is fetched with status 200 and is a page of the chain;
     every quote occurs literally in its page; a judge pass given the evidence answers the question with the
     gold answer (token F1 >= `min_judge_f1`);
   - hard: the question does not contain its answer, names no page of the chain, states no date/year/number of
     the chain verbatim, copies no long passage; the answer page is not in the simulator's top-k for the
     question and the answer is in none of the top-k snippets; a closed-book pass without tools does not give
     the answer;
   - unique: near-duplicate questions (token-set Jaccard >= `dedupe_jaccard`) are dropped, the first one kept.
   `difficulty` scores the survivors from hop count, the answer page's search rank, the question's lexical
   overlap with the answer page and the closed-book answer.
4. Output: `hard_query_table` (the dataset rows, `HARD_QUERY_SCHEMA`), `rejected_table`, `hard_queries_card`, and
   `check_hard_queries` (the contracts the asset checks state).

Prompts are versioned: `PROMPT_VERSION` is bumped by hand when a prompt changes meaning, `PROMPT_HASH` is the hash
of the prompt texts, and both are on every row. Every model call is greedy with the run's seed, and prompts depend
only on the chain, so the generation layer's response cache makes an interrupted run resume where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa

from pipeline.text.answers import answer_in_text, normalize_answer, squad_f1 as token_f1
from pipeline.synthesis.chains import is_prose_sentence
from pipeline.text.patterns import DATE as _DATE, MONTHS as _MONTHS, NUMBER as _NUMBER, SENTENCE_STARTERS as _SENTENCE_STARTERS, YEAR as _YEAR  # noqa: E501
from pipeline.text.lexical import STOPWORDS, content_tokens, quote_in, split_sentences, strip_quote, token_recall, tokens
from pipeline.datasets.splits import split_of

PROMPT_VERSION = "hard-queries-v2"
# The order verification applies its rules in; a candidate's `reason` is the first that fails.
REJECTION_REASONS = (
    "invalid_json", "schema_violation", "backend_error", "truncated",
    "answer_not_in_evidence", "evidence_url_unknown", "evidence_incomplete",
    "quote_too_short", "quote_not_in_page",
    "question_malformed", "answer_in_question", "names_page", "unobfuscated_fact", "copies_passage",
    "answer_page_in_top_k", "answer_in_snippets",
    "judge_failed", "judge_disagrees", "closed_book_failed", "closed_book_solved",
    "duplicate",
)
MIN_QUOTE_TOKENS = 4


@dataclass(frozen=True)
class QuestionConfig:
    top_k: int = 10
    """Hardness: the answer page must not be among the simulator's top-k results for the question."""
    rank_depth: int = 100
    """How deep the answer page's rank is looked up for the difficulty score."""
    seed: int = 0
    question_max_tokens: int = 200
    """Token budget of one reply: a question of at most `max_question_words` words and a few aliases."""
    judge_max_tokens: int = 32
    closed_book_max_tokens: int = 24
    min_judge_f1: float = 0.6
    """The judge agrees when its answer's token F1 against the gold answers reaches this: more than half of two
    tokens, so "North Sea" does not confirm "North America" (F1 0.5), "Brian Boru" confirms "High King Brian Boru"."""
    closed_book_f1: float = 0.5
    """The closed-book pass solved the question when its F1 reaches this, or the answer occurs in what it said."""
    dedupe_jaccard: float = 0.7
    min_question_words: int = 8
    max_question_words: int = 90
    max_copied_tokens: int = 12
    """A question that repeats this many consecutive tokens of a chain sentence copies a passage."""
    eval_fraction: float = 0.1
    chunk_size: int = 32
    """Back-translation requests per engine call: each finished chunk is in the response cache, so an interrupted
    run loses at most one chunk."""
    quote_words: int = 8
    """Length of the short literal quotes the prompt offers per page."""


# ---- obfuscation rules -------------------------------------------------------------------------------------------


def obfuscate_year(year: int | str) -> str:
    """A year as the part of its decade: 1889 -> "the late 1880s", 1903 -> "the early 1900s"."""
    y = int(year)
    part = "early" if y % 10 <= 3 else "mid" if y % 10 <= 6 else "late"
    return f"the {part} {y - y % 10}s"


def obfuscate_date(date: str) -> str:
    """A date as a period: "14 July 1889" -> "the late 1880s" (its year, obfuscated)."""
    m = re.search(r"\d{3,4}\b(?!.*\d{3,4}\b)", date)
    if not m:
        raise ValueError(f"no year in date {date!r}")
    return obfuscate_year(m.group(0))


def _fmt(n: float) -> str:
    return f"{int(n):,}" if float(n).is_integer() else f"{n:,}"


def obfuscate_number(number: int | float | str) -> str:
    """A number as a range around it: 450 -> "between 400 and 500", 3000 -> "between 2,500 and 3,500"."""
    raw = str(number).replace(",", "").strip()
    percent = raw.endswith("%")
    value = float(raw.rstrip("%").strip())
    if value < 10:
        low, high = 0, 10
    else:
        step = 10 ** int(math.floor(math.log10(value)))
        low = math.floor(value / step) * step
        high = low + step
        if value == low:  # the value itself must lie strictly inside, or the range gives it away
            low, high = low - step // 2, low + step // 2
    unit = "%" if percent else ""
    return f"between {_fmt(low)}{unit} and {_fmt(high)}{unit}"


def obfuscate_name(name: str, role: str) -> str:
    """A name as a role: ("Claude Monet", "a French painter") -> "a French painter" (never the name itself)."""
    role = " ".join(role.split())
    if not role or normalize_answer(name) and answer_in_text(name, role):
        raise ValueError(f"role {role!r} is empty or names {name!r}")
    return role


_ANY_NUMBER = re.compile(r"(?<![\d,.\-/])\b(\d{1,3}(?:,\d{3})+|\d{2,}(?:\.\d+)?)(\s?%|\s?per ?cent\b)?(?![\d,]|s\b)")
_PROPER = re.compile(r"(?<![\w-])[A-Z][\w'’\-]*(?:\s+(?:of|de|da|del|von|van|der|la|le|the)?\s*[A-Z][\w'’\-]*)*")


_MONTH_NAMES = frozenset(_MONTHS.split("|"))


def obfuscate_names(text: str) -> str:
    """Capitalised names -> "a certain place" after in/at/near/from/of, else "a certain name" (a capitalised
    function word such as "The" or "In" starting the text is left alone)."""
    def sub(m: re.Match) -> str:
        if m.group(0) in _SENTENCE_STARTERS or m.group(0) == "I":
            return m.group(0)
        if m.group(0) in _MONTH_NAMES:
            return "a certain month"
        place = re.search(r"\b(?:in|at|near|from|of)\s+$", text[:m.start()])
        return "a certain place" if place else "a certain name"
    return _PROPER.sub(sub, text)


def obfuscate_text(text: str, hide: Iterable[str] = (), replacement: str = "it") -> str:
    """Dates and years -> periods, numbers -> ranges, each name in `hide` -> `replacement` (whole words)."""
    out = _DATE.sub(lambda m: obfuscate_date(m.group(0)), text)
    out = _YEAR.sub(lambda m: obfuscate_year(m.group(1)), out)

    def number(m: re.Match) -> str:
        value = m.group(1).replace(",", "")
        if _YEAR.fullmatch(m.group(1)) or float(value) < 10:
            return m.group(0)
        return obfuscate_number(value + ("%" if m.group(2) else ""))

    out = _ANY_NUMBER.sub(number, out)
    for name in sorted({h for h in hide if h.strip()}, key=len, reverse=True):
        out = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", replacement, out, flags=re.IGNORECASE)
    return out


# ---- clues -------------------------------------------------------------------------------------------------------

_COPULA = re.compile(r"^(?P<subj>.{1,160}?)\s(?:is|was|are|were|refers to)\s+(?P<pred>(?:a|an|the|one|any)\s.+)$")
_REFS = re.compile(r"\s*\[[^\]]{0,12}\]|\s*\([^()]*\)")
_CUT = re.compile(r"[;:]|,\s|\s-\s|\s(?:which|who|whose|where|that|and is|and was|but)\s")
_CATEGORY = re.compile(r"Related subjects:\s*([^\n]+)(?:\n([^\n:]{1,30})\n)?")
_JUNK = re.compile(r"[<>!\"{}=]|Article|Collaboration")


def _words_limit(text: str, n: int) -> str:
    words = text.split()[:n]
    while words and (words[-1].casefold().strip(",.;:-—") in STOPWORDS or not words[-1].strip(",.;:-—")):
        words.pop()
    return " ".join(words).rstrip(",.;:-—")


def page_category(text: str) -> str | None:
    """The subject category a Wikipedia-for-Schools page states ("Related subjects: Art"), if any."""
    m = _CATEGORY.search(text or "")
    if not m:
        return None
    cat = m.group(1).strip() + (" " + m.group(2).strip() if m.group(2) else "")
    return _words_limit(cat.split(";")[0], 8) or None


def describe_page(title: str, text: str, hide: Iterable[str] = (), max_words: int = 14, host: str = "") -> str:
    """A description of a page that does not name it: its defining predicate, else its category.

    "Vincent van Gogh ... was a Dutch Post-Impressionist artist." -> "a Dutch Post-Impressionist artist".
    Dates, years and numbers in it are obfuscated; it is cut before any name in `hide` (and the page's own title).
    """
    hidden = [h for h in {title, *hide} if h]
    lines = (text or "").split("\n")
    own = {t for t in content_tokens(re.sub(r"\(.*?\)", " ", title))}
    for sentence in split_sentences("\n".join(lines[1:]))[:25]:
        sentence = _REFS.sub("", sentence)  # "(30 March 1853 - 29 July 1890)", "[2]"
        if not is_prose_sentence(sentence, min_words=5) or _JUNK.search(sentence):
            continue
        m = _COPULA.match(sentence)
        if not m or not own & set(content_tokens(m.group("subj"))):
            continue
        pred = _CUT.split(m.group("pred"), maxsplit=1)[0]
        pred = _words_limit(pred, max_words)
        for name in sorted(hidden, key=len, reverse=True):
            hit = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", pred, flags=re.IGNORECASE)
            if hit:
                pred = _words_limit(pred[:hit.start()], max_words)
        if len(pred.split()) >= 3 and not any(answer_in_text(h, pred) for h in hidden):
            return obfuscate_text(pred)
    category = page_category(text)
    if category and not any(answer_in_text(h, category) for h in hidden):
        return f"a subject filed under {category}"
    return f"a page on {host}" if host else "a related page"


def wh_phrase(kind: str, answer: str, before: str = "") -> str:
    """What replaces an answer of `kind` in its clause (`before`: the words before it)."""
    if kind == "number":
        return "what percentage" if answer.endswith("%") or "cent" in answer else "how many"
    if kind == "name":
        return "whom" if re.search(r"\bby$", before) else "what"
    return {"year": "what year", "date": "what date", "place": "what place"}.get(kind, "what")


def fact_clause(sentence: str, answer: str, kind: str, hide: Iterable[str] = (), roles: dict[str, str] | None = None,
                window: int = 10) -> str:
    """The clause of `sentence` around `answer`, the answer replaced by a wh-phrase, the rest obfuscated.

    Names with a page of their own become their role (`roles`: name -> description), names in `hide` become
    "it", dates and numbers periods and ranges: "This issue was resolved in 1915 by Albert Einstein's new general
    relativity theory" (1915) -> "this issue was resolved in what year by a theoretical physicist's new general
    relativity theory".
    """
    start = sentence.find(answer)
    if start < 0:
        raise ValueError(f"answer {answer!r} is not in the sentence")
    end = start + len(answer)
    cuts = [m for m in re.finditer(r"[;:]|,\s|\s-\s|\s–\s", sentence) if m.end() <= start or m.start() >= end]
    left = max((m.end() for m in cuts if m.end() <= start), default=0)
    right = min((m.start() for m in cuts if m.start() >= end), default=len(sentence))
    before, after = sentence[left:start].split(), sentence[end:right].split()
    if len(before) + len(after) < 5:  # too short a clause: widen to the sentence
        before, after = sentence[:start].split(), sentence[end:].split()
    before, after = before[-window:], after[:window]
    if kind == "number" and after and after[0] in ("%", "percent", "per", "cent"):
        after = after[1:]

    slots = {**{name: "it" for name in hide if name}, **(roles or {})}

    def clean(text: str) -> str:
        # Names are parked in slots while dates, numbers and the remaining names are obfuscated.
        text = _REFS.sub("", text)
        parked = {}
        for i, name in enumerate(sorted(slots, key=len, reverse=True)):
            key = f"\x00{i}\x00"
            text, n = re.subn(rf"(?<!\w){re.escape(name)}(?!\w)", key, text, flags=re.IGNORECASE)
            if n:
                parked[key] = slots[name]
        text = obfuscate_names(obfuscate_text(text))
        for key, value in parked.items():
            text = text.replace(key, value)
        text = re.sub(r"\b(?:[Aa]n?|[Tt]he) (a certain|an? )", r"\1", text)
        return re.sub(r"\s+([;,.])", r"\1", text)

    parts = [clean(" ".join(before)), wh_phrase(kind, answer, " ".join(before)), clean(" ".join(after))]
    clause = re.sub(r"\s+([;,.])", r"\1", " ".join(p for p in parts if p)).strip().rstrip(".,;:!?\"' ")
    return clause[:1].lower() + clause[1:] if clause[1:2].islower() else clause


def short_quote(sentence: str, focus: str, words: int = 12) -> str:
    """A literal piece of `sentence` of about `words` words around `focus` (on word boundaries)."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", sentence)]
    if len(spans) <= words:
        return sentence.strip()
    at = sentence.casefold().find(focus.casefold()) if focus else -1
    center = next((i for i, (a, b) in enumerate(spans) if a <= at < b), 0) if at >= 0 else 0
    lo = max(0, min(center - words // 3, len(spans) - words))
    hi = lo + words
    return sentence[spans[lo][0]:spans[hi - 1][1]].strip(" ,;:")


def answer_free_quote(sentence: str, answer: str, words: int = 12) -> str:
    """A literal piece of the answer sentence that leaves the answer out (the longer side of it): what the prompt
    shows of the answer page, so that the model has no quote to copy the answer from into the question."""
    at = sentence.find(answer)
    before, after = (sentence[:at], sentence[at + len(answer):]) if at >= 0 else ("", sentence)
    use_after = len(after.split()) >= len(before.split())
    side = (after if use_after else before).strip(" ,;:.")
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", side)]
    if not spans:
        return ""
    keep = spans[:words] if use_after else spans[-words:]
    return side[keep[0][0]:keep[-1][1]].strip(" ,;:")


def answer_aliases(answer: str, kind: str) -> list[str]:
    """Deterministic variants of an answer: "December 13, 1250" <-> "13 December 1250", "44%" -> "44 percent"."""
    out: list[str] = []
    m = re.fullmatch(r"(\d{1,2})\s+([A-Z][a-z]+),?\s+(\d{3,4})", answer)
    if m:
        out.append(f"{m.group(2)} {m.group(1)}, {m.group(3)}")
    m = re.fullmatch(r"([A-Z][a-z]+)\s+(\d{1,2}),\s+(\d{3,4})", answer)
    if m:
        out.append(f"{m.group(2)} {m.group(1)} {m.group(3)}")
    if kind == "number" and answer.endswith("%"):
        out.append(answer[:-1].strip() + " percent")
    return [a for a in out if normalize_answer(a) != normalize_answer(answer)]


def chain_clues(chain: dict, fetch_text: Callable[[str], str | None], config: QuestionConfig = QuestionConfig()
                ) -> dict:
    """Descriptions, short quotes and the fact clause of a chain (what the prompt and the draft are made of).

    `fetch_text(url)` gives a page's text (the simulator's). The start page gets the longest description (a
    solver must find it), the answer page the shortest (it is reached by following the chain, not by search).
    """
    steps = chain["chain"]
    titles = [s["title"] for s in steps]
    n = len(steps)
    descriptions = []
    for i, step in enumerate(steps):
        others = titles[:i] + titles[i + 1:] + [chain["answer"]]
        text = fetch_text(step["url"]) or ""
        if i == n - 1:  # the answer page is reached through the chain: its description stays generic
            category = page_category(text)
            descriptions.append(f"a subject filed under {category}" if category and not any(
                answer_in_text(t, category) for t in titles) else "a linked article")
            continue
        descriptions.append(describe_page(step["title"], text, hide=others, max_words=20 if i == 0 else 12,
                                          host=re.sub(r"^https?://([^/]+).*$", r"\1", step["url"])))
    roles = {}
    for link in chain.get("answer_links") or []:
        role = describe_page(link["title"], fetch_text(link["url"]) or "", hide=[*titles, chain["answer"]],
                             max_words=8)
        if not role.startswith(("a subject filed", "a page on", "a related page")):
            roles[link["name"]] = role
    anchors = list(chain.get("anchors") or [s["title"] for s in steps[1:]])
    quotes = [short_quote(s["quote"], anchors[i], config.quote_words) for i, s in enumerate(steps[:-1])]
    quotes.append(answer_free_quote(chain["answer_sentence"], chain["answer"], config.quote_words))
    clause = fact_clause(chain["answer_sentence"], chain["answer"], chain["answer_kind"], hide=titles, roles=roles)
    return {"descriptions": descriptions, "quotes": quotes, "clause": clause, "roles": roles}


def draft_question(descriptions: Sequence[str], clause: str) -> str:
    """The clues assembled into one question, start page first, the answer clause last."""
    first, *rest = descriptions
    if not rest:
        raise ValueError("a chain has at least two pages")
    if len(rest) == 1:
        return f"Start at the article on {first}; it links to an article on {rest[0]}. In that article, {clause}?"
    links = ", which links to ".join(rest[1:])
    return (f"Start at the article on {first}. It links to an article on {rest[0]}, which links to {links}. "
            f"In that last article, {clause}?")


# ---- prompts -----------------------------------------------------------------------------------------------------

QUESTION_SYSTEM = (
    "You write hard trivia questions that need several web searches. You get the evidence (the URL of each page "
    "of a chain of linked pages, from a start page to the page that states the answer, and a quote from it), the "
    "answer, and a draft question that describes each page without naming it. Reply with JSON only: the question "
    "(the draft, made fluent; never name a page, never state the answer, keep periods and ranges instead of exact "
    "dates and numbers) and other names of the answer, if any."
)
_EX1_EVIDENCE = [
    {"url": "https://en.wikipedia.org/wiki/Oceanography",
     "quote": "tables were improved by using a tide-predicting machine"},
    {"url": "https://en.wikipedia.org/wiki/Tide-predicting_machine", "quote": "A second machine was completed in"},
]
_EX2_EVIDENCE = [
    {"url": "https://en.wikipedia.org/wiki/Greenland", "quote": "the ice sheet of the island covers its surface"},
    {"url": "https://en.wikipedia.org/wiki/Ice_sheet",
     "quote": "Theories of continental drift explain the old deposits"},
    {"url": "https://en.wikipedia.org/wiki/Continental_drift", "quote": "The hypothesis was put forward by"},
]
_EX1_DRAFT = ("Start at the article on the study of the physical and biological aspects of the ocean; it links to an "
              "article on a mechanical analogue computer built to predict the ebb and flow of sea tides. In that "
              "article, a second machine was completed in what year for the national survey?")
_EX2_DRAFT = ("Start at the article on the world's largest island that is not a continent. It links to an article on "
              "a mass of glacial land ice extending over a vast area, which links to a subject filed under Geology. "
              "In that last article, the hypothesis was put forward by whom in the early 1910s?")
QUESTION_EXAMPLES = [
    (
        {"answer": "1907", "kind": "year", "evidence": _EX1_EVIDENCE, "draft": _EX1_DRAFT},
        {"question": _EX1_DRAFT, "aliases": []},
    ),
    (
        {"answer": "Alfred Wegener", "kind": "name", "evidence": _EX2_EVIDENCE, "draft": _EX2_DRAFT},
        {"question": _EX2_DRAFT, "aliases": ["Wegener"]},
    ),
]

JUDGE_SYSTEM = ("You check trivia questions. Read the evidence, then answer the question with the shortest exact "
                "answer the evidence gives (a name, date, number or place). Reply with JSON only.")
JUDGE_EXAMPLES = [
    ({"question": "Start at the article on a large body of salt water; it links to an article on a deep trench in "
                  "it. In that article, the trench reaches how many metres below sea level?",
      "evidence": ["Pacific Ocean: The Mariana Trench is the deepest point in the ocean.",
                   "Mariana Trench: The trench reaches 10,994 metres below sea level at its deepest point."]},
     {"answer": "10,994"}),
    ({"question": "Start at the article on a painter of the Italian Renaissance; it links to an article on a "
                  "portrait. In that article, the painting hangs in what place?",
      "evidence": ["Leonardo da Vinci: His Mona Lisa is the most famous portrait in the world.",
                   "Mona Lisa: The painting hangs in the Louvre in Paris."]},
     {"answer": "the Louvre"}),
]
CLOSED_BOOK_SYSTEM = ("Answer the trivia question from memory with a short answer (a name, date, number or place). "
                      "Reply with JSON only.")
CLOSED_BOOK_EXAMPLES = [
    ("What is the capital city of France?", {"answer": "Paris"}),
    ("In what year did the Second World War end?", {"answer": "1945"}),
]
# No string length bounds: grammar engines expand bounded repetition, which makes compiling them slow.
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}},
                 "required": ["answer"], "additionalProperties": False}
QUESTION_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "aliases": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
    },
    "required": ["question", "aliases"],
    "additionalProperties": False,
}
"""The reply's JSON schema, fields in the order the reply writes them (no string length bounds: as above)."""


def _prompt_texts() -> str:
    return json.dumps([QUESTION_SYSTEM, QUESTION_EXAMPLES, QUESTION_SCHEMA, JUDGE_SYSTEM, JUDGE_EXAMPLES, CLOSED_BOOK_SYSTEM,
                       CLOSED_BOOK_EXAMPLES, ANSWER_SCHEMA], sort_keys=True, ensure_ascii=False)


PROMPT_HASH = hashlib.sha256(_prompt_texts().encode("utf-8")).hexdigest()[:12]


def _question_user(item: dict) -> str:
    # Everything the reply copies sits in the prompt in the reply's own format, the draft last: a 135M model
    # copies what it sees; it cannot assemble JSON from a list of fields.
    lines = [f"Evidence: {_dump(item['evidence'])}", f"Answer ({item['kind']}): {_dump(item['answer'])}",
             f"Draft question: {item['draft']}"]
    return "\n".join(lines)


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def chain_evidence(chain: dict, clues: dict) -> list[dict]:
    """The evidence of a chain: each page's URL and the short literal quote the clues cut from it."""
    return [{"url": s["url"], "quote": q} for s, q in zip(chain["chain"], clues["quotes"])]


def question_chat(chain: dict, clues: dict) -> list[dict]:
    """The back-translation prompt: system, two worked examples, then this chain."""
    item = {"answer": chain["answer"], "kind": chain["answer_kind"], "evidence": chain_evidence(chain, clues),
            "draft": draft_question(clues["descriptions"], clues["clause"])}
    chat = [{"role": "system", "content": QUESTION_SYSTEM}]
    for example, answer in QUESTION_EXAMPLES:
        chat += [{"role": "user", "content": _question_user(example)}, {"role": "assistant", "content": _dump(answer)}]
    chat.append({"role": "user", "content": _question_user(item)})
    return chat




def judge_chat(question: str, evidence: Sequence[str]) -> list[dict]:
    chat = [{"role": "system", "content": JUDGE_SYSTEM}]
    for example, answer in JUDGE_EXAMPLES:
        chat += [{"role": "user", "content": _judge_user(example["question"], example["evidence"])},
                 {"role": "assistant", "content": _dump(answer)}]
    chat.append({"role": "user", "content": _judge_user(question, evidence)})
    return chat


def _judge_user(question: str, evidence: Sequence[str]) -> str:
    lines = ["Evidence:"] + [f"[{i}] {e}" for i, e in enumerate(evidence, 1)] + [f"Question: {question}"]
    return "\n".join(lines)


def closed_book_chat(question: str) -> list[dict]:
    chat = [{"role": "system", "content": CLOSED_BOOK_SYSTEM}]
    for q, answer in CLOSED_BOOK_EXAMPLES:
        chat += [{"role": "user", "content": f"Question: {q}"}, {"role": "assistant", "content": _dump(answer)}]
    chat.append({"role": "user", "content": f"Question: {question}"})
    return chat


# ---- generation --------------------------------------------------------------------------------------------------


def _params(max_tokens: int, seed: int):
    from pipeline.llm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=seed)


def _usage(llm) -> dict:
    usage = getattr(llm, "usage", None)
    if callable(usage):  # LLMResource.usage()
        return usage()
    return usage.as_dict() if usage is not None and hasattr(usage, "as_dict") else {}


def usage_delta(before: dict, after: dict) -> dict:
    keys = ("requests", "prompt_tokens", "completion_tokens", "seconds", "cache_hits", "cache_misses", "retries")
    return {k: round(after.get(k, 0) - before.get(k, 0), 3) for k in keys}


def _generation_error(completion) -> str:
    """The rejection reason of a failed generation: cut off by max_tokens, or the generation layer's error."""
    if completion.finish_reason == "length" and completion.error in ("invalid_json", "schema_violation"):
        return "truncated"
    return (completion.error or "backend_error").split(":")[0].strip()


def generate_candidates(chains: Sequence[dict], fetch_text: Callable[[str], str | None], llm,
                        config: QuestionConfig = QuestionConfig(),
                        progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], dict]:
    """One candidate per chain: its clues, draft, the model's raw reply and parsed JSON (or error).

    `fetch_text(url)` gives a page's text (see `simulator_texts`). Returns (candidates, stats).
    """
    started = time.perf_counter()
    before = _usage(llm)
    candidates, chats = [], []
    for chain in chains:
        clues = chain_clues(chain, fetch_text, config)
        chats.append(question_chat(chain, clues))
        candidates.append({**chain, "candidate_id": chain["chain_id"], "clues": clues,
                           "evidence": chain_evidence(chain, clues),
                           "draft": draft_question(clues["descriptions"], clues["clause"])})
    completions: list = []
    step = max(config.chunk_size, 1)
    for start in range(0, len(chats), step):
        completions += llm.generate(chats[start:start + step], _params(config.question_max_tokens, config.seed),
                                    QUESTION_SCHEMA)
        if progress is not None:
            progress(len(completions), len(chains))
    for cand, c in zip(candidates, completions):
        cand.update({
            "raw_text": c.text, "parsed": c.parsed if c.ok else None,
            "generation_error": None if c.ok else _generation_error(c),
            "generation_error_detail": c.error_detail,
            "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
        })
    stats = {"candidates": len(candidates), "llm_usage": usage_delta(before, _usage(llm)),
             "seconds": round(time.perf_counter() - started, 2),
             "generation_errors": dict(Counter(c["generation_error"] for c in candidates if c["generation_error"]))}
    return candidates, stats


# ---- verification rules (pure: a reason or None) ------------------------------------------------------------------


def golds_of(answer: str, aliases: Iterable[str] = ()) -> list[str]:
    out: list[str] = []
    for a in [answer, *aliases]:
        if a and a.strip() and normalize_answer(a) not in {normalize_answer(o) for o in out}:
            out.append(a.strip())
    return out


def check_generation(candidate: dict) -> str | None:
    err = candidate.get("generation_error")
    if err:
        return err if err in REJECTION_REASONS else "backend_error"
    if candidate.get("parsed") is None:
        return "invalid_json"
    return None


def check_answer_in_page(golds: Sequence[str], page_text: str | None) -> str | None:
    return None if page_text and answer_in_text(golds, page_text) else "answer_not_in_evidence"


def check_evidence(evidence: Sequence[dict], chain_urls: Sequence[str], fetched: dict[str, str | None]) -> str | None:
    """Evidence: URLs served (200) and of the chain, one item per chain page, quotes literal in their pages.

    `fetched` maps a URL to the text the simulator served for it (None: not a 200).
    """
    urls = [e.get("url", "") for e in evidence]
    if any(fetched.get(u) is None or u not in chain_urls for u in urls):
        return "evidence_url_unknown"
    if set(urls) != set(chain_urls):
        return "evidence_incomplete"
    for e in evidence:
        if len(tokens(strip_quote(e.get("quote", "")))) < MIN_QUOTE_TOKENS:
            return "quote_too_short"
    for e in evidence:
        if not quote_in(e["quote"], fetched[e["url"]] or ""):
            return "quote_not_in_page"
    return None


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def check_question_text(question: str, golds: Sequence[str], chain: dict, config: QuestionConfig = QuestionConfig()
                        ) -> list[str]:
    """Every rule on the question's own text that fails (empty: it passes them all)."""
    failed = []
    words = question.split()
    if not question.strip().endswith("?") or not config.min_question_words <= len(words) <= config.max_question_words:
        failed.append("question_malformed")
    if answer_in_text(golds, question):
        failed.append("answer_in_question")
    if any(answer_in_text(step["title"], question) for step in chain["chain"]):
        failed.append("names_page")
    if unobfuscated_facts(question, chain):
        failed.append("unobfuscated_fact")
    q_tokens = tokens(question)
    if any(_longest_common_run(q_tokens, tokens(step["quote"])) >= config.max_copied_tokens for step in chain["chain"]):
        failed.append("copies_passage")
    return failed


def unobfuscated_facts(question: str, chain: dict) -> list[str]:
    """Dates, years and numbers (>= 10) of the chain's sentences that the question states verbatim."""
    found = [m.group(0) for m in _DATE.finditer(question)]
    q_norm = f" {' '.join(tokens(question))} "
    for step in chain["chain"]:
        for m in _YEAR.finditer(step["quote"]):
            if f" {m.group(1)} " in q_norm:
                found.append(m.group(1))
        for m in _NUMBER.finditer(step["quote"]):
            value = m.group(1).replace(",", "")
            if float(value) >= 10 and (f" {value} " in q_norm or f" {m.group(1)} " in f" {question} "):
                found.append(m.group(1))
    return sorted(set(found))


def check_search(results: Sequence[Any], answer_url: str, golds: Sequence[str]) -> str | None:
    """Hardness against the simulator: the answer page is not a top-k hit, and no top-k snippet has the answer."""
    if any(r.url == answer_url for r in results):
        return "answer_page_in_top_k"
    if any(answer_in_text(golds, r.snippet or "") for r in results):
        return "answer_in_snippets"
    return None


def check_judge(judge_answer: str | None, golds: Sequence[str], min_f1: float = 0.6) -> str | None:
    if judge_answer is None:
        return "judge_failed"
    return None if token_f1(judge_answer, golds) >= min_f1 else "judge_disagrees"


def check_closed_book(closed_answer: str | None, golds: Sequence[str], min_f1: float = 0.5) -> str | None:
    if closed_answer is None:
        return "closed_book_failed"
    if token_f1(closed_answer, golds) >= min_f1 or answer_in_text(golds, closed_answer):
        return "closed_book_solved"
    return None


def question_id(question: str) -> str:
    """sha256 of the normalised question, 16 hex digits."""
    return hashlib.sha256(normalize_answer(question).encode("utf-8")).hexdigest()[:16]


def near_duplicates(questions: Sequence[str], threshold: float = 0.7) -> dict[int, int]:
    """index -> index of the earlier question it nearly repeats (token-set Jaccard of content tokens)."""
    sets = [set(content_tokens(q)) for q in questions]
    dup: dict[int, int] = {}
    kept: list[int] = []
    for i, s in enumerate(sets):
        for j in kept:
            t = sets[j]
            if not s and not t or (s or t) and len(s & t) / len(s | t) >= threshold:
                dup[i] = j
                break
        else:
            kept.append(i)
    return dup


def difficulty(hops: int, answer_rank: int | None, rank_depth: int, top_k: int, question: str, answer_page_text: str,
               closed_book_f1: float) -> float:
    """0-1: more hops, a deeper (or no) search rank of the answer page, less lexical overlap between question and
    answer page, and a worse closed-book answer make a question harder. Weights 0.4 / 0.3 / 0.2 / 0.1."""
    hop_score = (min(max(hops, 1), 4) - 1) / 3
    if answer_rank is None:
        rank_score = 1.0
    else:
        rank_score = max(0.0, min(1.0, (answer_rank - top_k) / max(rank_depth - top_k, 1)))
    overlap = token_recall(question, answer_page_text) if answer_page_text else 0.0
    score = 0.4 * hop_score + 0.3 * rank_score + 0.2 * (1 - overlap) + 0.1 * (1 - closed_book_f1)
    return round(max(0.0, min(1.0, score)), 4)


# ---- verification ------------------------------------------------------------------------------------------------


def simulator_texts(sim) -> Callable[[str], str | None]:
    """`fetch_text(url)` over a simulator: the text of a 200 response, else None (cached)."""
    cache: dict[str, str | None] = {}
    return lambda url: _fetch_text(sim, url, cache)


def _fetch_text(sim, url: str, cache: dict[str, str | None]) -> str | None:
    if url not in cache:
        try:
            resp = sim.fetch(url)
        except ValueError:
            cache[url] = None
        else:
            cache[url] = resp.text if resp.status == 200 else None
    return cache[url]


def verify_candidates(candidates: Sequence[dict], sim, llm, config: QuestionConfig = QuestionConfig(), *,
                      model: str = "", snapshot_id: str = "") -> tuple[list[dict], list[dict], dict]:
    """Apply every rule; returns (verified rows, rejected rows, stats). Rules never change with the yield.

    `sim` is a Simulator (or its HTTP client): `fetch` for evidence pages, `search` for hardness. `llm` runs the
    judge and the closed-book passes (a backend or an `LLMResource`), only for candidates that pass the rest.
    """
    started = time.perf_counter()
    before = _usage(llm)
    pages: dict[str, str | None] = {}
    state = []
    for cand in candidates:
        golds = [cand["answer"], *answer_aliases(cand["answer"], cand["answer_kind"])]
        st = {"cand": cand, "reasons": [], "golds": golds,
              "aliases_dropped": 0, "answer_rank": None, "judge_answer": None, "closed_book_answer": None,
              "judge_raw": None, "closed_book_raw": None}
        state.append(st)
        reason = check_generation(cand)
        if reason:
            st["reasons"].append(reason)
            continue
        parsed = cand["parsed"]
        chain_urls = [s["url"] for s in cand["chain"]]
        golds = golds_of(cand["answer"], st["golds"][1:])
        evidence = list(cand.get("evidence") or [])
        for e in evidence:
            _fetch_text(sim, e.get("url", ""), pages)
        for u in chain_urls:
            _fetch_text(sim, u, pages)
        final_url = evidence[-1]["url"] if evidence else cand["answer_url"]
        if (r := check_answer_in_page(golds, pages.get(final_url))):
            st["reasons"].append(r)
        if (r := check_evidence(evidence, chain_urls, pages)):
            st["reasons"].append(r)
        # Model aliases stay only if the answer page states them and they share a token with the answer.
        answer_text = pages.get(cand["answer_url"]) or ""
        extra = [a for a in parsed.get("aliases") or [] if isinstance(a, str)]
        ok_extra = [a for a in extra if answer_in_text(a, answer_text) and token_f1(a, cand["answer"]) > 0]
        st["aliases_dropped"] = len(extra) - len(ok_extra)
        st["golds"] = golds_of(cand["answer"], [*golds[1:], *ok_extra])
        question = (parsed.get("question") or "").strip()
        st["question"] = question
        st["reasons"] += check_question_text(question, st["golds"], cand, config)
        if not st["reasons"]:
            results = sim.search(question, max(config.top_k, config.rank_depth)).results
            rank = next((r.rank for r in results if r.url == cand["answer_url"]), None)
            st["answer_rank"] = rank
            if (r := check_search([x for x in results if x.rank <= config.top_k], cand["answer_url"], st["golds"])):
                st["reasons"].append(r)
    todo = [st for st in state if not st["reasons"]]
    if todo:
        judge_chats = [judge_chat(st["question"], [f"{s['title']}: {s['quote']}" for s in st["cand"]["chain"]])
                       for st in todo]
        closed_chats = [closed_book_chat(st["question"]) for st in todo]
        judged = llm.generate(judge_chats, _params(config.judge_max_tokens, config.seed), ANSWER_SCHEMA)
        closed = llm.generate(closed_chats, _params(config.closed_book_max_tokens, config.seed), ANSWER_SCHEMA)
        for st, j, c in zip(todo, judged, closed):
            st["judge_raw"], st["closed_book_raw"] = j.text, c.text
            st["judge_answer"] = str(j.parsed.get("answer", "")) if j.ok else None
            st["closed_book_answer"] = str(c.parsed.get("answer", "")) if c.ok else None
            if (r := check_judge(st["judge_answer"], st["golds"], config.min_judge_f1)):
                st["reasons"].append(r)
            if (r := check_closed_book(st["closed_book_answer"], st["golds"], config.closed_book_f1)):
                st["reasons"].append(r)
    survivors = [st for st in state if not st["reasons"]]
    for i, j in near_duplicates([st["question"] for st in survivors], config.dedupe_jaccard).items():
        survivors[i]["reasons"].append("duplicate")
        survivors[i]["duplicate_of"] = question_id(survivors[j]["question"])
    accepted, rejected = [], []
    provenance = {"snapshot_id": snapshot_id, "model": model, "prompt_version": PROMPT_VERSION,
                  "prompt_hash": PROMPT_HASH, "seed": config.seed}
    for st in state:
        cand = st["cand"]
        if st["reasons"]:
            ordered = sorted(set(st["reasons"]), key=REJECTION_REASONS.index)
            rejected.append(_rejected_row(st, ordered, provenance))
        else:
            accepted.append(_accepted_row(st, config, pages, provenance))
    reasons = Counter(r["reason"] for r in rejected)
    stats = {
        "candidates": len(candidates), "verified": len(accepted), "rejected": len(rejected),
        "yield": round(len(accepted) / len(candidates), 4) if candidates else 0.0,
        "rejections": {r: reasons[r] for r in REJECTION_REASONS if reasons[r]},
        "all_failed_rules": dict(Counter(x for r in rejected for x in r["reasons"])),
        "aliases_dropped": sum(st["aliases_dropped"] for st in state),
        "llm_usage": usage_delta(before, _usage(llm)),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return accepted, rejected, stats


def _accepted_row(st: dict, config: QuestionConfig, pages: dict[str, str | None], provenance: dict) -> dict:
    cand, question = st["cand"], st["question"]
    qid = question_id(question)
    closed_f1 = token_f1(st["closed_book_answer"] or "", st["golds"])
    return {
        "id": qid,
        "question": question,
        "answer": cand["answer"],
        "aliases": st["golds"][1:],
        "hops": cand["hops"],
        "chain": [{"url": s["url"], "title": s["title"], "quote": s["quote"]} for s in cand["chain"]],
        "start_url": cand["start_url"],
        "answer_url": cand["answer_url"],
        "difficulty": difficulty(cand["hops"], st["answer_rank"], config.rank_depth, config.top_k, question,
                                 pages.get(cand["answer_url"]) or "", closed_f1),
        "split": split_of(qid, config.eval_fraction),
        **{k: provenance[k] for k in ("snapshot_id", "model", "prompt_version", "seed")},
        "prompt_hash": provenance["prompt_hash"],
        "answer_kind": cand["answer_kind"],
        "evidence": [{"url": e["url"], "quote": e["quote"]} for e in cand["evidence"]],
        "answer_rank": st["answer_rank"],
        "judge_answer": st["judge_answer"],
        "closed_book_answer": st["closed_book_answer"],
        "draft": cand["draft"],
        "chain_id": cand["chain_id"],
    }


def _rejected_row(st: dict, reasons: list[str], provenance: dict) -> dict:
    cand = st["cand"]
    parsed = cand.get("parsed") or {}
    return {
        "candidate_id": cand["candidate_id"],
        "reason": reasons[0],
        "reasons": reasons,
        "question": st.get("question") or parsed.get("question") or "",
        "answer": cand["answer"],
        "hops": cand["hops"],
        "chain": [{"url": s["url"], "title": s["title"], "quote": s["quote"]} for s in cand["chain"]],
        "start_url": cand["start_url"],
        "answer_url": cand["answer_url"],
        "answer_kind": cand["answer_kind"],
        "draft": cand.get("draft", ""),
        "raw_text": cand.get("raw_text") or "",
        "generation_error_detail": cand.get("generation_error_detail") or "",
        "answer_rank": st["answer_rank"],
        "judge_answer": st["judge_answer"],
        "judge_raw": st["judge_raw"] or "",
        "closed_book_answer": st["closed_book_answer"],
        "closed_book_raw": st["closed_book_raw"] or "",
        "duplicate_of": st.get("duplicate_of", ""),
        "split": "rejected",
        **provenance,
    }


# ---- tables ------------------------------------------------------------------------------------------------------

_S, _I64, _F64 = pa.string(), pa.int64(), pa.float64()
CHAIN_STEP = pa.struct([("url", _S), ("title", _S), ("quote", _S)])
EVIDENCE = pa.struct([("url", _S), ("quote", _S)])
HARD_QUERY_SCHEMA = pa.schema([
    ("id", _S), ("question", _S), ("answer", _S), ("aliases", pa.list_(_S)), ("hops", _I64),
    ("chain", pa.list_(CHAIN_STEP)), ("start_url", _S), ("answer_url", _S), ("difficulty", _F64), ("split", _S),
    ("snapshot_id", _S), ("model", _S), ("prompt_version", _S), ("seed", _I64),
    ("prompt_hash", _S), ("answer_kind", _S), ("evidence", pa.list_(EVIDENCE)), ("answer_rank", _I64),
    ("judge_answer", _S), ("closed_book_answer", _S), ("draft", _S), ("chain_id", _S),
])
REJECTED_SCHEMA = pa.schema([
    ("candidate_id", _S), ("reason", _S), ("reasons", pa.list_(_S)), ("question", _S), ("answer", _S),
    ("hops", _I64), ("chain", pa.list_(CHAIN_STEP)), ("start_url", _S), ("answer_url", _S),
    ("answer_kind", _S), ("draft", _S), ("raw_text", _S), ("generation_error_detail", _S), ("answer_rank", _I64),
    ("judge_answer", _S), ("judge_raw", _S), ("closed_book_answer", _S), ("closed_book_raw", _S),
    ("duplicate_of", _S), ("split", _S),
    ("snapshot_id", _S), ("model", _S), ("prompt_version", _S), ("prompt_hash", _S), ("seed", _I64),
])


def _table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def hard_query_table(rows: Sequence[dict]) -> pa.Table:
    """Verified rows as Arrow with `HARD_QUERY_SCHEMA` (columns in schema order)."""
    return _table(rows, HARD_QUERY_SCHEMA)


def rejected_table(rows: Sequence[dict]) -> pa.Table:
    return _table(rows, REJECTED_SCHEMA)


# ---- contracts ---------------------------------------------------------------------------------------------------

CHECKS = {
    "evidence_urls_exist": "every chain and evidence URL is served by the snapshot (status 200)",
    "answer_in_evidence": "the answer (or an alias) occurs in the answer page, and every quote in its page",
    "no_duplicates": "ids are unique and no two questions are near-duplicates",
    "split_disjoint": "split == split_of(id); no id and no question is in both splits",
}


def check_hard_queries(rows: Sequence[dict], sim, *, eval_fraction: float = 0.1, dedupe_jaccard: float = 0.7
                       ) -> dict[str, tuple[int, list[str]]]:
    """For each contract in CHECKS: (rows violating it, a few examples), re-checked against the simulator."""
    bad: dict[str, list[str]] = {name: [] for name in CHECKS}
    pages: dict[str, str | None] = {}
    for row in rows:
        urls = [s["url"] for s in row["chain"]] + [e["url"] for e in row.get("evidence") or []]
        missing = [u for u in dict.fromkeys(urls) if _fetch_text(sim, u, pages) is None]
        if missing:
            bad["evidence_urls_exist"].append(f"{row['id']}: {missing[0]} not served")
        answer_page = _fetch_text(sim, row["answer_url"], pages)
        quotes_ok = all(quote_in(s["quote"], pages.get(s["url"]) or "") for s in row["chain"]) and all(
            quote_in(e["quote"], pages.get(e["url"]) or "") for e in row.get("evidence") or [])
        if not answer_page or not answer_in_text(golds_of(row["answer"], row["aliases"]), answer_page) or not quotes_ok:
            bad["answer_in_evidence"].append(f"{row['id']}: answer or a quote not found in its page")
        if row["split"] != split_of(row["id"], eval_fraction):
            bad["split_disjoint"].append(f"{row['id']}: split {row['split']} != split_of(id)")
    ids = Counter(r["id"] for r in rows)
    bad["no_duplicates"] += [f"{i}: {n} rows" for i, n in ids.items() if n > 1]
    bad["no_duplicates"] += [f"{rows[i]['id']} repeats {rows[j]['id']}"
                             for i, j in near_duplicates([r["question"] for r in rows], dedupe_jaccard).items()]
    by_split: dict[str, set[str]] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).update({r["id"], normalize_answer(r["question"])})
    if len(by_split) > 1:
        common = set.intersection(*by_split.values())
        bad["split_disjoint"] += [f"{x} in several splits" for x in sorted(common)]
    return {name: (len(v), v[:5]) for name, v in bad.items()}


# ---- dataset card ------------------------------------------------------------------------------------------------

FIELD_DOCS = {
    "id": "sha256 of the normalised question (SQuAD normalisation), 16 hex digits",
    "question": "the question: start page, link hops and the answer page described, never named",
    "answer": "the gold answer: a year, date, number, name or place the answer page states",
    "aliases": "other accepted forms of the answer (date formats, 'percent'; model aliases the page states)",
    "hops": "link hops from the start page to the answer page (1-4)",
    "chain": "the pages from start to answer: url, title, and quote = the sentence on that page that links to the "
             "next one (on the answer page: the sentence that states the answer)",
    "start_url": "the start page", "answer_url": "the page that states the answer",
    "difficulty": "0-1 from hops, the answer page's search rank, question/answer-page overlap, closed-book answer",
    "split": "train | eval: split_of(id)",
    "snapshot_id": "the simulator snapshot the chain and checks used", "model": "the model that wrote the question",
    "prompt_version": "PROMPT_VERSION of pipeline/synthesis/questions.py", "seed": "the build seed",
    "prompt_hash": "sha256 of the prompt texts (12 hex)", "answer_kind": "date | year | number | name | place",
    "evidence": "per chain page: url + the short quote the model was shown, verified to occur in that page",
    "answer_rank": "rank of the answer page when the question is searched (null: not in the top rank_depth)",
    "judge_answer": "what the judge answered given the evidence", "closed_book_answer": "the closed-book answer",
    "draft": "the deterministic draft the model was shown", "chain_id": "the evidence chain's id",
}


SOURCE_LICENCES = [  # host suffix -> (hub licence id, what it means)
    ("wikipedia.org", "cc-by-sa-3.0", "Wikipedia article text (the Wikispeedia 2007 selection): CC BY-SA"),
    ("data.gov.uk", "other", "data.gov.uk pages: Open Government Licence, Crown copyright"),
]


def licence_of(url: str) -> tuple[str, str]:
    """(hub licence id, description) of a source page, by its host."""
    host = (re.match(r"^https?://([^/:]+)", url or "") or [None, ""])[1]
    for suffix, hub_id, text in SOURCE_LICENCES:
        if host == suffix or host.endswith("." + suffix):
            return hub_id, text
    return "other", f"{host}: licence of the source site unknown; check it before redistributing"


def hard_queries_card(rows: Sequence[dict], rejected: Sequence[dict], stats: dict, provenance: dict) -> str:
    """README.md of the dataset: what, how it was made, fields, counts, rejections, licence, provenance."""
    from pipeline.datasets.export import yaml_header

    splits = sorted({r["split"] for r in rows}) or ["train"]
    hops = Counter((r["hops"], r["split"]) for r in rows)
    hop_table = "\n".join(f"| {h} | " + " | ".join(str(hops[(h, s)]) for s in splits) + " |" for h in range(1, 5))
    reasons = Counter(r["reason"] for r in rejected)
    rej = "\n".join(f"| {k} | {reasons[k]} |" for k in REJECTION_REASONS if reasons[k]) or "| (none) | 0 |"
    licences = Counter(licence_of(s["url"]) for r in rows for s in r["chain"])
    lic = "\n".join(f"| {text} | `{hub}` | {n} |" for (hub, text), n in sorted(licences.items())) or \
        "| Wikipedia article text (the Wikispeedia 2007 selection): CC BY-SA | `cc-by-sa-3.0` | 0 |"
    header = yaml_header(licenses=sorted({h for h, _ in licences}) or ["cc-by-sa-3.0"], splits=splits,
                         pretty_name="websim hard queries", tags=["synthetic", "websim", "multi-hop", "search-agents"],
                         task_categories=["question-answering"], size=len(rows))
    fields = "\n".join(f"| `{f.name}` | {f.type} | {FIELD_DOCS.get(f.name, '')} |" for f in HARD_QUERY_SCHEMA)
    cfg = provenance.get("config", {})
    return f"""{header}

# websim hard queries

Hard multi-hop questions with gold answers for training and evaluating search agents on the websim simulated web.
Each question starts from one page and follows 1-4 real links to a page that states the answer; every page is
described, never named, so no single search reaches the answer. Made by `pipeline/synthesis/chains.py` and
`pipeline/synthesis/questions.py` from snapshot `{provenance.get('snapshot_id', '')}`.

{len(rows)} verified questions from {stats.get('candidates', 0)} candidates (yield {stats.get('yield', 0):.1%}).

| hops | {' | '.join(splits)} |
|---|{'---|' * len(splits)}
{hop_table}

## How it was made

1. Evidence chains: an answer page (seeded order, weighted by clickstream traffic into it) and a fact on it (a
   date, year, number with its noun, or a capitalised name or place, found by regexes in a prose sentence); then a
   walk back over the link graph, {cfg.get('hop_mix', '')} hops, preferring links people click (clickstream counts)
   and links whose sentence names the next page. Each hop keeps the sentence that justifies it.
2. Back-translation: every page gets a description without its name (its defining predicate or its category),
   years become periods, numbers ranges; the fact's clause becomes a wh-question. The model
   `{provenance.get('model', '')}` writes the final question as JSON (question, other names of the answer) from
   these clues, the evidence (url + quote per page) and a draft, after two worked examples (prompt
   `{PROMPT_VERSION}`, hash `{PROMPT_HASH}`); the answer and the evidence stay the chain's own.
3. Verification, never loosened to raise the yield: the answer occurs in the answer page fetched from
   the simulator; evidence URLs are served and quotes occur literally; the question does not contain the answer,
   names no chain page, states no date or number of the chain, copies no passage; the answer page is not in the
   simulator's top {cfg.get('top_k', '')} for the question and no top-{cfg.get('top_k', '')} snippet has the
   answer; a judge pass given the evidence answers with the gold answer; a closed-book pass does not; near-
   duplicates (Jaccard >= {cfg.get('dedupe_jaccard', '')}) dropped. Rejected candidates, with their reason and the
   raw model text, are in the sibling dataset `hard_queries_rejected`.
4. Split: `split_of(id)` ({round(cfg.get('eval_fraction', 0.1) * 100)}% eval).

A small model writes weak questions: read `draft` beside `question`, and expect a low yield from a 135M model.

| rejection reason (first rule failed) | candidates |
|---|---|
{rej}

## Fields

| field | type | meaning |
|---|---|---|
{fields}

## Licence of the source text

Questions, answers and quotes are derived from the source pages; their licences carry over.

| source | licence id | chain pages |
|---|---|---|
{lic}

Wikispeedia (West & Leskovec) re-distributes the 2007 Wikipedia for Schools selection under CC BY-SA; reuse
requires attribution and share-alike.

## Provenance

```json
{json.dumps(provenance, indent=2, default=str)}
```
"""


def rejected_card(rejected: Sequence[dict], provenance: dict) -> str:
    from pipeline.datasets.export import yaml_header

    reasons = Counter(r["reason"] for r in rejected)
    rej = "\n".join(f"| {k} | {reasons[k]} |" for k in REJECTION_REASONS if reasons[k]) or "| (none) | 0 |"
    header = yaml_header(licenses=["cc-by-sa-3.0"], splits=["rejected"], pretty_name="websim hard queries (rejected)",
                         tags=["synthetic", "websim"], task_categories=["question-answering"], size=len(rejected))
    return f"""{header}

# websim hard queries: rejected candidates

Every candidate of `hard_queries` that failed verification, with `reason` (the first rule it failed, in the order
of `REJECTION_REASONS`), `reasons` (every rule it failed), the raw model text and the judge / closed-book replies.

| reason | candidates |
|---|---|
{rej}

```json
{json.dumps(provenance, indent=2, default=str)}
```
"""


def describe_config(config: QuestionConfig) -> dict:
    return asdict(config)


# ---- files -------------------------------------------------------------------------------------------------------


def work_dir(data_dir: str | Path | None = None) -> Path:
    """Where the synthesis stages hand records to each other: `<data dir>/synthesis/hard_queries`."""
    from pipeline import config as websim_config

    return Path(data_dir or websim_config.data_dir()) / "synthesis" / "hard_queries"


def datasets_dir(data_dir: str | Path | None = None) -> Path:
    """Where datasets are exported: `<data dir>/datasets`."""
    from pipeline import config as websim_config

    return Path(data_dir or websim_config.data_dir()) / "datasets"


def write_jsonl(path: str | Path, records: Sequence[dict], meta: dict) -> Path:
    """Records as JSON lines after one `{"meta": ...}` line, replaced atomically (a reader never sees half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"meta": meta}, ensure_ascii=False, default=str) + "\n")
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_jsonl(path: str | Path) -> tuple[dict, list[dict]]:
    """(meta, records) of a file written by `write_jsonl`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: materialise the upstream asset first")
    with open(path, encoding="utf-8") as fh:
        meta = json.loads(fh.readline())["meta"]
        return meta, [json.loads(line) for line in fh if line.strip()]


def export_hard_queries(accepted: Sequence[dict], rejected: Sequence[dict], stats: dict, provenance: dict,
                        out_root: str | Path) -> dict:
    """`<out_root>/hard_queries` (verified, with card) and `<out_root>/hard_queries_rejected`, each written whole."""
    from pipeline.datasets.export import export_dataset

    out_root = Path(out_root)
    table = hard_query_table(accepted)
    written = export_dataset(table, out_root / "hard_queries",
                             card=hard_queries_card(accepted, rejected, stats, provenance), provenance=provenance)
    written_rejected = export_dataset(rejected_table(rejected), out_root / "hard_queries_rejected",
                                      card=rejected_card(rejected, provenance), provenance=provenance)
    return {"hard_queries": written, "hard_queries_rejected": written_rejected}


def read_dataset_rows(path: str | Path) -> list[dict]:
    """Every row of an exported dataset folder (all splits), from its Parquet files."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for f in sorted((Path(path) / "data").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def plot_summary(accepted: Sequence[dict], rejected: Sequence[dict], path: str | Path) -> Path:
    """One PNG: yield by rejection reason, hops of verified vs all candidates, difficulty of verified questions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    reasons = Counter(r["reason"] for r in rejected)
    names = ["verified", *[k for k in REJECTION_REASONS if reasons[k]]]
    counts = [len(accepted), *[reasons[k] for k in names[1:]]]
    axes[0].barh(names[::-1], counts[::-1], color=["tab:red"] * (len(names) - 1) + ["tab:green"])
    axes[0].set_title("candidates by outcome (first failed rule)")
    hops = range(1, 5)
    all_hops = Counter(r["hops"] for r in [*accepted, *rejected])
    ok_hops = Counter(r["hops"] for r in accepted)
    axes[1].bar([h - 0.2 for h in hops], [all_hops[h] for h in hops], width=0.4, label="candidates")
    axes[1].bar([h + 0.2 for h in hops], [ok_hops[h] for h in hops], width=0.4, label="verified")
    axes[1].set_xticks(list(hops))
    axes[1].set_title("hops")
    axes[1].legend()
    axes[2].hist([r["difficulty"] for r in accepted], bins=10, range=(0, 1), color="tab:purple")
    axes[2].set_title(f"difficulty of verified questions (n={len(accepted)})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
