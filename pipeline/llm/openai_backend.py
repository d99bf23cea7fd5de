"""The OpenAI-compatible backend: any server speaking `/v1/chat/completions` and `/v1/completions` (vLLM's
API server, `vllm serve`, SGLang, llama.cpp server, a router in front of a fleet of them).

Each request is one HTTP call through the `openai` SDK's client; up to `max_concurrency` run at once (the server
batches them). Failures:
- 408, 409, 429, 5xx, timeouts and dropped connections are retried `max_retries` times by the SDK: exponential
  backoff from 0.5 s to 8 s with jitter, or the server's `Retry-After` / `retry-after-ms` when it gives one (up to
  120 s; a longer one is not waited for), and `x-should-retry` obeyed. The SDK replaced websim's own retry loop on
  httpx: the same statuses, and it reads the HTTP-date and millisecond forms of the header, which websim's did not;
- another 4xx (e.g. a prompt longer than the context) fails that item alone (`error="backend_error: HTTP
  400 ..."`); the rest of the batch goes on;
- a server that cannot be reached at all raises one `LLMUnavailableError` naming the URL: checked once, fast,
  before the first batch, and again if every retry of a request fails to connect.
Chats go to `/chat/completions`, raw prompts to `/completions`. Structured output is sent as
`response_format={"type": "json_schema", ...}` (OpenAI's form, which vLLM, SGLang and llama.cpp accept), or
with `json_mode="vllm"` as vLLM's `structured_outputs` (which can also forbid free whitespace). Tool calls the
server parsed into `tool_calls` are written back into the text as `<tool_call>{json}</tool_call>`, so every
backend returns the same raw form. The API key comes from `api_key`, or the env var named by `api_key_env`
(`WEBSIM_OPENAI_API_KEY`), or `OPENAI_API_KEY`; a local server needs none.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import urlsplit

from .base import Backend, Completion, LLMError, LLMUnavailableError, Prompt, Request, SamplingParams

logger = logging.getLogger(__name__)

DEFAULT_API_KEY_ENV = "WEBSIM_OPENAI_API_KEY"


class RequestRejected(LLMError):
    """The server refused one request for a reason retrying will not fix (a 4xx other than 408/409/429)."""


def normalize_base_url(base_url: str) -> str:
    """Strip the trailing slash; a bare `http://host:port` gets OpenAI's `/v1`."""
    url = base_url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible server at `base_url` (e.g. `http://127.0.0.1:8000/v1`).

    `model` is the server's model name; None asks the server (`GET /models`) and takes the first. The cache
    identity is that name unless `model_id` is given (give the local model's fingerprint to share cache
    entries with the offline backends).
    """

    name = "openai"
    constrains_json = True

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        max_concurrency: int = 16,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 4,
        json_mode: str = "response_format",
        extra_body: dict[str, Any] | None = None,
        batch_size: int = 64,
        model_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if json_mode not in ("response_format", "vllm"):
            raise ValueError(f"json_mode must be 'response_format' or 'vllm', got {json_mode!r}")
        super().__init__(model_id=model_id or model or "", batch_size=batch_size, **kwargs)
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self._explicit_model_id = model_id
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max(0, int(max_retries))
        self.json_mode = json_mode
        self.extra_body = dict(extra_body or {})
        self._client = None
        self._start_lock = threading.Lock()

    # ---- connection --------------------------------------------------------------------------------------

    def _resolve_api_key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env) or os.environ.get("OPENAI_API_KEY")

    def start(self) -> None:
        """Build the SDK client, check the server answers, and learn the model name if none was given."""
        with self._start_lock:
            if self._client is not None:
                return
            import httpx2
            import openai

            client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self._resolve_api_key() or "EMPTY",  # a local server wants none; the SDK wants a string
                max_retries=self.max_retries,
                timeout=openai.Timeout(self.timeout_s, connect=self.connect_timeout_s),
                http_client=openai.DefaultHttpx2Client(limits=httpx2.Limits(
                    max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)),
            )
            try:
                models = self._probe(client)
            except BaseException:
                client.close()
                raise
            if self.model is None:
                if not models:
                    client.close()
                    raise LLMUnavailableError(f"the server at {self.base_url} lists no models; pass `model=`")
                self.model = models[0]
            if not self._explicit_model_id:
                self.model_id = self.model
            self._client = client

    def _probe(self, client) -> list[str]:
        """`GET /models`, two quick retries: a refused connection should fail in a second or two, not minutes."""
        import openai

        try:
            page = client.with_options(max_retries=2, timeout=openai.Timeout(10.0, connect=self.connect_timeout_s))\
                .get("/models", cast_to=object)
        except openai.APIConnectionError as exc:
            raise LLMUnavailableError(f"no OpenAI-compatible server reachable at {self.base_url}: {exc!r}") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise LLMUnavailableError(
                f"the server at {self.base_url} refused the API key (HTTP {exc.status_code}); "
                f"set {self.api_key_env} or OPENAI_API_KEY") from None
        except openai.APIStatusError:  # some servers have no /models: not fatal if a model was named
            return []
        try:
            return [m["id"] for m in page.get("data", [])]
        except (AttributeError, KeyError, TypeError):
            return []

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def generate(self, chats: Sequence[Prompt] | Prompt, params: SamplingParams | None = None, schema=None, *, tools=None):
        if self.model is None:  # the cache key needs the model name: ask the server first
            self.start()
        return super().generate(chats, params, schema, tools=tools)

    # ---- requests ----------------------------------------------------------------------------------------

    def body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body for one request."""
        p = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "n": p.n,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        if request.schema is not None:
            if self.json_mode == "vllm":
                body["structured_outputs"] = {"json": request.schema, "disable_any_whitespace": True}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": request.schema},
                }
        if request.is_chat:
            body["messages"] = request.prompt
            if request.tools:
                body["tools"] = list(request.tools)
            path = "/chat/completions"
        else:
            body["prompt"] = request.prompt
            path = "/completions"
        body.update(self.extra_body)
        return path, body

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST through the SDK client, which retries 408/409/429/5xx, timeouts and dropped connections."""
        import openai

        self.start()
        try:
            data = self._client.post(path, body=body, cast_to=object)
        except openai.APITimeoutError as exc:
            raise LLMError(f"{self.base_url}{path} timed out after {self.max_retries + 1} attempts: {exc}") from None
        except openai.APIConnectionError as exc:
            raise LLMUnavailableError(f"OpenAI-compatible server at {self.base_url} went away: {exc!r}") from None
        except openai.APIStatusError as exc:
            detail = f"HTTP {exc.status_code}: {exc.response.text[:300]}"
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                raise LLMError(f"{self.base_url}{path} failed after {self.max_retries + 1} attempts: {detail}") from None
            raise RequestRejected(detail) from None
        if not isinstance(data, dict):
            raise LLMError(f"{self.base_url}{path} answered {type(data).__name__}, not a JSON object")
        return data

    def _one(self, request: Request) -> list[Completion]:
        path, body = self.body(request)
        try:
            return _completions(self.post(path, body), request.params.n)
        except LLMUnavailableError:
            raise
        except (LLMError, ValueError, KeyError, TypeError) as exc:  # this item only: the batch goes on
            self.usage.rejections["backend_error"] += 1
            return [Completion(text="", finish_reason="error", error=f"backend_error: {exc}"[:500])] * request.params.n

    def _run(self, requests: list[Request]) -> list[list[Completion]]:
        self.start()
        if len(requests) == 1:
            return [self._one(requests[0])]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            futures = [pool.submit(self._one, r) for r in requests]
            try:
                return [f.result() for f in futures]
            except LLMUnavailableError:
                for f in futures:
                    f.cancel()
                raise


def _completions(data: dict[str, Any], n: int) -> list[Completion]:
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    total = int(usage.get("completion_tokens") or 0)
    choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
    out = []
    for k, choice in enumerate(choices):
        if "message" in choice:
            message = choice["message"] or {}
            text = message.get("content") or ""
            for call in message.get("tool_calls") or []:
                fn = call.get("function", call)
                args = fn.get("arguments")
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except ValueError:
                        pass
                text += "\n<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}) + "\n</tool_call>"
        else:
            text = choice.get("text") or ""
        finish = choice.get("finish_reason") or "stop"
        out.append(
            Completion(
                text=text,
                prompt_tokens=prompt_tokens,
                # Servers report one total for the n choices; split it (exact for n=1).
                completion_tokens=total // max(1, len(choices)) + (total % max(1, len(choices)) if k == 0 else 0),
                finish_reason="stop" if finish == "tool_calls" else finish,
            )
        )
    if len(out) != n:
        raise LLMError(f"asked for {n} choices, the server returned {len(out)}")
    return out
