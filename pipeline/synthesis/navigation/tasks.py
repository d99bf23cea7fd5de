"""Navigation tasks: "starting from the article on A, reach the article on B by following links".

Candidates come from human games (`pipeline.synthesis.navigation.human`): the pairs players were given (`game`) and
the pairs players walked (`walk`: first to last page of a resolved path). Each candidate gets its gold from the
snapshot (`LinkGraph`): the target page, the shortest path length, the start's outlinks one step closer, and the
most-clicked shortest path (`gold_path`) with each hop's click probability and the path's surprisal. Difficulty
(`difficulty_score`, `difficulty`) combines the shortest path, the human figures and the surprisal.

Selection is deterministic by seed and spans difficulty: candidates are ranked by a seeded hash, then taken round
robin across difficulty levels. The split is by the target page (`split_of(target_url)`): every pair of one target
lands in the same split, so no target page is in both. A `described` variant names the target by its defining
sentence (the first sentence of its text, its title masked) instead of its title.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from pipeline.datasets.splits import split_of
from pipeline.synthesis.navigation.graph import LinkGraph
from pipeline.synthesis.navigation.human import PairStats

TASK_KIND = "navigation"
PROMPT_VERSION = "navigation-v1"
SOURCES = ("game", "walk")
VARIANTS = ("named", "described")
LEVELS = ("easy", "medium", "hard")
REJECTIONS = ("start_missing", "target_missing", "same_page", "unreachable", "too_long", "no_description")
_SENTENCE = re.compile(r"^(.{40,400}?[.!?])(?:\s|$)", re.S)
_DEFINES = re.compile(r"\b(is|was|are|were|refers to|means)\b")
_HEADER_LINES = ("2007 Schools Wikipedia Selection", "This is a featured article", "Related subjects", "Enlarge")


@dataclass(frozen=True)
class NavigationConfig:
    n_tasks: int = 600
    seed: int = 0
    eval_fraction: float = 0.25
    described_fraction: float = 0.3
    """Share of tasks whose target is described by its defining sentence instead of named."""
    max_shortest: int = 6
    """Pairs further apart than this many links are left out (`too_long`)."""
    max_candidates: int = 4000
    """Candidate pairs given gold (a seeded sample of all pairs); bounds the BFS work."""
    max_human_paths: int = 5
    """Human paths kept per walk pair (for demonstrations)."""


def seeded_rank(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\n{key}".encode("utf-8")).hexdigest()


def task_id(source: str, start_url: str, target_url: str, variant: str) -> str:
    return "nav-" + hashlib.sha256(f"{source}\n{start_url}\n{target_url}\n{variant}".encode()).hexdigest()[:16]


_TITLE_FILLERS = {"the", "and", "for", "von", "van", "der", "les", "des", "del"}
_SUBJECT_THEN_VERB = re.compile(r"^This subject(?:\s*\([^()]*\))?\s*,?\s*(?:is|was|are|were|refers)\b")
_PRONUNCIATION = re.compile(r"\s*\((?=[^()]*(?:pronounced|IPA|/[^/()]+/))[^()]*\)")


def defining_sentence(lead: str, title: str) -> str | None:
    """The page's defining sentence with its title masked ("this subject"): the first sentence of the body (the
    page header lines skipped) that names the title within its first 100 characters and defines it (is / was /
    are / were / refers); None when there is none, or a word of the title is still readable in it."""
    name = title.replace("_", " ")
    bare = re.sub(r"\s*\(.*\)$", "", name)
    forms = sorted({name, bare}, key=len, reverse=True)
    for line in lead.split("\n")[1:]:
        line = " ".join(line.split())
        if len(line) < 60 or line.startswith(_HEADER_LINES):
            continue
        m = _SENTENCE.match(line)
        if not m or not any(f.lower() in m.group(1)[:100].lower() for f in forms):
            continue
        sentence = m.group(1)
        if not _DEFINES.search(sentence):
            continue
        sentence = _PRONUNCIATION.sub("", sentence)  # "(pronounced IPA: /ˈɪŋglənd/)" spells the title out
        for form in forms:
            sentence = re.sub(rf"(?i)\b((the|an?) )?{re.escape(form)}\b", "this subject", sentence)
        sentence = sentence[0].upper() + sentence[1:]
        words = [w for w in re.findall(r"\w{3,}", bare.lower()) if w not in _TITLE_FILLERS]
        if any(re.search(rf"\b{re.escape(w)}\b", sentence.lower()) for w in words):
            return None
        # the subject, then (at most a parenthesis) its defining verb: not "this subject di Lodovico ... commonly
        # known as this subject", not "this subject or arithmetics", and no word that spells the title's stem
        if not _SUBJECT_THEN_VERB.match(sentence) or sentence.lower().count("this subject") > 1:
            return None
        if any(re.search(rf"\b{re.escape(w[:6])}", sentence.lower()) for w in words if len(w) >= 6):
            return None
        return sentence
    return None


def prompt_text(start_title: str, start_url: str, target: str, variant: str) -> str:
    goal = (f"the article on {target}" if variant == "named"
            else f"the article described as follows: \"{target}\"")
    return (f"Navigation task: starting from the article on {start_title} ({start_url}), reach {goal} by following "
            "links. Open the start page with open_url, then move only with follow_link. When the open page is the "
            "target article, call answer with its title.")


def difficulty(shortest: int, surprisal_bits: float, human: Mapping[str, Any]) -> tuple[float, str]:
    """(score, level): one point per link of the shortest path, one per 10 bits of the best path's surprisal,
    the human give-up rate where people were set this pair, and half a point per link people took beyond the
    shortest (median). easy < 3 <= medium < 4.5 <= hard."""
    score = shortest + surprisal_bits / 10.0
    if human.get("human_give_up_rate") is not None:
        score += human["human_give_up_rate"]
    med = human.get("human_median_length") or human.get("human_median_clicks")
    if med is not None:
        score += 0.5 * max(0.0, med - shortest)
    score = round(score, 3)
    return score, "easy" if score < 3 else "medium" if score < 4.5 else "hard"


def gold_for(graph: LinkGraph, start: int, target: int, dist: dict[int, int]) -> dict[str, Any]:
    path = graph.best_path(start, dist) or []
    return {
        "shortest_path_length": dist[start],
        "gold_path": [graph.url[p] for p in path],
        "gold_path_titles": [graph.title[p] for p in path],
        "closer_pages": [graph.url[p] for p in graph.closer(start, dist)],
        "hop_click_probabilities": [graph.hop_probability(u, v) for u, v in zip(path, path[1:])],
        "gold_path_surprisal_bits": round(graph.path_surprisal(path), 4),
    }


def make_tasks(graph: LinkGraph, games: Mapping[tuple[str, str], PairStats],
               walks: Mapping[tuple[str, str], PairStats], config: NavigationConfig = NavigationConfig(), *,
               snapshot_id: str = "") -> tuple[list[dict], Counter, dict[str, Any]]:
    """(task rows, rejections by reason, stats) from human pairs over `graph`."""
    rejections: Counter = Counter()
    pairs: list[tuple[str, tuple[str, str], PairStats]] = [("game", k, v) for k, v in games.items()]
    pairs += [("walk", k, v) for k, v in walks.items()]
    pairs.sort(key=lambda p: seeded_rank(f"{p[0]}\n{p[1][0]}\n{p[1][1]}", config.seed))
    candidates, dists = [], {}
    for source, (a, b), stats in pairs:
        if len(candidates) >= config.max_candidates:
            break
        s, t = graph.by_wiki_title.get(a), graph.by_wiki_title.get(b)
        if s is None:
            rejections["start_missing"] += 1
            continue
        if t is None:
            rejections["target_missing"] += 1
            continue
        if s == t:
            rejections["same_page"] += 1
            continue
        if t not in dists:
            dists[t] = graph.distances_to(t, config.max_shortest)
        dist = dists[t]
        if s not in dist:
            far = graph.distances_to(t) if len(dists[t]) < len(graph.url) else dist
            rejections["too_long" if s in far else "unreachable"] += 1
            continue
        human = stats.figures()
        gold = gold_for(graph, s, t, dist)
        score, level = difficulty(gold["shortest_path_length"], gold["gold_path_surprisal_bits"], human)
        candidates.append({"source": source, "s": s, "t": t, "human": human, "gold": gold, "score": score,
                           "level": level, "paths": [[graph.by_wiki_title.get(x) for x in p] for p in stats.paths]})
    # round robin over levels (each level in seeded order): the selection spans difficulty
    by_level = {lv: [c for c in candidates if c["level"] == lv] for lv in LEVELS}
    picked, i = [], 0
    while len(picked) < config.n_tasks and any(i < len(v) for v in by_level.values()):
        picked += [by_level[lv][i] for lv in LEVELS if i < len(by_level[lv])][: config.n_tasks - len(picked)]
        i += 1
    rows = []
    for c in picked:
        s, t = c["s"], c["t"]
        target_url, start_url = graph.url[t], graph.url[s]
        variant = "named"
        description = defining_sentence(graph.lead.get(t, ""), graph.title[t])
        if int(seeded_rank(f"variant\n{start_url}\n{target_url}", config.seed)[:8], 16) / 16**8 \
                < config.described_fraction:
            if description is None:
                rejections["no_description"] += 1  # kept, named instead
            else:
                variant = "described"
        target_text = graph.title[t] if variant == "named" else description
        human_paths = [[graph.url[p] for p in path] for path in c["paths"] if all(p is not None for p in path)]
        rows.append({
            "id": task_id(c["source"], start_url, target_url, variant),
            "task_kind": TASK_KIND, "source": c["source"], "variant": variant,
            "question": prompt_text(graph.title[s], start_url, target_text, variant),
            "answer": graph.title[t], "aliases": [],
            "start_url": start_url, "start_title": graph.title[s],
            "target_url": target_url, "target_title": graph.title[t], "target_description": description or "",
            **c["gold"], "hops": c["gold"]["shortest_path_length"],
            **c["human"], "human_paths": human_paths,
            "difficulty_score": c["score"], "difficulty": c["level"],
            "split": split_of(target_url, config.eval_fraction),
            "snapshot_id": snapshot_id, "seed": config.seed, "prompt_version": PROMPT_VERSION,
        })
    stats = {"pairs_game": len(games), "pairs_walk": len(walks), "candidates": len(candidates),
             "candidates_by_level": {lv: len(v) for lv, v in by_level.items()}, "targets_searched": len(dists)}
    return rows, rejections, stats


def gold_path_problems(graph: LinkGraph, rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Tasks whose gold path is not a path of links of the snapshot, or not as long as the shortest path."""
    bad = []
    for r in rows:
        ids = [graph.by_url.get(u) for u in r["gold_path"]]
        if None in ids or not graph.is_path(ids):
            bad.append(f"{r['id']}: gold path {r['gold_path_titles']} is not a path of links")
        elif len(ids) - 1 != r["shortest_path_length"] or ids[0] != graph.by_url.get(r["start_url"]) \
                or ids[-1] != graph.by_url.get(r["target_url"]):
            bad.append(f"{r['id']}: gold path does not go from start to target in the shortest length")
    return bad


def split_problems(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Target pages found in both splits."""
    splits: dict[str, set] = {}
    for r in rows:
        splits.setdefault(r["target_url"], set()).add(r["split"])
    return [url for url, s in sorted(splits.items()) if len(s) > 1]
