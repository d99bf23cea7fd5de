"""The simulator over HTTP: a Starlette (ASGI) app and `serve()`, which runs it with uvicorn.

Endpoints (JSON in, JSON out; GET takes query parameters, POST a JSON object):

    GET  /healthz                          liveness + snapshot id
    GET  /                                 snapshot manifest summary and the endpoint list
    GET|POST /search   query, k, snippet_chars
    GET|POST /fetch    url
    GET|POST /links    url, backlinks, limit
    GET|POST /sitemap  host, prefix, offset, limit
    GET|POST /read     url, offset, max_chars      a window of a long page, with next_offset
    GET|POST /find     url, text, max_matches, context_chars   where a phrase occurs in a page
    GET  /hosts                            every host with its page count
    POST /retrieve     {"queries": [...], "topk": 3, "return_scores": true}   (Search-R1's retrieval server)
    POST /access       {"urls": [...]} -> {"result": [page | null]}          (ASearcher's page access)

Requests are validated by pydantic models: POST bodies strictly (a "5" is not an integer), query strings laxly, and
/retrieve and /access as laxly as the pydantic servers of Search-R1 and ASearcher (`"return_scores": "true"` is
true), so that their clients work unchanged. Answers are encoded with orjson, response dataclasses as they are.
The single-call endpoints' ordinary requests take a fast path in front of Starlette (`fast_path`): fields checked
by hand against the same models, the same bytes out; anything unusual goes the pydantic way.

HTTP status says whether the request was valid and served: 200 with the simulated answer in the body
(whose own `status` is the simulated web's: 200, 301, 404, 503 for an injected failure), 400 for invalid
input with the reason (wrong types, out of range, empty, binary, not a URL, not JSON, integers over 4,300 digits,
nesting deeper than the parser allows, more than `MAX_RETRIEVE_QUERIES` queries), 404/405 for an unknown route or
method, 408 for a body that does not arrive within `body_timeout_s` (fewer bytes than its Content-Length), 413 for
a body over `MAX_BODY_BYTES` or an answer over `MAX_RESPONSE_BYTES` / a `/retrieve` batch asking for more than
`MAX_RETRIEVE_DOCS` documents, 500 (logged) for a bug. Every error body is `{"error": <the reason>, "status":
<code>}`. HEAD is GET without the body. A simulated 301 is never an HTTP redirect: clients must not follow links out
of the simulation.

A single call (a search, a fetch) runs on the event loop: it takes a fraction of a millisecond, less than a hop to a
thread would add. Batches (/retrieve, /access) run in the thread pool, split between the simulator's search
threads, so a GRPO step's 2,560 queries do not hold up `/healthz` or other clients.

Callers name themselves for the call log with headers `X-Websim-Session` / `X-Websim-Trajectory` or
body fields `session` / `trajectory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.simulator import fast_path
from pipeline.simulator.web import (
    MAX_FIND_CONTEXT,
    MAX_FIND_MATCHES,
    MAX_K,
    MAX_LINKS_LIMIT,
    MAX_OFFSET,
    MAX_READ_CHARS,
    MAX_SITEMAP_LIMIT,
    MAX_SNIPPET_CHARS,
    InvalidRequest,
    Simulator,
    check_text,
)

log = logging.getLogger("websim.server")

MAX_BODY_BYTES = 4_000_000
"""Room for a GRPO step's queries: Search-R1's 512 prompts x 5 rollouts = 2,560 queries are about 250 kB."""
MAX_RETRIEVE_QUERIES = 16_384
"""Queries in one `/retrieve` (Search-R1's `train_grpo.sh` sends 2,560 at once)."""
MAX_RETRIEVE_DOCS = 40_960
"""`/retrieve`: queries x topk at most (2,560 x 16); 512 x 100 was 70 MB and 14 s of work for one request."""
MAX_ACCESS_URLS = 1_024
"""URLs in one `/access` (whole pages: 1,024 Wikipedia pages are about 20 MB)."""
MAX_RESPONSE_BYTES = 32_000_000
"""An answer larger than this is not sent: 413 with the size and the limit."""
BODY_TIMEOUT_S = 15.0
"""A request body must arrive whole within this (a client that sends less than its Content-Length gets 408)."""
MAX_ID_CHARS = 256
_CONFIG_ENV = "WEBSIM_SERVER_CONFIG"
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


def _reason(exc: Any) -> str:
    """A pydantic ValidationError as one line a client can act on (its first three problems)."""
    parts = []
    for e in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "body"
        parts.append(f"{loc} is required" if e["type"] == "missing" else f"{loc}: {e['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _validate(model: type[BaseModel], params: dict, strict: bool) -> Any:
    try:
        return model.model_validate(params, strict=strict)
    except ValidationError as exc:
        raise InvalidRequest(_reason(exc)) from None


def _ids(request: Request, req: "_Call") -> tuple[str | None, str | None]:
    return _caller(req.session, req.trajectory, request.headers.get)


def _caller(session: str | None, trajectory: str | None, header: Callable[[str], str | None],
            ) -> tuple[str | None, str | None]:
    """Session and trajectory: the body's (or query's) fields win over the X-Websim-* headers."""
    session = session or header("x-websim-session") or None
    trajectory = trajectory or header("x-websim-trajectory") or None
    for name, value in (("session", session), ("trajectory", trajectory)):
        if value is not None:
            check_text(name, value, MAX_ID_CHARS)
    return session, trajectory


# ---- request models ------------------------------------------------------------------------------------------
# POST bodies are validated strictly (a "5" is not an integer), query strings laxly (they are all strings); absent
# and null mean the default alike. /retrieve and /access are lax as the pydantic servers of Search-R1 and ASearcher
# are ("return_scores": "true" is true), so that their clients work unchanged.

class _Call(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    session: str | None = None
    trajectory: str | None = None


class SearchRequest(_Call):
    query: str
    k: int | None = Field(None, ge=1, le=MAX_K)
    snippet_chars: int | None = Field(None, ge=0, le=MAX_SNIPPET_CHARS)


class FetchRequest(_Call):
    url: str


class LinksRequest(_Call):
    url: str
    backlinks: bool | None = None
    limit: int | None = Field(None, ge=1, le=MAX_LINKS_LIMIT)


class SitemapRequest(_Call):
    host: str
    prefix: str | None = None
    offset: int | None = Field(None, ge=0, le=MAX_OFFSET)
    limit: int | None = Field(None, ge=1, le=MAX_SITEMAP_LIMIT)


class ReadRequest(_Call):
    url: str
    offset: int | None = Field(None, ge=0, le=MAX_OFFSET)
    max_chars: int | None = Field(None, ge=1, le=MAX_READ_CHARS)


class FindRequest(_Call):
    url: str
    text: str
    max_matches: int | None = Field(None, ge=1, le=MAX_FIND_MATCHES)
    context_chars: int | None = Field(None, ge=0, le=MAX_FIND_CONTEXT)


class RetrieveRequest(_Call):
    queries: list[str] = Field(min_length=1, max_length=MAX_RETRIEVE_QUERIES)
    topk: int | None = Field(None, ge=1, le=MAX_K)
    return_scores: bool = False


class AccessRequest(_Call):
    urls: list[str] = Field(max_length=MAX_ACCESS_URLS)


Handler = Callable[[Request, Simulator, Any], Awaitable[Response]]


def _endpoint(model: type[_Call], lax: bool = False) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """The one error path: invalid input is a 4xx with its reason, a client that went away is one log line, any
    bug a logged 500: no request crashes the server."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            sim: Simulator = request.app.state.simulator
            try:
                params = await _params(request)
                if "q" in params and "query" not in params:
                    params["query"] = params["q"]
                req = _validate(model, params, strict=not lax and request.method not in _QUERY_METHODS)
                return await handler(request, sim, req)
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

    return wrap


def _encode(content: Any) -> bytes:
    """JSON (orjson: dataclasses as they are), refused (413) when it is over MAX_RESPONSE_BYTES."""
    body = orjson.dumps(content)
    if len(body) > MAX_RESPONSE_BYTES:
        raise _HttpError(413, f"the answer is {len(body)} bytes, over the limit of {MAX_RESPONSE_BYTES} bytes; "
                              "ask for less (a smaller limit, k or topk, fewer queries)")
    return body


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(_encode(content), status_code=status_code, media_type="application/json")


def _answer(sim: Simulator, bodies: "_EncodedCache", op: str, args: dict, session: str | None,
            trajectory: str | None) -> tuple[int, bytes, float]:
    """One simulator call, on the event loop (a call is a fraction of a millisecond, less than a thread hop costs;
    batches go to the thread pool instead): HTTP status, JSON body, simulated delay to wait before answering."""
    resp, delay = sim.call(op, args, session=session, trajectory=trajectory, sleep=False)
    # A malformed URL or host is invalid input at the HTTP level too; every other status is the simulated web's.
    status = 400 if resp.status == 400 else 200
    body = bodies.get(resp) if op in _CACHED_OPS else None
    if body is None:
        body = _encode(resp)
        if op in _CACHED_OPS:
            bodies.put(resp, body)
    return status, body, delay


async def _run(request: Request, sim: Simulator, op: str, args: dict, req: _Call) -> Response:
    session, trajectory = _ids(request, req)
    status, body, delay = _answer(sim, request.app.state.encoded, op, args, session, trajectory)
    if delay > 0:
        await asyncio.sleep(delay)
    return Response(body, status_code=status, media_type="application/json")


_CACHED_OPS = ("fetch", "search")  # the operations whose answers the simulator caches (the same object per hit)


class _EncodedCache:
    """The JSON of the answers the simulator served from its own cache, by identity: a cached page is encoded once,
    not on every request (in process, a cache hit costs nothing either). Holds the answers it maps, so an id is
    never reused while it is here; used on the event loop only."""

    def __init__(self, size: int = 2048):
        self._size = size
        self._bodies: dict[int, tuple[Any, bytes]] = {}

    def get(self, resp: Any) -> bytes | None:
        hit = self._bodies.get(id(resp))
        return hit[1] if hit is not None and hit[0] is resp else None

    def put(self, resp: Any, body: bytes) -> None:
        if self._size <= 0:
            return
        if len(self._bodies) >= self._size:
            self._bodies.pop(next(iter(self._bodies)))  # the oldest entry
        self._bodies[id(resp)] = (resp, body)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


# The single-call endpoints: path -> (operation, request model, the operation's arguments from the model's fields).
_SINGLE_CALLS: dict[str, tuple[str, type[_Call], Callable[[dict], dict]]] = {
    "/search": ("search", SearchRequest,
                lambda v: {"query": v["query"], "k": v["k"], "snippet_chars": v["snippet_chars"]}),
    "/fetch": ("fetch", FetchRequest, lambda v: {"url": v["url"]}),
    "/links": ("links", LinksRequest,
               lambda v: {"url": v["url"], "backlinks": _or(v["backlinks"], False), "limit": _or(v["limit"], 500)}),
    "/sitemap": ("sitemap", SitemapRequest,
                 lambda v: {"host": v["host"], "prefix": _or(v["prefix"], ""), "offset": _or(v["offset"], 0),
                            "limit": _or(v["limit"], 100)}),
    "/read": ("read", ReadRequest,
              lambda v: {"url": v["url"], "offset": _or(v["offset"], 0), "max_chars": v["max_chars"]}),
    "/find": ("find", FindRequest,
              lambda v: {"url": v["url"], "text": v["text"], "max_matches": v["max_matches"],
                         "context_chars": v["context_chars"]}),
}


def _single_call(op: str, model: type[_Call], arguments: Callable[[dict], dict]):
    async def handler(request: Request, sim: Simulator, req: Any) -> Response:
        return await _run(request, sim, op, arguments(req.__dict__), req)

    handler.__name__ = op
    return _endpoint(model)(handler)


@_endpoint(RetrieveRequest, lax=True)
async def retrieve(request: Request, sim: Simulator, req: RetrieveRequest) -> Response:
    """Search-R1's `/retrieve`: a batch of queries, `{"result": [[{"document": ..., "score": ...}]]}`."""
    topk = _or(req.topk, 3)
    if len(req.queries) * topk > MAX_RETRIEVE_DOCS:
        raise _HttpError(413, f"{len(req.queries)} queries x topk {topk} = {len(req.queries) * topk} documents, over "
                              f"the limit of {MAX_RETRIEVE_DOCS} per request; send fewer queries or a smaller topk")
    session, trajectory = _ids(request, req)

    def work() -> tuple[Response, float]:
        # The batch is split between the simulator's search threads (the index and the snippets release the GIL).
        result, delay = sim.retrieve_lists(req.queries, topk, req.return_scores, session=session,
                                           trajectory=trajectory)
        return _json({"result": result}), delay

    response, delay = await run_in_threadpool(work)
    if delay > 0:  # the batch's queries one after another, as before
        await asyncio.sleep(delay)
    return response


@_endpoint(AccessRequest, lax=True)
async def access(request: Request, sim: Simulator, req: AccessRequest) -> Response:
    """ASearcher's `/access`: `{"urls": [...]}` -> `{"result": [page | null, ...]}`, a page being
    `{"url", "title", "contents", "id"}` (redirects followed; null for a URL this web does not have)."""
    session, trajectory = _ids(request, req)

    def work() -> tuple[Response, float]:
        pages, delay = sim.access_pages(req.urls, session=session, trajectory=trajectory)
        return _json({"result": pages}), delay

    response, delay = await run_in_threadpool(work)
    if delay > 0:
        await asyncio.sleep(delay)
    return response


@_endpoint(_Call)
async def hosts(request: Request, sim: Simulator, req: _Call) -> Response:
    return await run_in_threadpool(lambda: _json({"hosts": sim.hosts()}))


async def healthz(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    return JSONResponse({"status": "ok", "snapshot": sim.snapshot_id, "pages": sim.page_count()})


async def index(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    m = sim.snapshot.manifest
    return JSONResponse({"snapshot": {"id": m["id"], "created": m["created"], "counts": m["counts"],
                                      "index": m["index"]["kind"]},
                         "endpoints": ["/healthz", "/search", "/fetch", "/links", "/sitemap", "/hosts", "/read", "/find",
                                       "/retrieve", "/access"]})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error (logged)"
    if status >= 500:
        log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
    return _error(status, str(detail))


class _App(Starlette):
    """Starlette, with the single-call endpoints' ordinary requests answered before its middleware and router
    (`pipeline.simulator.fast_path`): the same simulator call, the same JSON bytes and headers. A request the fast
    path is not sure of goes through the Starlette route as before (its body given again), so every 4xx reason still
    comes from the pydantic models."""

    answer_fast = True
    """False: every request goes through the Starlette routes (the tests compare the two paths)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._fast = {path: (op, fast_path.FastModel(model), arguments)
                      for path, (op, model, arguments) in _SINGLE_CALLS.items()}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.answer_fast and not scope.get("root_path"):
            route = self._fast.get(scope["path"])
            if route is not None and scope["method"] in ("GET", "POST"):
                receive = await self._fast_call(route, scope, receive, send)
                if receive is None:
                    return
        await super().__call__(scope, receive, send)

    async def _fast_call(self, route: tuple, scope: dict, receive: Any, send: Any) -> Any:
        """Answer the request and return None, or return the `receive` the Starlette route should read from."""
        op, model, arguments = route
        state = self.state
        if scope["method"] == "GET":
            params, again = fast_path.query_params(scope), receive
        else:
            try:
                body, messages = await fast_path.small_body(scope, receive, MAX_BODY_BYTES, state.body_timeout_s)
            except TimeoutError:  # as `_read_body`: answer and close, the rest of the body may never come
                await _error(408, f"request body not received within {state.body_timeout_s:g} s (fewer bytes than "
                                  "its Content-Length?)", {"connection": "close"})(scope, receive, send)
                return None
            again = fast_path.replay(messages, receive)
            params = fast_path.json_object(body) if body is not None else None
            if params is None:
                return again
        if "q" in params and "query" not in params:
            params["query"] = params["q"]
        values = model.values(params, strict=scope["method"] == "POST")
        if values is None:
            return again
        try:
            session, trajectory = _caller(values["session"], values["trajectory"],
                                          lambda name: fast_path.header(scope, name.encode()))
            status, body, delay = _answer(state.simulator, state.encoded, op, arguments(values), session, trajectory)
        except InvalidRequest as exc:
            response = _error(400, str(exc))
        except _HttpError as exc:
            response = _error(exc.status, exc.message, exc.headers)
        except Exception:  # noqa: BLE001 - the catch-all that keeps the server up
            log.exception("error serving %s %s", scope["method"], scope["path"])
            response = _error(500, "internal error (logged)")
        else:
            if delay > 0:
                await asyncio.sleep(delay)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-length", b"%d" % len(body)), _JSON_TYPE]})
            await send({"type": "http.response.body", "body": body})
            return None
        await response(scope, receive, send)
        return None


_JSON_TYPE = (b"content-type", b"application/json")


def create_app(simulator: Simulator | None = None, *, body_timeout_s: float = BODY_TIMEOUT_S,
               **simulator_kwargs: Any) -> Starlette:
    """The ASGI app over `simulator` (or one opened with `simulator_kwargs`, e.g. snapshot=..., call_log=True)."""
    sim = simulator if simulator is not None else Simulator(**simulator_kwargs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        sim.close()  # flushes the call log

    methods = ["GET", "POST"]
    app = _App(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            *(Route(path, _single_call(op, model, arguments), methods=methods)
              for path, (op, model, arguments) in _SINGLE_CALLS.items()),
            Route("/hosts", hosts, methods=["GET"]),
            Route("/retrieve", retrieve, methods=["POST"]),
            Route("/access", access, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
        lifespan=lifespan,
    )
    app.state.simulator = sim
    app.state.encoded = _EncodedCache()
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
    # No X-Forwarded-* rewriting (proxy_headers): the app never reads the client's address or scheme, and the
    # middleware is a step on every request.
    uvicorn.run("pipeline.simulator.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, timeout_graceful_shutdown=5, proxy_headers=False)
