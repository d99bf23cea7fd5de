"""Executors: where a run's steps execute. A property of the deployment, not of the code.

`executor_from_env()` reads `WEBSIM_EXECUTOR` when the code location loads (the code server runs inside the
deployment it serves) and returns one of Dagster's own executors; websim adds no scheduler of its own:

| `WEBSIM_EXECUTOR` | executor | where steps run |
|---|---|---|
| unset / `multiprocess` | `dagster.multiprocess_executor` | one process per step on this machine (run config may set `max_concurrent`) |
| `in_process` | `dagster.in_process_executor` | inside the run's process (debugging, one engine shared by all steps) |
| `docker` | `dagster_docker.docker_executor` | one container per step (`WEBSIM_DOCKER_IMAGE`, `WEBSIM_DOCKER_NETWORK`) |
| `k8s` | `dagster_k8s.k8s_job_executor` | one Kubernetes Job per step (`WEBSIM_K8S_NAMESPACE`, `WEBSIM_K8S_DATA_PVC`) |
| `celery` | `dagster_celery.celery_executor` | Celery workers (`WEBSIM_CELERY_BROKER`, `WEBSIM_CELERY_BACKEND`) |
| `celery_k8s` | `dagster_celery_k8s.celery_k8s_job_executor` | Celery queues feeding Kubernetes Jobs |

The cluster executors come from the optional extra `cluster` and are imported only when chosen. Every step,
wherever it runs, gets the `WEBSIM_*` settings of the code location (`FORWARDED_ENV`) and, on docker and k8s,
the data dir mounted at the same path, so the store, snapshots and caches are one shared folder. Each ingest
partition writes files of its own there (`store.parts/`), so ingest steps run side by side under every executor;
only writers of the same partition queue (its lock file). See docs/scale-out.md.
"""

import os

import dagster as dg

EXECUTORS = ("in_process", "multiprocess", "docker", "k8s", "celery", "celery_k8s")
# What a step elsewhere needs to find the data and the model server (passed on when set).
FORWARDED_ENV = ("WEBSIM_HOME", "WEBSIM_STORE", "WEBSIM_WARC_DIRS", "WEBSIM_CLICKSTREAM_DIRS", "WEBSIM_SAMPLE_DATA",
                 "WEBSIM_OPENAI_API_KEY", "HF_HUB_OFFLINE", "HF_HOME")
_PACKAGES = {"docker": "dagster-docker", "k8s": "dagster-k8s", "celery": "dagster-celery",
             "celery_k8s": "dagster-celery-k8s"}


def executor_name(name: str | None = None) -> str:
    """The executor's name: `name`, else `$WEBSIM_EXECUTOR`, else "multiprocess" (`-` and case ignored)."""
    chosen = (name or os.environ.get("WEBSIM_EXECUTOR") or "multiprocess").strip().lower().replace("-", "_")
    if chosen not in EXECUTORS:
        raise ValueError(f"WEBSIM_EXECUTOR={chosen!r} is not an executor websim knows; one of {', '.join(EXECUTORS)}")
    return chosen


def executor_from_env(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor for `Definitions(executor=...)`: see the table in this module's docstring."""
    chosen = executor_name(name)
    if chosen == "in_process":
        return dg.in_process_executor
    if chosen == "multiprocess":
        return dg.multiprocess_executor
    try:
        return _CLUSTER[chosen]()
    except ImportError as exc:
        raise ImportError(f"WEBSIM_EXECUTOR={chosen} needs {_PACKAGES[chosen]}: pip install 'websim[cluster]' "
                          f"({exc})") from exc


def _env_vars() -> list[str]:
    return [name for name in FORWARDED_ENV if os.environ.get(name)]


def _data_dir() -> str:
    from pipeline import config

    return str(config.data_dir())


def _docker() -> dg.ExecutorDefinition:
    from dagster_docker import docker_executor

    config: dict = {"env_vars": _env_vars(),
                    "container_kwargs": {"volumes": [f"{_data_dir()}:{_data_dir()}:rw"]}}
    if os.environ.get("WEBSIM_DOCKER_IMAGE"):  # else the image the run launcher started the run in
        config["image"] = os.environ["WEBSIM_DOCKER_IMAGE"]
    if os.environ.get("WEBSIM_DOCKER_NETWORK"):
        config["network"] = os.environ["WEBSIM_DOCKER_NETWORK"]
    return docker_executor.configured(config, name="websim_docker")


def _k8s_config() -> dict:
    config: dict = {"env_vars": _env_vars()}
    if os.environ.get("WEBSIM_K8S_NAMESPACE"):
        config["job_namespace"] = os.environ["WEBSIM_K8S_NAMESPACE"]
    if os.environ.get("WEBSIM_K8S_DATA_PVC"):  # a ReadWriteMany claim holding the data dir
        config["volumes"] = [{"name": "websim-data",
                              "persistentVolumeClaim": {"claimName": os.environ["WEBSIM_K8S_DATA_PVC"]}}]
        config["volume_mounts"] = [{"name": "websim-data", "mountPath": _data_dir()}]
    return config


def _k8s() -> dg.ExecutorDefinition:
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(_k8s_config(), name="websim_k8s")


def _celery_config() -> dict:
    return {key: os.environ[var] for key, var in (("broker", "WEBSIM_CELERY_BROKER"),
                                                 ("backend", "WEBSIM_CELERY_BACKEND")) if os.environ.get(var)}


def _celery() -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor

    return celery_executor.configured(_celery_config(), name="websim_celery")


def _celery_k8s() -> dg.ExecutorDefinition:
    from dagster_celery_k8s import celery_k8s_job_executor

    return celery_k8s_job_executor.configured({**_celery_config(), **_k8s_config()}, name="websim_celery_k8s")


_CLUSTER = {"docker": _docker, "k8s": _k8s, "celery": _celery, "celery_k8s": _celery_k8s}
