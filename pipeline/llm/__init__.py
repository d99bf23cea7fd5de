"""LLM generation for websim: one interface over vLLM (offline engine), OpenAI-compatible servers and
transformers, with a persistent response cache and structured (JSON-schema) output.

    from pipeline.llm import make_backend, SamplingParams
    llm = make_backend()                              # "auto": vLLM if installed, else transformers
    out = llm.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_tokens=32))
    out[0].text, out[0].completion_tokens, llm.usage.as_dict()

Importing this package is cheap (no torch / vllm / transformers until an engine starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (
    Backend,
    Chat,
    Completion,
    LLMError,
    LLMUnavailableError,
    Message,
    Prompt,
    Request,
    SamplingParams,
    Usage,
)

from .model_setup import default_data_dir, ensure_embedded_model

BACKENDS = ("auto", "vllm", "openai", "transformers")

__all__ = [
    "BACKENDS",
    "Backend",
    "Chat",
    "Completion",
    "LLMError",
    "LLMUnavailableError",
    "Message",
    "Prompt",
    "Request",
    "SamplingParams",
    "Usage",
    "default_data_dir",
    "ensure_embedded_model",
    "make_backend",
    "resolve_backend_name",
]


def resolve_backend_name(backend: str = "auto", base_url: str | None = None) -> str:
    """"auto" means: the server when a `base_url` is given, else vLLM where it is installed, else transformers."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; one of {BACKENDS}")
    if backend != "auto":
        return backend
    if base_url:
        return "openai"
    from .vllm_backend import vllm_available

    return "vllm" if vllm_available() else "transformers"


def make_backend(
    backend: str = "auto",
    model: str | None = None,
    *,
    base_url: str | None = None,
    data_dir: str | Path | None = None,
    cache: bool | str | Path = True,
    **kwargs: Any,
) -> Backend:
    """A backend for `model` (None: the embedded SmolLM2-135M-Instruct).

    Args:
        backend: "auto" | "vllm" | "openai" | "transformers".
        base_url: the OpenAI-compatible server (required for "openai").
        data_dir: websim's data dir (default `$WEBSIM_HOME` or `<repo>/.websim`): models, caches.
        cache: True for `<data dir>/cache/llm_responses.sqlite`, a path for another file, False for none.
        kwargs: passed to the backend class (e.g. `engine_args=` for vLLM, `max_concurrency=` for openai,
            `batch_size=`, `max_json_retries=`, `model_id=`).
    """
    from .cache import ResponseCache

    data_dir = Path(data_dir or default_data_dir())
    if cache is True:
        response_cache = ResponseCache.in_data_dir(data_dir)
    elif cache:
        response_cache = ResponseCache(cache)
    else:
        response_cache = None
    name = resolve_backend_name(backend, base_url)
    if name == "openai":
        if not base_url:
            raise ValueError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(base_url, model, cache=response_cache, **kwargs)
    if name == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model, data_dir=data_dir, cache=response_cache, **kwargs)
    from .transformers_backend import TransformersBackend

    return TransformersBackend(model, data_dir=data_dir, cache=response_cache, **kwargs)
