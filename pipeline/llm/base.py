"""The one generation interface every backend shares: requests in, completions out.

`Backend.generate(chats, params, schema=None)` owns everything that does not depend on the engine: normalising
the inputs, the response cache, chunking (so a crash loses at most the batch in flight), structured-output
parsing with bounded re-asks, isolating an item that makes the engine raise, and usage counters. A backend
implements only `_run(requests) -> list[list[Completion]]`: one engine call over a list of requests.

Nothing here imports torch, vllm or transformers: `import pipeline.llm` stays fast.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence, Union

if TYPE_CHECKING:
    from .cache import ResponseCache

logger = logging.getLogger(__name__)

Message = dict[str, Any]
Chat = list[Message]
Prompt = Union[str, Chat]
"""A plain string is a raw completion prompt (no chat template); a list of OpenAI-style messages is a chat."""


class LLMError(RuntimeError):
    """A generation call could not be served at all (as opposed to one bad item, which becomes a Completion)."""


class LLMUnavailableError(LLMError):
    """The engine or server cannot be reached or started; the message names where it was looked for."""


@dataclass(frozen=True)
class SamplingParams:
    """Backend-independent sampling parameters (the subset vLLM, OpenAI servers and `generate` all honour).

    `temperature=0` is greedy. `stop` strings end a completion and are not part of its text. `n` completions
    per prompt come back consecutively (prompt-major) from `generate`.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1

    def __post_init__(self) -> None:
        # Accept a list or a single string for convenience; keep a tuple so the dataclass stays hashable.
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        object.__setattr__(self, "stop", tuple(stop or ()))
        if self.max_tokens < 1 or self.n < 1:
            raise ValueError(f"max_tokens and n must be >= 1, got {self.max_tokens}, {self.n}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def deterministic(self) -> bool:
        """Greedy or explicitly seeded: the same request gives the same text, so its answer may be cached."""
        return self.greedy or self.seed is not None

    def replace(self, **changes: Any) -> "SamplingParams":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "stop": list(self.stop)}


@dataclass
class Completion:
    """One generated answer.

    `finish_reason` is "stop" (end of turn or a stop string), "length" (max_tokens) or "error". For schema
    calls `parsed` holds the validated object, or `error` says why there is none: "invalid_json" (unparseable
    after every re-ask), "schema_violation" (JSON, but not of the schema); otherwise `error` names a backend
    failure of this item alone ("backend_error: ..."). `text` always keeps the raw output.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    parsed: Any = None
    error: str | None = None
    error_detail: str | None = None
    cached: bool = False
    attempts: int = 1
    repaired: bool = False  # the parsed value needed json-repair (see pipeline.llm.structured)
    prompt_index: int = 0
    sample_index: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Request:
    """One prompt as a backend sees it: what to render, how to sample, and the schema to constrain to."""

    prompt: Prompt
    params: SamplingParams
    schema: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] | None = None

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.prompt, str)


@dataclass
class Usage:
    """What a backend has done since it was made; `as_dict()` is shaped for Dagster asset metadata."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    json_repaired: int = 0
    rejections: Counter = field(default_factory=Counter)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "requests_per_s": round(self.requests_per_s, 3),
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "retries": self.retries,
            "json_repaired": self.json_repaired,
            "rejections": dict(self.rejections),
        }


def normalize_prompt(prompt: Any) -> Prompt:
    """A string stays a raw prompt; a single message dict becomes a one-message chat; messages get plain dicts.

    Message content given as OpenAI text parts ([{"type": "text", "text": ...}]) is joined to one string so
    that equivalent chats render, and hash, the same on every backend.
    """
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        prompt = [prompt]
    chat: Chat = []
    for message in prompt:
        message = dict(message)
        if "role" not in message:
            raise ValueError(f"chat message without a role: {message!r}")
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = "".join(
                part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
            )
        elif content is None and message["role"] != "assistant":
            message["content"] = ""
        chat.append(message)
    if not chat:
        raise ValueError("empty chat")
    return chat


class Backend(ABC):
    """One model on one engine. Subclasses implement `_run`; everything else is shared.

    Args:
        model_id: a stable identity of the model for the cache key (a fingerprint for local folders).
        cache: a `ResponseCache`, or None for no caching.
        batch_size: requests per engine call; the cache is written after each call, so this bounds what a
            crash can lose. Also what one-by-one benchmarking sets to 1.
        max_json_retries: re-asks of an item whose output is not valid JSON of the schema.
        cache_nondeterministic: also cache sampled requests without a seed (off: such a request is a fresh
            draw every time, and replaying it from a cache would silently remove the randomness).
    """

    name: str = "base"
    # Whether the engine constrains decoding to a schema itself (grammar); otherwise the schema is only checked.
    constrains_json: bool = False

    def __init__(
        self,
        *,
        model_id: str,
        cache: "ResponseCache | None" = None,
        batch_size: int = 256,
        max_json_retries: int = 2,
        cache_nondeterministic: bool = False,
    ) -> None:
        self.model_id = model_id
        self.cache = cache
        self.batch_size = max(1, int(batch_size))
        self.max_json_retries = max(0, int(max_json_retries))
        self.cache_nondeterministic = cache_nondeterministic
        self.usage = Usage()
        self._lock = threading.RLock()

    # ---- what a backend implements -------------------------------------------------------------------------

    @abstractmethod
    def _run(self, requests: list[Request]) -> list[list[Completion]]:
        """Generate for every request in one engine call; `params.n` completions per request, in order.

        Raise `LLMUnavailableError` when the engine cannot serve anything; any other exception makes the caller
        retry the requests one by one so that the one that raised is isolated.
        """

    def start(self) -> None:
        """Start the engine now (otherwise it starts on the first call)."""

    def close(self) -> None:
        """Release the engine; the backend restarts it if used again."""

    # ---- the public call ----------------------------------------------------------------------------------

    def generate(
        self,
        chats: Sequence[Prompt] | Prompt,
        params: SamplingParams | None = None,
        schema: dict[str, Any] | None = None,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> list[Completion]:
        """Generate for a batch of chats (lists of messages) or raw prompts (strings).

        Returns `len(chats) * params.n` completions, prompt-major. With `schema`, each completion carries the
        validated object in `parsed`, or `error` = "invalid_json" / "schema_violation" after
        `max_json_retries` re-asks; one bad item never fails the batch. `tools` (OpenAI function specs) are
        rendered by the chat template.
        """
        from .structured import StructuredGenerator

        params = params or SamplingParams()
        if isinstance(chats, str) or (chats and isinstance(chats[0], dict)):
            chats = [chats]  # a single prompt or a single chat
        tools_t = tuple(dict(t) for t in tools) if tools else None
        requests = [Request(normalize_prompt(c), params, schema, tools_t) for c in chats]
        with self._lock:
            if schema is None:
                results = self._generate_cached(requests)
            else:
                results = StructuredGenerator(self).run(requests)
        out: list[Completion] = []
        for i, completions in enumerate(results):
            for j, completion in enumerate(completions):
                completion.prompt_index, completion.sample_index = i, j
                out.append(completion)
        return out

    # ---- shared machinery --------------------------------------------------------------------------------

    def _cacheable(self, request: Request) -> bool:
        return self.cache is not None and (request.params.deterministic or self.cache_nondeterministic)

    def _generate_cached(self, requests: list[Request]) -> list[list[Completion]]:
        """Serve from the cache what it has, generate the rest chunk by chunk, writing each chunk as it lands."""
        results: list[list[Completion] | None] = [None] * len(requests)
        keys: dict[int, str] = {}
        if self.cache is not None:
            for i, request in enumerate(requests):
                if self._cacheable(request):
                    keys[i] = self.cache.key(self.model_id, request)
            hits = self.cache.get_many(list(set(keys.values())))
            for i, key in keys.items():
                if key in hits:
                    results[i] = hits[key]
            n_hits = sum(1 for i in keys if results[i] is not None)
            self.usage.cache_hits += n_hits
            self.usage.cache_misses += len(keys) - n_hits
        todo = [i for i, r in enumerate(results) if r is None]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            generated = self._run_isolating([requests[i] for i in chunk])
            to_store = {}
            for i, completions in zip(chunk, generated):
                results[i] = completions
                if i in keys and all(c.finish_reason != "error" for c in completions):
                    to_store[keys[i]] = completions
            if to_store:
                self.cache.put_many(self.model_id, to_store)
        return [list(map(dataclasses.replace, r)) for r in results]  # copies: callers may mutate

    def _run_isolating(self, requests: list[Request]) -> list[list[Completion]]:
        """One engine call; if it raises, split the batch until the request that raises is alone."""
        self.start()  # outside the timing: usage measures generation, not the engine's start-up
        started = time.perf_counter()
        try:
            results = self._run(requests)
        except LLMUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - any engine error is retried item by item, then recorded
            if len(requests) == 1:
                logger.warning("%s backend failed on one request: %s", self.name, exc)
                reason = f"backend_error: {type(exc).__name__}: {exc}"[:500]
                self.usage.rejections["backend_error"] += 1
                return [[Completion(text="", finish_reason="error", error=reason)] * requests[0].params.n]
            mid = len(requests) // 2
            return self._run_isolating(requests[:mid]) + self._run_isolating(requests[mid:])
        self.usage.seconds += time.perf_counter() - started
        self.usage.requests += len(requests)
        for completions in results:
            if completions:
                self.usage.prompt_tokens += completions[0].prompt_tokens
            self.usage.completion_tokens += sum(c.completion_tokens for c in completions)
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r})"

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
