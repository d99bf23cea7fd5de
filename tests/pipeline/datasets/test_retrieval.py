"""Retrieval benchmarks: corpus JSONL, qrels and a run from websim's BM25, scored the way trec_eval scores."""

import json
import math

import pytest

from pipeline.datasets.retrieval import (bm25_run, corpus_documents, evaluate_run, qrels, ranked, read_qrels,
                                         read_run, write_jsonl, write_qrels, write_run)
from tests.support import WIKI, small_questions


def test_the_corpus_is_search_r1_jsonl_with_the_retrieve_ids(small_snapshot, tmp_path):
    from pipeline.simulator.web import Simulator, search_r1_documents

    path = tmp_path / "corpus.jsonl"
    n = write_jsonl(corpus_documents(small_snapshot), path)
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    assert n == len(docs) == small_snapshot.manifest["counts"]["pages"]
    by_url = {d["url"]: d for d in docs}
    basalt = by_url[WIKI + "Basalt"]
    title, _, text = basalt["contents"].partition("\n")
    assert title == '"Basalt"' and text and basalt["title"] == "Basalt"
    # the ids are those /retrieve answers with
    hit = search_r1_documents(Simulator(small_snapshot).search("Basalt", k=1), False)[0]
    assert by_url[hit["url"]]["id"] == hit["id"]


def test_qrels_judge_the_evidence_pages_and_the_answer_page(small_snapshot, tmp_path):
    from pipeline.simulator.web import Simulator

    questions = small_questions()[:2] + [{**small_questions()[2], "chain": [{"url": WIKI + "Nowhere"}],
                                          "answer_url": WIKI + "Quartz"}]
    evidence, gold, counts = qrels(questions, small_snapshot)
    sim = Simulator(small_snapshot)
    pid = {t: str(sim.fetch(WIKI + t).page_id) for t in ("Aardvark", "Basalt", "Quartz", "Penguin")}
    assert evidence["basalt"] == {pid["Aardvark"]: 1, pid["Basalt"]: 1, pid["Quartz"]: 1}
    assert gold == {"basalt": {pid["Quartz"]: 1}, "penguin": {pid["Aardvark"]: 1}, "detour": {pid["Quartz"]: 1}}
    assert counts == {"questions": 3, "judged": 3, "unserved_urls": 1}
    write_qrels(evidence, tmp_path / "qrel_evidence.txt")
    assert read_qrels(tmp_path / "qrel_evidence.txt") == evidence
    assert (tmp_path / "qrel_evidence.txt").read_text().splitlines()[0].split()[1] == "0"
    # websim's own BM25 as a run: the title query finds its page first
    run = bm25_run([{"id": "q", "question": "Basalt"}], sim, k=5)
    assert ranked(run["q"])[0][0] == pid["Basalt"] and len(run["q"]) <= 5
    write_run(run, tmp_path / "run.trec")
    line = (tmp_path / "run.trec").read_text().splitlines()[0].split()
    assert line[:4] == ["q", "Q0", pid["Basalt"], "1"] and line[5] == "websim-bm25"
    assert {d: round(s, 6) for d, s in read_run(tmp_path / "run.trec")["q"].items()} == {d: round(s, 6) for d, s in run["q"].items()}


def test_scores_follow_trec_eval():
    judged = {"q1": {"a": 1, "b": 2, "c": 1}, "q2": {"x": 1}, "q3": {"y": 0}}
    run = {"q1": {"b": 3.0, "z": 2.0, "a": 2.0, "c": 0.5}}  # q2 not run: scores 0 (trec_eval -c); q3 unjudged
    out = evaluate_run(judged, run, recall_ks=(1, 3), ndcg_ks=(2, 10))
    assert out["queries"] == 2
    # ties: trec_eval ranks the higher doc id first, so z (2.0) before a (2.0)
    assert [d for d, _ in ranked(run["q1"])] == ["b", "z", "a", "c"]
    assert out["per_query"]["q1"]["recall@1"] == pytest.approx(1 / 3)
    assert out["per_query"]["q1"]["recall@3"] == pytest.approx(2 / 3)
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert out["per_query"]["q1"]["ndcg@10"] == pytest.approx((2 + 1 / math.log2(4) + 1 / math.log2(5)) / ideal)
    assert out["per_query"]["q1"]["ndcg@2"] == pytest.approx(2 / (2 + 1 / math.log2(3)))
    assert out["per_query"]["q2"] == {"recall@1": 0.0, "recall@3": 0.0, "ndcg@2": 0.0, "ndcg@10": 0.0}
    assert out["recall@3"] == pytest.approx(1 / 3)
