"""Fixtures of the training-asset tests: a hard_queries folder of the small questions, and the resources a real
(transformers) training asset runs with on the small snapshot."""

import pytest

from tests.support import small_questions


@pytest.fixture(scope="module")
def questions_dir(tmp_path_factory):
    from pipeline.datasets.export import export_dataset
    from pipeline.synthesis.questions import hard_query_table

    out = tmp_path_factory.mktemp("questions") / "hard_queries"
    export_dataset(hard_query_table(small_questions()), out, card="test", provenance={})
    return out


@pytest.fixture()
def training_resources(small_snapshot):
    from assets.llm_resource import LLMResource
    from assets.resources import PathsResource
    from assets.simulator import SimulatorResource

    return {"llm": LLMResource(backend="transformers"),
            "simulator": SimulatorResource(snapshots_root=str(small_snapshot.path.parent)), "paths": PathsResource()}
