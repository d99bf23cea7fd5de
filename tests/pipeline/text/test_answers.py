"""Answer matching, SQuAD/HotpotQA style, on literal cases and on real HotpotQA dev answers."""

import json

import pytest

from pipeline.text.answers import answer_in_text, exact_match, normalize_answer, squad_f1
from tests.support import sample


@pytest.fixture(scope="module")
def hotpot():
    with open(sample("qa", "hotpotqa-dev-sample500.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_normalize_answer_is_squad_normalisation():
    assert normalize_answer("The Home Rule League") == "home rule league"
    assert normalize_answer("  An  apple, a day!") == "apple day"
    assert normalize_answer("“Dr. Gräsler, Badearzt”") == "dr gräsler badearzt"
    assert normalize_answer("1,000") == normalize_answer("1000") == "1000"
    assert normalize_answer("Nature’s Symphony") == normalize_answer("Nature's Symphony") == "natures symphony"
    assert normalize_answer("ＡＢＣ") == "abc"  # NFKC folds full-width letters
    assert normalize_answer("") == "" and normalize_answer("the") == ""


def test_exact_match_over_aliases():
    assert exact_match("the home rule league", "The Home Rule League") == 1.0
    assert exact_match("Home Rule", "The Home Rule League") == 0.0
    assert exact_match("Rob Parissi", ['Robert "Rob" Parissi', "Rob Parissi"]) == 1.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_is_squad_f1():
    assert squad_f1("Kauffman Stadium", "Kauffman Stadium") == 1.0
    # pred "Stadio Olimpico" vs gold "Stadio Olimpico in Rome, Italy": 2 common of 2 / 5 tokens ("in" is kept)
    assert squad_f1("Stadio Olimpico", "Stadio Olimpico in Rome, Italy") == pytest.approx(2 * 1 * 0.4 / 1.4)
    assert squad_f1("December 1974", ["1974", "December 1974"]) == 1.0
    assert squad_f1("Paris", "Rome") == 0.0
    # HotpotQA: yes/no only ever match themselves
    assert squad_f1("no", "yes") == 0.0 and squad_f1("yes it is", "yes") == 0.0 and squad_f1("yes", "yes") == 1.0


def test_answer_in_text_matches_whole_tokens():
    assert answer_in_text("1889", "The tower was built 1887–1889 for the fair.")
    assert answer_in_text("Eiffel Tower", "the Eiffel Tower's summit")
    assert answer_in_text(["Gustave", "Alexandre Gustave Eiffel"], "designed by Alexandre Gustave Eiffel.")
    assert answer_in_text("1,000", "about 1000 people")
    assert answer_in_text("O'Brien", "Conan OBrien hosted it")
    assert not answer_in_text("art", "martial arts")
    assert not answer_in_text("188", "built in 1889")
    assert not answer_in_text("the", "the the the")  # normalises to nothing
    assert not answer_in_text([], "anything")


def test_hotpotqa_answers_match_themselves_and_their_variants(hotpot):
    assert len(hotpot) == 500
    for row in hotpot:
        gold = row["answer"]
        assert exact_match(gold, gold) == 1.0 and squad_f1(gold, gold) == 1.0
        assert exact_match(f"  {gold.upper()}. ", gold) == 1.0  # case, whitespace, trailing punctuation
        if normalize_answer(gold):
            assert answer_in_text(gold, f"We read that {gold} was the one.")
            assert exact_match(f"the {gold}", gold) == 1.0  # a leading article is dropped
    # a prediction that adds words keeps partial credit but no exact match
    row = next(r for r in hotpot if r["answer"] == "Kauffman Stadium")
    assert exact_match("Kauffman Stadium in Kansas City", row["answer"]) == 0.0
    assert squad_f1("Kauffman Stadium in Kansas City", row["answer"]) == pytest.approx(2 * 0.4 * 1 / 1.4)
    # yes/no questions: the other polarity scores nothing
    yes_no = [r for r in hotpot if r["answer"] in ("yes", "no")]
    assert yes_no and all(squad_f1("no" if r["answer"] == "yes" else "yes", r["answer"]) == 0.0 for r in yes_no)
