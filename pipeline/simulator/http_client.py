"""The simulator over HTTP: a client of `pipeline.simulator.server` with the in-process `Simulator`'s methods and
response types (an invalid request raises `InvalidRequest` here too)."""

from __future__ import annotations

from pipeline.simulator.responses import (
    FetchResponse,
    FindResponse,
    ReadResponse,
    InvalidRequest,
    LinksResponse,
    SearchResponse,
    SitemapResponse,
)


class HttpSimulator:
    """A client of `pipeline.simulator.server` with the Simulator's methods and response types."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, session: str | None = None,
                 trajectory: str | None = None):
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {}
        if session:
            headers["X-Websim-Session"] = session
        if trajectory:
            headers["X-Websim-Trajectory"] = trajectory
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def _post(self, path: str, body: dict, session: str | None, trajectory: str | None) -> dict:
        body = {k: v for k, v in body.items() if v is not None}
        if session:
            body["session"] = session
        if trajectory:
            body["trajectory"] = trajectory
        r = self._client.post(path, json=body)
        if r.status_code == 400:
            data = r.json()
            if set(data) <= {"error", "status"}:  # the request itself was invalid, as in-process
                raise InvalidRequest(data.get("error", r.text))
            return data  # a simulated 400 (not a URL, not a host): a response, as in-process
        r.raise_for_status()
        return r.json()

    def search(self, query: str, k: int | None = None, *, snippet_chars: int | None = None,
               session: str | None = None, trajectory: str | None = None) -> SearchResponse:
        return SearchResponse.from_dict(self._post("/search", {"query": query, "k": k, "snippet_chars": snippet_chars},
                                                   session, trajectory))

    def fetch(self, url: str, *, session: str | None = None, trajectory: str | None = None) -> FetchResponse:
        return FetchResponse.from_dict(self._post("/fetch", {"url": url}, session, trajectory))

    def links(self, url: str, *, backlinks: bool = False, limit: int = 500, session: str | None = None,
              trajectory: str | None = None) -> LinksResponse:
        return LinksResponse.from_dict(self._post("/links", {"url": url, "backlinks": backlinks, "limit": limit},
                                                  session, trajectory))

    def sitemap(self, host: str, prefix: str = "", offset: int = 0, limit: int = 100, *,
                session: str | None = None, trajectory: str | None = None) -> SitemapResponse:
        return SitemapResponse.from_dict(self._post(
            "/sitemap", {"host": host, "prefix": prefix, "offset": offset, "limit": limit}, session, trajectory))

    def read(self, url: str, offset: int = 0, max_chars: int | None = None, *, session: str | None = None,
             trajectory: str | None = None) -> ReadResponse:
        return ReadResponse.from_dict(self._post("/read", {"url": url, "offset": offset, "max_chars": max_chars},
                                                 session, trajectory))

    def find(self, url: str, text: str, *, max_matches: int | None = None, context_chars: int | None = None,
             session: str | None = None, trajectory: str | None = None) -> FindResponse:
        return FindResponse.from_dict(self._post("/find", {"url": url, "text": text, "max_matches": max_matches,
                                                           "context_chars": context_chars}, session, trajectory))

    def access_pages(self, urls: list[str]) -> list[dict | None]:
        return self._post("/access", {"urls": urls}, None, None)["result"]

    def retrieve(self, queries: list[str], topk: int = 3, return_scores: bool = True) -> dict:
        return self._post("/retrieve", {"queries": queries, "topk": topk, "return_scores": return_scores}, None, None)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "HttpSimulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
