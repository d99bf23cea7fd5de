"""The simulator over HTTP: a Starlette (ASGI) app and `serve()`, which runs it with uvicorn.

Endpoints (JSON in, JSON out; GET takes query parameters, POST a JSON object):

    GET  /healthz                          liveness + snapshot id
    GET  /                                 snapshot manifest summary and the endpoint list
    GET|POST /search   query, k, snippet_chars
    GET|POST /fetch    url
    GET|POST /links    url, backlinks, limit
    GET|POST /sitemap  host, prefix, offset, limit
    GET  /hosts                            every host with its page count
    POST /retrieve     {"queries": [...], "topk": 3, "return_scores": true}   (Search-R1's retrieval server)

HTTP status says whether the request was valid and served: 200 with the simulated answer in the body
(whose own `status` is the simulated web's: 200, 301, 404, 503 for an injected failure), 400 for invalid
input (wrong types, out of range, empty, binary, not a URL, not JSON, integers over 4,300 digits, nesting
deeper than the parser allows), 404/405 for an unknown route or method, 408 for a body that does not arrive
within `body_timeout_s` (fewer bytes than its Content-Length), 413 for a body over 1 MB or an answer over
`MAX_RESPONSE_BYTES` / a `/retrieve` batch asking for more than `MAX_RETRIEVE_DOCS` documents, 500 (logged) for
a bug. Every error body is `{"error": <the reason>, "status": <code>}`. HEAD is GET without the body. A
simulated 301 is never an HTTP redirect: clients must not follow links out of the simulation.

The simulator's work (searches, page reads, JSON encoding) runs in a thread pool, never on the event loop: a
large `/retrieve` batch does not hold up `/healthz` or other clients.

Callers name themselves for the call log with headers `X-Websim-Session` / `X-Websim-Trajectory` or
body fields `session` / `trajectory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.simulator.web import MAX_K, InvalidRequest, Simulator, check_int, check_text, search_r1_documents

log = logging.getLogger("websim.server")

MAX_BODY_BYTES = 1_000_000
MAX_RETRIEVE_QUERIES = 512
MAX_RETRIEVE_DOCS = 16_384
"""`/retrieve`: queries x topk at most (512 x 32); 512 x 100 was 70 MB and 14 s of work for one request."""
MAX_RESPONSE_BYTES = 32_000_000
"""An answer larger than this is not sent: 413 with the size and the limit."""
BODY_TIMEOUT_S = 15.0
"""A request body must arrive whole within this (a client that sends less than its Content-Length gets 408)."""
MAX_ID_CHARS = 256
_CONFIG_ENV = "WEBSIM_SERVER_CONFIG"
_INT = re.compile(r"-?\d{1,19}")
_QUERY_METHODS = ("GET", "HEAD")


class _HttpError(Exception):
    """A request refused with `status` (4xx) and a reason for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


async def _read_body(request: Request, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        # The rest of the body may never come: answer and close the connection (it cannot be reused).
        raise _HttpError(408, f"request body not received within {timeout_s:g} s (fewer bytes than its "
                              "Content-Length?)", {"connection": "close"}) from None


def parse_json_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object; InvalidRequest (400) with the reason for anything else."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_not_json_constant)
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("body is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer over Python's 4,300-digit limit
        raise InvalidRequest(f"body is not usable JSON: {str(exc)[:300]}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


async def _params(request: Request) -> dict[str, Any]:
    """The request's arguments: query parameters for GET (and HEAD), a JSON object for POST."""
    if request.method in _QUERY_METHODS:
        return dict(request.query_params)
    return parse_json_body(await _read_body(request, request.app.state.body_timeout_s))


def _int_param(params: dict, name: str, default: int | None, lo: int, hi: int, from_query: bool) -> int | None:
    value = params.get(name)
    if value is None:  # absent or null: the default, the same either way
        value = default
    if value is None:
        return None
    if from_query and isinstance(value, str):
        if not _INT.fullmatch(value.strip()):
            raise InvalidRequest(f"{name} must be an integer")
        value = int(value)
    return check_int(name, value, lo, hi)


def _bool_param(params: dict, name: str, default: bool, from_query: bool) -> bool:
    value = params.get(name)
    if value is None:
        value = default
    if from_query and isinstance(value, str):
        low = value.strip().lower()
        if low not in ("1", "0", "true", "false", "yes", "no"):
            raise InvalidRequest(f"{name} must be true or false")
        return low in ("1", "true", "yes")
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false")
    return value


def _ids(request: Request, params: dict) -> tuple[str | None, str | None]:
    out = []
    for name in ("session", "trajectory"):
        value = params.get(name) or request.headers.get(f"x-websim-{name}")
        if value is not None:
            check_text(name, value, MAX_ID_CHARS)
        out.append(value or None)
    return out[0], out[1]


Handler = Callable[[Request, Simulator, dict, bool], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The one error path: invalid input is a 4xx with its reason, a client that went away is one log line, any
    bug a logged 500: no request crashes the server."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.simulator
        try:
            params = await _params(request)
            return await handler(request, sim, params, request.method in _QUERY_METHODS)
        except InvalidRequest as exc:
            return _error(400, str(exc))
        except _HttpError as exc:
            return _error(exc.status, exc.message, exc.headers)
        except ClientDisconnect:  # nobody to answer; not a server error
            log.info("client disconnected during %s %s", request.method, request.url.path)
            return Response(status_code=400)
        except Exception:  # noqa: BLE001 - the catch-all that keeps the server up
            log.exception("error serving %s %s", request.method, request.url.path)
            return _error(500, "internal error (logged)")

    endpoint.__name__ = handler.__name__
    return endpoint


def _json(content: Any, status_code: int = 200) -> JSONResponse:
    """A JSON response, refused (413) when its body is over MAX_RESPONSE_BYTES. Run it off the event loop."""
    resp = JSONResponse(content, status_code=status_code)
    if len(resp.body) > MAX_RESPONSE_BYTES:
        raise _HttpError(413, f"the answer is {len(resp.body)} bytes, over the limit of {MAX_RESPONSE_BYTES} bytes; "
                              "ask for less (a smaller limit, k or topk, fewer queries)")
    return resp


async def _run(request: Request, sim: Simulator, op: str, args: dict, params: dict) -> Response:
    session, trajectory = _ids(request, params)

    def work() -> tuple[Response, float]:
        resp, delay = sim.call(op, args, session=session, trajectory=trajectory, sleep=False)
        # A malformed URL or host is invalid input at the HTTP level too; every other status is the simulated web's.
        return _json(resp.to_dict(), status_code=400 if resp.status == 400 else 200), delay

    response, delay = await run_in_threadpool(work)
    if delay > 0:
        await asyncio.sleep(delay)
    return response


@_endpoint
async def search(request: Request, sim: Simulator, params: dict, q: bool) -> Response:
    query = params.get("query", params.get("q"))
    if query is None:
        raise InvalidRequest("query is required")
    args = {"query": query, "k": _int_param(params, "k", None, 1, MAX_K, q),
            "snippet_chars": _int_param(params, "snippet_chars", None, 0, 5000, q)}
    return await _run(request, sim, "search", args, params)


@_endpoint
async def fetch(request: Request, sim: Simulator, params: dict, q: bool) -> Response:
    if "url" not in params:
        raise InvalidRequest("url is required")
    return await _run(request, sim, "fetch", {"url": params["url"]}, params)


@_endpoint
async def links(request: Request, sim: Simulator, params: dict, q: bool) -> Response:
    if "url" not in params:
        raise InvalidRequest("url is required")
    args = {"url": params["url"], "backlinks": _bool_param(params, "backlinks", False, q),
            "limit": _int_param(params, "limit", 500, 1, 100_000, q)}
    return await _run(request, sim, "links", args, params)


@_endpoint
async def sitemap(request: Request, sim: Simulator, params: dict, q: bool) -> Response:
    if "host" not in params:
        raise InvalidRequest("host is required (GET /hosts lists them)")
    args = {"host": params["host"], "prefix": params.get("prefix", ""),
            "offset": _int_param(params, "offset", 0, 0, 10**12, q),
            "limit": _int_param(params, "limit", 100, 1, 1000, q)}
    return await _run(request, sim, "sitemap", args, params)


@_endpoint
async def retrieve(request: Request, sim: Simulator, params: dict, q: bool) -> Response:
    """Search-R1's `/retrieve`: a batch of queries, `{"result": [[{"document": ..., "score": ...}]]}`."""
    queries = params.get("queries")
    if not isinstance(queries, list) or not queries:
        raise InvalidRequest("queries must be a non-empty list of strings")
    if len(queries) > MAX_RETRIEVE_QUERIES:
        raise InvalidRequest(f"at most {MAX_RETRIEVE_QUERIES} queries per request")
    for query in queries:
        # Blank queries stay in the batch (a model may emit "<search></search>"): they get no documents.
        check_text("query", query, 2048, allow_empty=True)
    topk = _int_param(params, "topk", 3, 1, MAX_K, False)
    return_scores = _bool_param(params, "return_scores", False, False)
    session, trajectory = _ids(request, params)
    if len(queries) * topk > MAX_RETRIEVE_DOCS:
        raise _HttpError(413, f"{len(queries)} queries x topk {topk} = {len(queries) * topk} documents, over the "
                              f"limit of {MAX_RETRIEVE_DOCS} per request; send fewer queries or a smaller topk")

    def work() -> tuple[Response, float]:
        result, delay = [], 0.0
        for query in queries:
            if not query.strip():
                result.append([])
                continue
            resp, d = sim.call("search", {"query": query, "k": topk, "snippet_chars": 600},
                               session=session, trajectory=trajectory, sleep=False)
            delay += d
            result.append(search_r1_documents(resp, return_scores))
        return _json({"result": result}), delay

    response, delay = await run_in_threadpool(work)
    if delay > 0:  # the batch's queries one after another, as before
        await asyncio.sleep(delay)
    return response


@_endpoint
async def hosts(request: Request, sim: Simulator, params: dict, q: bool) -> Response:
    return await run_in_threadpool(lambda: _json({"hosts": sim.hosts()}))


async def healthz(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    return JSONResponse({"status": "ok", "snapshot": sim.snapshot_id, "pages": sim.page_count()})


async def index(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    m = sim.snapshot.manifest
    return JSONResponse({"snapshot": {"id": m["id"], "created": m["created"], "counts": m["counts"],
                                      "index": m["index"]["kind"]},
                         "endpoints": ["/healthz", "/search", "/fetch", "/links", "/sitemap", "/hosts", "/retrieve"]})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error (logged)"
    if status >= 500:
        log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
    return _error(status, str(detail))


def create_app(simulator: Simulator | None = None, *, body_timeout_s: float = BODY_TIMEOUT_S,
               **simulator_kwargs: Any) -> Starlette:
    """The ASGI app over `simulator` (or one opened with `simulator_kwargs`, e.g. snapshot=..., call_log=True)."""
    sim = simulator if simulator is not None else Simulator(**simulator_kwargs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        sim.close()  # flushes the call log

    methods = ["GET", "POST"]
    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/search", search, methods=methods),
            Route("/fetch", fetch, methods=methods),
            Route("/links", links, methods=methods),
            Route("/sitemap", sitemap, methods=methods),
            Route("/hosts", hosts, methods=["GET"]),
            Route("/retrieve", retrieve, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
        lifespan=lifespan,
    )
    app.state.simulator = sim
    app.state.body_timeout_s = body_timeout_s
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn workers: the app configured by `serve()` through $WEBSIM_SERVER_CONFIG."""
    kwargs = json.loads(os.environ.get(_CONFIG_ENV) or "{}")
    if kwargs.pop("log_calls", True):
        kwargs["call_log"] = True
    return create_app(**kwargs)


def serve(snapshot: str | Path | None = "latest", host: str = "127.0.0.1", port: int = 8000, *, workers: int = 1,
          log_calls: bool = True, latency_ms: float = 0.0, latency_jitter_ms: float = 0.0, failure_rate: float = 0.0,
          seed: int = 0, snapshots_root: str | Path | None = None, log_level: str = "warning",
          body_timeout_s: float = BODY_TIMEOUT_S) -> None:
    """Serve a snapshot (folder, id or "latest") over HTTP until interrupted; 127.0.0.1 unless told otherwise.

    `workers` > 1 starts that many processes, each mapping the same read-only snapshot files.
    """
    import uvicorn

    from pipeline.simulator.snapshot import resolve_snapshot

    snap = resolve_snapshot(snapshot, snapshots_root)  # fail here, before any worker starts
    os.environ[_CONFIG_ENV] = json.dumps({
        "snapshot": str(snap.path), "log_calls": log_calls, "latency_ms": latency_ms,
        "latency_jitter_ms": latency_jitter_ms, "failure_rate": failure_rate, "seed": seed,
        "body_timeout_s": body_timeout_s})
    log.warning("serving snapshot %s (%d pages) on http://%s:%d with %d worker(s)",
                snap.id, snap.manifest["counts"]["pages"], host, port, workers)
    uvicorn.run("pipeline.simulator.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
