"""`PathsResource`: where the assets write, from `$WEBSIM_HOME` (or an explicit data dir, or any env var through
Dagster's EnvVar), with `pipeline.config.data_dir()`'s default when nothing is set."""

import dagster as dg

from assets import defs
from assets.resources import PathsResource
from pipeline import config


@dg.asset
def where(paths: PathsResource) -> str:
    return str(paths.root())


def _root_in_a_run(resource: PathsResource, run_config: dict | None = None) -> str:
    result = dg.materialize([where], resources={"paths": resource}, run_config=run_config)
    return result.output_for_node("where")


def test_default_is_the_repo_data_dir(monkeypatch):
    monkeypatch.delenv("WEBSIM_HOME", raising=False)
    assert PathsResource().root() == config.REPO_ROOT.joinpath(".websim").resolve() == config.data_dir()
    assert _root_in_a_run(PathsResource()) == str(config.REPO_ROOT / ".websim")


def test_websim_home_is_honoured_at_launch(monkeypatch, tmp_path):
    monkeypatch.setenv("WEBSIM_HOME", str(tmp_path / "home"))
    paths = PathsResource()
    assert paths.root() == tmp_path / "home"
    assert _root_in_a_run(paths) == str(tmp_path / "home")
    assert paths.dataset_dir("sft_traces") == tmp_path / "home" / "datasets" / "sft_traces"
    assert paths.dataset_dir("sft_traces", str(tmp_path / "mine")) == tmp_path / "mine"
    assert paths.models_dir("grpo") == tmp_path / "home" / "models" / "grpo"
    assert paths.eval_dir() == tmp_path / "home" / "eval" and paths.eval_dir(str(tmp_path)) == tmp_path


def test_an_explicit_data_dir_or_another_env_var_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("WEBSIM_HOME", str(tmp_path / "home"))
    assert _root_in_a_run(PathsResource(data_dir=str(tmp_path / "explicit"))) == str(tmp_path / "explicit")
    monkeypatch.setenv("MY_WEBSIM_DATA", str(tmp_path / "from_env"))
    assert _root_in_a_run(PathsResource(data_dir=dg.EnvVar("MY_WEBSIM_DATA"))) == str(tmp_path / "from_env")
    run_config = {"resources": {"paths": {"config": {"data_dir": {"env": "MY_WEBSIM_DATA"}}}}}
    assert _root_in_a_run(PathsResource(), run_config) == str(tmp_path / "from_env")


def test_the_definitions_provide_it_to_the_assets_that_write():
    assert isinstance(defs.resources["paths"], PathsResource)
    graph = defs.resolve_asset_graph()
    for name in ("report_tasks", "navigation_tasks", "sft_traces", "sft_model", "grpo_model", "evaluation"):
        assets_def = graph.get(dg.AssetKey(name)).assets_def
        assert "paths" in assets_def.required_resource_keys, name
