"""The simulator as LLM tools: typed methods with Google-style docstrings that return compact text.

`WebTools` is the shape TRL accepts both ways: `GRPOTrainer(environment_factory=WebTools)` (one
instance per rollout, `reset()` starts a new trajectory, every public method is a tool) or
`tools=tool_functions(WebTools(...))`. `TOOL_SCHEMAS` are the same tools in OpenAI function-calling
format (what `transformers.utils.get_json_schema` derives from the methods; a test keeps them equal),
and `call_tool` runs a model's tool call by name for hand-written agent loops.

Tool output is text a model reads: numbered results, the page text in windows of `max_chars` with the
offset to ask for next, and errors as "Error ...: what to do" lines instead of exceptions.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable

from pipeline.simulator.cache import shared_simulator
from pipeline.simulator.web import HttpSimulator, InvalidRequest, Simulator

SITEMAP_PAGE_SIZE = 50
MAX_TOOL_K = 10
MAX_FIND_SHOWN = 5


class WebTools:
    """A simulated web for one agent: search it, open pages (in parts), find a phrase in a page, list links, read a
    site's sitemap.

    With no arguments it uses $WEBSIM_SIMULATOR_URL (a running `websim serve`) if set, else the
    snapshot $WEBSIM_SNAPSHOT, else the latest snapshot, in process.
    """

    def __init__(self, simulator: Simulator | HttpSimulator | str | Path | None = None, *, session: str | None = None,
                 max_chars: int = 3000, max_links: int = 20):
        if simulator is None and os.environ.get("WEBSIM_SIMULATOR_URL"):
            simulator = HttpSimulator(os.environ["WEBSIM_SIMULATOR_URL"])
        if not isinstance(simulator, (Simulator, HttpSimulator)):
            simulator = shared_simulator(simulator or os.environ.get("WEBSIM_SNAPSHOT"))
        self._sim = simulator
        self._session = session
        self._trajectory = uuid.uuid4().hex
        self._max_chars = max_chars
        self._max_links = max_links

    def reset(self, **kwargs: Any) -> None:
        """Start a new trajectory (TRL calls this before each rollout, with the dataset row's fields)."""
        self._trajectory = str(kwargs.get("trajectory_id") or uuid.uuid4().hex)

    def _ids(self) -> dict[str, str | None]:
        return {"session": self._session, "trajectory": self._trajectory}

    def search(self, query: str, k: int = 5) -> str:
        """Search the web and get the best matching pages with a short extract of each.

        Args:
            query: What to look for, in a few keywords or a question.
            k: How many results to return (1 to 10).

        Returns:
            Numbered results: title, URL and an extract around the query words.
        """
        try:
            k = max(1, min(int(k), MAX_TOOL_K))
            resp = self._sim.search(query, k, **self._ids())
        except (InvalidRequest, ValueError, TypeError) as exc:
            return f"Error: {exc}"
        if resp.status != 200:
            return _status_error(resp.status, resp.error, "search")
        if not resp.results:
            return f'No results for "{query}". Try other keywords.'
        lines = [f'Results for "{query}":']
        for r in resp.results:
            lines.append(f"[{r.rank}] {r.title}\n    {r.url}\n    {r.snippet}")
        return "\n".join(lines)

    def open_url(self, url: str, offset: int = 0) -> str:
        """Open a web page and read its text, with the links it contains.

        Args:
            url: The address of the page, e.g. one from the search results or from a page's links.
            offset: Where to start reading, in characters; long pages are shown in parts.

        Returns:
            The page's title, URL and text (a part of it for long pages), then its first links.
        """
        try:
            offset = max(0, int(offset))
            resp = self._sim.fetch(url, **self._ids())
            hops = 0
            redirected_from = None
            while resp.status in (301, 302, 303, 307, 308) and hops < 5:
                redirected_from = redirected_from or resp.url
                resp = self._sim.fetch(resp.headers.get("location", ""), **self._ids())
                hops += 1
        except (InvalidRequest, ValueError, TypeError) as exc:
            return f"Error: {exc}"
        if resp.status != 200:
            return _status_error(resp.status, resp.error, "open_url", url)
        text = resp.text
        part = text[offset:offset + self._max_chars]
        lines = [f"Title: {resp.title}", f"URL: {resp.final_url}"]
        if redirected_from:
            lines.append(f"(redirected from {redirected_from})")
        if resp.canonical_url:
            lines.append(f"(same content as {resp.canonical_url})")
        lines.append("")
        lines.append(part if part else "(no text at this offset)")
        end = offset + len(part)
        if end < len(text):
            lines.append(f"\n[characters {offset}-{end} of {len(text)}; open_url(url, offset={end}) reads on]")
        if resp.outlinks:
            shown = resp.outlinks[:self._max_links]
            lines.append(f"\nLinks ({len(shown)} of {len(resp.outlinks)}; links(url) lists all):")
            lines += [f"- {link.title} <{link.url}>" for link in shown]
        return "\n".join(lines)

    def find_in_page(self, url: str, text: str) -> str:
        """Find a word or phrase in a web page: where it occurs, with the text around each place.

        Args:
            url: The address of the page.
            text: The word or phrase to look for (case does not matter).

        Returns:
            How many times it occurs and, for the first places, the offset to read from and the text around it.
        """
        try:
            resp = self._sim.find(url, text, max_matches=MAX_FIND_SHOWN, context_chars=120, **self._ids())
        except (InvalidRequest, ValueError, TypeError) as exc:
            return f"Error: {exc}"
        if resp.status != 200:
            return _status_error(resp.status, resp.error, "find_in_page", url)
        if not resp.total:
            return f'"{text}" does not occur in {resp.final_url} ({resp.title}).'
        lines = [f'"{text}" occurs {resp.total} time(s) in {resp.final_url} ({resp.title}):']
        lines += [f"- at offset {m.offset}: {m.snippet}" for m in resp.matches]
        lines.append("[open_url(url, offset=...) reads the page from one of these offsets]")
        return "\n".join(lines)

    def links(self, url: str) -> str:
        """List the links of a web page: where each one goes, its anchor text and how often readers followed it.

        Args:
            url: The address of the page.

        Returns:
            One line per link: anchor text, target title and URL, and the number of recorded clicks.
        """
        try:
            resp = self._sim.links(url, limit=200, **self._ids())
        except (InvalidRequest, ValueError, TypeError) as exc:
            return f"Error: {exc}"
        if resp.status != 200:
            return _status_error(resp.status, resp.error, "links", url)
        if not resp.outlinks:
            return f"{resp.url} has no links to other pages of this web."
        lines = [f"Links of {resp.url} ({len(resp.outlinks)} of {resp.n_outlinks}):"]
        for link in resp.outlinks:
            clicks = f" ({link.clicks} clicks)" if link.clicks else ""
            anchor = f'"{link.anchor}" -> ' if link.anchor and link.anchor != link.title else ""
            lines.append(f"- {anchor}{link.title} <{link.url}>{clicks}")
        return "\n".join(lines)

    def sitemap(self, host: str, prefix: str = "", page: int = 1) -> str:
        """List the pages of a website by address, with their titles.

        Args:
            host: The website's host name (e.g. en.wikipedia.org) or any URL on it.
            prefix: Only list pages whose path starts with this, e.g. /wiki/A.
            page: Which page of the listing to show (50 entries per page, from 1).

        Returns:
            One line per page: its path and title, and how to get the next part of the listing.
        """
        try:
            page = max(1, int(page))
            resp = self._sim.sitemap(host, prefix, (page - 1) * SITEMAP_PAGE_SIZE, SITEMAP_PAGE_SIZE,
                                     **self._ids())
        except (InvalidRequest, ValueError, TypeError) as exc:
            return f"Error: {exc}"
        if resp.status != 200:
            return _status_error(resp.status, resp.error, "sitemap", host)
        where = f"{resp.host}{' under ' + resp.prefix if resp.prefix else ''}"
        if not resp.entries:
            return f"No pages on {where} at page {page} ({resp.total} in all)."
        first = resp.offset + 1
        lines = [f"Pages of {where}: {first}-{first + len(resp.entries) - 1} of {resp.total}"]
        lines += [f"{e.path}  {e.title}" for e in resp.entries]
        if resp.next_offset is not None:
            lines.append(f"[more: sitemap(host, prefix, page={page + 1})]")
        return "\n".join(lines)


def _status_error(status: int, error: str | None, op: str, target: str = "") -> str:
    if status == 404:
        return f"Error 404: {target} is not in this web. Search for it, or check the address."
    if status == 503:
        return f"Error 503: the {op} call failed temporarily. Try again."
    return f"Error {status}: {error or 'request failed'}"


def tool_functions(tools: WebTools) -> list[Callable[..., str]]:
    """The tool methods of `tools`, for `GRPOTrainer(tools=...)` or a chat template's `tools=`."""
    return [tools.search, tools.open_url, tools.find_in_page, tools.links, tools.sitemap]


def _fn(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


# OpenAI function-calling schemas of the WebTools methods (equal to transformers' get_json_schema of them).
TOOL_SCHEMAS: list[dict] = [
    _fn("search", "Search the web and get the best matching pages with a short extract of each.", {
        "query": {"type": "string", "description": "What to look for, in a few keywords or a question."},
        "k": {"type": "integer", "description": "How many results to return (1 to 10)."},
    }, ["query"]),
    _fn("open_url", "Open a web page and read its text, with the links it contains.", {
        "url": {"type": "string",
                "description": "The address of the page, e.g. one from the search results or from a page's links."},
        "offset": {"type": "integer",
                   "description": "Where to start reading, in characters; long pages are shown in parts."},
    }, ["url"]),
    _fn("find_in_page", "Find a word or phrase in a web page: where it occurs, with the text around each place.", {
        "url": {"type": "string", "description": "The address of the page."},
        "text": {"type": "string", "description": "The word or phrase to look for (case does not matter)."},
    }, ["url", "text"]),
    _fn("links", "List the links of a web page: where each one goes, its anchor text and how often readers "
                 "followed it.", {
        "url": {"type": "string", "description": "The address of the page."},
    }, ["url"]),
    _fn("sitemap", "List the pages of a website by address, with their titles.", {
        "host": {"type": "string", "description": "The website's host name (e.g. en.wikipedia.org) or any URL on it."},
        "prefix": {"type": "string", "description": "Only list pages whose path starts with this, e.g. /wiki/A."},
        "page": {"type": "integer", "description": "Which page of the listing to show (50 entries per page, from 1)."},
    }, ["host"]),
]


def call_tool(tools: WebTools, name: str, arguments: dict | str) -> str:
    """Run a model's tool call (`arguments` as a dict or a JSON string); errors come back as text."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return f"Error: arguments are not valid JSON ({exc.msg})"
    if not isinstance(arguments, dict):
        return "Error: arguments must be a JSON object"
    schema = next((s["function"] for s in TOOL_SCHEMAS if s["function"]["name"] == name), None)
    if schema is None:
        return f"Error: unknown tool {name!r}; tools: {', '.join(s['function']['name'] for s in TOOL_SCHEMAS)}"
    props = schema["parameters"]["properties"]
    unknown = sorted(set(arguments) - set(props))
    missing = [p for p in schema["parameters"]["required"] if p not in arguments]
    if unknown or missing:
        return f"Error: {name} takes {', '.join(props)}" + (f"; missing {', '.join(missing)}" if missing else "") + \
            (f"; unknown {', '.join(unknown)}" if unknown else "")
    return getattr(tools, name)(**arguments)
