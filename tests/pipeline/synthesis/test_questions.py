"""Structure-first hard questions: definitions and year facts parsed from real sentences, uniqueness on hand-made
graphs where two pages fit, each family on real Wikispeedia pages (answers recomputed here from the graph), the form
gate on real benchmark questions and on the questions websim's previous synthesis wrote, best-of-n polish, the
judge's authority, and the whole verification with a scripted model."""

import json
import random

import pytest

from pipeline.synthesis import questions as q
from pipeline.synthesis.chains import is_prose_sentence
from pipeline.synthesis.questions import families, parse, polish, verify
from pipeline.text.lexical import quote_in
from tests.support import sample

# ---- parsing real sentences ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nlp():
    return parse.load_parser()


@pytest.mark.parametrize("title, sentence, kind, description", [
    ("Cyanocobalamin", "Cyanocobalamin is a vitamin commonly known as vitamin B.", "vitamin",
     "a vitamin commonly known as vitamin B"),
    ("Colombia", "Colombia, or formally, the Republic of Colombia, is the northwesternmost country of South America.",
     "country", "the northwesternmost country of South America"),
    ("Alexander the Great", "Alexander the Great, also known as Alexander III, king of Macedon, was one of the most "
     "successful military commanders in history.", "commanders", None),  # plural head: kind unusable
    ("Gustav Holst", "Gustav Holst was an English composer and was a music teacher for over 20 years.", "composer",
     "an English composer"),
    ("Tay Rail Bridge", "The Tay Rail Bridge is a railway bridge approximately two and a quarter miles long that "
     "spans the Firth of Tay in Scotland, between the city of Dundee and Wormit in Fife.", "bridge", None),
])
def test_definitions_of_real_defining_sentences(nlp, title, sentence, kind, description):
    d = parse.read_definition(nlp(sentence), title)
    if kind == "commanders":
        assert d is None  # "one of the ... commanders": a plural kind is no kind clue
        return
    assert d is not None and d.kind == kind
    if description is None:
        assert d.description is None or "," not in d.description
    else:
        assert d.description == description


@pytest.mark.parametrize("title, kind, sentence, year, question_part", [
    ("Tunisia", "country", "Tunisia gained independence from France in 1956.", "1956",
     ("did", "gain independence from France")),
    ("Selenium", "element", "Selenium was discovered in 1817.", "1817", ("was", "discovered")),
    ("Greenland", "territory", "In 1953 Greenland was made an equal part of the Danish Kingdom.", "1953",
     ("was", "made an equal part of the Danish Kingdom")),
    ("Konrad Lorenz", "zoologist", "He was drafted into the Wehrmacht in 1941.", "1941",
     ("was", "drafted into the Wehrmacht")),
])
def test_year_facts_become_question_predicates(nlp, title, kind, sentence, year, question_part):
    f = parse.read_year_fact(nlp(sentence), title, kind)
    assert f is not None and f.year == year and (f.aux, f.predicate) == question_part


@pytest.mark.parametrize("title, kind, sentence", [
    ("Sierra Leone", "country", "He died three years later in 1964 and was succeeded by his brother."),  # not its subject
    ("Ice", "substance", "Ice XII was discovered in 1996."),  # another thing's year
    ("Zürich", "city", "Zürich became reichsunmittelbar in 1218 and joined the confederation in 1351."),  # two years
    ("Selenium", "element", "Selenium was discovered in 1817 by Jöns Jakob Berzelius who found the element "
     "associated with tellurium."),  # an argument with a clause: cut, it would change the fact
    ("Harley-Davidson", "company", "In 2007, Harley-Davidson released a line-up of five Dyna models: Super Glide."),
])
def test_sentences_that_make_no_clean_year_question_are_refused(nlp, title, kind, sentence):
    assert parse.read_year_fact(nlp(sentence), title, kind) is None


# ---- uniqueness on hand-made graphs --------------------------------------------------------------------------------

def _graph(extra_link: bool):
    pages = [
        ("Rome", "city", "the capital of Italy", "Rome\nRome is the capital of Italy."),
        ("Milan", "city", "a city in northern Italy", "Milan\nMilan is a city in northern Italy."),
        ("Paris", "city", "the capital of France", "Paris\nParis is the capital of France."),
        ("Caesar", "general", "a Roman general and statesman", "Caesar\nCaesar was a Roman general and statesman."),
        ("Pasta", "food", "a staple food of Italian cuisine", "Pasta\nPasta is a staple food of Italian cuisine."),
    ]
    links = [("Caesar", "Rome"), ("Caesar", "Milan"), ("Pasta", "Rome"), ("Pasta", "Paris")]
    if extra_link:
        links.append(("Pasta", "Milan"))  # now two cities are mentioned by both pages
    g = q.hand_made_graph(pages, links)
    g.mentions = {k: set(v) for k, v in g.out.items()}
    return g


def _ids(g):
    return {p["title"]: pid for pid, p in g.pages.items()}


def test_uniqueness_counts_every_page_the_clues_admit():
    g = _graph(extra_link=False)
    ids = _ids(g)
    kind = g.kind("city")
    both = g.linked_from(ids["Caesar"]) & g.linked_from(ids["Pasta"]) & kind
    assert both == {ids["Rome"]}
    g2 = _graph(extra_link=True)
    ids2 = _ids(g2)
    both2 = g2.linked_from(ids2["Caesar"]) & g2.linked_from(ids2["Pasta"]) & g2.kind("city")
    assert both2 == {ids2["Rome"], ids2["Milan"]}  # two pages fit: such a question is ambiguous


def test_the_pin_refuses_two_fitting_pages_and_accepts_one(monkeypatch):
    monkeypatch.setattr(families, "_quote_for_link", lambda g, src, dst: "a sentence that mentions it")
    cfg = families.FamilyConfig(min_kind_pages=2, max_description_pages=5)
    g = _graph(extra_link=False)
    ok = families._pin(g, _ids(g)["Rome"], cfg, random.Random(0), {})
    assert not isinstance(ok, str)
    (a, _, from_a, _), (b, _, from_b, _), may_be = ok
    assert {g.title(a), g.title(b)} == {"Caesar", "Pasta"} and from_a & from_b == {_ids(g)["Rome"]}
    g2 = _graph(extra_link=True)
    assert families._pin(g2, _ids(g2)["Rome"], cfg, random.Random(0), {}) == "ambiguous"


def test_a_page_of_unknown_kind_counts_as_a_possible_answer(monkeypatch):
    monkeypatch.setattr(families, "_quote_for_link", lambda g, src, dst: "a sentence that mentions it")
    pages = [
        ("Rome", "city", "the capital of Italy", "Rome"), ("Turin", "city", "a city in Piedmont", "Turin"),
        ("Milan", "city", "a city in northern Italy", "Milan"),
        ("Pesto", "sauce", "a sauce from Genoa", "Pesto"),  # not a city: cannot answer "which city"
        ("Caesar", "general", "a Roman general and statesman", "Caesar a Roman general and statesman"),
        ("Pasta", "food", "a staple food of Italian cuisine", "Pasta a staple food of Italian cuisine"),
    ]
    links = [("Caesar", "Rome"), ("Caesar", "Milan"), ("Caesar", "Pesto"),
             ("Pasta", "Rome"), ("Pasta", "Turin"), ("Pasta", "Pesto")]
    cfg = families.FamilyConfig(min_kind_pages=2, max_description_pages=5)

    def pin(unreadable: bool):
        g = q.hand_made_graph(pages, links)
        if unreadable:  # Pesto's defining sentence could not be read: for all we know it is a city
            g = q.hand_made_graph([p if p[0] != "Pesto" else (p[0], "", "", p[3]) for p in pages], links)
        g.mentions = {k: set(v) for k, v in g.out.items()}
        return families._pin(g, _ids(g)["Rome"], cfg, random.Random(0), {})

    assert not isinstance(pin(unreadable=False), str)
    assert pin(unreadable=True) == "ambiguous"


def test_a_link_counts_only_from_a_sentence_of_running_text():
    # the demo of 2026-12-07 asked which capital Oceania's article links to, from its population table
    row = "Island Norfolk Island (Australia) 35 1,866 53.3 Kingston Indonesia Indonesia 499,852 4,211,532 8.4 Jakarta"
    sentence = "The first Dutch traders reached Jakarta in 1596 and built a fort there."
    pages = [("Jakarta", "city", "the capital of Indonesia", "Jakarta"),
             ("Oceania", "region", "a region of the Pacific", f"Oceania is a region. {row} New Caledonia."),
             ("Dutch traders", "", "", f"{sentence} They came back.")]
    g = q.hand_made_graph(pages, [("Oceania", "Jakarta"), ("Dutch traders", "Jakarta")])
    ids = _ids(g)
    g.edges[(ids["Oceania"], ids["Jakarta"])]["context"] = row
    g.edges[(ids["Dutch traders"], ids["Jakarta"])]["context"] = sentence
    assert families._quote_for_link(g, ids["Oceania"], ids["Jakarta"]) == ""
    assert families._quote_for_link(g, ids["Dutch traders"], ids["Jakarta"]) == sentence


# ---- the families on real pages --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clue_graph(wikispeedia_snapshot):
    return q.load_clue_graph(wikispeedia_snapshot.path / "snapshot.duckdb")


@pytest.fixture(scope="module")
def seeds(clue_graph):
    got, rejections = q.build_seeds(clue_graph, q.FamilyConfig(count=40, seed=3))
    return got, rejections


def test_each_family_builds_questions_on_real_pages(seeds):
    got, rejections = seeds
    fams = {s["family"] for s in got}
    assert "shared_link" in fams and len(got) >= 15
    assert set(rejections) == {"shared_link", "linked_fact"}
    assert all(set(r) <= set(families.SEED_REJECTIONS) for r in rejections.values())


def test_every_seed_answer_is_the_only_one_the_graph_admits(seeds, clue_graph):
    g = clue_graph
    ids = {p["url"]: pid for pid, p in g.pages.items()}
    ids_by_title = {p["title"]: pid for pid, p in g.pages.items()}
    assert sum(c["kind"] == "named_page" for s in seeds[0] for c in s["clues"]) <= len(seeds[0])  # one at most
    for s in seeds[0]:
        answer = ids[s["answer_url"]]
        a, b = ids[s["evidence"][0]["url"]], ids[s["evidence"][1]["url"]]
        fits = [g.described(c["text"]) if c["kind"] == "description" else {ids_by_title[c["text"]]}
                for c in s["clues"] if c["kind"] in ("description", "named_page")]
        fit_a, fit_b = fits
        assert a in fit_a and b in fit_b
        may_be = g.may_be(g.defs[answer].kind)
        common = set().union(*(g.linked_from(p) for p in fit_a)) & set().union(*(g.linked_from(p) for p in fit_b))
        assert common & may_be == {answer}, s["template_question"]
        assert s["answer_candidates"] == 1


def test_seed_evidence_is_literal_and_questions_pass_the_form_gate(seeds, clue_graph):
    ids = {p["url"]: pid for pid, p in clue_graph.pages.items()}
    for s in seeds[0]:
        assert all(quote_in(e["quote"], clue_graph.text(ids[e["url"]])) for e in s["evidence"])
        assert all(is_prose_sentence(e["quote"], min_words=5) for e in s["evidence"][:2])  # the links' sentences
        assert q.form_problems(s["template_question"]) == [], s["template_question"]
        assert s["answer"].lower() not in s["template_question"].lower()
        if s["family"] == "linked_fact":
            assert s["answer"] in s["fact_sentence"] and s["template_question"].startswith("In what year ")


def test_seeds_are_deterministic_by_seed(clue_graph):
    a, _ = q.build_seeds(clue_graph, q.FamilyConfig(count=10, seed=11))
    b, _ = q.build_seeds(clue_graph, q.FamilyConfig(count=10, seed=11))
    assert [s["seed_id"] for s in a] == [s["seed_id"] for s in b]


# ---- the form gate ---------------------------------------------------------------------------------------------------

PREVIOUS = [  # what websim's v2 synthesis verified and wrote (issue 14)
    "Start at the article on the early 2000s a certain name had how many inhabitants?",
    "Start at the article on a subject filed under Geography of Great Britain; it links to an article on a subject "
    "filed under Geography of Great Britain. In that article, a certain name is only how many miles from a certain "
    "place?",
    "Start at the article on a broad array of doctrines. In that last article, the bank's headquarters was the most?",
    "In that last article, the highest point between 8,000 and 9,000 m ( what year est.)?",
    "In that last article, was influential from what place in a certain name?",
    "In that last article, the latter consisting primarily of a certain place artists such as Jackson Pollock.",
    '{"question": "Which city is it?", "aliases": []}',
    "Which city is the the the the city the the the the city?",
]


def test_the_form_gate_passes_real_benchmark_questions():
    rows = [json.loads(line) for line in sample("qa", "hotpotqa-dev-sample500.jsonl").open()]
    passed = [r for r in rows if not q.form_problems(r["question"])]
    assert len(passed) / len(rows) >= 0.96
    well_formed = [r for r in rows if r["question"].strip().endswith("?") and r["question"].count("?") == 1]
    assert sum(not q.form_problems(r["question"]) for r in well_formed) / len(well_formed) >= 0.99


@pytest.mark.parametrize("question", PREVIOUS)
def test_the_form_gate_rejects_what_the_previous_synthesis_wrote(question):
    assert q.form_problems(question)


# ---- polish ------------------------------------------------------------------------------------------------------------

SEED = {"template_question": "Which city is linked from both the article about a Genevan philosopher and the one "
                             "about a Scouting hostel and conference centre?",
        "answer": "Geneva", "answer_title": "Geneva",
        "clues": [{"kind": "kind", "text": "city", "candidates": 40},
                  {"kind": "description", "text": "a Genevan philosopher", "candidates": 1},
                  {"kind": "description", "text": "a Scouting hostel and conference centre", "candidates": 1}]}


def test_best_of_n_keeps_the_template_when_every_sample_breaks_a_rule():
    samples = ["Which city is linked from the article about a philosopher?",  # drops clue words
               "Geneva is mentioned in both articles about a Genevan philosopher and a Scouting hostel and "
               "conference centre?",  # states the answer
               "In that article, a certain place is mentioned?",  # placeholders
               SEED["template_question"].upper(),  # a copy is no rewrite
               # what the 135M model wrote in the demo: a new claim, a reversed relation, a broken frame
               "Which city do both the article about a Genevan philosopher and the one about a Scouting hostel and "
               "conference centre join the United Nations?",
               "Which city is linked to both the article about a Genevan philosopher and that about a Scouting hostel "
               "and conference centre?",
               "In what city is linked from both the article about a Genevan philosopher and the one about a Scouting "
               "hostel and conference centre?",
               # and in this session's demo: "is that linked"
               "Which city is that linked from both the article about a Genevan philosopher and the one about a "
               "Scouting hostel and conference centre?"]
    question, index, problems = polish.choose(samples, SEED)
    assert question == SEED["template_question"] and index is None and all(problems)
    assert problems[3:] == ["unchanged", "added_words", "changed_relation", "changed_frame", "changed_frame"]


@pytest.mark.parametrize("rewrite", [
    # what the 135M model wrote in the demo of 2026-12-07 (kept by the rules before the frames), on SEED's clues
    "Which city that is linked from both the article about a Genevan philosopher and the one about a Scouting hostel "
    "and conference centre?",
    "Which city that linked from both the article about a Genevan philosopher and the one about a Scouting hostel "
    "and conference centre?",
    "Which city that both the article about a Genevan philosopher and the one that links to a Scouting hostel and "
    "conference centre?",
    "Which city, which one, is linked from both the article about a Genevan philosopher and the one about a Scouting "
    "hostel and conference centre?",
    "Which city is linked from both the article about a Genevan philosopher and the one that is linked from the one "
    "about a Scouting hostel and conference centre?",  # another relation: a third page
    "Which city is linked from both the article about a Genevan philosopher and the one about the one Scouting hostel "
    "and conference centre?",  # a clue changed
])
def test_a_rewrite_outside_the_known_sentences_is_refused(rewrite):
    assert polish.rewrite_problem(rewrite, SEED) == "unknown_frame"
    # "which" and "what" alike, as the frame rule allows
    assert polish.rewrite_problem("What" + SEED["template_question"][len("Which"):], SEED) is None


FACT_SEED = {"template_question": "In what year did the city linked from both the article on L. S. Lowry and the one "
                                  "about a Welsh socialist and social reformer become a market town?",
             "answer": "1301", "answer_title": "Newtown",
             "clues": [{"kind": "kind", "text": "city"}, {"kind": "named_page", "text": "L. S. Lowry"},
                       {"kind": "description", "text": "a Welsh socialist and social reformer"},
                       {"kind": "fact", "text": "become a market town"}]}


@pytest.mark.parametrize("rewrite, problem", [
    ("In what year did the city that both the article on L. S. Lowry and the one about a Welsh socialist and social "
     "reformer link to become a market town?", None),
    ("In which year did the city that is linked from both the article about L. S. Lowry and the one about a Welsh "
     "socialist and social reformer become a market town?", None),
    ("In what year did the city that linked from both the article on L. S. Lowry and the one about a Welsh socialist "
     "and social reformer become a market town?", "unknown_frame"),
    ("In what year the city linked from both the article on L. S. Lowry and the one about a Welsh socialist and "
     "social reformer did become a market town?", "unknown_frame"),
])
def test_the_frames_of_a_fact_question(rewrite, problem):
    assert polish.frame_of(FACT_SEED["template_question"], FACT_SEED["clues"]) == (
        "in what year did the K linked from both the article on X and the one about X F?")
    assert polish.rewrite_problem(rewrite, FACT_SEED) == problem


def test_best_of_n_keeps_the_first_sample_that_passes():
    good = ("Which city do both the article about a Genevan philosopher and the one about a Scouting hostel and "
            "conference centre link to?")
    question, index, problems = polish.choose(["Which city?", good, good + " Yes?"], SEED)
    assert question == good and index == 1 and problems[0] and not problems[1]


# ---- judge authority and the whole verification ----------------------------------------------------------------------

def test_the_judge_gates_only_when_it_reads():
    assert not verify.judge_gates("auto", 0.1, 0.8)  # the embedded 135M judge: verdicts kept, nothing dropped
    assert verify.judge_gates("auto", 0.9, 0.8)
    assert verify.judge_gates("always", 0.0, 0.8) and not verify.judge_gates("never", 1.0, 0.8)
    with pytest.raises(ValueError):
        verify.judge_gates("sometimes", 0.5, 0.8)


class KnowingJudge:
    """A backend stand-in: the judge answers the gold answer (a judge that reads), closed book does not know."""

    model_id = "knowing"
    usage = None

    def __init__(self, golds):
        self.golds = golds

    def generate(self, chats, params, schema=None):
        from pipeline.llm.base import Completion

        out = []
        for chat in chats:
            question = chat[-1]["content"].rsplit("Question: ", 1)[-1]
            answer = self.golds.get(question, "no idea") if chat[0]["content"] == q.JUDGE_SYSTEM else "no idea"
            out += [Completion(text=json.dumps({"answer": answer}), parsed={"answer": answer})] * params.n
        return out


def test_verification_on_real_seeds_keeps_unique_hard_questions(seeds, clue_graph, wikispeedia_snapshot):
    from pipeline.simulator.tools import shared_simulator
    from pipeline.synthesis.questions.difficulty import BM25Ranker

    cands = [{**s, "question": s["template_question"], "writer": "template", "candidate_id": s["seed_id"]}
             for s in seeds[0]]
    llm = KnowingJudge({c["question"]: c["answer"] for c in cands})
    ranker = BM25Ranker((pid, p["title"], p["text"]) for pid, p in clue_graph.pages.items())
    sim = shared_simulator(str(wikispeedia_snapshot.path))
    accepted, rejected, stats = q.verify_candidates(cands, sim, llm, clue_graph, ranker, q.VerifyConfig(eval_fraction=0.3))
    assert stats["judge"]["gated"] and stats["judge"]["agreement"] == 1.0
    assert accepted and len(accepted) + len(rejected) == len(cands)
    assert all(r["answer_candidates"] == 1 and r["answer_rank"] is None or r["answer_rank"] > 10 for r in accepted)
    assert stats["bm25"]["answer_in_top10"] <= 0.15
    found = q.check_hard_queries(accepted, sim, eval_fraction=0.3)
    assert all(n == 0 for n, _ in found.values()), found
    table = q.hard_query_table(accepted)
    assert table.num_rows == len(accepted) and "clues" in table.column_names
    card = q.hard_queries_card(accepted, rejected, stats, {"snapshot_id": "s", "config": {}})
    assert "gated" in card and "Independent BM25" in card
