"""The report-task verifiers on literal completions: gold answers score ~1, shuffled or fabricated ones ~0."""

import pytest

from pipeline.synthesis.report_tasks import gold_answer
from pipeline.synthesis.report_tasks.scoring import completion_text, kendall_tau, report_sentences, score_completion
from training.rewards_report import (
    REPORT_REWARD_WEIGHTS,
    REPORT_REWARDS,
    citation_reward,
    coverage_reward,
    distractor_reward,
    format_reward,
    notes_reward,
    order_reward,
)

NILE = "https://en.wikipedia.org/wiki/Nile"
DAM = "https://en.wikipedia.org/wiki/Aswan_Dam"
KOALA = "https://en.wikipedia.org/wiki/Koala"


def _chunk(cid, url, position, text, distractor=False, section=""):
    return {"chunk_id": cid, "source_chunk_id": f"{url}#{position}", "url": url, "title": url.rsplit("/", 1)[1],
            "position": position, "char_start": 0, "char_end": len(text), "section": section, "text": text,
            "n_tokens": len(text.split()), "is_distractor": distractor}


CHUNKS = [
    _chunk("C1", NILE, 1, "The Nile flows north for about 6,650 kilometres and drains into the Mediterranean Sea. "
                          "It is often called the longest river in the world.", section="Course"),
    _chunk("C2", KOALA, 4, "The koala is a tree-dwelling marsupial native to Australia. It feeds almost entirely "
                           "on eucalyptus leaves and sleeps up to twenty hours a day.", distractor=True),
    _chunk("C3", DAM, 0, "The Aswan High Dam was completed in 1970 across the Nile in southern Egypt. It controls "
                         "the annual flood and generates hydroelectric power.", section="Aswan High Dam"),
    _chunk("C4", NILE, 0, "Ancient Egyptian civilisation developed along the banks of the Nile. Farmers relied on "
                          "the annual flood to water their fields and grow wheat.", section="Nile"),
]
KEY_POINTS = [
    {"chunk_id": "C1", "point": "The Nile flows north about 6,650 km into the Mediterranean.",
     "quote": "flows north for about 6,650 kilometres and drains into the Mediterranean Sea", "source": "model:x"},
    {"chunk_id": "C3", "point": "The Aswan High Dam on the Nile was completed in 1970.",
     "quote": "The Aswan High Dam was completed in 1970 across the Nile", "source": "model:x"},
    {"chunk_id": "C3", "point": "The dam controls the flood and generates hydroelectric power.",
     "quote": "It controls the annual flood and generates hydroelectric power", "source": "model:x"},
    {"chunk_id": "C4", "point": "Ancient Egyptian civilisation grew up along the banks of the Nile.",
     "quote": "Ancient Egyptian civilisation developed along the banks of the Nile", "source": "model:x"},
]
SYNTH = {
    "task_kind": "synthesise", "chunk_ids": ["C1", "C2", "C3", "C4"], "chunks": CHUNKS,
    "gold_order": ["C4", "C1", "C3"], "distractor_ids": ["C2"], "source_urls": [NILE, DAM],
    "outline": [{"url": NILE, "title": "Nile", "sections": [{"heading": "Nile", "chunk_ids": ["C4"]},
                                                             {"heading": "Course", "chunk_ids": ["C1"]}]},
                {"url": DAM, "title": "Aswan Dam", "sections": [{"heading": "Aswan High Dam", "chunk_ids": ["C3"]}]}],
    "key_points": KEY_POINTS, "notes": [], "min_words": 20, "max_words": 200,
}
MERGE = {**SYNTH, "task_kind": "analyse_merge", "notes": [
    {"chunk_id": "C1", "note": "The Nile flows north about 6,650 km into the Mediterranean."},
    {"chunk_id": "C2", "note": "off-topic"},
    {"chunk_id": "C3", "note": "The Aswan High Dam on the Nile was completed in 1970. The dam controls the flood "
                               "and generates hydroelectric power."},
    {"chunk_id": "C4", "note": "Ancient Egyptian civilisation grew up along the banks of the Nile."}]}
REORDER = {"task_kind": "reorder", "chunk_ids": ["C1", "C2", "C3", "C4", "C5"], "gold_order": ["C3", "C5", "C1", "C4", "C2"],
           "chunks": [], "key_points": [], "distractor_ids": [], "min_words": 0, "max_words": 0}

FABRICATED_REPORT = """# The Nile

## History
The river was discovered by Roman engineers in 1850 [C1]. Its water is mostly used for car manufacturing [C4].

## Today
Koalas are farmed along its banks for their wool [C2]. The dam was built on the moon [C9].
"""


def _batch(rows, completions):
    keys = ["task_kind", "chunk_ids", "chunks", "gold_order", "distractor_ids", "key_points", "min_words", "max_words"]
    return {k: [r.get(k) for r in rows] for k in keys}


def _all(text, row):
    return {fn.__name__: fn([text], **_batch([row], [text]))[0] for fn in REPORT_REWARDS}


def test_kendall_tau():
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert kendall_tau(["c", "b", "a"], ["a", "b", "c"]) == -1.0
    assert kendall_tau(["b", "a", "c"], ["a", "b", "c"]) == pytest.approx(1 / 3)


def test_order_reward_gold_shuffled_partial_and_chat_completions():
    kw = _batch([REORDER] * 5, None)
    completions = [
        "C3, C5, C1, C4, C2",                                   # gold
        [{"role": "assistant", "content": "C2, C4, C1, C5, C3"}],  # reversed, as a chat
        "The order is C4, C2, C5, C3, C1.",                     # shuffled
        "C3, C5",                                               # right but incomplete
        "I cannot tell.",
    ]
    gold, reverse, shuffled, partial, none = order_reward(completions, **kw)
    assert gold == 1.0
    assert reverse == 0.0
    assert shuffled == 0.0
    assert partial == pytest.approx(1 / 10)  # its one pair of ten: an order is every fragment's place
    assert none == 0.0


def test_gold_answers_score_near_one():
    for row in (SYNTH, MERGE, REORDER):
        scores = _all(gold_answer(row), row)
        applicable = {k: v for k, v in scores.items() if v is not None}
        assert applicable and all(v >= 0.95 for v in applicable.values()), (row["task_kind"], scores)


def test_fabricated_report_scores_near_zero():
    scores = _all(FABRICATED_REPORT, SYNTH)
    assert scores["coverage_reward"] == 0.0
    assert scores["citation_reward"] == 0.0
    assert scores["distractor_reward"] == 0.0  # it cites the koala chunk
    assert scores["format_reward"] < 1.0  # cites an id that does not exist
    assert scores["order_reward"] is None and scores["notes_reward"] is None


def test_copying_a_distractor_without_citing_it_is_penalised():
    text = ("# Nile\n\n## Animals\nThe koala is a tree-dwelling marsupial native to Australia and feeds on "
            "eucalyptus leaves.\n\n## River\nThe Nile flows north into the Mediterranean Sea [C1].")
    assert distractor_reward([text], **_batch([SYNTH], None)) == [0.0]


def test_citations_must_exist_and_support_the_sentence():
    row = SYNTH
    good = "The Aswan High Dam was completed in 1970 and generates hydroelectric power [C3]."
    wrong_chunk = "The Aswan High Dam was completed in 1970 and generates hydroelectric power [C1]."
    unknown = "The Aswan High Dam was completed in 1970 and generates hydroelectric power [C7]."
    uncited = "The Aswan High Dam was completed in 1970 and generates hydroelectric power."
    after_stop = "The Aswan High Dam was completed in 1970. [C3] It generates hydroelectric power. [C3]"
    out = citation_reward([good, wrong_chunk, unknown, uncited, after_stop], **_batch([row] * 5, None))
    assert out == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_report_sentences_attach_trailing_citations():
    sents = report_sentences("# T\n## S\n- First fact about rivers here. [C1][C2] Second fact about dams [C3, C4].")
    assert sents == [("First fact about rivers here.", ["C1", "C2"]), ("Second fact about dams.", ["C3", "C4"])]


def test_notes_reward_needs_a_note_per_chunk_and_flags_distractors():
    kw = _batch([MERGE] * 3, None)
    good = gold_answer(MERGE)
    missing = good.replace("[C3] The Aswan", "The Aswan")
    distractor_kept = good.replace("[C2] off-topic", "[C2] The koala is a marsupial that eats eucalyptus leaves.")
    g, m, d = notes_reward([good, missing, distractor_kept], **kw)
    assert g == 1.0 and m == pytest.approx(0.75) and d == pytest.approx(0.75)


def test_format_reward_rubrics():
    assert format_reward(["C1, C2, C3, C4, C5"], **_batch([REORDER], None)) == [1.0]
    assert format_reward(["C1, C1, C2, C9 because the text says so and so on and on"] ,
                         **_batch([REORDER], None))[0] < 0.5
    assert format_reward(["Just some words [C1]."], **_batch([SYNTH], None))[0] <= 0.25
    assert format_reward([gold_answer(MERGE)], **_batch([MERGE], None)) == [1.0]


def test_degenerate_answers_earn_nothing():
    """The report-SFT demo model's answers (2026-12-07 evaluation, verbatim shapes): an id list that never stops,
    ids run together, nothing at all. Before, they earned format 0.67, distractors 1.0 and notes 1/7."""
    run_on_list = "C3, C5, C1, C4, C2, C3, C1, C5, C3, C4, C2, C3, C5, C1, C4, C3, C3, C"
    assert order_reward([run_on_list], **_batch([REORDER], None)) == [0.0]
    assert format_reward([run_on_list], **_batch([REORDER], None)) == [0.0]
    # the base model's echo of the prompt: the ids in the shown order among many words (gold order inside it here)
    echo = "The 5 fragments below were cut from one document and shuffled. " + " ".join(
        f"[{i}] Some text of the fragment about the river and its long history." for i in REORDER["gold_order"])
    assert order_reward([echo], **_batch([REORDER], None)) == [0.0]
    assert format_reward([echo], **_batch([REORDER], None)) == [0.0]  # it earned 2/3: every id once, all valid
    for row in (SYNTH, MERGE):
        for text in ("C2C2C2C2C2C2C2C2C2C2C2C2", "", "C1, C4, C3, C1, C2, C4, C3, C1, C4"):
            scores = _all(text, row)
            assert all(not v for v in scores.values()), (row["task_kind"], text, scores)
    # this session's report-SFT demo model (2026-12-07, second demo): "C3, C2" for every reorder task (it earned order
    # 1/3 where it happened to be right and format 2/3 everywhere); a heading repeated to the token limit; one
    # sentence again and again under other citations (format 0.5 and 0.75)
    assert order_reward(["C3, C2"], **_batch([{**REORDER, "gold_order": ["C3", "C2", "C1", "C4", "C5"]}], None)) == \
        [pytest.approx(1 / 10)]
    assert format_reward(["C3, C2"], **_batch([REORDER], None)) == [0.0]
    headings = "# Nile\n\n" + "## Nile river:\n\n" * 30
    sentence = "The Nile flows north through eleven countries into the Mediterranean Sea"
    looping = "# Nile\n\n## River\n" + " ".join(f"{sentence} [C{i}]." for i in (1, 3, 4, 1))
    for text in (headings, looping):
        assert format_reward([text], **_batch([SYNTH], None)) == [0.0], text
    # an answer that uses the fragments still earns the distractor credit without citing them all
    assert distractor_reward(["# Nile\n\n## River\nThe Nile flows north into the Mediterranean Sea [C1]."],
                             **_batch([SYNTH], None)) == [1.0]


def test_rewards_return_none_for_other_kinds_and_unknown_rows():
    kw = _batch([REORDER, SYNTH], None)
    assert coverage_reward(["C1", "x"], **kw)[0] is None
    assert order_reward(["C1", "x"], **kw)[1] is None
    assert format_reward(["x"], task_kind=["questions"]) == [None]
    assert len(REPORT_REWARDS) == len(REPORT_REWARD_WEIGHTS)


def test_completion_text_shapes():
    assert completion_text("a") == "a"
    assert completion_text([{"role": "assistant", "content": "b"}]) == "b"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "c"}]) == "c"
    assert completion_text({"role": "assistant", "content": [{"type": "text", "text": "d"}]}) == "d"


def test_score_completion_matches_the_reward_functions():
    scores = score_completion(gold_answer(MERGE), MERGE)
    assert scores["order"] is None and scores["notes"] == 1.0 and scores["coverage"] == 1.0


def _recite(report: str, cites) -> str:
    """The report with every citation group replaced by `cites(ids)`."""
    import re

    return re.sub(r"\[(C\d+(?:\]\[C\d+|, C\d+)*)\]", lambda m: cites(re.findall(r"C\d+", m.group(0))), report)


def test_citation_credit_is_precision_over_cited_fragments():
    gold = gold_answer(SYNTH)
    all_ids = "".join(f"[{c}]" for c in SYNTH["chunk_ids"])
    over_cited = _recite(gold, lambda ids: all_ids)
    rotate = {"C1": "C3", "C3": "C4", "C4": "C1", "C2": "C2"}
    shuffled = _recite(gold, lambda ids: "".join(f"[{rotate[i]}]" for i in ids))
    g, o, s, f = citation_reward([gold, over_cited, shuffled, FABRICATED_REPORT], **_batch([SYNTH] * 4, None))
    assert g >= 0.95
    assert o <= 0.5, "citing every fragment must not earn the gold's credit"
    assert s <= 0.2 and f == 0.0
    # a sentence drawn from two chunks, citing both, keeps full credit
    both = "The Aswan High Dam was completed in 1970 and Egyptian farmers relied on the annual flood [C3][C4]."
    assert citation_reward([both], **_batch([SYNTH], None)) == [1.0]


def test_report_reward_sanity_passes_on_the_verifiers_and_fails_when_over_citing_pays(monkeypatch):
    from pipeline.synthesis.report_tasks import scoring
    from training.rewards_report import report_reward_sanity

    other_order = {**REORDER, "task_id": "r2", "gold_order": ["C1", "C2", "C3", "C4", "C5"]}
    rows = [{**SYNTH, "task_id": "s1"}, {**MERGE, "task_id": "m1"}, {**REORDER, "task_id": "r1"}, other_order]
    report = report_reward_sanity(rows)
    assert report["passed"], report
    assert report["mean_citation_reward"]["over_cited"] <= 0.5 and report["mean_total"]["reorder_fabricated"] < 0.5
    monkeypatch.setattr(scoring, "CITE_SHARE", 0.0)  # every cited chunk "supports": citing everything pays
    broken = report_reward_sanity(rows)
    assert not broken["passed"] and broken["mean_citation_reward"]["over_cited"] > 0.9
