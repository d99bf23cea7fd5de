"""The hard_queries dataset: Arrow schemas, contracts re-checked against the snapshot, the card, files, the plot."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from pipeline.datasets.cards import field_rows, licence_counts, licence_rows
from pipeline.datasets.splits import split_of
from pipeline.synthesis.questions.families import FAMILIES
from pipeline.synthesis.questions.verify import REJECTION_REASONS, fetcher, golds_of, near_duplicates
from pipeline.text.answers import answer_in_text, normalize_answer
from pipeline.text.lexical import quote_in

_S, _I64, _F64 = pa.string(), pa.int64(), pa.float64()
CHAIN_STEP = pa.struct([("url", _S), ("title", _S), ("quote", _S)])
EVIDENCE = pa.struct([("url", _S), ("quote", _S)])
CLUE = pa.struct([("kind", _S), ("text", _S), ("candidates", _I64)])
HARD_QUERY_SCHEMA = pa.schema([
    ("id", _S), ("question", _S), ("answer", _S), ("aliases", pa.list_(_S)), ("hops", _I64),
    ("chain", pa.list_(CHAIN_STEP)), ("start_url", _S), ("answer_url", _S), ("difficulty", _F64), ("split", _S),
    ("snapshot_id", _S), ("model", _S), ("prompt_version", _S), ("seed", _I64),
    ("prompt_hash", _S), ("answer_kind", _S), ("evidence", pa.list_(EVIDENCE)), ("answer_rank", _I64),
    ("judge_answer", _S), ("closed_book_answer", _S), ("draft", _S), ("chain_id", _S),
    ("family", _S), ("writer", _S), ("clues", pa.list_(CLUE)), ("answer_candidates", _I64), ("judge_agrees", pa.bool_()),
    ("bm25_answer_rank", _I64), ("evidence_recall_at_5", _F64), ("evidence_recall_at_100", _F64),
    ("hop_surprisal", pa.list_(_F64)), ("search_arrival_share", _F64),
])
REJECTED_SCHEMA = pa.schema([
    ("candidate_id", _S), ("reason", _S), ("reasons", pa.list_(_S)), ("question", _S), ("answer", _S),
    ("hops", _I64), ("chain", pa.list_(CHAIN_STEP)), ("start_url", _S), ("answer_url", _S),
    ("answer_kind", _S), ("draft", _S), ("family", _S), ("writer", _S), ("form_problems", pa.list_(_S)),
    ("rewrites", pa.list_(_S)), ("rewrite_problems", pa.list_(_S)), ("answer_rank", _I64),
    ("judge_answer", _S), ("closed_book_answer", _S), ("duplicate_of", _S), ("split", _S),
    ("snapshot_id", _S), ("model", _S), ("prompt_version", _S), ("prompt_hash", _S), ("seed", _I64),
])
FIELD_DOCS = {
    "id": "sha256 of the normalised question (SQuAD normalisation), 16 hex digits",
    "question": "the question: its entity or fact described by clues, never named",
    "answer": "the gold answer: a page's title (without a disambiguation) or a year its page states",
    "aliases": "other accepted forms of the answer (the full page title)",
    "hops": "pages a searcher must read to reach the answer, counting the answer page",
    "chain": "a path a searcher can follow: url, title, quote (the sentence of that page that mentions the next one; "
             "on the answer page, the sentence that states the answer)",
    "start_url": "the first page of the chain", "answer_url": "the page that states the answer",
    "difficulty": "0-1 from hops, independent BM25 rank of the answer page, evidence recall@5, hop surprisal, clue "
                  "candidate counts",
    "split": "train | eval: split_of(id)", "snapshot_id": "the simulator snapshot",
    "model": "the model of the judge / closed-book / polish passes", "prompt_version": "the synthesis version",
    "seed": "the build seed", "prompt_hash": "sha256 of the judge and closed-book prompts (12 hex)",
    "answer_kind": "name | year", "evidence": "every page the answer depends on: url + a literal quote",
    "answer_rank": "rank of the answer page in the simulator's search for the question (null: not in the top 100)",
    "judge_answer": "the judge's answer given the evidence", "closed_book_answer": "the closed-book answer",
    "draft": "the structured (template) question", "chain_id": "the structured seed's id",
    "family": "shared_link | linked_fact", "writer": "template, or the model id whose rewrite was kept",
    "clues": "each clue (kind, text) and the number of snapshot pages it admits on its own",
    "answer_candidates": "pages (values) all clues together admit, computed on the graph: 1",
    "judge_agrees": "the judge's answer matched gold (SQuAD F1 >= min_judge_f1)",
    "bm25_answer_rank": "rank of the answer page under independent BM25 (bm25s), question as query (null: > 100)",
    "evidence_recall_at_5": "share of evidence pages in that BM25 top 5",
    "evidence_recall_at_100": "share of evidence pages in that BM25 top 100",
    "hop_surprisal": "-log2 P(click next | page) per chain hop, clickstream counts, add-one smoothed",
    "search_arrival_share": "share of the answer page's clickstream arrivals from a search engine",
}
CHECKS = {
    "evidence_urls_exist": "every chain and evidence URL is served by the snapshot (status 200)",
    "answer_in_evidence": "the answer (or an alias) occurs in the answer page, and every quote in its page",
    "unique_answer": "every row's clues admit exactly one answer on the snapshot graph",
    "no_duplicates": "ids are unique and no two questions are near-duplicates",
    "split_disjoint": "split == split_of(id); no id and no question is in both splits",
}


def _table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def hard_query_table(rows: Sequence[dict]) -> pa.Table:
    """Verified rows as Arrow with `HARD_QUERY_SCHEMA` (missing columns are null)."""
    return _table(rows, HARD_QUERY_SCHEMA)


def rejected_table(rows: Sequence[dict]) -> pa.Table:
    return _table(rows, REJECTED_SCHEMA)


def check_hard_queries(rows: Sequence[dict], sim, *, eval_fraction: float = 0.1, dedupe_jaccard: float = 0.7
                       ) -> dict[str, tuple[int, list[str]]]:
    """For each contract in CHECKS: (rows violating it, a few examples), re-checked against the simulator."""
    bad: dict[str, list[str]] = {name: [] for name in CHECKS}
    fetch_text = fetcher(sim)
    for row in rows:
        urls = [s["url"] for s in row["chain"]] + [e["url"] for e in row.get("evidence") or []]
        missing = [u for u in dict.fromkeys(urls) if fetch_text(u) is None]
        if missing:
            bad["evidence_urls_exist"].append(f"{row['id']}: {missing[0]} not served")
        page = fetch_text(row["answer_url"])
        quotes_ok = all(quote_in(x["quote"], fetch_text(x["url"]) or "")
                        for x in [*row["chain"], *(row.get("evidence") or [])])
        if not page or not answer_in_text(golds_of(row["answer"], row["aliases"]), page) or not quotes_ok:
            bad["answer_in_evidence"].append(f"{row['id']}: answer or a quote not found in its page")
        if row.get("answer_candidates") != 1:
            bad["unique_answer"].append(f"{row['id']}: {row.get('answer_candidates')} answers admitted")
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
        bad["split_disjoint"] += [f"{x} in several splits" for x in sorted(set.intersection(*by_split.values()))]
    return {name: (len(v), v[:5]) for name, v in bad.items()}


def _histogram(values: Sequence[float], edges: Sequence[float]) -> str:
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(edges) - 1):
            if edges[i] <= v < edges[i + 1] or (i == len(edges) - 2 and v == edges[-1]):
                counts[i] += 1
                break
    return "\n".join(f"| {edges[i]:g}-{edges[i + 1]:g} | {counts[i]} |" for i in range(len(counts)))


def hard_queries_card(rows: Sequence[dict], rejected: Sequence[dict], stats: dict, provenance: dict) -> str:
    """README.md of the dataset: what, how it was made, yields, difficulty, BM25 figures, fields, licence."""
    from pipeline.datasets.export import yaml_header

    splits = sorted({r["split"] for r in rows}) or ["train"]
    licences = licence_counts(s["url"] for r in rows for s in r["chain"])
    header = yaml_header(licenses=sorted({h for h, _ in licences}) or ["cc-by-sa-3.0"], splits=splits,
                         pretty_name="websim hard queries", tags=["synthetic", "websim", "multi-hop", "search-agents"],
                         task_categories=["question-answering"], size=len(rows))
    fams = stats.get("by_family", {})
    fam_rows = "\n".join(f"| {f} | {fams.get(f, {}).get('candidates', 0)} | {fams.get(f, {}).get('verified', 0)} | "
                         f"{fams.get(f, {}).get('yield', 0):.1%} |" for f in FAMILIES)
    reasons = Counter(r["reason"] for r in rejected)
    rej = "\n".join(f"| {k} | {reasons[k]} |" for k in REJECTION_REASONS if reasons[k]) or "| (none) | 0 |"
    seeds_rej = stats.get("seed_rejections", {})
    seed_rows = "\n".join(f"| {f} | {r} | {n} |" for f, c in seeds_rej.items() for r, n in sorted(c.items())) or \
        "| - | - | 0 |"
    judge = stats.get("judge", {})
    bm25 = stats.get("bm25", {})
    ranks = [r["bm25_answer_rank"] or 101 for r in rows]
    writers = Counter(r["writer"] for r in rows)
    cfg = provenance.get("config", {})
    return f"""{header}

# websim hard queries

Multi-hop questions with unique, verified gold answers for training and evaluating search agents on the websim
simulated web, made from snapshot `{provenance.get('snapshot_id', '')}`. Correctness comes from structure computed
on the snapshot, not from a model: every clue is a set of pages, and a question is kept only when its clues
together admit exactly one answer.

{len(rows)} verified questions from {stats.get('candidates', 0)} candidates (yield {stats.get('yield', 0):.1%}).

| family | candidates | verified | yield |
|---|---|---|---|
{fam_rows}

## How it was made

1. **Definitions** (spaCy dependency parse of each page's defining sentence): the kind of thing a page is (the
   predicate's head noun) and a description (the predicate noun phrase with its modifiers, cut at the first
   coordination or apposition, never at a comma inside it). Kinds are grouped ("nation" counts every country).
2. **Families**: `shared_link`: "Which <kind> is linked from both the article about <description A> and the one
   about <description B>?" (one of the two pages may be named instead). The answer is the only page that both
   pages link to among all pages of the kind *or of unknown kind* (conservative), every page each description fits
   counted; neither page alone pins it; each links to it from a sentence that names it (the evidence quote). `linked_fact`: the same pinned entity, asked for the year its own
   page states for a verb (parsed: "In 1953 Greenland was made an equal part of the Danish Kingdom" -> "In what
   year was ... made an equal part of the Danish Kingdom?"), only when that verb has one year on the page.
3. **Polish**: the model (`{provenance.get('model', '')}`) rewrites each question, {cfg.get('samples', '?')} samples
   at temperature {cfg.get('temperature', '?')}; the first that passes every rule and keeps every clue's words is
   kept, else the structured question. Writers of the verified rows: {dict(writers)}.
4. **Verification**, in order: form gate (one question, a question word, no placeholders or fragments; passes
   97% of HotpotQA dev questions, every well-formed one), unique answer on the graph, evidence served and quoted
   literally, answer in the answer page, answer and page names absent from the question, the answer page not in
   the simulator's top {cfg.get('top_k', 10)} and the answer in none of its snippets, closed-book answer wrong,
   near-duplicates dropped.
5. **Judge authority**: a judge given the evidence answered {judge.get('judged', 0)} graph-proven questions and
   agreed with the graph's answer on {(judge.get('agreement') or 0):.1%} of them. Mode `{judge.get('mode')}`,
   threshold {judge.get('min_agreement')}: the judge **{'gated' if judge.get('gated') else 'did not gate'}** this
   build ({'its disagreements were dropped' if judge.get('gated') else 'a judge that cannot be shown to read keeps its verdict in `judge_answer` / `judge_agrees` but drops nothing the graph proves'}).

| rejection reason (first rule failed) | candidates |
|---|---|
{rej}

Structured seeds not built (per family, per reason): 

| family | reason | answer pages |
|---|---|---|
{seed_rows}

## Difficulty

Independent BM25 (bm25s over the snapshot, question as query): the answer page is in the top 10 for
{bm25.get('answer_in_top10', 0):.1%} of verified questions; evidence recall@5 {bm25.get('evidence_recall_at_5', 0):.3f},
recall@100 {bm25.get('evidence_recall_at_100', 0):.3f} (BrowseComp-Plus reports BM25 evidence recall@5 of 1.2% for
BrowseComp). Clickstream: mean hop surprisal and the answer page's search-arrival share are in every row.

| BM25 rank of the answer page | questions |
|---|---|
{_histogram(ranks, [1, 11, 51, 101, 102]).replace('| 101-102 |', '| not in top 100 |')}

| difficulty | questions |
|---|---|
{_histogram([r['difficulty'] for r in rows], [0, 0.2, 0.4, 0.6, 0.8, 1.0])}

## Fields

| field | type | meaning |
|---|---|---|
{field_rows(HARD_QUERY_SCHEMA, FIELD_DOCS)}

## Licence of the source text

| source | licence id | chain pages |
|---|---|---|
{licence_rows(licences)}

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

Every candidate of `hard_queries` that failed verification, with `reason` (the first rule failed, in the order of
`REJECTION_REASONS`), `reasons` (every rule it failed), its form problems and the model's rewrites.

| reason | candidates |
|---|---|
{rej}

```json
{json.dumps(provenance, indent=2, default=str)}
```
"""


# ---- files -------------------------------------------------------------------------------------------------------


def work_dir(data_dir: str | Path | None = None, snapshot_id: str = "") -> Path:
    """Where the synthesis stages hand records to each other: `<data dir>/synthesis/hard_queries[/<snapshot>]`."""
    from pipeline import config as websim_config

    root = Path(data_dir or websim_config.data_dir()) / "synthesis" / "hard_queries"
    return root / snapshot_id if snapshot_id else root


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
    written = export_dataset(hard_query_table(accepted), out_root / "hard_queries",
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
    """One PNG: outcome by first failed rule, BM25 rank of the answer page, difficulty of verified questions."""
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
    axes[1].hist([r["bm25_answer_rank"] or 101 for r in accepted], bins=[1, 6, 11, 26, 51, 101, 102], color="tab:blue")
    axes[1].set_title("independent BM25 rank of the answer page (101: not in top 100)")
    axes[2].hist([r["difficulty"] for r in accepted], bins=10, range=(0, 1), color="tab:purple")
    axes[2].set_title(f"difficulty of verified questions (n={len(accepted)})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
