"""The synthesis assets `evidence_chains` -> `candidate_questions` -> `hard_queries` and their checks, on the
Wikispeedia snapshot with a scripted model (the model-running end-to-end test is in tests/pipeline)."""

import dagster as dg
import pytest

from assets.llm_resource import LLMResource
from assets.questions import (
    candidate_questions,
    evidence_chains,
    evidence_chains_contracts,
    hard_queries,
    hard_queries_contracts,
)
from assets.resources import PathsResource
from assets.simulator import SimulatorResource
from pipeline.synthesis import questions as q
from tests.support import ScriptedBackend

ASSETS = [evidence_chains, candidate_questions, hard_queries]
CHECKS = [evidence_chains_contracts, hard_queries_contracts]


class ScriptedLLM(LLMResource):
    """LLMResource whose backend is the scripted copier (its judge knows every gold answer), with a cache."""

    def get_backend(self):
        if self._backend is None:
            from pipeline.llm.cache import ResponseCache

            backend = ScriptedBackend(cache=ResponseCache(q.work_dir() / "test_cache.sqlite"))
            backend.judge_answers = _JudgeKnowsAll()
            self._backend = backend
        return self._backend

    def teardown_after_execution(self, context) -> None:  # keep the backend (and its call count) across runs
        pass


class _JudgeKnowsAll(dict):
    """question -> gold answer, read from the candidates files the runs wrote (one folder per snapshot)."""

    def get(self, question, default=None):
        for path in q.work_dir().glob("*/candidate_questions.jsonl"):
            _, candidates = q.read_jsonl(path)
            found = next((c["answer"] for c in candidates if c["question"] == question), None)
            if found is not None:
                return found
        return default


@pytest.fixture()
def resources(wikispeedia_snapshot):  # noqa: F811
    return {"simulator": SimulatorResource(snapshots_root=str(wikispeedia_snapshot.path.parent)),
            "llm": ScriptedLLM(), "paths": PathsResource()}


RUN_CONFIG = {"ops": {"evidence_chains": {"config": {"count": 16, "seed": 5}},
                      "candidate_questions": {"config": {"samples": 1}},
                      "hard_queries": {"config": {"top_k": 10}}}}


def test_synthesis_assets_and_checks(resources):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=instance, run_config=RUN_CONFIG)
    assert result.success
    seeds_md = result.asset_materializations_for_node("evidence_chains")[0].metadata
    n = seeds_md["dagster/row_count"].value
    assert n >= 8 and sum(seeds_md["families"].value.values()) == n
    assert f"/{seeds_md['snapshot_id'].value}/" in seeds_md["path"].value  # work files scoped to the snapshot
    cands_md = result.asset_materializations_for_node("candidate_questions")[0].metadata
    assert cands_md["rewrites_kept"].value == n  # the scripted rewrite keeps every clue: it passes
    md = result.asset_materializations_for_node("hard_queries")[0].metadata
    assert md["verified"].value + sum(md["rejections"].value.values()) == n
    assert md["verified"].value >= 4
    assert md["judge"].value["gated"] and md["judge"].value["agreement"] > 0.8  # a knowing judge reads
    assert md["summary"].value.startswith("![hard queries](data:image/png;base64,")
    rows = q.read_dataset_rows(md["path"].value)
    assert len(rows) == md["verified"].value
    assert all(r["snapshot_id"] and r["model"] == "scripted" and r["prompt_version"] == q.PROMPT_VERSION
               and r["writer"] == "scripted" and r["answer_candidates"] == 1 for r in rows)
    rejected = q.read_dataset_rows(md["rejected_path"].value)
    assert len(rejected) == n - len(rows) and all(r["reason"] in q.REJECTION_REASONS for r in rejected)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"evidence_chains_contracts", *q.CHECKS}
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items() if not c.passed}


def test_a_rerun_is_served_from_the_response_cache(resources):
    llm = resources["llm"]
    assert dg.materialize(ASSETS, resources=resources, run_config=RUN_CONFIG).success
    calls = llm.get_backend().calls
    first = q.read_dataset_rows(q.datasets_dir() / "hard_queries")
    assert dg.materialize(ASSETS, resources=resources, run_config=RUN_CONFIG).success
    assert llm.get_backend().calls == calls  # same seeds, prompts and params: nothing generated twice
    assert q.read_dataset_rows(q.datasets_dir() / "hard_queries") == first


def test_definitions_load_with_the_synthesis_objects(resources):
    defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, resources=resources)
    dg.Definitions.validate_loadable(defs)
    for a in ASSETS:
        assert defs.resolve_assets_def(a.key).group_names_by_key[a.key] == "synthesis"
