"""Back-translation and verification: obfuscation rules, every verification rule on hand-made positive and
negative cases, the whole verification on the real Wikispeedia snapshot with a scripted model, the export, and
(slow) an end-to-end run with the embedded model."""

import re

import pyarrow.parquet as pq
import pytest

from pipeline.synthesis import questions as q
from pipeline.synthesis.chains import ChainConfig, build_chains, load_graph
from pipeline.simulator.web import SearchResult, Simulator
from tests.support import ScriptedBackend

CHAIN = {
    "chain_id": "c1", "hops": 1, "answer": "1915", "answer_kind": "year",
    "answer_sentence": "This issue was resolved in 1915 by Albert Einstein's new general relativity theory.",
    "start_url": "https://en.wikipedia.org/wiki/History_of_science",
    "answer_url": "https://en.wikipedia.org/wiki/Gravitation",
    "anchors": ["Gravitation"], "answer_links": [],
    "chain": [
        {"url": "https://en.wikipedia.org/wiki/History_of_science", "title": "History of science",
         "quote": "In 1687, Isaac Newton published the Principia, detailing his Law of Gravitation in 125 pages."},
        {"url": "https://en.wikipedia.org/wiki/Gravitation", "title": "Gravitation",
         "quote": "This issue was resolved in 1915 by Albert Einstein's new general relativity theory."},
    ],
}
PAGES = {
    CHAIN["start_url"]: "History of science\nIn 1687, Isaac Newton published the Principia, detailing his Law of "
                        "Gravitation in 125 pages.",
    CHAIN["answer_url"]: "Gravitation\nThis issue was resolved in 1915 by Albert Einstein's new general relativity "
                         "theory.",
}


# ---- obfuscation ----------------------------------------------------------------------------------------------------

def test_obfuscate_year_and_date():
    assert q.obfuscate_year(1889) == "the late 1880s"
    assert q.obfuscate_year("1903") == "the early 1900s"
    assert q.obfuscate_year(1995) == "the mid 1990s"
    assert q.obfuscate_year(346) == "the mid 340s"
    assert q.obfuscate_date("14 July 1889") == "the late 1880s"
    assert q.obfuscate_date("December 13, 1250") == "the early 1250s"
    with pytest.raises(ValueError):
        q.obfuscate_date("the spring")


def test_obfuscate_number_gives_a_range_around_it():
    assert q.obfuscate_number(450) == "between 400 and 500"
    assert q.obfuscate_number("3,000") == "between 2,500 and 3,500"  # never the value itself as an end
    assert q.obfuscate_number("591,528") == "between 500,000 and 600,000"
    assert q.obfuscate_number("44%") == "between 40% and 50%"
    assert q.obfuscate_number(7) == "between 0 and 10"
    for n in (12, 77, 450, 3000, 98765):
        low, high = (int(x.replace(",", "")) for x in re.findall(r"[\d,]+", q.obfuscate_number(n)))
        assert low < n < high


def test_obfuscate_name_and_text():
    assert q.obfuscate_name("Claude Monet", "a French painter") == "a French painter"
    with pytest.raises(ValueError):
        q.obfuscate_name("Claude Monet", "the painter Claude Monet")
    out = q.obfuscate_text("Gustave Eiffel built it on 31 March 1889 with 300 workers in 2 years.",
                           hide=["Gustave Eiffel"])
    assert out == "it built it on the late 1880s with between 250 and 350 workers in 2 years."
    assert q.obfuscate_names("Castro's forces surrounded the town of Guisa in March") == \
        "a certain name forces surrounded the town of a certain place in a certain month"


def test_describe_page_names_a_role_never_the_page():
    text = ("Vincent van Gogh\n2007 Schools Wikipedia Selection. Related subjects: Artists\n"
            "Vincent Willem van Gogh (30 March 1853 – 29 July 1890) was a Dutch Post-Impressionist artist, whose "
            "paintings are among the best known.\nHe painted sunflowers in Arles in 1888 and 1889.")
    assert q.describe_page("Vincent van Gogh", text) == "a Dutch Post-Impressionist artist"
    # cut before a name it must not say; fall back to the category when nothing is left
    text2 = ("Arles\nRelated subjects: French Geography\n"
             "Arles is a small city in the Provence region where Vincent van Gogh lived in 1888.")
    assert q.describe_page("Arles", text2) == "a small city in the Provence region"
    assert q.describe_page("Arles", text2, hide=["Provence"]) == "a small city"
    assert q.describe_page("Arles", text2, hide=["city"]) == "a subject filed under French Geography"
    assert q.describe_page("X", "X\nnothing useful", host="example.org") == "a page on example.org"


def test_fact_clause_and_draft():
    clause = q.fact_clause(CHAIN["answer_sentence"], "1915", "year", hide=["Gravitation"],
                           roles={"Albert Einstein": "a theoretical physicist"})
    assert clause == "this issue was resolved in what year by a theoretical physicist's new general relativity theory"
    clause = q.fact_clause("Frederick died on December 13, 1250 in Castel Fiorentino near Lucera, in Puglia.",
                           "Castel Fiorentino", "place")
    assert clause == "a certain name died on the early 1250s in what place near a certain place, in a certain place"
    draft = q.draft_question(["a body of knowledge", "a natural phenomenon"], "it happened in what year")
    assert draft == ("Start at the article on a body of knowledge; it links to an article on a natural phenomenon. "
                     "In that article, it happened in what year?")
    assert q.draft_question(["a", "b", "c"], "x").startswith("Start at the article on a. It links to an article on b,")


def test_quotes_for_the_prompt_are_literal_and_leave_the_answer_out():
    s = CHAIN["answer_sentence"]
    quote = q.answer_free_quote(s, "1915", 8)
    assert quote in s and "1915" not in quote and len(quote.split()) <= 8
    assert q.short_quote(CHAIN["chain"][0]["quote"], "Gravitation", 6) in CHAIN["chain"][0]["quote"]
    assert "Gravitation" in q.short_quote(CHAIN["chain"][0]["quote"], "Gravitation", 6)


def test_answer_aliases():
    assert q.answer_aliases("13 December 1250", "date") == ["December 13, 1250"]
    assert q.answer_aliases("December 13, 1250", "date") == ["13 December 1250"]
    assert q.answer_aliases("44%", "number") == ["44 percent"]
    assert q.answer_aliases("1915", "year") == []


def test_prompts_are_versioned_and_stable():
    clues = q.chain_clues(CHAIN, PAGES.get)
    chat = q.question_chat(CHAIN, clues)
    assert chat == q.question_chat(CHAIN, q.chain_clues(CHAIN, PAGES.get))  # same chain, same prompt: cacheable
    assert chat[0]["role"] == "system" and len(chat) == 6  # system, two worked examples, the chain
    assert "1915" not in chat[-1]["content"].split("Draft question:")[1]  # the draft never states the answer
    assert re.fullmatch(r"[0-9a-f]{12}", q.PROMPT_HASH) and q.PROMPT_VERSION


# ---- verification rules -------------------------------------------------------------------------------------------

def test_check_generation():
    assert q.check_generation({"generation_error": "invalid_json", "parsed": None}) == "invalid_json"
    assert q.check_generation({"generation_error": "backend_error: boom", "parsed": None}) == "backend_error"
    assert q.check_generation({"generation_error": None, "parsed": None}) == "invalid_json"
    assert q.check_generation({"generation_error": None, "parsed": {"question": "?"}}) is None


def test_answer_rules():
    assert q.check_answer_in_page(["1915"], PAGES[CHAIN["answer_url"]]) is None
    assert q.check_answer_in_page(["1916"], PAGES[CHAIN["answer_url"]]) == "answer_not_in_evidence"
    assert q.check_answer_in_page(["1915"], None) == "answer_not_in_evidence"


def test_evidence_rules():
    urls = [s["url"] for s in CHAIN["chain"]]
    good = [{"url": urls[0], "quote": "Isaac Newton published the Principia"},
            {"url": urls[1], "quote": "“this issue was resolved in 1915…”"}]  # quote marks and case are forgiven
    assert q.check_evidence(good, urls, PAGES) is None
    assert q.check_evidence([*good[:1], {"url": "https://example.org/", "quote": "x y z w"}], urls,
                            {**PAGES, "https://example.org/": "x y z w"}) == "evidence_url_unknown"
    assert q.check_evidence([good[0], {"url": "https://gone.example/", "quote": "a b c d"}], urls,
                            {**PAGES, "https://gone.example/": None}) == "evidence_url_unknown"
    assert q.check_evidence([good[0], good[0]], urls, PAGES) == "evidence_incomplete"
    assert q.check_evidence([good[0], {"url": urls[1], "quote": "resolved"}], urls, PAGES) == "quote_too_short"
    assert q.check_evidence([good[0], {"url": urls[1], "quote": "resolved in 1916 by Albert Einstein"}], urls,
                            PAGES) == "quote_not_in_page"


def test_question_text_rules():
    ok = "Start at the article on a body of knowledge; it links to a natural phenomenon. There, what year was it?"
    assert q.check_question_text(ok, ["1915"], CHAIN) == []
    assert "question_malformed" in q.check_question_text("What year?", ["1915"], CHAIN)
    assert "question_malformed" in q.check_question_text(ok.rstrip("?") + ".", ["1915"], CHAIN)
    assert "answer_in_question" in q.check_question_text(ok.replace("what year", "1915 or what year"), ["1915"], CHAIN)
    assert "names_page" in q.check_question_text(ok.replace("a natural phenomenon", "Gravitation"), ["1915"], CHAIN)
    assert "unobfuscated_fact" in q.check_question_text(ok.replace("a body of knowledge", "a field that in 1687"),
                                                        ["1915"], CHAIN)
    assert "unobfuscated_fact" in q.check_question_text(ok.replace("body", "125-page body"), ["1915"], CHAIN)
    assert "unobfuscated_fact" in q.check_question_text(ok.replace("a body", "on 3 May 1700 a body"), ["1915"], CHAIN)
    copied = ("In the year when Isaac Newton published the Principia, detailing his Law of Gravitation in 125 pages, "
              "what happened?")
    assert "copies_passage" in q.check_question_text(copied, ["1915"], CHAIN)
    assert q.unobfuscated_facts("in the late 1680s", CHAIN) == []


def test_search_rules():
    def hit(url, snippet=""):
        return SearchResult(1, url, "t", snippet, 1.0, 1)

    assert q.check_search([hit("https://a/"), hit("https://b/", "nothing here")], CHAIN["answer_url"], ["1915"]) is None
    assert q.check_search([hit(CHAIN["answer_url"])], CHAIN["answer_url"], ["1915"]) == "answer_page_in_top_k"
    assert q.check_search([hit("https://a/", "… resolved in 1915 by …")], CHAIN["answer_url"], ["1915"]) == \
        "answer_in_snippets"


def test_judge_and_closed_book_rules():
    assert q.check_judge("1915", ["1915"]) is None
    assert q.check_judge("in 1915", ["1915"]) is None  # F1 0.67
    assert q.check_judge("1915 by Albert Einstein", ["1915"]) == "judge_disagrees"
    assert q.check_judge("1687", ["1915"]) == "judge_disagrees"
    assert q.check_judge("the North Sea", ["North America"]) == "judge_disagrees"  # F1 0.5: half a name
    assert q.check_judge("Brian Boru", ["High King Brian Boru"]) is None  # F1 0.67
    assert q.check_judge(None, ["1915"]) == "judge_failed"
    assert q.check_closed_book("I do not know", ["1915"]) is None
    assert q.check_closed_book("It was resolved around 1915, I think", ["1915"]) == "closed_book_solved"
    assert q.check_closed_book("1915", ["1915"]) == "closed_book_solved"
    assert q.check_closed_book(None, ["1915"]) == "closed_book_failed"


def test_near_duplicates_and_ids():
    qs = ["Start at the article on a painter; what year did he die?",
          "start at the article on a painter: what year did he die",
          "Start at the article on a river; how long is it?",
          "Start at the article on a painter; in what year did he die?"]
    assert q.near_duplicates(qs, 0.7) == {1: 0, 3: 0}
    assert q.question_id(qs[0]) == q.question_id(qs[1]) and re.fullmatch(r"[0-9a-f]{16}", q.question_id(qs[0]))
    assert q.question_id(qs[0]) != q.question_id(qs[2])


def test_difficulty_grows_with_hops_rank_and_obscurity():
    base = dict(rank_depth=100, top_k=10, question="what year", answer_page_text="what year", closed_book_f1=0.0)
    one, four = q.difficulty(1, 50, **base), q.difficulty(4, 50, **base)
    assert 0.0 <= one < four <= 1.0
    assert q.difficulty(2, 20, **base) < q.difficulty(2, None, **base)
    assert q.difficulty(2, None, **{**base, "answer_page_text": "nothing alike"}) > q.difficulty(2, None, **base)


# ---- the whole verification, with a scripted model -------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim(wikispeedia_snapshot):  # noqa: F811
    return Simulator(wikispeedia_snapshot)


@pytest.fixture(scope="module")
def snap_chains(wikispeedia_snapshot):  # noqa: F811
    graph = load_graph(wikispeedia_snapshot.path / "snapshot.duckdb")
    return build_chains(graph, ChainConfig(count=16, seed=5), snapshot_id=wikispeedia_snapshot.id)[0]


def test_verification_on_the_snapshot_with_a_scripted_model(sim, snap_chains, tmp_path):
    from pipeline.llm.cache import ResponseCache

    fetch = q.simulator_texts(sim)
    llm = ScriptedBackend(cache=ResponseCache(tmp_path / "cache.sqlite"))
    candidates, gen_stats = q.generate_candidates(snap_chains, fetch, llm)
    assert len(candidates) == 16 and not gen_stats["generation_errors"]
    assert all(c["parsed"]["question"] == c["draft"] for c in candidates)
    # the judge knows the answers: every candidate that passes the other rules is verified
    judge = {c["draft"]: c["answer"] for c in candidates}
    llm.judge_answers = judge
    accepted, rejected, stats = q.verify_candidates(candidates, sim, llm, q.QuestionConfig(), model="scripted",
                                                    snapshot_id=sim.snapshot_id)
    assert len(accepted) + len(rejected) == 16 and stats["verified"] == len(accepted)
    assert accepted, stats  # the deterministic drafts of a perfect copier pass for some chains
    for r in rejected:
        assert r["reason"] in q.REJECTION_REASONS and r["reason"] == r["reasons"][0] and r["raw_text"]
    for row in accepted:
        assert set(f.name for f in q.HARD_QUERY_SCHEMA) <= set(row)
        assert row["id"] == q.question_id(row["question"]) and row["split"] in ("train", "eval")
        assert row["judge_answer"] == row["answer"] and 0 <= row["difficulty"] <= 1
        assert row["answer_rank"] is None or row["answer_rank"] > 10
        top = sim.search(row["question"], 10).results
        assert row["answer_url"] not in [x.url for x in top]
    assert q.check_hard_queries(accepted, sim) == {name: (0, []) for name in q.CHECKS}
    # a judge that gets it wrong rejects everything it sees, with that reason
    _, rejected2, stats2 = q.verify_candidates(candidates, sim, ScriptedBackend())
    assert stats2["verified"] == 0 and stats2["rejections"].get("judge_disagrees") == len(accepted)
    # the same chains again: served from the response cache, no engine call (a resumed run pays nothing twice)
    calls = llm.calls
    again, _ = q.generate_candidates(snap_chains, fetch, llm)
    assert llm.calls == calls and [c["raw_text"] for c in again] == [c["raw_text"] for c in candidates]


def test_check_hard_queries_catches_broken_rows(sim, snap_chains):
    row = {"id": "0" * 16, "question": "q?", "answer": "zzzz not there", "aliases": [], "split": "eval",
           "answer_url": snap_chains[0]["answer_url"], "evidence": [],
           "chain": [{**s} for s in snap_chains[0]["chain"]] + [{"url": "https://nowhere.example/", "title": "x",
                                                                  "quote": "x"}]}
    found = q.check_hard_queries([row, dict(row, split="train")], sim)
    assert found["evidence_urls_exist"][0] == 2 and found["answer_in_evidence"][0] == 2
    assert found["no_duplicates"][0] >= 1 and found["split_disjoint"][0] >= 1


def test_export_writes_dataset_card_and_rejections(tmp_path):
    accepted = [{
        "id": q.question_id("Start somewhere; what year?"), "question": "Start somewhere; what year?",
        "answer": "1915", "aliases": [], "hops": 1, "chain": CHAIN["chain"], "start_url": CHAIN["start_url"],
        "answer_url": CHAIN["answer_url"], "difficulty": 0.5, "split": "train", "snapshot_id": "s", "model": "m",
        "prompt_version": q.PROMPT_VERSION, "seed": 0, "prompt_hash": q.PROMPT_HASH, "answer_kind": "year",
        "evidence": [], "answer_rank": None, "judge_answer": "1915", "closed_book_answer": "no", "draft": "d",
        "chain_id": "c1"}]
    rejected = [{"candidate_id": "c2", "reason": "judge_disagrees", "reasons": ["judge_disagrees"], "question": "q?",
                 "answer": "a", "hops": 2, "chain": CHAIN["chain"], "raw_text": "{}", "split": "rejected", "seed": 0}]
    stats = {"candidates": 2, "yield": 0.5}
    written = q.export_hard_queries(accepted, rejected, stats, {"snapshot_id": "s", "model": "m"}, tmp_path)
    import datasets

    ds = datasets.load_from_disk(written["hard_queries"]["hf"])
    assert ds["train"][0]["question"] == accepted[0]["question"] and ds["train"][0]["chain"][0]["url"]
    card = (tmp_path / "hard_queries" / "README.md").read_text()
    assert "CC BY-SA" in card and "judge_disagrees" in card and "| `chain` |" in card
    bad = pq.read_table(tmp_path / "hard_queries_rejected" / "data" / "rejected.parquet").to_pylist()
    assert bad[0]["reason"] == "judge_disagrees" and bad[0]["raw_text"] == "{}"
    # zero verified rows still give a dataset and a card
    empty = q.export_hard_queries([], rejected, {"candidates": 1, "yield": 0.0}, {}, tmp_path / "empty")
    assert empty["hard_queries"]["rows_by_split"] == {"train": 0}
    assert (tmp_path / "empty" / "hard_queries" / "README.md").exists()


# ---- the embedded model -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_end_to_end_with_the_embedded_model(sim, wikispeedia_snapshot, tmp_path):  # noqa: F811
    from pipeline import config as websim_config
    from pipeline.llm.model_setup import ensure_embedded_model
    from pipeline.llm.transformers_backend import TransformersBackend

    data_dir = websim_config.data_dir()
    graph = load_graph(wikispeedia_snapshot.path / "snapshot.duckdb")
    chains, _ = build_chains(graph, ChainConfig(count=4, seed=0, hop_mix={1: 0.5, 2: 0.5}), snapshot_id=sim.snapshot_id)
    # transformers on one thread: on a shared 2-core machine it outruns vLLM's CPU engine (no grammar, so a reply
    # that is not JSON of the schema is a counted rejection). No re-asks: a re-ask of a small model's truncated
    # reply is sampled junk that costs as much again.
    llm = TransformersBackend(str(ensure_embedded_model(data_dir)), data_dir=data_dir, num_threads=1,
                              max_json_retries=0, cache=None)
    try:
        config = q.QuestionConfig(question_max_tokens=200)
        candidates, gen_stats = q.generate_candidates(chains, q.simulator_texts(sim), llm, config)
        accepted, rejected, stats = q.verify_candidates(candidates, sim, llm, config, model=llm.model_id,
                                                        snapshot_id=sim.snapshot_id)
    finally:
        llm.close()
    assert gen_stats["llm_usage"]["completion_tokens"] > 0
    assert len(accepted) + len(rejected) == 4
    # the reply is the question only: the answer and the evidence stay the chain's, literal in its pages
    for c in candidates:
        assert c["parsed"] is None or set(c["parsed"]) == {"question", "aliases"}
        assert [e["url"] for e in c["evidence"]] == [s["url"] for s in c["chain"]]
        assert all(sim.fetch(e["url"]).status == 200 for e in c["evidence"])
    for r in rejected:  # a 135M model fails most candidates: each failure is recorded with its reason and raw text
        assert r["reason"] in q.REJECTION_REASONS and r["raw_text"]
    written = q.export_hard_queries(accepted, rejected, stats, {"snapshot_id": sim.snapshot_id, "model": llm.model_id},
                                    tmp_path)
    assert (tmp_path / "hard_queries" / "README.md").exists()
    assert sum(written["hard_queries"]["rows_by_split"].values()) == len(accepted)
    assert q.check_hard_queries(accepted, sim) == {name: (0, []) for name in q.CHECKS}
