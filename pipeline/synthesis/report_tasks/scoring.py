"""Verifiers of the report tasks: every score of one answer to one task row, in [0, 1] and purely lexical, so
cheap, deterministic and explainable. `training/rewards_report.py` wraps them as TRL reward functions.

- `order_score` (reorder): Kendall tau of the listed ids against the gold order over every gold pair, a pair with
  an unlisted id counting as neither (`pair_tau`), clipped at 0 (a random order scores ~0, not 0.5): a partial
  list earns at most its pairs' share; a list naming more ids than there are fragments scores 0 (and 0 on format),
  and so does an answer of more than `MAX_ORDER_WORDS` other words (an echo of the prompt lists the ids in the
  shown order);
- `coverage_score` (synthesise, analyse_merge): share of gold key points that some sentence of the report
  (the summary, for analyse_merge) covers: content-token F1 with the point or its quote >= `COVER_F1`;
- `citation_score`: citation precision grounded in the fragments. A sentence earns credit only when the chunks it
  cites cover its words (token recall >= `SUPPORT_RECALL`), and the credit is the share of its cited ids that
  each support it on their own (a chunk holding >= `CITE_SHARE` of the sentence's content tokens): citing every
  fragment dilutes the credit to 1/k, a fabricated or mis-cited sentence earns 0, an uncited one earns nothing;
- `distractor_score`: 1 minus the share of distractor chunks the report uses (cites, or copies from); 0 for an
  answer that uses no fragment at all (an empty or degenerate answer leaves the distractors out too);
- `notes_score` (analyse_merge): per chunk, how well its note covers the chunk's key points (off-topic
  chunks: the note must say so; no note at all: 0);
- `format_score`: the rubric of the kind's answer format and its length bounds; 0 for an order that leaves a
  fragment out or is prose (over `MAX_ORDER_WORDS` other words), a report or notes without a sentence, and a text
  that loops (`LOOP_WORDS` words twice).

`score_completion(text, row)` gives all applicable scores of one answer (the build scores teacher references
with it; `SCORE_NAMES` in `schema` lists them).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from pipeline.synthesis.report_tasks.key_points import repeats_words
from pipeline.text.lexical import bag_f1, content_tokens, split_sentences, token_recall, tokens

COVER_F1 = 0.4
SUPPORT_RECALL = 0.5
CITE_SHARE = 0.25
"""A cited chunk supports a sentence on its own when it holds this share of the sentence's content tokens."""
COPY_RECALL = 0.6
MAX_ORDER_WORDS = 10
"""An order answer with more words than this besides the ids is prose, not an order: order 0, a format check fails."""
MIN_SENTENCE_TOKENS = 3
LOOP_WORDS = 12
"""A report or notes with a run of this many words twice loops (the same sentence again under other citations)."""
OFF_TOPIC_WORDS = ("off-topic", "off topic", "irrelevant", "unrelated", "not relevant")

_ID = re.compile(r"\bC\d{1,4}\b")
_CITE_GROUP = re.compile(r"\[([^\[\]\n]{1,80})\]")
_CITES_AFTER_STOP = re.compile(r"([.!?])((?:[ \t]*\[[^\[\]\n]{1,80}\])+)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_NOTE_LINE = re.compile(r"^\s*(?:[-*+\u2022]\s*)?\[(C\d{1,4})\]\s*[:\-\u2013\u2014]?\s*(.*)$")


# ---- parsing ----------------------------------------------------------------------------------------------------

def completion_text(completion: Any) -> str:
    """The text of a completion: a string, a message dict, or a chat (its assistant messages, joined)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content")
        if isinstance(content, list):  # OpenAI text parts
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""
    if isinstance(completion, (list, tuple)):
        assistant = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        return "\n".join(completion_text(m) for m in (assistant or completion))
    return str(completion)


def cited_ids(text: str) -> list[str]:
    """Ids cited in square brackets (`[C2]`, `[C1][C4]`, `[C1, C4]`), in order, repeats kept."""
    return [i for group in _CITE_GROUP.findall(text) for i in _ID.findall(group)]


def listed_ids(text: str, valid: Sequence[str]) -> list[str]:
    """The valid ids a completion mentions, each at its first mention (bracketed or not)."""
    valid_set, out = set(valid), []
    for i in _ID.findall(text):
        if i in valid_set and i not in out:
            out.append(i)
    return out


def section_text(text: str, name: str) -> str | None:
    """The body under a Markdown heading that starts with `name` (case-insensitive), up to the next heading."""
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        m = _HEADING.match(line)
        if m:
            if inside:
                break
            inside = m.group(1).strip().lower().startswith(name.lower())
            continue
        if inside:
            out.append(line)
    return "\n".join(out) if inside or out else None


def report_sentences(text: str) -> list[tuple[str, list[str]]]:
    """(sentence without its citations, the ids it cites) for every content sentence of a Markdown body."""
    body = []
    for line in text.splitlines():
        if _HEADING.match(line) or not line.strip():
            continue
        body.append(_BULLET.sub("", line))
    # "Fact. [C1]" cites for the sentence before it: move the citations in front of the stop.
    joined = _CITES_AFTER_STOP.sub(lambda m: m.group(2) + m.group(1), "\n".join(body))
    out = []
    for sentence in split_sentences(joined):
        ids = [i for group in _CITE_GROUP.findall(sentence) for i in _ID.findall(group)]
        plain = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(_CITE_GROUP.sub(" ", sentence).split()))
        if len(content_tokens(plain)) >= MIN_SENTENCE_TOKENS:
            out.append((plain, ids))
    return out


def kendall_tau(order: Sequence[str], gold: Sequence[str]) -> float:
    """Kendall tau of `order` against `gold` over the items of `order` (all must be in `gold`); 0 for < 2 items."""
    rank = {x: i for i, x in enumerate(gold)}
    r = [rank[x] for x in order]
    n = len(r)
    if n < 2:
        return 0.0
    concordant = sum(1 for i in range(n) for j in range(i + 1, n) if r[i] < r[j])
    pairs = n * (n - 1) // 2
    return (2 * concordant - pairs) / pairs


# ---- scores of one answer -----------------------------------------------------------------------------------------

def order_score(text: str, gold_order: Sequence[str]) -> float:
    listed = listed_ids(text, gold_order)
    if len(gold_order) < 2 or len(listed) < 2 or run_on(text, gold_order) or extra_words(text) > MAX_ORDER_WORDS:
        return 0.0
    return max(0.0, pair_tau(listed, gold_order))


def pair_tau(order: Sequence[str], gold: Sequence[str]) -> float:
    """Kendall's tau over every pair of `gold`: (concordant - discordant) / all pairs, a pair with an id `order` does not
    list counting as neither. The whole order scores its tau; a partial one at most its pairs' share: "C3, C2", the
    report-SFT demo model's answer to every task, 1/15 of six fragments where it happens to be right (it earned
    1/3 as tau times the share listed)."""
    k, n = len(order), len(gold)
    return kendall_tau(order, gold) * k * (k - 1) / (n * (n - 1)) if n >= 2 else 0.0


def extra_words(text: str) -> int:
    """Words of an order answer besides the ids: a few ("The order is ...") are fine; the base model's echo of the
    prompt lists the ids in the shown order inside hundreds of words, and a random order earns ~0.1 of clipped tau."""
    return len(re.findall(r"[A-Za-z]{2,}", _ID.sub(" ", text)))


def run_on(text: str, ids: Sequence[str]) -> bool:
    """Whether an order answer names more fragments than there are: a list that never stops ("C5, C3, C2, C1, C6,
    C4, C3, C6, C3, ...", the report-SFT demo model's answer to every task) is no order, whatever its first
    mentions happen to be."""
    valid = set(ids)
    return sum(i in valid for i in _ID.findall(text)) > len(valid)


def uses_sources(text: str, tokens_of: dict[str, list[str]], distractor_ids: Sequence[str]) -> bool:
    """Whether an answer draws on a fragment that is not a distractor (chunk id -> its content tokens): cites one,
    or has a sentence its words cover."""
    sources = [cid for cid in tokens_of if cid not in set(distractor_ids)]
    if set(cited_ids(text)) & set(sources):
        return True
    return any(token_recall(sentence, tokens_of[cid]) >= SUPPORT_RECALL for sentence, _ in report_sentences(text)
               for cid in sources)


def graded_body(text: str, kind: str) -> str:
    """The part of an answer the report scores read: the summary of an analyse_merge answer, else all of it."""
    if kind == "analyse_merge":
        summary = section_text(text, "summary")
        return summary if summary is not None else text
    return text


def coverage_score(text: str, key_points: Sequence[dict]) -> float:
    if not key_points:
        return 0.0
    sentences = [content_tokens(s) for s, _ in report_sentences(text)]
    covered = 0
    for kp in key_points:
        targets = [content_tokens(kp.get("point") or ""), content_tokens(kp.get("quote") or "")]
        if any(bag_f1(s, t) >= COVER_F1 for s in sentences for t in targets if t):
            covered += 1
    return covered / len(key_points)


def citation_score(text: str, chunks: Sequence[dict]) -> float:
    by_id = {c["chunk_id"]: content_tokens(c["text"]) for c in chunks}
    sentences = report_sentences(text)
    if not sentences:
        return 0.0
    credit = 0.0
    for sentence, ids in sentences:
        credit += sentence_citation_credit(sentence, ids, by_id)
    return credit / len(sentences)


def sentence_citation_credit(sentence: str, ids: Sequence[str], tokens_of: dict[str, list[str]]) -> float:
    """Citation credit of one sentence (see `citation_score`): 0 unless its cited chunks together cover it, then
    the share of cited ids that support it on their own. An id that does not exist counts as unsupported."""
    cited = list(dict.fromkeys(ids))
    if not cited:
        return 0.0
    known = [i for i in cited if i in tokens_of]
    support = [t for i in known for t in tokens_of[i]]
    if not known or token_recall(sentence, support) < SUPPORT_RECALL:
        return 0.0
    return sum(token_recall(sentence, tokens_of[i]) >= CITE_SHARE for i in known) / len(cited)


def distractor_score(text: str, chunks: Sequence[dict], distractor_ids: Sequence[str]) -> float:
    tokens_of = {c["chunk_id"]: content_tokens(c["text"]) for c in chunks}
    if not uses_sources(text, tokens_of, distractor_ids):
        return 0.0  # leaving the distractors out earns credit only in an answer that uses the fragments
    if not distractor_ids:
        return 1.0
    sources = [tokens_of[c["chunk_id"]] for c in chunks if c["chunk_id"] not in set(distractor_ids)]
    used = set(cited_ids(text)) & set(distractor_ids)
    for sentence, _ in report_sentences(text):
        for d in distractor_ids:
            if d in tokens_of and d not in used:
                r = token_recall(sentence, tokens_of[d])
                if r >= COPY_RECALL and r > max((token_recall(sentence, s) for s in sources), default=0.0):
                    used.add(d)
    return 1.0 - len(used) / len(distractor_ids)


def parse_notes(text: str) -> dict[str, str]:
    """Note per chunk id from the "## Notes" section (or the whole text): lines "[C2] note"; first one wins."""
    section = section_text(text, "notes")
    notes: dict[str, str] = {}
    for line in (section if section is not None else text).splitlines():
        m = _NOTE_LINE.match(line)
        if m and m.group(1) not in notes:
            notes[m.group(1)] = m.group(2).strip()
    return notes


def notes_score(text: str, chunks: Sequence[dict], key_points: Sequence[dict], distractor_ids: Sequence[str]) -> float:
    if not chunks:
        return 0.0
    notes = parse_notes(text)
    if not notes:
        return 0.0  # no note at all is not "the distractors flagged"
    total = 0.0
    for c in chunks:
        cid, note = c["chunk_id"], notes.get(c["chunk_id"])
        off_topic = note is not None and any(w in note.lower() for w in OFF_TOPIC_WORDS)
        if cid in distractor_ids:
            total += 1.0 if note is None or off_topic else 0.0
            continue
        if not note or off_topic:
            continue
        mine = [kp for kp in key_points if kp["chunk_id"] == cid]
        if mine:
            total += coverage_score(note, mine)
        else:
            total += float(token_recall(note, c["text"]) >= SUPPORT_RECALL)
    return total / len(chunks)


def _words(text: str) -> int:
    plain = _CITE_GROUP.sub(" ", "\n".join(l for l in text.splitlines() if not _HEADING.match(l)))
    return len(re.findall(r"\w+", plain))


def format_score(text: str, kind: str, chunk_ids: Sequence[str], min_words: int = 0, max_words: int = 0) -> float:
    valid = set(chunk_ids)
    mentioned = _ID.findall(text)
    if kind == "reorder":
        if run_on(text, chunk_ids) or not valid <= set(mentioned) or extra_words(text) > MAX_ORDER_WORDS:
            # an order is every fragment's place in a few words: a partial list, or the prompt echoed with its ids in
            # the shown order ("C1 / <its text> / C2 / ..."), is no answer of this form
            return 0.0
        counts = {i: mentioned.count(i) for i in valid}
        checks = [all(n == 1 for n in counts.values()), all(i in valid for i in mentioned)]
        return sum(checks) / len(checks)
    if not report_sentences(graded_body(text, kind)) or repeats_words(tokens(text), LOOP_WORDS):
        return 0.0  # headings without a sentence, or a text that loops: "## Railway post office:" 30 times
    lines = text.splitlines()
    headings = [m.group(0).strip() for m in map(_HEADING.match, lines) if m]

    def within(body: str) -> bool:
        n = _words(body)
        return (not min_words or n >= min_words) and (not max_words or n <= max_words)

    if kind == "synthesise":
        cites = cited_ids(text)
        sections = [h for h in headings if h.startswith("## ")]
        checks = [any(h.startswith("# ") for h in headings), len(set(sections)) == len(sections) >= 2,
                  bool(cites) and all(i in valid for i in cites), within(text)]
    else:
        lower = [h.lstrip("#").strip().lower() for h in headings]
        has_both = "notes" in lower and "summary" in lower and lower.index("notes") < lower.index("summary")
        summary = section_text(text, "summary") or ""
        cites = cited_ids(summary)
        checks = [has_both, set(parse_notes(text)) >= valid,
                  bool(cites) and all(i in valid for i in cites), within(summary)]
    return sum(checks) / len(checks)


def score_completion(text: str, row: dict) -> dict[str, float | None]:
    """Every score of one answer to one task row (None where a score does not apply to the row's kind)."""
    kind = row["task_kind"]
    scores: dict[str, float | None] = dict.fromkeys(("order", "coverage", "citations", "distractors", "notes"))
    if kind == "reorder":
        scores["order"] = order_score(text, row["gold_order"])
    else:
        body = graded_body(text, kind)
        scores["coverage"] = coverage_score(body, row["key_points"])
        scores["citations"] = citation_score(body, row["chunks"])
        scores["distractors"] = distractor_score(body, row["chunks"], row["distractor_ids"])
        if kind == "analyse_merge":
            scores["notes"] = notes_score(text, row["chunks"], row["key_points"], row["distractor_ids"])
    scores["format"] = format_score(text, kind, row["chunk_ids"], row.get("min_words") or 0,
                                    row.get("max_words") or 0)
    return scores
