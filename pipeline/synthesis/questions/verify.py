"""Verification of candidate questions: pure rules that return a reason, applied in the order of `REJECTION_REASONS`.

1. form (`form.form_problems`): one readable question, no placeholders or fragments;
2. structure: the answer set computed on the graph has exactly one member (`answer_candidates == 1`);
3. evidence: every evidence URL is served (200) by the simulator, every quote occurs literally in its page, the
   answer occurs in the answer page;
4. text: the question does not contain its answer, names no evidence page, copies no long passage;
5. hardness: the answer page is not in the simulator's top-k for the question, and no top-k snippet has the answer;
6. model passes, run with whatever model is configured: a judge given the evidence, and a closed-book answer.
   A closed-book answer that solves the question rejects it (`closed_book_solved`). The judge's authority follows
   its measured accuracy: its agreement with the graph-proven answers of this batch is reported; with
   `judge_gate="auto"` it gates (`judge_disagrees`) only when that agreement reaches `judge_min_agreement` (a judge
   that reads), else every verdict is kept on the row and in the card but drops nothing the graph proves;
7. near-duplicates (content-token Jaccard) dropped, the first kept.

Survivors get difficulty on the field's measures (`difficulty`: independent BM25 rank and evidence recall,
clickstream hop surprisal and search-arrival share, clue candidate counts).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

from pipeline.datasets.splits import split_of
from pipeline.synthesis.questions import difficulty as diff
from pipeline.synthesis.questions.form import form_problems
from pipeline.synthesis.questions.graph import ClueGraph
from pipeline.text.answers import answer_in_text, normalize_answer, squad_f1
from pipeline.text.lexical import content_tokens, quote_in, tokens

PROMPT_VERSION = "structured-v3"
REJECTION_REASONS = (
    "question_malformed", "ambiguous",
    "evidence_url_unknown", "quote_not_in_page", "answer_not_in_evidence",
    "answer_in_question", "names_page", "copies_passage",
    "answer_page_in_top_k", "answer_in_snippets",
    "judge_disagrees", "closed_book_solved",
    "duplicate",
)


@dataclass(frozen=True)
class VerifyConfig:
    top_k: int = 10
    """Hardness: the answer page must not be among the simulator's top-k for the question."""
    rank_depth: int = 100
    """Depth of the rank lookups (simulator and independent BM25)."""
    judge_max_tokens: int = 32
    closed_book_max_tokens: int = 24
    min_judge_f1: float = 0.6
    """The judge agrees when its answer's SQuAD F1 against the golds reaches this."""
    judge_gate: str = "auto"
    """"auto": the judge gates only when its agreement on this batch reaches `judge_min_agreement`; "always";
    "never"."""
    judge_min_agreement: float = 0.8
    closed_book_f1: float = 0.5
    dedupe_jaccard: float = 0.7
    max_copied_tokens: int = 12
    eval_fraction: float = 0.1
    seed: int = 0


JUDGE_SYSTEM = ("You check trivia questions. Read the evidence, then answer the question with the shortest exact "
                "answer the evidence gives (a name, date, number or place). Reply with JSON only.")
JUDGE_EXAMPLES = [
    ({"question": "Which ocean is linked from both the article about a deep trench in the western Pacific and the "
                  "one about a chain of volcanic islands?",
      "evidence": ["Mariana Trench: The trench lies in the western Pacific Ocean east of the Mariana Islands.",
                   "Mariana Islands: The islands are the summits of volcanic mountains in the Pacific Ocean."]},
     {"answer": "Pacific Ocean"}),
    ({"question": "In what year was the museum linked from both the article about a portrait by an Italian "
                  "Renaissance painter and the one about a glass pyramid opened?",
      "evidence": ["Mona Lisa: The painting hangs in the Louvre in Paris.",
                   "Louvre Pyramid: The pyramid is the main entrance of the Louvre.",
                   "Louvre: The museum was opened in 1793."]},
     {"answer": "1793"}),
]
CLOSED_BOOK_SYSTEM = ("Answer the trivia question from memory with a short answer (a name, date, number or place). "
                      "Reply with JSON only.")
CLOSED_BOOK_EXAMPLES = [
    ("What is the capital city of France?", {"answer": "Paris"}),
    ("In what year did the Second World War end?", {"answer": "1945"}),
]
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}},
                 "required": ["answer"], "additionalProperties": False}
PROMPT_HASH = hashlib.sha256(json.dumps([JUDGE_SYSTEM, JUDGE_EXAMPLES, CLOSED_BOOK_SYSTEM, CLOSED_BOOK_EXAMPLES],
                                        sort_keys=True).encode("utf-8")).hexdigest()[:12]


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def judge_chat(question: str, evidence: Sequence[str]) -> list[dict]:
    def user(q: str, ev: Sequence[str]) -> str:
        return "\n".join(["Evidence:", *[f"[{i}] {e}" for i, e in enumerate(ev, 1)], f"Question: {q}"])

    chat = [{"role": "system", "content": JUDGE_SYSTEM}]
    for example, answer in JUDGE_EXAMPLES:
        chat += [{"role": "user", "content": user(example["question"], example["evidence"])},
                 {"role": "assistant", "content": _dump(answer)}]
    return [*chat, {"role": "user", "content": user(question, evidence)}]


def closed_book_chat(question: str) -> list[dict]:
    chat = [{"role": "system", "content": CLOSED_BOOK_SYSTEM}]
    for q, answer in CLOSED_BOOK_EXAMPLES:
        chat += [{"role": "user", "content": f"Question: {q}"}, {"role": "assistant", "content": _dump(answer)}]
    return [*chat, {"role": "user", "content": f"Question: {question}"}]


# ---- pure rules --------------------------------------------------------------------------------------------------


def golds_of(answer: str, aliases: Iterable[str] = ()) -> list[str]:
    """The answer and its aliases, without repeats under SQuAD normalisation."""
    out: list[str] = []
    for a in [answer, *aliases]:
        if a and a.strip() and normalize_answer(a) not in {normalize_answer(o) for o in out}:
            out.append(a.strip())
    return out


def question_id(question: str) -> str:
    """sha256 of the normalised question, 16 hex digits."""
    return hashlib.sha256(normalize_answer(question).encode("utf-8")).hexdigest()[:16]


def check_evidence(evidence: Sequence[dict], fetched: dict[str, str | None], golds: Sequence[str],
                   answer_url: str) -> str | None:
    if any(fetched.get(e["url"]) is None for e in evidence) or fetched.get(answer_url) is None:
        return "evidence_url_unknown"
    if any(not quote_in(e["quote"], fetched[e["url"]] or "") for e in evidence):
        return "quote_not_in_page"
    if not answer_in_text(golds, fetched[answer_url] or ""):
        return "answer_not_in_evidence"
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


def check_text(question: str, golds: Sequence[str], titles: Sequence[str], quotes: Sequence[str],
               max_copied_tokens: int = 12) -> list[str]:
    """Every rule on the question's own words that fails."""
    failed = []
    if answer_in_text(golds, question):
        failed.append("answer_in_question")
    if any(answer_in_text(t, question) for t in titles):
        failed.append("names_page")
    q = tokens(question)
    if any(_longest_common_run(q, tokens(s)) >= max_copied_tokens for s in quotes):
        failed.append("copies_passage")
    return failed


def check_search(results: Sequence[Any], answer_url: str, golds: Sequence[str]) -> str | None:
    """Hardness against the simulator: the answer page is not a top-k hit, and no top-k snippet has the answer."""
    if any(r.url == answer_url for r in results):
        return "answer_page_in_top_k"
    if any(answer_in_text(golds, r.snippet or "") for r in results):
        return "answer_in_snippets"
    return None


def judge_agrees(judge_answer: str | None, golds: Sequence[str], min_f1: float = 0.6) -> bool:
    return judge_answer is not None and squad_f1(judge_answer, golds) >= min_f1


def closed_book_solves(answer: str | None, golds: Sequence[str], min_f1: float = 0.5) -> bool:
    return answer is not None and (squad_f1(answer, golds) >= min_f1 or answer_in_text(golds, answer))


def near_duplicates(questions: Sequence[str], threshold: float = 0.7) -> dict[int, int]:
    """index -> index of the earliest kept question it nearly repeats (token-set Jaccard of content tokens >=
    `threshold`); a question that repeats none is kept.

    Exact, and the same answer as comparing each question with every kept one, but with prefix filtering (Bayardo
    et al., "Scaling up all pairs similarity search", 2007): tokens ordered rarest first, two sets whose Jaccard
    reaches t share a token among the first |s| - ceil(t|s|) + 1 of each, so only kept questions indexed under those
    tokens are compared. Measured against the all-pairs loop and datasketch's MinHash LSH in
    tests/pipeline/synthesis/test_near_duplicates.py: same pairs as the loop and 45-90x faster at 2,200-6,630
    questions, where LSH was approximate (missed 16% of the pairs) and 5-10x slower."""
    import math
    from collections import defaultdict

    sets = [frozenset(content_tokens(q)) for q in questions]
    if threshold <= 0:  # every question repeats the first (prefix filtering needs t > 0)
        return {i: 0 for i in range(1, len(sets))}
    freq = Counter(t for s in sets for t in s)
    index: dict[str, list[int]] = defaultdict(list)  # token -> kept questions with it in their prefix
    dup: dict[int, int] = {}
    for i, s in enumerate(sets):
        if not s:
            continue  # no content tokens: like nothing, kept, never a match
        prefix = sorted(s, key=lambda t: (freq[t], t))[:len(s) - math.ceil(threshold * len(s) - 1e-9) + 1]
        candidates = {j for t in prefix for j in index.get(t, ())}
        match = min((j for j in candidates if len(s & sets[j]) / len(s | sets[j]) >= threshold), default=None)
        if match is not None:
            dup[i] = match
        else:
            for t in prefix:
                index[t].append(i)
    return dup


def judge_gates(mode: str, agreement: float | None, min_agreement: float) -> bool:
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"judge_gate must be auto, always or never, got {mode!r}")
    return mode == "always" or (mode == "auto" and agreement is not None and agreement >= min_agreement)


# ---- the pass ----------------------------------------------------------------------------------------------------


def fetcher(sim) -> Callable[[str], str | None]:
    """`fetch_text(url)` over a simulator: the text of a 200 response, else None (cached)."""
    cache: dict[str, str | None] = {}

    def fetch_text(url: str) -> str | None:
        if url not in cache:
            try:
                resp = sim.fetch(url)
            except ValueError:
                cache[url] = None
            else:
                cache[url] = resp.text if resp.status == 200 else None
        return cache[url]
    return fetch_text


def _usage(llm) -> dict:
    usage = getattr(llm, "usage", None)
    if callable(usage):
        return usage()
    return usage.as_dict() if usage is not None and hasattr(usage, "as_dict") else {}


def verify_candidates(candidates: Sequence[dict], sim, llm, graph: ClueGraph, ranker: diff.BM25Ranker | None,
           config: VerifyConfig = VerifyConfig(), *, model: str = "", snapshot_id: str = "",
           progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict], dict]:
    """Apply every rule; returns (verified rows, rejected rows, stats). Rules never change with the yield."""
    from pipeline.llm import SamplingParams

    started = time.perf_counter()
    before = _usage(llm)
    fetch_text = fetcher(sim)
    ids_by_url = {p["url"]: pid for pid, p in graph.pages.items()}
    states = []
    for cand in candidates:
        golds = golds_of(cand["answer"], [cand["answer_title"]] if cand["answer_kind"] == "name" else [])
        st = {"cand": cand, "question": cand["question"], "golds": golds, "reasons": [],
              "form_problems": form_problems(cand["question"]), "answer_rank": None}
        states.append(st)
        if st["form_problems"]:
            st["reasons"].append("question_malformed")
        if cand.get("answer_candidates") != 1:
            st["reasons"].append("ambiguous")
        fetched = {e["url"]: fetch_text(e["url"]) for e in cand["evidence"]}
        fetched[cand["answer_url"]] = fetch_text(cand["answer_url"])
        if (r := check_evidence(cand["evidence"], fetched, golds, cand["answer_url"])):
            st["reasons"].append(r)
        titles = [s["title"] for s in cand["chain"]] + [graph.title(ids_by_url[e["url"]]) for e in cand["evidence"]
                                                        if e["url"] in ids_by_url]
        unnamed = {cand["answer_title"], *cand.get("named_pages", [])} if cand["answer_kind"] == "name" else \
            set(cand.get("named_pages", []))  # the answer is checked on its own; a named clue page is meant
        st["reasons"] += check_text(st["question"], golds, [t for t in titles if t not in unnamed],
                                    [e["quote"] for e in cand["evidence"]], config.max_copied_tokens)
        if not st["reasons"]:
            results = sim.search(st["question"], max(config.top_k, config.rank_depth)).results
            st["answer_rank"] = next((r.rank for r in results if r.url == cand["answer_url"]), None)
            if (r := check_search([x for x in results if x.rank <= config.top_k], cand["answer_url"], golds)):
                st["reasons"].append(r)
    todo = [st for st in states if not st["reasons"]]
    if progress:
        progress(f"{len(todo)} of {len(states)} candidates pass the structural rules; judge and closed book next")
    if todo:
        judged = llm.generate([judge_chat(st["question"], _evidence_lines(st["cand"], graph, ids_by_url))
                               for st in todo],
                              SamplingParams(max_tokens=config.judge_max_tokens, seed=config.seed), ANSWER_SCHEMA)
        closed = llm.generate([closed_book_chat(st["question"]) for st in todo],
                              SamplingParams(max_tokens=config.closed_book_max_tokens, seed=config.seed),
                              ANSWER_SCHEMA)
        for st, j, c in zip(todo, judged, closed):
            st["judge_answer"] = str(j.parsed.get("answer", "")) if j.ok else None
            st["closed_book_answer"] = str(c.parsed.get("answer", "")) if c.ok else None
            st["judge_agrees"] = judge_agrees(st["judge_answer"], st["golds"], config.min_judge_f1)
    agreement = round(sum(st["judge_agrees"] for st in todo) / len(todo), 4) if todo else None
    gating = judge_gates(config.judge_gate, agreement, config.judge_min_agreement)
    for st in todo:
        if gating and not st["judge_agrees"]:
            st["reasons"].append("judge_disagrees")
        if closed_book_solves(st["closed_book_answer"], st["golds"], config.closed_book_f1):
            st["reasons"].append("closed_book_solved")
    survivors = [st for st in states if not st["reasons"]]
    for i, j in near_duplicates([st["question"] for st in survivors], config.dedupe_jaccard).items():
        survivors[i]["reasons"].append("duplicate")
        survivors[i]["duplicate_of"] = question_id(survivors[j]["question"])
    survivors = [st for st in states if not st["reasons"]]
    _measure(survivors, graph, ranker, ids_by_url, config)
    provenance = {"snapshot_id": snapshot_id, "model": model, "prompt_version": PROMPT_VERSION,
                  "prompt_hash": PROMPT_HASH, "seed": config.seed}
    accepted = [accepted_row(st, config, provenance) for st in survivors]
    rejected = [rejected_row(st, provenance) for st in states if st["reasons"]]
    reasons = Counter(r["reason"] for r in rejected)
    by_family: dict[str, dict] = {}
    for st in states:
        fam = by_family.setdefault(st["cand"]["family"], {"candidates": 0, "verified": 0})
        fam["candidates"] += 1
        fam["verified"] += not st["reasons"]
    for fam in by_family.values():
        fam["yield"] = round(fam["verified"] / fam["candidates"], 4) if fam["candidates"] else 0.0
    stats = {
        "candidates": len(candidates), "verified": len(accepted), "rejected": len(rejected),
        "yield": round(len(accepted) / len(candidates), 4) if candidates else 0.0,
        "rejections": {r: reasons[r] for r in REJECTION_REASONS if reasons[r]},
        "all_failed_rules": dict(Counter(x for r in rejected for x in r["reasons"])),
        "by_family": by_family,
        "judge": {"mode": config.judge_gate, "judged": len(todo), "agreement": agreement, "gated": gating,
                  "min_agreement": config.judge_min_agreement},
        "bm25": bm25_summary(accepted),
        "llm_usage": {k: round(_usage(llm).get(k, 0) - before.get(k, 0), 3)
                      for k in ("requests", "prompt_tokens", "completion_tokens", "seconds", "cache_hits")},
        "seconds": round(time.perf_counter() - started, 2),
    }
    return accepted, rejected, stats


def _evidence_lines(cand: dict, graph: ClueGraph, ids_by_url: dict[str, int]) -> list[str]:
    """What the judge reads: "<page title>: <quote>" per evidence item."""
    return [f"{graph.title(ids_by_url[e['url']]) if e['url'] in ids_by_url else e['url']}: {e['quote']}"
            for e in cand["evidence"]]


def _measure(states: Sequence[dict], graph: ClueGraph, ranker, ids_by_url: dict, config: VerifyConfig) -> None:
    ranked = ranker.rank_many([st["question"] for st in states], config.rank_depth) if ranker else [[]] * len(states)
    for st, r in zip(states, ranked):
        cand = st["cand"]
        answer_id = ids_by_url.get(cand["answer_url"])
        evidence_ids = [ids_by_url[e["url"]] for e in cand["evidence"] if e["url"] in ids_by_url]
        path = [ids_by_url[s["url"]] for s in cand["chain"] if s["url"] in ids_by_url]
        st["bm25_answer_rank"] = diff.rank_of(r, answer_id) if ranker else None
        st["evidence_recall_at_5"] = diff.recall_at(r, evidence_ids, 5)
        st["evidence_recall_at_100"] = diff.recall_at(r, evidence_ids, 100)
        st["hop_surprisal"] = [diff.hop_surprisal(graph, a, b) for a, b in zip(path, path[1:])]
        st["search_arrival_share"] = diff.search_arrival_share(graph, answer_id) if answer_id else None
        mean_s = sum(st["hop_surprisal"]) / len(st["hop_surprisal"]) if st["hop_surprisal"] else 0.0
        st["difficulty"] = diff.difficulty(cand["hops"], st["bm25_answer_rank"], config.rank_depth,
                                           st["evidence_recall_at_5"], mean_s,
                                           min(c["candidates"] for c in cand["clues"]))


def bm25_summary(rows: Sequence[dict]) -> dict:
    """Share of rows whose answer page independent BM25 ranks in its top 10, and mean evidence recall@5/@100."""
    n = len(rows)
    if not n:
        return {"rows": 0}
    top10 = sum(1 for r in rows if r.get("bm25_answer_rank") and r["bm25_answer_rank"] <= 10)
    return {"rows": n, "answer_in_top10": round(top10 / n, 4),
            "evidence_recall_at_5": round(sum(r["evidence_recall_at_5"] for r in rows) / n, 4),
            "evidence_recall_at_100": round(sum(r["evidence_recall_at_100"] for r in rows) / n, 4)}


def accepted_row(st: dict, config: VerifyConfig, provenance: dict) -> dict:
    cand = st["cand"]
    qid = question_id(st["question"])
    return {
        "id": qid, "question": st["question"], "answer": cand["answer"], "aliases": st["golds"][1:],
        "hops": cand["hops"], "chain": cand["chain"], "start_url": cand["start_url"], "answer_url": cand["answer_url"],
        "difficulty": st["difficulty"], "split": split_of(qid, config.eval_fraction),
        **{k: provenance[k] for k in ("snapshot_id", "model", "prompt_version", "seed", "prompt_hash")},
        "answer_kind": cand["answer_kind"], "evidence": cand["evidence"], "answer_rank": st["answer_rank"],
        "judge_answer": st.get("judge_answer"), "closed_book_answer": st.get("closed_book_answer"),
        "draft": cand["template_question"], "chain_id": cand["seed_id"],
        "family": cand["family"], "writer": cand["writer"], "clues": cand["clues"],
        "answer_candidates": cand["answer_candidates"], "judge_agrees": st.get("judge_agrees"),
        "bm25_answer_rank": st["bm25_answer_rank"], "evidence_recall_at_5": st["evidence_recall_at_5"],
        "evidence_recall_at_100": st["evidence_recall_at_100"], "hop_surprisal": st["hop_surprisal"],
        "search_arrival_share": st["search_arrival_share"],
    }


def rejected_row(st: dict, provenance: dict) -> dict:
    cand = st["cand"]
    ordered = sorted(set(st["reasons"]), key=REJECTION_REASONS.index)
    return {
        "candidate_id": cand["seed_id"], "reason": ordered[0], "reasons": ordered, "question": st["question"],
        "answer": cand["answer"], "hops": cand["hops"], "chain": cand["chain"], "start_url": cand["start_url"],
        "answer_url": cand["answer_url"], "answer_kind": cand["answer_kind"], "draft": cand["template_question"],
        "family": cand["family"], "writer": cand["writer"], "form_problems": st["form_problems"],
        "rewrites": cand.get("rewrites") or [], "rewrite_problems": cand.get("rewrite_problems") or [],
        "answer_rank": st["answer_rank"], "judge_answer": st.get("judge_answer"),
        "closed_book_answer": st.get("closed_book_answer"), "duplicate_of": st.get("duplicate_of", ""),
        "split": "rejected", **provenance,
    }


def describe_config(config: VerifyConfig) -> dict:
    return asdict(config)
