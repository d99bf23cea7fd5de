"""The search agent's tool environment: one instance per rollout over the simulated web.

`SearchEnv` has exactly four public methods besides `reset`, and they are its tools: `search`, `open_url`,
`follow_link` and `answer`. That is TRL 1.16's `environment_factory` contract (`GRPOTrainer` lists the class's
public functions as tools, renders their Google-style docstrings as JSON schemas, calls `reset(**row)` before
each rollout); `tool_methods(env)` gives the same four bound methods for `tools=` or a chat template, and
`TOOL_SCHEMAS` are their schemas exactly as transformers derives them (a test keeps them equal), which is what
the hand-written agent loop (`training.agent_loop`) renders, so a prompt reads the same in SFT, in evaluation
and in GRPO.

The answer convention, everywhere (agent loop, SFT traces, rewards): a trajectory ends when the model calls
`answer`; the argument of that call is its answer. Text outside tool calls is reasoning and never graded.

Simulator access goes through `pipeline.simulator.tools.WebTools` (search and page windows, redirects, error texts);
`follow_link` resolves a link of the open page with the simulator's `links` call, then opens it. Every call
is a real simulator call carrying the env's session and trajectory id, so the call log
(`<snapshot>.logs/`, on by default here) rebuilds a rollout with `pipeline.simulator.calllog.read_trajectory`. A step
limit bounds the calls; past it every tool but `answer` says so instead of running.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable

from pipeline.simulator.cache import shared_simulator
from pipeline.simulator.web import HttpSimulator, InvalidRequest, Simulator
from pipeline.simulator.tools import WebTools

DEFAULT_MAX_TOOL_CALLS = 8
# Tool output is what the model reads, and every character of it is context in SFT and GRPO: small windows.
DEFAULT_SEARCH_K = 3
DEFAULT_SNIPPET_CHARS = 120
DEFAULT_MAX_CHARS = 500
DEFAULT_MAX_LINKS = 8
ANSWER_RECEIVED = "Answer received."
_LINKS_HINT = "; links(url) lists all"  # pipeline.simulator.tools.WebTools.open_url's pointer to its `links` tool
_URL_LINE = re.compile(r"^URL: (\S+)$", re.M)


def open_simulator(snapshot: str | Path | None = None, *, snippet_chars: int = DEFAULT_SNIPPET_CHARS,
                   call_log: bool = True) -> Simulator:
    """The process's shared Simulator (`pipeline.simulator.cache`) with the env's snippet size and call log:
    rollouts make envs by the hundred, and they share the memory-mapped snapshot and one buffered call log."""
    return shared_simulator(snapshot or os.environ.get("WEBSIM_SNAPSHOT"), snippet_chars=snippet_chars,
                            call_log=call_log)


class SearchEnv:
    """A simulated web for one agent rollout: search it, open pages, follow their links, answer.

    Args:
        simulator: a Simulator or HttpSimulator, a snapshot folder or id, or None ($WEBSIM_SIMULATOR_URL, else
            $WEBSIM_SNAPSHOT, else the latest snapshot).
        session: what the call log files these calls under (e.g. "sft-demo", "eval").
        max_tool_calls: tool calls allowed per rollout before tools refuse (answer always works).
        search_k, snippet_chars, max_chars, max_links: how much text a tool shows.
    """

    def __init__(self, simulator: Simulator | HttpSimulator | str | Path | None = None, *, session: str = "agent",
                 max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS, search_k: int = DEFAULT_SEARCH_K,
                 snippet_chars: int = DEFAULT_SNIPPET_CHARS, max_chars: int = DEFAULT_MAX_CHARS,
                 max_links: int = DEFAULT_MAX_LINKS):
        if simulator is None and os.environ.get("WEBSIM_SIMULATOR_URL"):
            simulator = HttpSimulator(os.environ["WEBSIM_SIMULATOR_URL"])
        if not isinstance(simulator, (Simulator, HttpSimulator)):
            simulator = open_simulator(simulator, snippet_chars=snippet_chars)
        self._sim = simulator
        self._session = session
        self._web = WebTools(simulator, session=session, max_chars=max_chars, max_links=max_links)
        self._max_tool_calls = max_tool_calls
        self._search_k = search_k
        self._page_chars = max_chars
        self.reset()

    @classmethod
    def factory(cls, simulator: Simulator | HttpSimulator | str | Path | None = None,
                **options: Any) -> Callable[[], "SearchEnv"]:
        """A zero-argument constructor for `GRPOTrainer(environment_factory=...)`, sharing one simulator."""
        if not isinstance(simulator, (Simulator, HttpSimulator)) and not os.environ.get("WEBSIM_SIMULATOR_URL"):
            simulator = open_simulator(simulator, snippet_chars=options.get("snippet_chars", DEFAULT_SNIPPET_CHARS))
        return functools.partial(cls, simulator, **options)

    def reset(self, **row: Any) -> None:
        """Start a new rollout (TRL passes the dataset row; `trajectory_id` names it in the call log)."""
        row_id = row.get("id")
        self._trajectory = str(row.get("trajectory_id") or (f"{row_id}-{uuid.uuid4().hex[:12]}" if row_id
                                                            else uuid.uuid4().hex))
        self._web.reset(trajectory_id=self._trajectory)
        self._steps = 0
        self._url: str | None = None
        self._answer: str | None = None
        self._visited: list[str] = []

    # ---- the tools ---------------------------------------------------------------------------------------------

    def search(self, query: str) -> str:
        """Search the web.

        Args:
            query: Keywords, e.g. a name or a topic.

        Returns:
            The best matching pages: title, URL, extract.
        """
        if (refusal := self._step()) is not None:
            return refusal
        if not isinstance(query, str):
            return "Error: query must be text."
        return self._web.search(query, self._search_k)

    def open_url(self, url: str, offset: int = 0) -> str:
        """Open a web page.

        Args:
            url: The page's URL.
            offset: Where to start reading; long pages come in parts.

        Returns:
            The page's title, URL, text and links.
        """
        if (refusal := self._step()) is not None:
            return refusal
        if not isinstance(url, str):
            return "Error: url must be text."
        return self._opened(self._web.open_url(url, offset))

    def follow_link(self, title: str) -> str:
        """Open a page that the open page links to.

        Args:
            title: The link's title, as listed under Links.

        Returns:
            The linked page.
        """
        if (refusal := self._step()) is not None:
            return refusal
        if self._url is None:
            return "Error: no page is open. Use search, then open_url."
        if not isinstance(title, str) or not title.strip():
            return "Error: title must be the title of a link on the open page."
        try:
            resp = self._sim.links(self._url, limit=500, session=self._session, trajectory=self._trajectory)
        except InvalidRequest as exc:
            return f"Error: {exc}"
        if resp.status != 200:
            return f"Error {resp.status}: cannot read the links of {self._url}. Try again or open_url."
        target = match_link(title, resp.outlinks)
        if target is None:
            return f'Error: the open page has no link "{title}". Pick a title from its Links list.'
        return self._opened(self._web.open_url(target.url))

    def answer(self, answer: str) -> str:
        """Give the final answer. Call it once, at the end.

        Args:
            answer: The answer, as short as possible.

        Returns:
            A confirmation.
        """
        if self._answer is not None:
            return "Error: you have already answered."
        self._answer = answer if isinstance(answer, str) else str(answer)
        return ANSWER_RECEIVED

    # ---- state for loops and rewards (properties: TRL would expose public methods as tools) -------------------

    @property
    def trajectory_id(self) -> str:
        return self._trajectory

    @property
    def session(self) -> str:
        return self._session

    @property
    def steps(self) -> int:
        """Tool calls made (answer not counted)."""
        return self._steps

    @property
    def max_tool_calls(self) -> int:
        return self._max_tool_calls

    @property
    def page_chars(self) -> int:
        """Characters of page text one view shows (offsets of "reads on" hints step by this)."""
        return self._page_chars

    @property
    def current_url(self) -> str | None:
        """The open page (after redirects), or None before the first page."""
        return self._url

    @property
    def visited(self) -> list[str]:
        """Pages opened, in order."""
        return list(self._visited)

    @property
    def final_answer(self) -> str | None:
        return self._answer

    @property
    def done(self) -> bool:
        return self._answer is not None

    @property
    def simulator(self) -> Simulator | HttpSimulator:
        return self._sim

    # ---- internals -----------------------------------------------------------------------------------------------

    def _step(self) -> str | None:
        if self._answer is not None:
            return "Error: you have already answered; the task is over."
        if self._steps >= self._max_tool_calls:
            return f"Error: step limit reached ({self._max_tool_calls} tool calls). Call answer with your best answer."
        self._steps += 1
        return None

    def _opened(self, text: str) -> str:
        text = text.replace(_LINKS_HINT, "")  # this env has no `links` tool; follow_link takes any link
        match = _URL_LINE.search(text) if not text.startswith("Error") else None
        if match:
            self._url = match.group(1)
            self._visited.append(self._url)
        return text


def tool_methods(env: SearchEnv) -> list[Callable[..., str]]:
    """The env's tools as bound methods, for `GRPOTrainer(tools=...)` or `apply_chat_template(tools=...)`."""
    return [env.search, env.open_url, env.follow_link, env.answer]


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").casefold().split())


def match_link(wanted: str, links: list) -> Any | None:
    """The link among `links` (`pipeline.simulator.web.Link`s) that `wanted` names: exact title, anchor text or URL
    (case and spacing ignored), else the only link whose title contains it."""
    key = _norm(wanted)
    for attr in ("title", "anchor", "url"):
        for link in links:
            if _norm(getattr(link, attr) or "") == key:
                return link
    partial = {link.url: link for link in links if key and key in _norm(link.title or "")}
    return next(iter(partial.values())) if len(partial) == 1 else None


def _fn(name: str, description: str, properties: dict, required: list[str], returns: str) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
        "return": {"type": "string", "description": returns}}}


# `transformers.utils.get_json_schema` of the four tools (what TRL renders for `environment_factory`), kept
# literal so that importing this module does not import transformers; tests/training/test_env.py checks equality.
TOOL_SCHEMAS: list[dict] = [
    _fn("search", "Search the web.",
        {"query": {"type": "string", "description": "Keywords, e.g. a name or a topic."}}, ["query"],
        "The best matching pages: title, URL, extract."),
    _fn("open_url", "Open a web page.",
        {"url": {"type": "string", "description": "The page's URL."},
         "offset": {"type": "integer", "description": "Where to start reading; long pages come in parts."}}, ["url"],
        "The page's title, URL, text and links."),
    _fn("follow_link", "Open a page that the open page links to.",
        {"title": {"type": "string", "description": "The link's title, as listed under Links."}}, ["title"],
        "The linked page."),
    _fn("answer", "Give the final answer. Call it once, at the end.",
        {"answer": {"type": "string", "description": "The answer, as short as possible."}}, ["answer"],
        "A confirmation."),
]
TOOL_NAMES = tuple(s["function"]["name"] for s in TOOL_SCHEMAS)
