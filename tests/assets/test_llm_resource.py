"""LLMResource: built from config, lazy (no engine before the first call), usage figures for asset metadata."""

import dagster as dg
import pytest

from assets.llm_resource import LLMResource
from pipeline.llm.model_setup import ensure_embedded_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return ensure_embedded_model(tmp_path_factory.getbasetemp() / "websim_home")


def test_builds_from_run_config_without_starting_anything():
    context = dg.build_init_resource_context(
        config={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "max_tokens": 12, "engine_args": {"a": 1}}
    )
    with LLMResource.from_resource_context_cm(context) as resource:
        assert resource.backend == "openai" and resource.max_tokens == 12 and resource.engine_args == {"a": 1}
        assert not resource.started  # nothing is contacted until the first generate
        assert resource.usage()["requests"] == 0
        assert resource.default_params(temperature=0.5).temperature == 0.5


def test_env_var_config_resolves_at_launch(monkeypatch):
    resource = LLMResource(backend="openai", base_url=dg.EnvVar("WEBSIM_TEST_LLM_URL"))
    monkeypatch.setenv("WEBSIM_TEST_LLM_URL", "http://127.0.0.1:8011/v1")  # set after the definition: read at launch
    with resource.process_config_and_initialize_cm() as initialised:
        assert initialised.base_url == "http://127.0.0.1:8011/v1" and not initialised.started


def test_lazy_engine_generation_usage_and_cache(model_dir, tmp_path):
    resource = LLMResource(
        backend="transformers",
        model=str(model_dir),
        data_dir=str(tmp_path),
        max_tokens=8,
        backend_options={"num_threads": 1},
    )
    assert not resource.started
    assert resource.model_id().startswith("SmolLM2-135M-Instruct@")  # builds the backend, loads no model
    assert resource.get_backend()._model is None

    out = resource.generate([[{"role": "user", "content": "What is the capital of France?"}]])
    assert out[0].ok and out[0].completion_tokens <= 8
    usage = resource.usage()
    assert usage["backend"] == "transformers" and usage["requests"] == 1
    assert usage["completion_tokens"] == out[0].completion_tokens and usage["prompt_tokens"] > 0
    assert usage["seconds"] > 0 and usage["tokens_per_s"] > 0
    assert (usage["cache_hits"], usage["cache_misses"]) == (0, 1)

    resource.generate([[{"role": "user", "content": "What is the capital of France?"}]])
    assert resource.usage()["cache_hits"] == 1
    assert (tmp_path / "cache" / "llm_responses.sqlite").exists()
    resource.close()
    assert not resource.started


def test_materialize_an_asset_that_generates(model_dir, tmp_path):
    @dg.asset
    def greetings(llm: LLMResource) -> dg.MaterializeResult:
        out = llm.generate(["Hello, my name is"], max_tokens=6)
        return dg.MaterializeResult(metadata={**llm.usage(), "model": llm.model_id(), "text": out[0].text})

    llm = LLMResource(backend="transformers", model=str(model_dir), data_dir=str(tmp_path), cache=False,
                      backend_options={"num_threads": 1})
    result = dg.materialize([greetings], resources={"llm": llm})
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["requests"].value == 1 and metadata["completion_tokens"].value > 0
    assert metadata["model"].value.startswith("SmolLM2-135M-Instruct@")
