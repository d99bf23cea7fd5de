"""Question families whose answer is computed on the snapshot, each with the clue sets that make it unique.

- `shared_link` (answer: a page): "Which composer is linked from both the article about <description of A> and
  the one about <description of B>?" The answer is the one page of that kind (or of unknown kind: conservative)
  that both described pages link to, every page each description fits counted; neither page alone pins it
  (each links to at least two pages of the kind); each links to it from a sentence that names it (the quote).
- `linked_fact` (answer: a year): "In what year was the university linked from both the article about <A> and
  the one about <B> founded?" The entity is pinned as in `shared_link`; the year is the one the entity's own page
  states for that verb (and no other year for it).

Every clue is stored with the number of pages (or values) it admits on its own, and the question with the size
of its answer set computed with every page each description admits (`answer_candidates`, always 1 for a kept
question; rejections otherwise: `ambiguous`, `giveaway_clue`, ...). Descriptions are the pages' own defining
noun phrases (`parse.read_definition`), never cut out of a sentence at a comma.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from pipeline.synthesis.chains import is_prose_sentence
from pipeline.synthesis.questions.graph import ClueGraph
from pipeline.synthesis.questions.parse import DEFAULT_PARSER, Definition, year_facts
from pipeline.text.answers import answer_in_text
from pipeline.text.lexical import content_tokens, quote_in

FAMILIES = ("shared_link", "linked_fact")
# A description that points elsewhere ("its organization", "that civilization") does not stand on its own.
_DEICTIC = re.compile(r"\b(?:its|their|his|her|this|these|those|such|same|former|latter|corresponding|above)\b", re.I)
SEED_REJECTIONS = ("no_definition", "kind_too_rare", "no_describable_source", "ambiguous", "giveaway_clue",
                   "description_names_answer", "no_year_fact", "fact_names_page", "no_quote")


@dataclass(frozen=True)
class FamilyConfig:
    count: int = 120
    """Questions to build (structured seeds), shared between the families by `family_mix`."""
    family_mix: tuple[tuple[str, float], ...] = (("shared_link", 0.5), ("linked_fact", 0.5))
    seed: int = 0
    min_kind_pages: int = 3
    """A kind clue must admit at least this many pages on its own (else the kind gives the answer away)."""
    max_uses: int = 3
    """A page is described in at most this many questions (variety: not every question about the same pages)."""
    max_description_pages: int = 5
    """A described page's description may fit at most this many pages (they all count for uniqueness)."""
    pairs_per_answer: int = 40
    """Pairs of linking pages tried per answer page (shared_link)."""
    parser: str = DEFAULT_PARSER


def answer_of_title(title: str) -> str:
    """A page title as an answer: "Cell (biology)" -> "Cell"."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).strip() or title


def _sid(family: str, seed: int, *parts: str) -> str:
    return hashlib.sha256("\x1f".join([family, str(seed), *parts]).encode("utf-8")).hexdigest()[:16]


def _quote_for_link(g: ClueGraph, src: int, dst: int) -> str:
    """The sentence of `src` that links to `dst` and names it, when it is literally on the page and running text;
    else "". A link from a table, an infobox, a caption or a list (the demo of 2026-12-07 asked which capital the
    article on Oceania links to from a population table row, "... 4,211,532 8.4 Jakarta New Cale...") gives no
    sentence, and the pair is not used."""
    ctx = g.edges.get((src, dst), {}).get("context", "")
    title = answer_of_title(g.title(dst))
    if ctx and is_prose_sentence(ctx, min_words=5) and quote_in(ctx, g.text(src)) and answer_in_text(title, ctx):
        return ctx
    return ""


@dataclass(frozen=True)
class PageClue:
    """How a question points at a page: by its description ("about <description>", fitting `admitted` pages) or,
    for at most one page of a question, by name ("on <title>")."""

    phrase: str
    admitted: frozenset[int]
    named: bool
    text: str


def _describable(g: ClueGraph, pid: int, answer: int, cfg: FamilyConfig, cache: dict) -> PageClue | None:
    """The description clue of `pid` in a question about `answer` (it does not name the answer and fits few
    pages), else its name clue when the name does not give the answer away, else None."""
    d = g.defs.get(pid)
    answer_words = set(content_tokens(g.title(answer)))
    if d is not None and d.description is not None and d.description.split()[0].lower() in ("a", "an", "the") \
            and "," not in d.description and not _DEICTIC.search(d.description) \
            and not answer_in_text(answer_of_title(g.title(answer)), d.description) \
            and not answer_words & set(content_tokens(d.description)):
        if d.description not in cache:
            cache[d.description] = frozenset(g.described(d.description))
        admitted = cache[d.description]
        if 1 <= len(admitted) <= cfg.max_description_pages:
            return PageClue(f"about {d.description}", admitted, False, d.description)
    name = answer_of_title(g.title(pid))
    if name == g.title(pid) and not answer_words & set(content_tokens(name)) and not re.search(r"\d", name):
        return PageClue(f"on {name}", frozenset({pid}), True, name)
    return None


def _pin(g: ClueGraph, answer: int, cfg: FamilyConfig, rng: random.Random, cache: dict):
    """Two pages (described, or one of them named) whose links to things of the answer's kind meet only in the
    answer: ((a, clue_a, from_a, quote_a), (b, ...), may_be), or a rejection reason. Neither page alone pins it."""
    d = g.defs.get(answer)
    if d is None:
        return "no_definition"
    kind = g.kind(d.kind)
    if len(kind) < cfg.min_kind_pages:
        return "kind_too_rare"
    may_be = g.may_be(d.kind)
    sources = []
    for src in sorted(g.inn.get(answer, ())):
        if src in kind or answer not in g.mentioned_by(src) or len(g.linked_from(src) & kind) < 2 \
                or cache.setdefault("uses", Counter())[src] >= cfg.max_uses:
            continue
        clue = _describable(g, src, answer, cfg, cache)
        if clue is not None:
            sources.append((src, clue))
    if len(sources) < 2:
        return "no_describable_source"
    pairs = [(a, b) for i, a in enumerate(sources) for b in sources[i + 1:] if not (a[1].named and b[1].named)]
    rng.shuffle(pairs)
    pairs.sort(key=lambda pair: pair[0][1].named + pair[1][1].named)  # two described pages first
    reason = "ambiguous"
    for (a, ca), (b, cb) in pairs[:cfg.pairs_per_answer]:
        if ca.text == cb.text or ca.admitted & cb.admitted:
            continue
        from_a = set().union(*(g.linked_from(p) for p in ca.admitted)) & may_be
        from_b = set().union(*(g.linked_from(p) for p in cb.admitted)) & may_be
        if from_a & from_b != {answer}:
            continue
        if len(from_a) < 2 or len(from_b) < 2:
            reason = "giveaway_clue"
            continue
        qa, qb = _quote_for_link(g, a, answer), _quote_for_link(g, b, answer)
        if not qa or not qb:
            reason = "no_quote"
            continue
        cache["uses"][a] += 1
        cache["uses"][b] += 1
        if cb.named:  # the named page second: "... the article about <description> and the one on <name>"
            (a, ca, from_a, qa), (b, cb, from_b, qb) = (b, cb, from_b, qb), (a, ca, from_a, qa)
        return (a, ca, from_a, qa), (b, cb, from_b, qb), may_be
    return reason


def _pin_clues(d: Definition, pinned) -> list[dict]:
    (_, ca, from_a, _), (_, cb, from_b, _), may_be = pinned
    return [
        {"kind": "kind", "text": d.kind_text, "candidates": len(may_be)},
        *({"kind": "named_page" if c.named else "description", "text": c.text, "candidates": len(c.admitted)}
          for c in (ca, cb)),
        {"kind": "linked_from", "text": f"linked from the article {ca.phrase}", "candidates": len(from_a)},
        {"kind": "linked_from", "text": f"linked from the article {cb.phrase}", "candidates": len(from_b)},
    ]


def _named(pinned) -> list[str]:
    return [c.text for _, c, _, _ in pinned[:2] if c.named]


def shared_link(g: ClueGraph, answer: int, cfg: FamilyConfig, rng: random.Random, cache: dict
                ) -> tuple[dict | None, str]:
    """A shared_link seed for `answer`, or (None, rejection reason)."""
    pinned = _pin(g, answer, cfg, rng, cache)
    if isinstance(pinned, str):
        return None, pinned
    d = g.defs[answer]
    if not quote_in(d.raw, g.text(answer)):
        return None, "no_quote"
    (a, ca, _, qa), (b, cb, _, qb), _ = pinned
    question = f"Which {d.kind_text} is linked from both the article {ca.phrase} and the one {cb.phrase}?"
    return _seed(g, "shared_link", cfg.seed, question, answer_of_title(g.title(answer)), "name", answer,
                 chain=[(a, qa), (answer, d.raw)], evidence=[(a, qa), (b, qb), (answer, d.raw)],
                 clues=_pin_clues(d, pinned), answer_candidates=1, hops=2, named_pages=_named(pinned)), ""


def linked_fact(g: ClueGraph, answer: int, cfg: FamilyConfig, rng: random.Random, cache: dict
                ) -> tuple[dict | None, str]:
    """A linked_fact seed for `answer` (the entity; the answer is a year its page states), or (None, reason)."""
    d = g.defs.get(answer)
    if d is None:
        return None, "no_definition"
    pinned = _pin(g, answer, cfg, rng, cache)  # the graph first: parsing the page's year sentences costs more
    if isinstance(pinned, str):
        return None, pinned
    title_words = set(content_tokens(g.title(answer)))
    facts = [f for f in year_facts(g.title(answer), d.kind, g.text(answer), cfg.parser)
             if quote_in(f.raw, g.text(answer))]
    if not facts:
        return None, "no_year_fact"
    facts = [f for f in facts if not title_words & set(content_tokens(f.predicate))]
    if not facts:
        return None, "fact_names_page"
    (a, ca, _, qa), (b, cb, _, qb), _ = pinned
    fact = facts[rng.randrange(len(facts))]
    question = (f"In what year {fact.aux} the {d.kind_text} linked from both the article {ca.phrase} "
                f"and the one {cb.phrase} {fact.predicate}?")
    clues = [*_pin_clues(d, pinned), {"kind": "fact", "text": fact.predicate, "candidates": 1}]
    return _seed(g, "linked_fact", cfg.seed, question, fact.year, "year", answer,
                 chain=[(a, qa), (answer, fact.raw)], evidence=[(a, qa), (b, qb), (answer, fact.raw)],
                 clues=clues, answer_candidates=1, hops=3, fact_sentence=fact.raw, named_pages=_named(pinned)), ""


def _seed(g: ClueGraph, family: str, seed: int, question: str, answer: str, kind: str, answer_id: int, *,
          chain, evidence, clues, answer_candidates: int, hops: int, **extra) -> dict:
    steps = [{"url": g.url(p), "title": g.title(p), "quote": q} for p, q in chain]
    return {
        "seed_id": _sid(family, seed, question, answer),
        "family": family,
        "template_question": question,
        "answer": answer,
        "answer_kind": kind,
        "answer_url": g.url(answer_id),
        "answer_title": g.title(answer_id),
        "start_url": steps[0]["url"],
        "chain": steps,
        "evidence": [{"url": g.url(p), "quote": q} for p, q in evidence],
        "clues": clues,
        "answer_candidates": answer_candidates,
        "hops": hops,
        "seed": seed,
        **extra,
    }


BUILDERS: dict[str, Callable] = {"shared_link": shared_link, "linked_fact": linked_fact}


def build_seeds(g: ClueGraph, cfg: FamilyConfig = FamilyConfig(), progress=None) -> tuple[list[dict], dict]:
    """Seeds for every family by `family_mix` (deterministic for a seed); returns (seeds, rejections per family)."""
    rng = random.Random(cfg.seed)
    order = sorted(g.defs)
    rng.shuffle(order)
    mix = dict(cfg.family_mix)
    total = sum(mix.values()) or 1.0
    want = {f: round(cfg.count * w / total) for f, w in mix.items() if f in BUILDERS}
    seeds: list[dict] = []
    rejections: dict[str, Counter] = {f: Counter() for f in want}
    cache: dict = {}
    for family, n in want.items():
        made = 0
        frng = random.Random(f"{cfg.seed}:{family}")
        for answer in order:
            if made >= n:
                break
            seed, reason = BUILDERS[family](g, answer, cfg, frng, cache)
            if seed is None:
                rejections[family][reason] += 1
                continue
            seeds.append(seed)
            made += 1
            if progress and made % 20 == 0:
                progress(f"{family}: {made}/{n} seeds")
    return seeds, {f: dict(c) for f, c in rejections.items()}


def config_dict(cfg: FamilyConfig) -> dict:
    out = asdict(cfg)
    out["family_mix"] = dict(cfg.family_mix)
    return out
