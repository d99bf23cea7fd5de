"""Retrieval benchmarks out of a snapshot: a Search-R1 corpus, BrowseComp-Plus-style qrels and run files, scores.

Document ids are the snapshot's page ids as strings, the ids websim's `/retrieve` returns, so an index built on
the corpus, the qrels and websim's own run all name the same documents.

- `corpus_documents(snapshot)`: every page as Search-R1 / FlashRAG corpus JSONL, `{"id", "contents":
  "\"Title\"\ntext", "title", "url"}` (Search-R1's `index_builder.py` and retrieval server read `contents`; Pyserini's
  JsonCollection reads `id` + `contents`).
- `qrels(questions, snapshot)`: relevance judgments in TREC format (`qid 0 docid rel`), as BrowseComp-Plus ships
  them: `evidence` = every page the answer depends on (the chain and the evidence pages), `gold` = the page that
  states the answer. URLs the snapshot does not serve are counted, not judged.
- `bm25_run(questions, simulator, k)`: websim's own search (the simulator's BM25) as a TREC run file
  (`qid Q0 docid rank score tag`), the baseline a retriever is compared with.
- `evaluate_run(qrels, run, ...)`: recall@k and nDCG@k (trec_eval's definitions: linear gain, log2 discount,
  ideal ranking from the judgments; with trec_eval's `-c`, a judged query the run misses scores 0).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from pipeline.datasets.trainers import evidence_urls

Qrels = dict[str, dict[str, int]]
"""query id -> doc id -> relevance."""
Run = dict[str, dict[str, float]]
"""query id -> doc id -> score."""


# ---- the corpus -------------------------------------------------------------------------------------------------

def corpus_documents(snapshot: Any, batch_rows: int = 10_000) -> Iterator[dict[str, str]]:
    """Every page of a snapshot (a `Snapshot`) as a Search-R1 corpus document, in page-id order."""
    with snapshot.connect() as con:
        cur = con.execute("SELECT page_id, title, text, url FROM pages ORDER BY page_id")
        while rows := cur.fetchmany(batch_rows):
            for page_id, title, text, url in rows:
                yield {"id": str(page_id), "contents": f'"{title}"\n{text}', "title": title, "url": url}


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Rows as JSON lines (UTF-8, not ASCII-escaped); returns the number written."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# ---- judgments and runs -----------------------------------------------------------------------------------------

def page_ids(snapshot: Any, urls: Iterable[str]) -> dict[str, str]:
    """URL -> page id (as a string) for the URLs the snapshot serves, as a page or through an alias."""
    urls = sorted(set(urls))
    if not urls:
        return {}
    with snapshot.connect() as con:
        found = con.execute(
            "SELECT url, page_id FROM pages WHERE url IN (SELECT unnest(?)) "
            "UNION ALL SELECT url, page_id FROM url_aliases WHERE url IN (SELECT unnest(?))", [urls, urls]).fetchall()
    return {url: str(pid) for url, pid in found}


def qrels(questions: Sequence[Mapping[str, Any]], snapshot: Any) -> tuple[Qrels, Qrels, dict[str, int]]:
    """(evidence qrels, gold qrels, counts): every chain and evidence page relevant (1), the answer page gold (1)."""
    wanted = [u for q in questions for u in evidence_urls(q)] + [q["answer_url"] for q in questions
                                                                  if q.get("answer_url")]
    ids = page_ids(snapshot, wanted)
    evidence: Qrels = {}
    gold: Qrels = {}
    counts = {"questions": len(questions), "judged": 0, "unserved_urls": 0}
    for q in questions:
        qid = str(q["id"])
        for url in evidence_urls(q):
            if url in ids:
                evidence.setdefault(qid, {})[ids[url]] = 1
            else:
                counts["unserved_urls"] += 1
        if q.get("answer_url") in ids:
            gold.setdefault(qid, {})[ids[q["answer_url"]]] = 1
            evidence.setdefault(qid, {})[ids[q["answer_url"]]] = 1
        counts["judged"] += qid in evidence
    return evidence, gold, counts


def bm25_run(questions: Sequence[Mapping[str, Any]], simulator: Any, k: int = 100) -> Run:
    """websim's search for each question (the question as the query), top `k` (at most the simulator's max_k)."""
    run: Run = {}
    for q in questions:
        resp = simulator.search(str(q["question"]), k=min(k, simulator.max_k), snippet_chars=0, session="qrels-run")
        run[str(q["id"])] = {str(r.page_id): float(r.score) for r in resp.results} if resp.status == 200 else {}
    return run


def write_qrels(judgments: Qrels, path: str | Path) -> None:
    lines = [f"{qid} 0 {doc} {rel}" for qid in sorted(judgments) for doc, rel in sorted(judgments[qid].items())]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def write_run(run: Run, path: str | Path, tag: str = "websim-bm25") -> None:
    lines = []
    for qid in sorted(run):
        for rank, (doc, score) in enumerate(ranked(run[qid]), start=1):
            lines.append(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}")
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def read_qrels(path: str | Path) -> Qrels:
    out: Qrels = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, rel = line.split()
            out.setdefault(qid, {})[doc] = int(rel)
    return out


def read_run(path: str | Path) -> Run:
    out: Run = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, _rank, score, _tag = line.split()
            out.setdefault(qid, {})[doc] = float(score)
    return out


def write_queries(questions: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """`qid<TAB>question` per line (BrowseComp-Plus's `queries.tsv`), whitespace inside a question collapsed."""
    Path(path).write_text("".join(f"{q['id']}\t{' '.join(str(q['question']).split())}\n" for q in questions),
                          encoding="utf-8")


# ---- scoring ----------------------------------------------------------------------------------------------------

def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """Documents by score, high first; ties by doc id in decreasing byte order, as trec_eval breaks them."""
    return sorted(scores.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)


def recall_at(judged: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    relevant = {d for d, r in judged.items() if r > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def ndcg_at(judged: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]) if judged.get(d, 0) > 0)
    ideal = sorted((r for r in judged.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def evaluate_run(judgments: Qrels, run: Run, *, recall_ks: Sequence[int] = (5, 100),
                 ndcg_ks: Sequence[int] = (10,)) -> dict[str, Any]:
    """Mean recall@k and nDCG@k over the judged queries (a query absent from the run scores 0), and per query."""
    per_query = {}
    for qid, judged in sorted(judgments.items()):
        if not any(r > 0 for r in judged.values()):
            continue
        ranking = [d for d, _ in ranked(run.get(qid, {}))]
        per_query[qid] = {**{f"recall@{k}": recall_at(judged, ranking, k) for k in recall_ks},
                          **{f"ndcg@{k}": ndcg_at(judged, ranking, k) for k in ndcg_ks}}
    names = [f"recall@{k}" for k in recall_ks] + [f"ndcg@{k}" for k in ndcg_ks]
    means = {n: (sum(m[n] for m in per_query.values()) / len(per_query) if per_query else 0.0) for n in names}
    return {**means, "queries": len(per_query), "per_query": per_query}
