"""What the Dagster UI shows: descriptions keep their placeholders through its markdown renderer, plots are small
enough to render inline on an asset page, numbers are numeric metadata (so Dagster plots them)."""

import re

from assets import defs

# Markdown (and so Dagster's UI) reads `<data dir>` as an HTML tag and drops it ("in /snapshots//"): a placeholder
# must sit in a code span.
_TAG = re.compile(r"<[A-Za-z][^<>]*>")


def _outside_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", text or "")


def _descriptions():
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    for key in graph.get_all_asset_keys():
        yield f"asset {key.to_user_string()}", graph.get(key).description
    for check_key in graph.asset_check_keys:
        yield f"check {check_key.name}", graph.get(check_key).description
    for job in repo.get_all_jobs():
        yield f"job {job.name}", job.description
    for sensor in repo.sensor_defs:
        yield f"sensor {sensor.name}", sensor.description
    for schedule in repo.schedule_defs:
        yield f"schedule {schedule.name}", schedule.description


def test_descriptions_keep_their_placeholders():
    described = dict(_descriptions())
    assert "asset snapshot" in described and "`<data dir>/snapshots/<id>/`" in described["asset snapshot"]
    bad = {name: _TAG.findall(_outside_code(text)) for name, text in described.items()
           if _TAG.search(_outside_code(text))}
    assert not bad, f"placeholders outside a code span (the UI's markdown drops them): {bad}"


def test_the_tag_rule_catches_a_bare_placeholder():
    assert _TAG.findall(_outside_code("in <data dir>/snapshots/<id>/")) == ["<data dir>", "<id>"]
    assert not _TAG.search(_outside_code("in `<data dir>/snapshots/<id>/`, a < b > c"))


def test_resource_field_descriptions_keep_their_placeholders():
    from assets.llm_resource import LLMResource

    for name, field in LLMResource.model_fields.items():
        assert not _TAG.search(_outside_code(field.description or "")), name


def _svg(md: str):
    import xml.etree.ElementTree as ET
    from urllib.parse import unquote

    uri = re.search(r"\((data:image/svg\+xml,[^)\s]*)\)", md).group(1)
    return ET.fromstring(unquote(uri.split(",", 1)[1]))


def test_inline_plots_fit_the_ui_limit_and_are_valid_svg():
    import random

    from assets.plots import INLINE_MD_LIMIT, inline_bars, inline_curves, legend

    rng = random.Random(0)
    for n in (1, 3, 24, 200, 5000):
        md = inline_bars([rng.random() * 100 for _ in range(n)], "bars", "a caption").value
        assert len(md) < INLINE_MD_LIMIT and md.endswith("a caption")
        assert _svg(md).tag.endswith("svg")
    series = {"loss": [1 / (i + 1) for i in range(600)], "reward": [i / 600 for i in range(600)], "kl": [0.01] * 600}
    md = inline_curves(series, "curves", legend(series)).value
    assert len(md) < INLINE_MD_LIMIT
    paths = [e for e in _svg(md).iter() if e.tag.endswith("path")]
    assert len(paths) == 3 and all(len(p.get("d").split("L")) >= 10 for p in paths)
    assert "blue: loss 1 -> 0.00167 (600 points)" in legend(series)


def test_bars_follow_the_values():
    from assets.plots import HEIGHT, inline_bars

    d = next(e for e in _svg(inline_bars([0, 10, 5], "b").value).iter() if e.tag.endswith("path")).get("d")
    tops = [int(v.split("H")[0]) for v in d.split("V")[1:-1]]
    assert tops[0] == HEIGHT and tops[1] < tops[2] < HEIGHT  # empty bar, tallest, half


def test_numbers_are_numeric_metadata():
    import dagster as dg

    from assets.plots import numeric

    out = numeric({"n": 3, "rate": 0.5, "ok": True, "by": {"a": 1}, "name": "x"})
    assert isinstance(out["n"], dg.IntMetadataValue) and isinstance(out["rate"], dg.FloatMetadataValue)
    assert isinstance(out["ok"], dg.BoolMetadataValue) and isinstance(out["by"], dg.JsonMetadataValue)
    assert out["name"] == "x"


def test_asset_plots_and_headline_numbers():
    from assets.questions import _headline_numbers, _outcomes_plot
    from assets.report_tasks import chunk_tokens_plot

    stats = {"candidates": 185, "verified": 134, "rejected": 51, "rejections": {"duplicate": 2, "answer_in_snippets": 20},
             "judge": {"agreement": 0.69}, "bm25": {"answer_in_top10": 0.02, "evidence_recall_at_5": 0.44}}
    numbers = _headline_numbers(stats, {"train": 95, "eval": 39})
    assert numbers == {"candidates": 185, "rejected": 51, "train_rows": 95, "eval_rows": 39, "judge_agreement": 0.69,
                       "bm25_answer_in_top10": 0.02, "bm25_evidence_recall_at_5": 0.44}
    md = _outcomes_plot(stats).value
    assert md.endswith("verified 134, answer_in_snippets 20, duplicate 2")
    md = chunk_tokens_plot([10, 100, 190, 192, 500], 192).value
    assert "5 chunks, 0 to 192 tokens in 24 bins, median 190" in md and len(md) < 1000
