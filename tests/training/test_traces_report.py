"""The second round's SFT data: report tasks' verified golds and references, train split only."""

import pytest

from tests.support import report_task_rows
from training.traces_report import report_traces, write_report_traces


def test_golds_and_passing_references_become_traces_and_the_rest_is_counted():
    synth, reorder, _ = report_task_rows()
    weak = {**synth, "task_id": "synth-weak", "reference": "Rivers are nice [C1].",
            "reference_scores": {**synth["reference_scores"], "coverage": 0.0, "citations": 0.0}}
    traces, counts = report_traces([synth, reorder, weak], min_score=0.8)
    assert sorted(t["id"] for t in traces) == ["reorder-1-gold", "synth-1-gold", "synth-1-reference",
                                               "synth-weak-gold"]
    assert counts["rejected"] == {"gold_below_min_score": 0, "gold_fragmentary": 0, "reference_missing": 0,
                                  "reference_below_min_score": 1, "reference_fragmentary": 0, "reference_is_gold": 1,
                                  "kind_over_share": 0}
    gold = next(t for t in traces if t["id"] == "reorder-1-gold")
    assert gold["messages"][:2] == reorder["prompt"] and gold["messages"][-1] == {"role": "assistant",
                                                                                    "content": "C2, C3, C1"}
    assert all(t["score"] >= 0.8 and t["split"] == "train" for t in traces)
    only_gold, _ = report_traces([synth], sources=("gold",))
    assert [t["source"] for t in only_gold] == ["gold"]


def test_an_eval_task_never_enters_sft():
    with pytest.raises(ValueError, match="not of the train split"):
        report_traces(report_task_rows())


def test_written_traces_load_as_the_sft_trainer_reads_them(tmp_path):
    from training.sft import load_traces

    traces, _ = report_traces(report_task_rows()[:2])
    write_report_traces(traces, tmp_path / "traces", {"min_score": 0.8, "report_tasks": "x"})
    ds = load_traces(tmp_path / "traces")
    assert len(ds) == 3 and ds[0]["messages"][-1]["role"] == "assistant"
    assert "report-writing" in (tmp_path / "traces" / "README.md").read_text()


def test_a_gold_with_a_sentence_no_one_would_write_is_refused():
    from training.traces_report import fragmentary_sentences

    synth = report_task_rows()[0]
    infobox = "Flag of Grenada Coat of arms Motto: Ever Conscious of God " * 6
    for bad in ("2,486,235), the largest borough in population was an independent city until 1898 [C1].",
                f"{infobox}[C1].", "See http://ico.gov.uk/for_organisations/privacy for the rules [C1]."):
        assert fragmentary_sentences(f"# T\n\n## S\n{bad}", "synthesise"), bad
    assert fragmentary_sentences(synth["reference"], "synthesise") == []
    assert fragmentary_sentences("C3, C1, C2", "reorder") == []
    broken = {**synth, "task_id": "broken", "reference": synth["reference"] + " (the dam was built by [C2]."}
    traces, counts = report_traces([broken])
    assert counts["rejected"]["reference_fragmentary"] == 1 and [t["source"] for t in traces] == ["gold"]


def test_no_kind_is_more_than_its_share_of_the_traces():
    """Reorder golds need no teacher and outnumber the rest (the demo: 70 of 82); trained on them alone the model
    answered every report task with fragment ids. With a 0.5 share: as many reorder traces as all the others."""
    synth, reorder, _ = report_task_rows()
    reorders = [{**reorder, "task_id": f"reorder-{i}"} for i in range(10)]
    rows = [synth] + reorders
    traces, counts = report_traces(rows, sources=("gold",), max_kind_share=0.5)
    assert counts["by_kind"] == {"reorder": 1, "synthesise": 1} and counts["rejected"]["kind_over_share"] == 9
    again, _ = report_traces(list(reversed(rows)), sources=("gold",), max_kind_share=0.5)
    assert {t["id"] for t in again} == {t["id"] for t in traces}  # the same ones, whatever the rows' order
    everything, counts = report_traces(rows, sources=("gold",))
    assert len(everything) == 11 and counts["rejected"]["kind_over_share"] == 0
    only_reorder, counts = report_traces(reorders, sources=("gold",), max_kind_share=0.5)
    assert len(only_reorder) == 10  # nothing to balance against: all kept
