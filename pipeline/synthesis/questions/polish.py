"""The model as polish: best-of-n rewrites of a question that is already correct.

The structured question (`families`) is correct by construction. The model gets it and returns a rewrite for
fluency, `n` samples at a temperature; the first sample that passes every rule and keeps every clue's key words
is kept, else the structured question itself. `writer` on each row says which: `template` or the model id. A
weak model (the embedded 135M) rarely keeps every clue, so most rows keep the template; a capable model through
the `llm` resource rewrites more of them. Correctness never depends on the model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from pipeline.synthesis.questions.form import check_form
from pipeline.synthesis.questions.parse import all_terms_kept
from pipeline.text.answers import answer_in_text, normalize_answer
from pipeline.text.lexical import content_tokens

POLISH_VERSION = "polish-v1"
POLISH_SYSTEM = (
    "You edit quiz questions. Rewrite the question so it reads naturally, as one question ending with '?'. "
    "Keep every fact and every descriptive word; add nothing; never answer it. Reply with the question only.")
POLISH_EXAMPLES = [
    ("Which city is linked from both the article about a Genevan philosopher and the one about a Scouting hostel "
     "and conference centre?",
     "Which city do both the article about a Genevan philosopher and the one about a Scouting hostel and "
     "conference centre link to?"),
    ("In what year did the country linked from both the article about a bovid from the family of the Bovidae and "
     "the one about a hill of sand built by eolian processes join the United Nations?",
     "In what year did the country that both the article about a bovid from the family of the Bovidae and the one "
     "about a hill of sand built by eolian processes link to join the United Nations?"),
]
POLISH_HASH = hashlib.sha256(repr((POLISH_SYSTEM, POLISH_EXAMPLES)).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class PolishConfig:
    samples: int = 2
    """Rewrites sampled per question (0: keep every structured question as it is)."""
    temperature: float = 0.7
    max_tokens: int = 96
    seed: int = 0
    chunk_size: int = 64
    """Questions per engine call (each finished chunk is in the response cache)."""


def polish_chat(question: str) -> list[dict]:
    messages = [{"role": "system", "content": POLISH_SYSTEM}]
    for before, after in POLISH_EXAMPLES:
        messages += [{"role": "user", "content": before}, {"role": "assistant", "content": after}]
    return [*messages, {"role": "user", "content": question}]


# Words a rewrite may bring in: ways of saying "links to", never a new fact.
REWRITE_WORDS = frozenset("""link links linked linking connect connects connected point points pointing refer refers
referred lead leads article articles page pages entry entries one ones both""".split())
_THAT_AFTER_VERB = re.compile(r"^\s*(?:which|what)\s+\w+\s+(?:is|was|are|were)\s+that\b", re.IGNORECASE)
_RELATION = re.compile(r"\blinked from both\b|\bboth\b.+\blink(?:s)? to\b", re.IGNORECASE)

# The sentences a rewrite may be, once its clues are masked (K the kind, X each page, F the fact): the template's
# own and the relation said the other way ("... do both ... link to?"). Within them the model may change the
# function words the template's frame allows (about/on, one/article/page, which/what); anything else is a
# sentence no rule has read. The 135M model's rewrites outside them were all broken or said something else:
# "Which state that is linked from both ...?", "Which nation that both the article about X and the one that links
# to Y?", "Which island, which one, is linked ...?", "... and the one that is linked from the one about Y?".
_PAIR = r"both the (?:article|page) (?:about|on) X and the (?:one|article|page) (?:about|on) X"
_FRAMES = re.compile("|".join([
    rf"(?:which|what) K (?:is|are) linked from {_PAIR}\?",
    rf"(?:which|what) K do {_PAIR} link to\?",
    rf"in (?:what|which) year \w+ the K (?:(?:that|which) (?:is|was|are|were) )?linked from {_PAIR} F\?",
    rf"in (?:what|which) year \w+ the K (?:that|which) {_PAIR} link to F\?",
]))
_MASKS = {"kind": "K", "description": "X", "named_page": "X", "fact": "F"}


def frame_of(question: str, clues: Sequence[dict]) -> str | None:
    """`question` with each clue's text masked (K, X, F), lower-cased, spaces collapsed; None if a clue's text is
    not in it word for word. The longest clue is masked first, so a kind word inside a description stays in it."""
    frame = " " + " ".join(question.casefold().replace("?", " ?").split()) + " "
    masked = sorted(((c["text"], _MASKS[c["kind"]]) for c in clues if c["kind"] in _MASKS), key=lambda t: -len(t[0]))
    for text, mark in masked:
        needle = " " + " ".join(text.casefold().split()) + " "
        if needle.strip() == "" or needle not in frame:
            return None
        frame = frame.replace(needle, f" {mark} ", 1)
    return frame.strip().replace(" ?", "?")


def rewrite_problem(rewrite: str, seed: dict, max_growth_words: int = 12) -> str | None:
    """Why a rewrite cannot replace the structured question (None: it can).

    A rewrite is kept only when it is a well-formed question, is not a copy, keeps the question's frame (its first
    word, "which" and "what" alike), keeps every clue's words (kind,
    descriptions, named pages, the fact), adds no content word of its own (a new word is a new claim: "join the
    United Nations"), keeps the relation ("linked from both ...", or "both ... link to"), and names no answer.
    """
    rewrite = " ".join((rewrite or "").split())
    template = seed["template_question"]
    if normalize_answer(rewrite) == normalize_answer(template):
        return "unchanged"  # a copy is the template, not a rewrite: `writer` stays "template"
    if (reason := check_form(rewrite)):
        return f"form:{reason}"
    first = {w.casefold() for w in (rewrite.split()[0], template.split()[0])}
    if len(first) > 1 and first != {"which", "what"}:
        return "changed_frame"  # "Which period is linked ..." -> "In what period is linked ..." breaks the question
    if _THAT_AFTER_VERB.match(rewrite) and not _THAT_AFTER_VERB.match(template):
        return "changed_frame"  # "Which city is that linked from both ..." (the demo's 135M model) is not English
    clue_texts = [c["text"] for c in seed["clues"] if c["kind"] in ("description", "fact", "kind", "named_page")]
    if not all_terms_kept(clue_texts, rewrite):
        return "dropped_clue_terms"
    if set(content_tokens(rewrite)) - set(content_tokens(template)) - REWRITE_WORDS:
        return "added_words"
    if _RELATION.search(template) and not _RELATION.search(rewrite) or re.search(r"\blinked to\b", rewrite, re.I):
        return "changed_relation"
    if answer_in_text([seed["answer"], seed.get("answer_title", "")], rewrite):
        return "answer_in_question"
    if len(rewrite.split()) > len(template.split()) + max_growth_words:
        return "too_long"
    if _FRAMES.fullmatch(frame_of(template, seed["clues"]) or "") and not _FRAMES.fullmatch(
            frame_of(rewrite, seed["clues"]) or ""):
        return "unknown_frame"
    return None


def choose(samples: Sequence[str], seed: dict) -> tuple[str, int | None, list[str]]:
    """(question, index of the kept sample or None for the template, each sample's problem or "")."""
    problems = [rewrite_problem(s, seed) or "" for s in samples]
    for i, (s, p) in enumerate(zip(samples, problems)):
        if not p:
            return " ".join(s.split()), i, problems
    return seed["template_question"], None, problems


def polish_questions(seeds: Sequence[dict], llm, config: PolishConfig = PolishConfig(),
           progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], dict]:
    """Candidates: each seed with `question`, `writer`, the samples and their problems. Returns (candidates, stats).

    A failed or malformed model reply costs that sample, never the batch: the template stays.
    """
    from pipeline.llm import SamplingParams

    model = model_id_of(llm)
    out = []
    samples: list[list[str]] = [[] for _ in seeds]
    if config.samples > 0 and seeds:
        params = SamplingParams(max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed,
                                n=config.samples, stop=("\n",))
        step = max(config.chunk_size, 1)
        for start in range(0, len(seeds), step):
            chunk = seeds[start:start + step]
            completions = llm.generate([polish_chat(s["template_question"]) for s in chunk], params)
            for i in range(len(chunk)):
                got = completions[i * config.samples:(i + 1) * config.samples]
                samples[start + i] = [c.text if c.ok else "" for c in got]
            if progress:
                progress(min(start + step, len(seeds)), len(seeds))
    kept = 0
    problems_count: dict[str, int] = {}
    for seed, texts in zip(seeds, samples):
        question, index, problems = choose(texts, seed)
        kept += index is not None
        for p in problems:
            if p:
                problems_count[p] = problems_count.get(p, 0) + 1
        out.append({**seed, "question": question, "writer": model if index is not None else "template",
                    "rewrites": list(texts), "rewrite_problems": problems, "candidate_id": seed["seed_id"]})
    stats = {"candidates": len(out), "rewrites_kept": kept, "samples_per_question": config.samples,
             "rewrite_problems": dict(sorted(problems_count.items(), key=lambda kv: -kv[1]))}
    return out, stats


def model_id_of(llm) -> str:
    """The model id of a backend (`model_id` attribute) or of an `LLMResource` (`model_id()`)."""
    model_id = getattr(llm, "model_id", "")
    return model_id() if callable(model_id) else str(model_id or "model")
