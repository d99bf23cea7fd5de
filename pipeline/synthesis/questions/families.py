"""Question families whose answer is computed on the snapshot, each with the clue sets that make it unique.

- `shared_link` (answer: a page): "Which composer is linked from both the article about <description of A> and
  the article about <description of B>?" The answer is the one page of that kind that both described pages
  link to; neither page alone pins it (each links to at least two pages of the kind).
- `linked_fact` (answer: a year): "In what year was the university linked from the article about <description
  of A> founded?" The described page links to exactly one page of the kind (the relation picks the entity, the
  kind alone admits many); the year is the one the entity's own page states for that verb.

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
    max_description_pages: int = 3
    """A described page's description may fit at most this many pages (they all count for uniqueness)."""
    pairs_per_answer: int = 40
    """Pairs of linking pages tried per answer page (shared_link)."""
    parser: str = DEFAULT_PARSER


def answer_of_title(title: str) -> str:
    """A page title as an answer: "Cell (biology)" -> "Cell"."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).strip() or title


def _sid(family: str, seed: int, *parts: str) -> str:
    return hashlib.sha256("\x1f".join([family, str(seed), *parts]).encode("utf-8")).hexdigest()[:16]


def _article(description: str) -> str:
    return description


def _quote_for_link(g: ClueGraph, src: int, dst: int) -> str:
    """The sentence of `src` that links to `dst` when it is literally on the page, else `src`'s definition."""
    ctx = g.edges.get((src, dst), {}).get("context", "")
    title = answer_of_title(g.title(dst))
    if ctx and quote_in(ctx, g.text(src)) and len(ctx.split()) >= 5 and answer_in_text(title, ctx):
        return ctx
    return ""


def _describable(g: ClueGraph, pid: int, answer: int, cfg: FamilyConfig, cache: dict) -> tuple[Definition, set[int]] | None:
    """(definition, pages its description admits) when `pid` can be named by its description in a question about
    `answer`: the description does not name the answer and fits few pages."""
    d = g.defs.get(pid)
    if d is None or d.description is None or d.description.split()[0].lower() not in ("a", "an", "the") or "," in d.description \
            or _DEICTIC.search(d.description):
        return None
    if answer_in_text(answer_of_title(g.title(answer)), d.description) or \
            set(content_tokens(g.title(answer))) & set(content_tokens(d.description)):
        return None
    if d.description not in cache:
        cache[d.description] = g.described(d.description)
    admitted = cache[d.description]
    if not 1 <= len(admitted) <= cfg.max_description_pages:
        return None
    return d, admitted


def _pin(g: ClueGraph, answer: int, cfg: FamilyConfig, rng: random.Random, cache: dict):
    """Two described pages whose mentions of things of the answer's kind meet only in the answer: ((a, da, adm_a,
    from_a, quote_a), (b, ...)), or a rejection reason. Neither page alone pins the answer."""
    d = g.defs.get(answer)
    if d is None:
        return "no_definition"
    kind = g.kind(d.kind)
    if len(kind) < cfg.min_kind_pages:
        return "kind_too_rare"
    may_be = g.may_be(d.kind)
    sources = []
    for src in sorted(g.inn.get(answer, ())):
        described = _describable(g, src, answer, cfg, cache)
        if described and src not in kind and answer in g.linked_from(src) and len(g.linked_from(src) & kind) >= 2:
            sources.append((src, *described))
    if len(sources) < 2:
        return "no_describable_source"
    pairs = [(a, b) for i, a in enumerate(sources) for b in sources[i + 1:]]
    rng.shuffle(pairs)
    reason = "ambiguous"
    for (a, da, adm_a), (b, db, adm_b) in pairs[:cfg.pairs_per_answer]:
        if da.description == db.description or adm_a & adm_b:
            continue
        from_a = set().union(*(g.linked_from(p) for p in adm_a)) & may_be
        from_b = set().union(*(g.linked_from(p) for p in adm_b)) & may_be
        if from_a & from_b != {answer}:
            continue
        if len(from_a) < 2 or len(from_b) < 2:
            reason = "giveaway_clue"
            continue
        qa, qb = _quote_for_link(g, a, answer), _quote_for_link(g, b, answer)
        if not qa or not qb:
            reason = "no_quote"
            continue
        return (a, da, adm_a, from_a, qa), (b, db, adm_b, from_b, qb), may_be
    return reason


def _pin_clues(d: Definition, pinned) -> list[dict]:
    (a, da, adm_a, from_a, _), (b, db, adm_b, from_b, _), may_be = pinned
    return [
        {"kind": "kind", "text": d.kind_text, "candidates": len(may_be)},
        {"kind": "description", "text": da.description, "candidates": len(adm_a)},
        {"kind": "description", "text": db.description, "candidates": len(adm_b)},
        {"kind": "mentioned_in", "text": f"mentioned in the article about {da.description}", "candidates": len(from_a)},
        {"kind": "mentioned_in", "text": f"mentioned in the article about {db.description}", "candidates": len(from_b)},
    ]


def shared_link(g: ClueGraph, answer: int, cfg: FamilyConfig, rng: random.Random, cache: dict
                ) -> tuple[dict | None, str]:
    """A shared_link seed for `answer`, or (None, rejection reason)."""
    pinned = _pin(g, answer, cfg, rng, cache)
    if isinstance(pinned, str):
        return None, pinned
    d = g.defs[answer]
    if not quote_in(d.raw, g.text(answer)):
        return None, "no_quote"
    (a, da, _, _, qa), (b, db, _, _, qb), _ = pinned
    question = (f"Which {d.kind_text} is mentioned in both the article about {da.description} "
                f"and the one about {db.description}?")
    return _seed(g, "shared_link", cfg.seed, question, answer_of_title(g.title(answer)), "name", answer,
                 chain=[(a, qa), (answer, d.raw)], evidence=[(a, qa), (b, qb), (answer, d.raw)],
                 clues=_pin_clues(d, pinned), answer_candidates=1, hops=2), ""


def linked_fact(g: ClueGraph, answer: int, cfg: FamilyConfig, rng: random.Random, cache: dict
                ) -> tuple[dict | None, str]:
    """A linked_fact seed for `answer` (the entity; the answer is a year its page states), or (None, reason)."""
    d = g.defs.get(answer)
    if d is None:
        return None, "no_definition"
    title_words = set(content_tokens(g.title(answer)))
    facts = [f for f in year_facts(g.title(answer), d.kind, g.text(answer), cfg.parser)
             if quote_in(f.raw, g.text(answer))]
    if not facts:
        return None, "no_year_fact"
    facts = [f for f in facts if not title_words & set(content_tokens(f.predicate))]
    if not facts:
        return None, "fact_names_page"
    pinned = _pin(g, answer, cfg, rng, cache)
    if isinstance(pinned, str):
        return None, pinned
    (a, da, _, _, qa), (b, db, _, _, qb), _ = pinned
    fact = facts[rng.randrange(len(facts))]
    question = (f"In what year {fact.aux} the {d.kind_text} mentioned in both the article about {da.description} "
                f"and the one about {db.description} {fact.predicate}?")
    clues = [*_pin_clues(d, pinned), {"kind": "fact", "text": fact.predicate, "candidates": 1}]
    return _seed(g, "linked_fact", cfg.seed, question, fact.year, "year", answer,
                 chain=[(a, qa), (answer, fact.raw)], evidence=[(a, qa), (b, qb), (answer, fact.raw)],
                 clues=clues, answer_candidates=1, hops=3, fact_sentence=fact.raw), ""


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
