"""`LLMResource`: the generation backend as a Dagster resource (config in, `pipeline.llm` does the work).

The engine starts lazily on the first `generate` (a run that only hits the cache never starts one) and is
released when the run's step ends. In-process executors share one engine across a run's assets; with the
multiprocess executor each step process starts its own (vLLM on CPU: ~10-20 s).

    defs = dg.Definitions(assets=[...], resources={"llm": LLMResource(backend="openai",
                                                                      base_url=dg.EnvVar("WEBSIM_LLM_URL"))})

    @dg.asset
    def hard_queries(llm: LLMResource) -> dg.MaterializeResult:
        out = llm.generate(chats, schema=QUERY_SCHEMA)
        ...
        return dg.MaterializeResult(metadata={**llm.usage(), "model": llm.model_id()})
"""

from __future__ import annotations

import enum
import threading
from typing import Any, Optional, Sequence

import dagster as dg
from pydantic import Field, PrivateAttr

from pipeline.llm import Backend, Completion, Prompt, SamplingParams, make_backend


class LLMBackend(str, enum.Enum):
    """The generation backends; a Dagster enum, so a misspelt one (`vlm`) fails config validation up front."""

    auto = "auto"
    vllm = "vllm"
    openai = "openai"
    transformers = "transformers"


class LLMResource(dg.ConfigurableResource):
    """One model on one backend. Empty strings mean "the default": the embedded model, the data dir from
    `$WEBSIM_HOME`."""

    backend: LLMBackend = Field(default=LLMBackend.auto,
                                description="auto (the server when base_url is set, else vllm where installed, "
                                            "else transformers) | vllm | openai | transformers")
    model: str = Field(default="", description="local folder or hub name; empty: embedded SmolLM2-135M-Instruct")
    base_url: str = Field(default="", description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field(default="WEBSIM_OPENAI_API_KEY", description="env var holding the server's API key")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="vllm.LLM engine arguments")
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="backend keyword arguments: batch_size, max_concurrency, dtype, ..."
    )
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: Optional[int] = None
    stop: list[str] = Field(default_factory=list)
    max_json_retries: int = 2
    cache: bool = Field(default=True, description="persistent response cache in `<data dir>/cache`")
    data_dir: str = Field(default="", description="websim data dir; empty: `$WEBSIM_HOME` or `<repo>/.websim`")

    _backend: Optional[Backend] = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def backend_name(self) -> str:
        """The configured backend as a plain string ("auto", "vllm", ...)."""
        return LLMBackend(self.backend).value

    @property
    def started(self) -> bool:
        """Whether the backend object exists (its engine may still be lazy)."""
        return self._backend is not None

    def default_params(self, **overrides: Any) -> SamplingParams:
        """The configured sampling params, with `overrides` applied."""
        values = dict(
            max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, seed=self.seed, stop=tuple(self.stop)
        )
        values.update(overrides)
        return SamplingParams(**values)

    def get_backend(self) -> Backend:
        """The backend, built on first use (the engine itself starts on the first generation that needs it)."""
        with self._lock:
            if self._backend is None:
                options = {
                    "max_json_retries": self.max_json_retries,
                    "engine_args": dict(self.engine_args),
                    "api_key_env": self.api_key_env,
                    **self.backend_options,
                }
                self._backend = make_backend(
                    self.backend_name,
                    self.model or None,
                    base_url=self.base_url or None,
                    data_dir=self.data_dir or None,
                    cache=self.cache,
                    **_for_backend(self.backend_name, self.base_url, options),
                )
            return self._backend

    def generate(
        self,
        chats: Sequence[Prompt] | Prompt,
        params: SamplingParams | None = None,
        schema: dict[str, Any] | None = None,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> list[Completion]:
        """`Backend.generate` with this resource's default sampling params; `overrides` change single fields
        (of `params` when given, e.g. `llm.generate(chats, max_tokens=32, seed=1)`)."""
        params = params.replace(**overrides) if params else self.default_params(**overrides)
        return self.get_backend().generate(chats, params, schema, tools=tools)

    def model_id(self) -> str:
        """The model's identity (for provenance columns); builds the backend but starts no engine."""
        return self.get_backend().model_id

    def usage(self) -> dict[str, Any]:
        """Prompt/completion tokens, requests, seconds, tokens/s, cache hits/misses, retries and rejections, for
        asset metadata (all zero before the first call)."""
        if self._backend is None:
            from pipeline.llm import Usage

            return {"backend": self.backend_name, **Usage().as_dict()}
        return {"backend": self._backend.name, **self._backend.usage.as_dict()}

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None


# Options only one backend takes; with backend="auto" the others are dropped, so one config serves any machine.
_BACKEND_ONLY_OPTIONS = {
    "vllm": {"engine_args", "compact_json"},
    "openai": {"api_key", "api_key_env", "max_concurrency", "timeout_s", "connect_timeout_s", "max_retries",
               "json_mode", "extra_body"},
    "transformers": {"dtype", "device", "max_model_len", "num_threads"},
}


def _for_backend(name: str, base_url: str, options: dict[str, Any]) -> dict[str, Any]:
    from pipeline.llm import resolve_backend_name

    resolved = resolve_backend_name(name, base_url or None)
    foreign = set().union(*(keys for backend, keys in _BACKEND_ONLY_OPTIONS.items() if backend != resolved))
    return {k: v for k, v in options.items() if k not in foreign}
