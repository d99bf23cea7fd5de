"""The project's definitions load, and every job validates, with each executor `WEBSIM_EXECUTOR` can choose; a WARC
partition really runs under the multiprocess executor (its step in another process). The docker / k8s / celery
cases skip, with the reason, where the `cluster` extra is not installed; in_process and multiprocess always run."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets import defs
from assets.executors import _PACKAGES, EXECUTORS, executor_from_env, executor_name
from tests.support import sample, with_executor

REPO = Path(__file__).resolve().parents[2]
EXPECTED_NAME = {"in_process": "in_process", "multiprocess": "multiprocess", "docker": "websim_docker",
                 "k8s": "websim_k8s", "celery": "websim_celery", "celery_k8s": "websim_celery_k8s"}
SMALL_WARC = "cc-main-2024-22-whirlwind.warc.gz"


def _skip_unless_installed(name: str) -> None:
    package = _PACKAGES.get(name)
    if package:
        try:
            importlib.import_module(package.replace("-", "_"))
        except ImportError as exc:
            pytest.skip(f"{package} cannot be imported ({exc}); pip install 'websim[cluster]'")


@pytest.mark.parametrize("name", EXECUTORS)
def test_definitions_load_and_jobs_validate_with_each_executor(name, monkeypatch, tmp_path):
    _skip_unless_installed(name)
    monkeypatch.setenv("WEBSIM_EXECUTOR", name.replace("_", "-").upper())  # spelling is forgiven
    monkeypatch.setenv("WEBSIM_DOCKER_IMAGE", "registry.example/websim:1")
    monkeypatch.setenv("WEBSIM_K8S_NAMESPACE", "websim")
    monkeypatch.setenv("WEBSIM_K8S_DATA_PVC", "websim-data")
    monkeypatch.setenv("WEBSIM_CELERY_BROKER", "redis://redis:6379/0")
    monkeypatch.setenv("WEBSIM_STORE", str(tmp_path / "store.duckdb"))
    monkeypatch.setenv("WEBSIM_HOME", str(tmp_path / "home"))
    executor = executor_from_env()
    assert executor.name == EXPECTED_NAME[name]
    full = with_executor(defs, executor)
    dg.Definitions.validate_loadable(full)
    jobs = [j for j in full.resolve_all_job_defs() if not j.name.startswith("__")]
    assert {"warc_ingest", "store_build", "synthesis"} <= {j.name for j in jobs}
    for job in jobs:
        assert job.executor_def is executor, job.name
        # the run config a launch would use, with the executor's fixed config, passes Dagster's validation
        dg.validate_run_config(job)
    if name in _PACKAGES:  # what websim fixes: steps elsewhere get the same settings and the same data dir
        fixed = executor.config_schema.resolve_config({})
        assert fixed.success, fixed.errors
        config = fixed.value["config"]
        if name != "celery":
            assert "WEBSIM_STORE" in config["env_vars"] and "WEBSIM_HOME" in config["env_vars"]
        if name == "docker":
            assert config["image"] == "registry.example/websim:1"
            assert config["container_kwargs"]["volumes"] == [f"{tmp_path / 'home'}:{tmp_path / 'home'}:rw"]
        if name in ("k8s", "celery_k8s"):
            assert config["job_namespace"] == "websim"
            assert config["volumes"][0]["persistentVolumeClaim"]["claimName"] == "websim-data"
            assert config["volume_mounts"][0]["mountPath"] == str(tmp_path / "home")
        if name in ("celery", "celery_k8s"):
            assert config["broker"] == "redis://redis:6379/0"


def test_unknown_executor_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("WEBSIM_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="slurm.*in_process, multiprocess, docker, k8s, celery, celery_k8s"):
        executor_from_env()
    monkeypatch.delenv("WEBSIM_EXECUTOR")
    assert executor_name() == "multiprocess"


def test_the_code_location_takes_its_executor_from_the_environment():
    """`assets.defs` (what `dagster dev` and `websim` load) uses `executor_from_env()`."""
    script = "from assets import defs; print(defs.resolve_job_def('warc_ingest').executor_def.name)"
    for name in ("in_process", "multiprocess"):
        out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "WEBSIM_EXECUTOR": name})
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == name


def warc_ingest_multiprocess() -> dg.JobDefinition:
    """Module level, so that `dg.reconstructable` can rebuild the job in each step process."""
    return with_executor(defs, executor_from_env("multiprocess")).resolve_job_def("warc_ingest")


def test_a_warc_partition_runs_under_the_multiprocess_executor(tmp_path, monkeypatch):
    from pipeline.ingest.store import Store

    folder = tmp_path / "warc"
    folder.mkdir()
    (folder / SMALL_WARC).symlink_to(sample("warc", SMALL_WARC))
    monkeypatch.setenv("WEBSIM_WARC_DIRS", str(folder))
    monkeypatch.setenv("WEBSIM_STORE", str(tmp_path / "store.duckdb"))
    monkeypatch.chdir(REPO)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions("warc_files", [SMALL_WARC])
        with dg.execute_job(dg.reconstructable(warc_ingest_multiprocess), instance=instance,
                            tags={"dagster/partition": SMALL_WARC}) as result:
            assert result.success
            step_pids = {e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
            engine = [e.message for e in result.all_events if e.event_type_value == "ENGINE_EVENT"]
    assert step_pids and os.getpid() not in step_pids  # the step ran in a child process
    assert any("multiprocess" in m.lower() for m in engine), engine[:5]
    counts = Store(tmp_path / "store.duckdb").counts()
    assert counts["warc_pages"] > 0
