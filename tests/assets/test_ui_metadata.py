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
