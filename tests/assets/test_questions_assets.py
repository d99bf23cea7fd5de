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
    """question -> gold answer, read from the candidates file the run wrote."""

    def get(self, question, default=None):
        _, candidates = q.read_jsonl(q.work_dir() / "candidate_questions.jsonl")
        return next((c["answer"] for c in candidates if c["draft"] == question), default)


@pytest.fixture()
def resources(wikispeedia_snapshot):  # noqa: F811
    return {"simulator": SimulatorResource(snapshots_root=str(wikispeedia_snapshot.path.parent)),
            "llm": ScriptedLLM()}


RUN_CONFIG = {"ops": {"evidence_chains": {"config": {"count": 10, "seed": 5}},
                      "hard_queries": {"config": {"top_k": 10}}}}


def test_synthesis_assets_and_checks(resources):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=instance, run_config=RUN_CONFIG)
    assert result.success
    chains_md = result.asset_materializations_for_node("evidence_chains")[0].metadata
    assert chains_md["chains"].value == 10 and sum(chains_md["hops"].value.values()) == 10
    md = result.asset_materializations_for_node("hard_queries")[0].metadata
    assert md["candidates"].value == 10
    assert md["verified"].value + sum(md["rejections"].value.values()) == 10
    assert md["verified"].value >= 1  # a perfect copier with a knowing judge gets some drafts through
    assert md["summary"].value.startswith("![hard queries](data:image/png;base64,")
    assert md["tokens_per_verified"].value > 0 and md["llm_usage"].value["requests"] > 0
    rows = q.read_dataset_rows(md["path"].value)
    assert len(rows) == md["verified"].value
    assert all(r["snapshot_id"] and r["model"] == "scripted" and r["prompt_version"] == q.PROMPT_VERSION for r in rows)
    rejected = q.read_dataset_rows(md["rejected_path"].value)
    assert len(rejected) == 10 - len(rows) and all(r["reason"] in q.REJECTION_REASONS for r in rejected)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"evidence_chains_contracts", *q.CHECKS}
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items() if not c.passed}


def test_a_rerun_is_served_from_the_response_cache(resources):
    llm = resources["llm"]
    assert dg.materialize(ASSETS, resources=resources, run_config=RUN_CONFIG).success
    calls = llm.get_backend().calls
    first = q.read_dataset_rows(q.datasets_dir() / "hard_queries")
    assert dg.materialize(ASSETS, resources=resources, run_config=RUN_CONFIG).success
    assert llm.get_backend().calls == calls  # same chains, prompts and params: nothing generated twice
    assert q.read_dataset_rows(q.datasets_dir() / "hard_queries") == first


def test_definitions_load_with_the_synthesis_objects(resources):
    defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, resources=resources)
    dg.Definitions.validate_loadable(defs)
    for a in ASSETS:
        assert defs.resolve_assets_def(a.key).group_names_by_key[a.key] == "synthesis"
