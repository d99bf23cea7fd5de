"""The OpenAI-compatible backend: against vLLM's real API server on the embedded model (started once for the
module), retries against a small local HTTP server that fails on purpose, and a port where nothing listens."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.llm import LLMUnavailableError, SamplingParams
from pipeline.llm.openai_backend import OpenAIBackend, normalize_base_url

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


# ---- a real vLLM server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    pytest.importorskip("vllm")
    from pipeline.llm.model_setup import ensure_embedded_model
    from pipeline.llm.vllm_backend import VLLMServer

    data_dir = tmp_path_factory.getbasetemp() / "websim_home"
    server = VLLMServer(
        ensure_embedded_model(data_dir),
        served_model_name="smollm2",
        args=["--max-model-len", "1024"],
        # One OpenMP thread, 1 GiB of KV cache: a shared CI machine.
        env={"VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"},
        data_dir=data_dir,
    )
    with server:
        yield server


@pytest.mark.slow
def test_chat_and_raw_prompts_through_the_server(vllm_server):
    backend = OpenAIBackend(vllm_server.base_url, max_concurrency=4)  # model name asked from the server
    chats = [[{"role": "user", "content": "What is the capital of France?"}]] + [
        [{"role": "user", "content": f"Say the number {i}."}] for i in range(5)
    ]
    out = backend.generate(chats + ["The capital of Italy is"], SamplingParams(max_tokens=16))
    assert backend.model == "smollm2" and backend.model_id == "smollm2"
    assert len(out) == 7 and all(c.ok for c in out)
    assert "Paris" in out[0].text and out[-1].text
    assert all(c.prompt_tokens > 0 and 0 < c.completion_tokens <= 16 for c in out)
    again = backend.generate(chats[:1], SamplingParams(max_tokens=16))
    assert again[0].text == out[0].text
    prompt = "Here is a list of fruits: apple, pear, plum, cherry, grape, mango, kiwi, lemon, lime,"
    free = backend.generate([prompt], SamplingParams(max_tokens=16))[0]
    stopped = backend.generate([prompt], SamplingParams(max_tokens=16, stop=(",",)))[0]
    assert "," in free.text, "the model continues the list (otherwise this test proves nothing)"
    assert "," not in stopped.text and stopped.finish_reason == "stop" and free.text.startswith(stopped.text)
    backend.close()


@pytest.mark.slow
@pytest.mark.parametrize("json_mode", ["response_format", "vllm"])
def test_structured_output_through_the_server(vllm_server, json_mode):
    backend = OpenAIBackend(vllm_server.base_url, "smollm2", json_mode=json_mode)
    chats = [[{"role": "user", "content": f"Invent a fictional person number {i}."}] for i in range(3)]
    out = backend.generate(chats, SamplingParams(max_tokens=64, temperature=0.8, seed=3), schema=PERSON)
    for c in out:
        value = json.loads(c.text)
        assert isinstance(value["name"], str) and isinstance(value["age"], int) and c.parsed == value
    backend.close()


@pytest.mark.slow
def test_a_rejected_item_does_not_sink_the_batch(vllm_server):
    backend = OpenAIBackend(vllm_server.base_url, "smollm2")
    out = backend.generate(["word " * 3000, "The capital of Italy is"], SamplingParams(max_tokens=4))
    assert out[0].finish_reason == "error" and "HTTP 400" in out[0].error
    assert out[1].ok and out[1].text
    backend.close()


# ---- a server that fails on purpose ----------------------------------------------------------------------


def _reply(text: str) -> dict:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }


class FlakyServer:
    """Answers 503 (then 429 with Retry-After) a set number of times before 200; 400 for "bad" prompts."""

    def __init__(self, failures: list[int], retry_after: str = "0", retry_after_ms: str | None = None):
        self.failures = list(failures)
        self.posts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"data": [{"id": "flaky"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.posts += 1
                owner.auth = self.headers.get("Authorization")
                if "bad" in body["messages"][0]["content"]:
                    return self._send(400, {"error": "bad request"})
                if owner.failures:
                    status = owner.failures.pop(0)
                    headers = [("Retry-After", retry_after)] if status == 429 else []
                    if retry_after_ms is not None:
                        headers.append(("retry-after-ms", retry_after_ms))
                    return self._send(status, {"error": "busy"}, headers)
                self._send(200, _reply("ok"))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky():
    servers = []

    def make(failures, **headers):
        servers.append(FlakyServer(failures, **headers))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_503_twice_then_200_is_retried(flaky, monkeypatch):
    monkeypatch.setenv("WEBSIM_OPENAI_API_KEY", "sk-test")
    server = flaky([503, 503])
    backend = OpenAIBackend(server.url)
    out = backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=4))
    assert out[0].ok and out[0].text == "ok" and out[0].completion_tokens == 2
    assert server.posts == 3 and server.auth == "Bearer sk-test"


def test_429_with_retry_after_is_retried_after_the_servers_delay(flaky):
    server = flaky([429], retry_after="1.5")
    backend = OpenAIBackend(server.url)
    backend.start()  # the SDK's import and the probe are not part of the wait
    started = time.monotonic()
    out = backend.generate([[{"role": "user", "content": "hi"}]])
    waited = time.monotonic() - started
    assert out[0].text == "ok" and server.posts == 2
    assert 1.5 <= waited < 5  # the server's 1.5 s, not the SDK's 0.5 s first backoff


def test_retry_after_in_milliseconds_is_honoured(flaky):
    server = flaky([503, 503], retry_after_ms="50")
    backend = OpenAIBackend(server.url)
    backend.start()
    started = time.monotonic()
    out = backend.generate([[{"role": "user", "content": "hi"}]])
    assert out[0].ok and server.posts == 3 and time.monotonic() - started < 1.0  # 2 x 50 ms, not 0.5 s + 1 s


def test_persistent_5xx_and_4xx_fail_their_items_only(flaky):
    server = flaky([500] * 3)
    backend = OpenAIBackend(server.url, max_retries=2, max_concurrency=1)
    chats = [[{"role": "user", "content": c}] for c in ("first", "bad one", "third")]
    out = backend.generate(chats)
    assert out[0].error.startswith("backend_error") and "HTTP 500" in out[0].error  # 3 attempts, all 500
    assert "HTTP 400" in out[1].error
    assert out[2].ok and out[2].text == "ok"
    assert backend.usage.rejections["backend_error"] == 2


def test_unreachable_server_fails_fast_and_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m")
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match=f"127.0.0.1:{port}"):
        backend.generate([[{"role": "user", "content": "hi"}]])
    assert time.monotonic() - started < 5


def test_base_url_normalisation():
    assert normalize_base_url("http://h:1") == "http://h:1/v1"
    assert normalize_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalize_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"
