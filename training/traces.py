"""SFT traces for the search agent: tool-calling chats from two sources, as one TRL-ready dataset.

Questions in (`hard_queries` rows, TRAIN split only: `assert_train_only` raises on anything else), trace rows
and rejection counts out:

- `demonstrations(rows, make_env)`: for a question whose evidence chain is known, a trajectory that searches for
  the start page with the question's own words for it (its name, or its description: the agent cannot know the
  page a description stands for before it searches), opens it (for a "linked from both" question, finds and opens
  the other page too and follows the link the two have in common), follows the chain's links page by page to the
  answer page (where a hop is not a link of the page, a one-page detour through the link with the most clickstream
  traffic), reads on to the window holding the answer sentence when it is not in the first one, and calls `answer`
  with the gold answer;
  one short sentence of reasoning before every call. Every step is executed through a `SearchEnv`, so each tool
  message is exactly what that real simulator call returned (and the call log holds the calls under the
  trace's trajectory id); `replay_mismatches` re-runs a trace in a fresh env and reports any difference.
- `teacher_traces(backend, rows, make_env)`: the agent loop (`training.agent_loop`) with a teacher model, up to
  `tries` attempts per question with different seeds (rejection sampling: a question stops being retried once
  solved); a rollout is kept only when it answered, the answer matches gold (exact match, or token F1 >=
  `min_f1`), and no turn had a malformed tool call (those turns would be trained on).

Every kept trace ends like the agent loop's answered rollouts plus one closing assistant turn
(`closing_message`), so a model trained on them stops after `answer` in TRL's tool loop too.

Every tool call has an `id` (`call_<n>`, n counting the trace's calls) and every tool message the `tool_call_id` of
the call it answers, so a trace replays through OpenAI-compatible chat APIs (vLLM's `ChatCompletionRequest`, the
`openai` SDK's message types) as it is: `chat_messages(messages, arguments="string")`.

`trace_table(rows)` gives the dataset in the OpenAI chat-completions shape: `messages` is a list of structs
(`role, content, name, tool_call_id, tool_calls[{id, type, function{name, arguments}}]`, a key a message does not
have is null) with `arguments` as the JSON string the OpenAI API sends, and `tools` is the tool schemas as one JSON
string (the tools differ in their parameters, and a struct would give each tool every other tool's parameters as
nulls). So `pandas.read_parquet` gives lists of dicts, any `datasets` version reads the Parquet and the JSONL holds
objects, not encoded strings; veRL's `MultiTurnSFTDataset` reads it with `training.traces_verl`'s class. `hf_table(table)` is the same rows with
`arguments` and `tools` as JSON values (`datasets.Json`): what chat templates render (arguments as an object) and
what `export_dataset` saves under `hf/` for TRL's `SFTTrainer(assistant_only_loss=True)`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pyarrow as pa

from pipeline.datasets.io import read_split
from pipeline.text.answers import answer_in_text, exact_match, squad_f1
from training.agent_loop import (PROMPT_VERSION, SYSTEM_PROMPT, AgentConfig, Trajectory, golds, initial_messages,
                                 run_agent)
from training.env import ANSWER_RECEIVED, TOOL_SCHEMAS, SearchEnv
from training.tool_parser import ToolCall

SOURCES = ("teacher", "demonstration", "human_path", "shortest_path")
"""`human_path` / `shortest_path`: navigation tasks' demonstrations (`training.traces_navigation`)."""
DEMONSTRATION_SOURCES = ("demonstration", "human_path", "shortest_path")
DEMO_REJECTIONS = ("eval_split", "no_chain", "tool_error", "start_not_found", "no_link", "link_mismatch",
                   "answer_not_shown", "too_many_steps")
TEACHER_REJECTIONS = ("no_answer", "wrong_answer", "invalid_turns")
_QUOTE_CHARS = 220
_RESULT_URL = re.compile(r"^\s+(https?://\S+)$", re.M)  # a result's URL line in `search` output


@dataclass(frozen=True)
class TeacherConfig:
    tries: int = 2
    """Attempts per question at most; try i samples with seed `seed + i` (try 0 greedy if `greedy_first`)."""
    seed: int = 0
    temperature: float = 0.7
    greedy_first: bool = True
    min_f1: float = 0.8
    """A rollout whose answer is not an exact match is kept at token F1 >= this."""
    agent: AgentConfig = AgentConfig()


# ---- questions -------------------------------------------------------------------------------------------------

def read_questions(dataset_dir: str | Path, split: str = "train") -> list[dict]:
    """The rows of one split of a `hard_queries` dataset folder (`data/<split>.parquet`); [] when absent."""
    return read_split(dataset_dir, split)


def assert_train_only(rows: Iterable[Mapping[str, Any]]) -> None:
    """Raise unless every question is of the train split: eval questions must never reach training data."""
    bad = [str(r.get("id")) for r in rows if r.get("split") != "train"]
    if bad:
        raise ValueError(f"{len(bad)} question(s) not of the train split would enter SFT traces: {bad[:5]}")


# ---- a trace being written ----------------------------------------------------------------------------------------

class _Writer:
    """Messages of one trajectory, each tool call executed in the env as it is written."""

    def __init__(self, env: SearchEnv, question: str, system_prompt: str):
        self.env = env
        self.messages = initial_messages(question, system_prompt)
        self.calls = 0

    def call(self, thought: str, name: str, **arguments: Any) -> str:
        call_id = f"call_{self.calls}"
        call = {"id": call_id, **ToolCall(name, arguments).as_message_call()}
        self.messages.append({"role": "assistant", "content": thought, "tool_calls": [call]})
        result = getattr(self.env, name)(**arguments)
        self.messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": result})
        self.calls += 1
        return result


TraceWriter = _Writer
"""The writer under a public name, for other demonstration builders (`training.traces_navigation`)."""


def closing_message(answer: str) -> dict[str, Any]:
    """The assistant turn after the `answer` call's confirmation: no tool call, so a tool loop ends."""
    return {"role": "assistant", "content": f"Final answer: {answer}"}


# ---- navigation demonstrations ------------------------------------------------------------------------------------

def _short(quote: str, n: int = _QUOTE_CHARS) -> str:
    quote = " ".join(quote.split())
    return quote if len(quote) <= n else quote[: n - 1].rsplit(" ", 1)[0] + "…"


def _links(env: SearchEnv, url: str) -> list:
    """Outlinks of `url` for planning (a simulator read outside any trajectory)."""
    resp = env.simulator.links(url, limit=500, session=f"{env.session}-plan")
    return resp.outlinks if resp.status == 200 else []


def plan_hops(env: SearchEnv, urls: Sequence[str]) -> list[tuple[str, str]] | None:
    """The (link title, target URL) clicks that walk `urls` in order: the direct link where the page has it, else
    a detour through the outlink whose clicks (to it, and from it on) are highest. None if a hop has neither."""
    clicks: list[tuple[str, str]] = []
    for src, dst in zip(urls, urls[1:]):
        out = _links(env, src)
        direct = next((link for link in out if link.url == dst), None)
        if direct is not None:
            clicks.append((direct.title, dst))
            continue
        best = None
        for link in sorted(out, key=lambda l: -l.clicks)[:50]:
            onward = next((l2 for l2 in _links(env, link.url) if l2.url == dst), None)
            if onward is not None and (best is None or link.clicks + onward.clicks > best[0]):
                best = (link.clicks + onward.clicks, link, onward)
        if best is None:
            return None
        clicks += [(best[1].title, best[1].url), (best[2].title, dst)]
    return clicks


def _window_offset(text: str, quote: str, answer: str, window: int) -> int | None:
    """Where to read so that the view shows the answer in the answer sentence: the page window (a multiple of
    `window`, as the page's "reads on" hints count) that holds it, else a start a little before it; None when the
    sentence is not in the text."""
    pos = text.find(quote)
    if pos < 0:
        return None
    at = text.find(answer, pos, pos + len(quote))
    at, length = (at, len(answer)) if at >= 0 else (pos, min(len(quote), window))
    aligned = (at // window) * window
    if at + length <= aligned + window:
        return aligned
    return max(0, at - window // 3)


def page_clues(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the question says of the pages it names, in chain order: ("description", its words) or ("named_page", its
    name) for each page clue of a synthesised question (`clues`); for a row without clues (a question that names its
    start), ("named_page", the first page's title)."""
    found = [(str(c["kind"]), " ".join(str(c["text"]).split())) for c in row.get("clues") or []
             if c.get("kind") in ("description", "named_page") and str(c.get("text") or "").strip()]
    return found or [("named_page", str(row["chain"][0]["title"]))]


def _kind_text(row: Mapping[str, Any]) -> str:
    return next((str(c["text"]) for c in row.get("clues") or [] if c.get("kind") == "kind"), "")


def _other_page(row: Mapping[str, Any], clues: list[tuple[str, str]]) -> tuple[tuple[str, str], str, str] | None:
    """(its clue, URL, title) of the second page a "linked from both" question names (its evidence after the first),
    or None for a question of another shape."""
    evidence = row.get("evidence") or []
    chain_urls = {s["url"] for s in row.get("chain") or []}
    if row.get("family") not in ("shared_link", "linked_fact") or len(clues) < 2 or len(evidence) < 2:
        return None
    url = evidence[1].get("url")
    if not url or url in chain_urls:
        return None
    return clues[1], url, str(evidence[1].get("title") or "")


def _find_and_open(w: "_Writer", env: SearchEnv, clue: tuple[str, str], url: str, title: str
                   ) -> tuple[str, str, str | None]:
    """Search the question's words for a page, open the result that is it: (page text, its title, None) or
    ("", "", reason)."""
    kind, words = clue
    if not title:
        title = env.simulator.fetch(url, session=f"{env.session}-plan").title or url
    if kind == "description":
        search_thought = f'The question describes an article as "{words}"; I search for that.'
        open_thought = f'The result {title} fits "{words}"; I open it.'
    else:
        search_thought = f"The question names the article on {words}, so I search for it."
        open_thought = f"The result {title} is that article; I open it."
    out = w.call(search_thought, "search", query=words)
    if out.startswith("Error"):
        return "", "", "tool_error"
    if url not in _RESULT_URL.findall(out):
        return "", "", "start_not_found"
    page = w.call(open_thought, "open_url", url=url)
    if page.startswith("Error") or env.current_url != url:
        return "", "", "tool_error"
    return page, title, None


def demonstration(row: Mapping[str, Any], env: SearchEnv, *, system_prompt: str = SYSTEM_PROMPT,
                  run_tag: str = "") -> tuple[dict | None, str | None]:
    """One navigation demonstration for a question row with a `chain`; (trace, None) or (None, reason).

    `run_tag` goes into the trajectory id (`demo-<question id>[-<run tag>]`), so that runs stay apart in the call log.
    """
    chain = list(row.get("chain") or [])
    if row.get("split") != "train":
        return None, "eval_split"
    if len(chain) < 2:
        return None, "no_chain"
    env.reset(**{**dict(row), "trajectory_id": f"demo-{row['id']}" + (f"-{run_tag}" if run_tag else "")})
    w = _Writer(env, str(row["question"]), system_prompt)
    start, answer_step = chain[0], chain[-1]
    answer = str(row["answer"])

    # 1. find the start page with what the question says of it: its name, or its description (an agent cannot know
    # that "a bovid from the family of the Bovidae" is African Buffalo before it searches)
    clues = page_clues(row)
    page, _, reason = _find_and_open(w, env, clues[0], start["url"], start["title"])
    if reason:
        return None, reason
    walk = [s["url"] for s in chain]
    first_thought = ""
    other = _other_page(row, clues)
    if other is not None and len(chain) == 2:
        # "linked from both": open the other page too; the answer is the link the two have in common
        (clue, url, title), target = other, chain[1]
        if env.steps + 3 > env.max_tool_calls:
            return None, "too_many_steps"
        page, title, reason = _find_and_open(w, env, clue, url, title)
        if reason:
            return None, "other_page_not_found" if reason == "start_not_found" else reason
        walk = [url, target["url"]]
        first_thought = (f"Both {start['title']} and {title} link to {target['title']}, the "
                         f"{_kind_text(row) or 'page'} the question asks for; I follow that link.")

    # 2. follow the chain's links
    plan = plan_hops(env, walk)
    if plan is None:
        return None, "no_link"
    quotes = {s["url"]: s["quote"] for s in chain}
    titles = {s["url"]: s["title"] for s in chain}
    for hop, (title, target) in enumerate(plan):
        quote = quotes.get(env.current_url or "", "")
        if hop == 0 and first_thought and target in titles:
            thought = first_thought
        elif target not in titles:
            thought = f"There is no direct link onward; readers usually go through {title}, so I follow it."
        elif quote and quote[:80] in page:
            thought = f'The page says: "{_short(quote)}" I follow the link to {title}.'
        else:
            thought = f"This page links to {title}, the next article I need; I follow that link."
        if env.steps >= env.max_tool_calls:
            return None, "too_many_steps"
        page = w.call(thought, "follow_link", title=title)
        if page.startswith("Error"):
            return None, "tool_error"
        if env.current_url != target:
            return None, "link_mismatch"

    # 3. read the answer sentence
    offset = None
    if not answer_in_text(golds(row), page) or answer_step["quote"][:80] not in page:
        text = env.simulator.fetch(answer_step["url"], session=f"{env.session}-plan").text
        offset = _window_offset(text, answer_step["quote"], answer, env.page_chars)
        if offset is None:
            return None, "answer_not_shown"
        if offset == 0 and answer_in_text(golds(row), page):
            offset = None  # the view already shows it: no need to read the same part again
    if offset is not None:
        if env.steps >= env.max_tool_calls:
            return None, "too_many_steps"
        page = w.call("The answer is not in this part of the page; I read on where the relevant passage is.",
                      "open_url", url=answer_step["url"], offset=offset)
        if page.startswith("Error"):
            return None, "tool_error"
        if not answer_in_text(golds(row), page):
            return None, "answer_not_shown"
    quote = answer_step["quote"]
    shown = quote if quote[:80] in page else next((s for s in re.split(r"(?<=[.!?])\s+", page) if answer in s), "")
    thought = f'The page says: "{_short(shown)}" So the answer is {answer}.' if shown else \
        f"The page gives the answer: {answer}."
    w.call(thought, "answer", answer=answer)
    w.messages.append(closing_message(answer))
    return {"messages": w.messages, "final_answer": answer, "trajectory_id": env.trajectory_id,
            "n_tool_calls": w.calls, "seed": None, "try_index": 0}, None


def demonstrations(rows: Sequence[Mapping[str, Any]], make_env: Callable[[], SearchEnv], *,
                   system_prompt: str = SYSTEM_PROMPT, run_tag: str = "") -> tuple[list[dict], Counter]:
    """Demonstrations for every row that allows one; returns (traces, rejections by reason)."""
    assert_train_only(rows)
    traces, rejections = [], Counter()
    env = make_env()
    for row in rows:
        trace, reason = demonstration(row, env, system_prompt=system_prompt, run_tag=run_tag)
        if trace is None:
            rejections[reason] += 1
        else:
            traces.append({**trace, "source": "demonstration", "question": row})
    return traces, rejections


# ---- teacher rollouts -------------------------------------------------------------------------------------------

def teacher_traces(backend: Any, rows: Sequence[Mapping[str, Any]], make_env: Callable[[], SearchEnv],
                   config: TeacherConfig = TeacherConfig(), *, log: Callable[[str], None] | None = None,
                   run_tag: str = "") -> tuple[list[dict], Counter, dict[str, Any]]:
    """Rejection-sampled teacher rollouts; returns (kept traces, rejections by reason, loop summary per try).
    Trajectory ids: `teacher-[<run tag>-]t<try>-<question id>-s<seed>`."""
    from training.agent_loop import summarize

    assert_train_only(rows)
    todo = list(rows)
    kept, rejections, summaries = [], Counter(), {}
    for attempt in range(config.tries):
        if not todo:
            break
        greedy = attempt == 0 and config.greedy_first
        agent = replace(config.agent, seed=config.seed + attempt, temperature=0.0 if greedy else config.temperature)
        prefix = "teacher-" + (f"{run_tag}-" if run_tag else "") + f"t{attempt}-"
        trajs = run_agent(backend, todo, make_env, agent, trajectory_prefix=prefix, log=log)
        summaries[f"try_{attempt}"] = summarize(trajs)
        solved = set()
        for traj, row in zip(trajs, todo):
            reason = judge_rollout(traj, config.min_f1)
            if reason is not None:
                rejections[reason] += 1
                continue
            solved.add(traj.question_id)
            kept.append({"source": "teacher", "question": row, "messages": with_call_ids(traj.messages + [
                closing_message(traj.final_answer or "")]), "final_answer": traj.final_answer,
                "trajectory_id": traj.trajectory_id, "n_tool_calls": traj.tool_calls, "seed": agent.seed,
                "try_index": attempt})
        todo = [r for r, t in zip(todo, trajs) if t.question_id not in solved]
    return kept, rejections, summaries


def judge_rollout(traj: Trajectory, min_f1: float) -> str | None:
    """Why a teacher rollout is not kept as a trace, or None to keep it."""
    if traj.final_answer is None:
        return "no_answer"
    if traj.invalid_turns:
        return "invalid_turns"
    if not (exact_match(traj.final_answer, traj.gold) or squad_f1(traj.final_answer, traj.gold) >= min_f1):
        return "wrong_answer"
    return None


# ---- the message shape ---------------------------------------------------------------------------------------------

def with_call_ids(messages: Sequence[Mapping[str, Any]]) -> list[dict]:
    """A copy of `messages` where every tool call has an `id` (kept if it has one, else `call_<n>`, n counting the
    trace's calls) and every tool message the `tool_call_id` of the call it answers (the calls of the turn before
    it, in order; a tool message that answers no call, such as the agent loop's parse-error message, gets none)."""
    out: list[dict] = []
    pending: list[str] = []
    n = 0
    for msg in messages:
        msg = dict(msg)
        if msg.get("role") == "assistant" and msg.get("tool_calls"):
            calls = []
            for call in msg["tool_calls"]:
                calls.append({"id": call.get("id") or f"call_{n}", **{k: v for k, v in call.items() if k != "id"}})
                n += 1
            msg["tool_calls"] = calls
            pending = [c["id"] for c in calls]
        elif msg.get("role") == "tool" and not msg.get("tool_call_id") and pending and msg.get("name") != "error":
            msg = {"role": "tool", "tool_call_id": pending.pop(0), **{k: v for k, v in msg.items() if k != "role"}}
        elif msg.get("role") == "tool" and msg.get("tool_call_id") in pending:
            pending.remove(msg["tool_call_id"])
        out.append(msg)
    return out


def chat_messages(messages: Sequence[Mapping[str, Any]], *, arguments: str = "object") -> list[dict]:
    """Stored messages (a dataset row's, from Parquet, `hf/` or JSONL: null keys, arguments as a string or an
    object) as a chat API takes them: keys without a value dropped, tool-call `arguments` as an object
    (`arguments="object"`: what chat templates render) or as a JSON string (`"string"`: the OpenAI wire format,
    which vLLM's and the `openai` SDK's request types require)."""
    if arguments not in ("object", "string"):
        raise ValueError(f"arguments must be 'object' or 'string', not {arguments!r}")

    def convert(value: Any) -> Any:
        if arguments == "object":
            return json.loads(value) if isinstance(value, str) else dict(value or {})
        return value if isinstance(value, str) else json.dumps(value or {}, ensure_ascii=False)

    out = []
    for msg in messages:
        clean = {k: v for k, v in msg.items() if v is not None}
        if clean.get("tool_calls"):
            clean["tool_calls"] = [
                {**{k: v for k, v in call.items() if v is not None},
                 "function": {"name": call["function"]["name"], "arguments": convert(call["function"].get("arguments"))}}
                for call in clean["tool_calls"]]
        else:
            clean.pop("tool_calls", None)
        out.append(clean)
    return out


# ---- checks -----------------------------------------------------------------------------------------------------

def replay_mismatches(messages: Sequence[Mapping[str, Any]], env: SearchEnv,
                      trajectory_id: str | None = None) -> list[str]:
    """Re-run every tool call of a trace in `env` (reset first) and list where a result differs from the trace's
    tool message; [] means every step is a real simulator call returning what the trace says."""
    env.reset(trajectory_id=trajectory_id or "replay")
    messages = chat_messages(messages)
    problems = []
    pending: list[dict] = []
    for i, msg in enumerate(messages):
        if msg["role"] == "assistant":
            pending = [c["function"] for c in msg.get("tool_calls") or []]
        elif msg["role"] == "tool":
            if not pending:
                problems.append(f"message {i}: tool message without a call")
                continue
            fn = pending.pop(0)
            if fn["name"] != msg.get("name"):
                problems.append(f"message {i}: answers {msg.get('name')!r}, the call was {fn['name']!r}")
            result = getattr(env, fn["name"])(**fn["arguments"])
            if result != msg["content"]:
                problems.append(f"message {i}: {fn['name']}({fn['arguments']}) returns something else now")
    return problems


def trace_problems(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Structural contract of a trace: system, user, then assistant turns each answered by its tool messages,
    one `answer` call, a closing assistant turn; tool names and arguments fit the tools."""
    from training.tool_parser import check_call

    messages = chat_messages(messages)
    problems = []
    roles = [m["role"] for m in messages]
    if roles[:2] != ["system", "user"]:
        problems.append("does not start with system, user")
    if not roles or roles[-1] != "assistant" or messages[-1].get("tool_calls"):
        problems.append("does not end with a closing assistant turn")
    answers = 0
    ids: list[str] = []
    pending: list[str] = []
    for i, msg in enumerate(messages[2:], start=2):
        if msg["role"] == "tool":
            call_id = msg.get("tool_call_id")
            if call_id is None or call_id not in pending:
                problems.append(f"message {i}: tool_call_id {call_id!r} answers no open call")
            else:
                pending.remove(call_id)
        if msg.get("tool_calls"):
            pending = [c.get("id") for c in msg["tool_calls"]]
            ids += pending
        for call in msg.get("tool_calls") or []:
            fn = call["function"]
            bad = check_call(ToolCall(fn["name"], fn["arguments"]), TOOL_SCHEMAS)
            if bad:
                problems.append(f"message {i}: {bad[0]}")
            answers += fn["name"] == "answer"
    if answers != 1:
        problems.append(f"{answers} answer calls")
    if None in ids or len(set(ids)) < len(ids):
        problems.append("tool call ids missing or repeated")
    if ANSWER_RECEIVED not in [m.get("content") for m in messages if m["role"] == "tool"]:
        problems.append("the answer was not received")
    return problems


# ---- the dataset ---------------------------------------------------------------------------------------------------

_S, _I, _F = pa.string(), pa.int64(), pa.float64()


def _message_type(arguments: pa.DataType) -> pa.DataType:
    function = pa.struct([("name", _S), ("arguments", arguments)])
    call = pa.struct([("id", _S), ("type", _S), ("function", function)])
    return pa.struct([("role", _S), ("content", _S), ("name", _S), ("tool_call_id", _S), ("tool_calls", pa.list_(call))])


MESSAGE = _message_type(_S)
"""A chat message in the OpenAI chat-completions shape; `arguments` a JSON string."""
TRACE_SCHEMA = pa.schema([
    ("id", _S), ("source", _S), ("messages", pa.list_(MESSAGE)), ("tools", _S),
    ("question_id", _S), ("question", _S), ("answer", _S), ("aliases", pa.list_(_S)), ("final_answer", _S),
    ("exact_match", _F), ("f1", _F), ("hops", _I), ("n_tool_calls", _I), ("n_turns", _I),
    ("trajectory_id", _S), ("seed", _I), ("try_index", _I), ("split", _S),
    ("snapshot_id", _S), ("model", _S), ("prompt_version", _S), ("question_prompt_version", _S),
])
_HF_TYPES = {"messages": pa.list_(_message_type(pa.json_())), "tools": pa.json_()}
HF_TRACE_SCHEMA = pa.schema([pa.field(f.name, _HF_TYPES.get(f.name, f.type)) for f in TRACE_SCHEMA])
"""`TRACE_SCHEMA` with `arguments` and `tools` as JSON values: `datasets` decodes them to objects (`datasets.Json`)."""


def trace_rows(traces: Sequence[dict], *, snapshot_id: str, teacher_model: str = "") -> list[dict]:
    """Dataset rows of traces (as `demonstrations` / `teacher_traces` return them)."""
    rows = []
    counts: Counter = Counter()
    for t in traces:
        q = t["question"]
        if q.get("split") != "train":
            raise ValueError(f"question {q.get('id')} is not of the train split")
        key = f"{t['source']}-{q['id']}"
        counts[key] += 1
        g = golds(q)
        rows.append({
            "id": f"{key}-{counts[key] - 1}", "source": t["source"], "messages": with_call_ids(t["messages"]),
            "tools": TOOL_SCHEMAS, "question_id": str(q["id"]), "question": q["question"], "answer": q["answer"],
            "aliases": list(q.get("aliases") or []), "final_answer": t["final_answer"],
            "exact_match": exact_match(t["final_answer"], g), "f1": squad_f1(t["final_answer"], g),
            "hops": q.get("hops"), "n_tool_calls": t["n_tool_calls"],
            "n_turns": sum(1 for m in t["messages"] if m["role"] == "assistant"),
            "trajectory_id": t["trajectory_id"], "seed": t.get("seed"), "try_index": t.get("try_index", 0),
            "split": "train", "snapshot_id": snapshot_id,
            "model": teacher_model if t["source"] == "teacher" else "demonstration",
            "prompt_version": PROMPT_VERSION, "question_prompt_version": q.get("prompt_version", ""),
        })
    return rows


def trace_table(rows: Sequence[dict]) -> pa.Table:
    """Rows as Arrow with `TRACE_SCHEMA`: messages as OpenAI-shaped structs, arguments and tools as JSON strings."""
    data = [{**r, "messages": chat_messages(r["messages"], arguments="string"),
             "tools": json.dumps(r["tools"], ensure_ascii=False)} for r in rows]
    return pa.Table.from_pylist(data, schema=TRACE_SCHEMA)


def hf_table(table: pa.Table) -> pa.Table:
    """A `trace_table` with `arguments` and `tools` as JSON values (`HF_TRACE_SCHEMA`)."""
    return table.cast(HF_TRACE_SCHEMA)


def export_traces(rows: Sequence[dict], out_dir: str | Path, *, card: str, provenance: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """Trace rows written with `export_dataset`: Parquet and JSONL in the OpenAI shape, `hf/` in the chat-template
    shape (`hf_table`), JSONL rows without null keys (`jsonl_row`), and veRL's dataset class for `data/`
    (`training.traces_verl`, as `verl_sft_dataset.py`)."""
    from pipeline.datasets.export import export_dataset
    from training import traces_verl

    return export_dataset(trace_table(rows), out_dir, card=card, provenance=dict(provenance), hf=hf_table,
                          jsonl=jsonl_row, extra_files={traces_verl.FILE_NAME: Path(traces_verl.__file__).read_bytes()})


def jsonl_row(row: dict) -> dict:
    """A `trace_table` row for the JSONL copy: messages without null keys (a chat API takes them as they are)."""
    return {**row, "messages": chat_messages(row["messages"], arguments="string")}


FIELD_DOCS = {
    "messages": "the chat in the OpenAI chat-completions shape: system, user question, assistant turns (`content` = "
                "reasoning, `tool_calls` = one call with an `id` and `arguments`), `tool` results (`tool_call_id`), a "
                "closing assistant turn. In `data/` and `jsonl/` `arguments` is a JSON string (the OpenAI wire format); "
                "in `hf/` it is an object (`datasets.Json`), as chat templates render it",
    "tools": "the tool schemas (search, open_url, follow_link, answer) the chat template renders: a JSON string in "
             "`data/` and `jsonl/` (TRL's SFTTrainer decodes it; for veRL's SFT trainer add `data.custom_cls.path="
             "verl_sft_dataset.py data.custom_cls.name=WebsimSFTDataset`), a JSON value in `hf/`",
    "source": "`demonstration` (scripted from the evidence chain, executed on the simulator) or `teacher` "
              "(a model's rollout whose answer matched gold)",
    "final_answer": "the argument of the trace's `answer` call",
    "exact_match / f1": "final answer vs gold answer and aliases (`pipeline.text.answers`)",
    "trajectory_id": "the call log's id for this trace's simulator calls (`pipeline.simulator.calllog.read_trajectory`)",
    "model": "the teacher model id, or `demonstration`",
}


def traces_card(rows: Sequence[dict], stats: Mapping[str, Any], provenance: Mapping[str, Any]) -> str:
    from pipeline.datasets.export import yaml_header

    by_source = Counter(r["source"] for r in rows)
    lines = [yaml_header(licenses=["other"], splits=["train"], pretty_name="websim SFT traces",
                         tags=["tool-use", "search-agent", "sft", "synthetic"], task_categories=["text-generation"],
                         size=len(rows)), "",
             "# websim SFT traces", "",
             "Tool-calling chats of a web search agent on websim's simulated web, for supervised fine-tuning "
             "before GRPO. Conversational format (`messages` + `tools`): train with TRL's `SFTTrainer` and "
             "`assistant_only_loss=True` (the loss covers assistant turns only; tool results and the question "
             "are context). Only questions of the train split of `hard_queries` are used.", "",
             f"- snapshot: `{provenance.get('snapshot_id')}`; teacher: `{provenance.get('teacher_model') or '-'}`; "
             f"prompt version `{PROMPT_VERSION}`",
             f"- traces: {len(rows)} ({', '.join(f'{k}: {v}' for k, v in sorted(by_source.items())) or 'none'})",
             f"- rejections: `{json.dumps(stats.get('rejections', {}), sort_keys=True)}`", "",
             "The answer convention: a trajectory ends with a call of the `answer` tool; its argument is the "
             "answer. Every tool message is the output of a real simulator call, executed when the trace was "
             "made.", "", "## Fields", ""]
    lines += [f"- `{k}`: {v}" for k, v in FIELD_DOCS.items()]
    return "\n".join(lines) + "\n"


# ---- the whole stage ------------------------------------------------------------------------------------------------

TRACE_CHECKS = {
    "train_split_only": "every trace comes from a question of the train split of hard_queries",
    "well_formed": "system, user, assistant turns each answered by tool messages, one answer call, a closing turn; "
                   "every call fits the tools",
    "demonstrations_replay": "re-running a demonstration's calls on the simulator returns exactly its tool messages",
}


@dataclass(frozen=True)
class TracesConfig:
    demonstrations: bool = True
    teacher: bool = True
    teacher_questions: int = 16
    """Train questions the teacher tries (0: all)."""
    teacher_config: TeacherConfig = TeacherConfig()
    env: dict = field(default_factory=dict)
    """`SearchEnv` options (max_tool_calls, search_k, snippet_chars, max_chars, max_links): what the model reads."""
    replay_sample: int = 20
    """Demonstrations re-run for the replay check (0: all)."""
    navigation_human: bool = True
    """Human-path demonstrations of the `navigation_tasks` given to `make_sft_traces`."""
    navigation_shortest: bool = True
    """Shortest-path demonstrations of those navigation tasks."""


@dataclass
class TracesRun:
    rows: list[dict]
    stats: dict[str, Any]
    provenance: dict[str, Any]
    export: dict[str, Any]
    checks: dict[str, tuple[int, list]]
    """Per TRACE_CHECKS name: (violations, a few examples)."""
    replayed: int = 0
    """Demonstrations the replay check re-ran."""


def make_sft_traces(questions: Sequence[Mapping[str, Any]], snapshot: str | Path, out_dir: str | Path, *,
                    config: TracesConfig = TracesConfig(), teacher: Any = None, teacher_model: str = "",
                    snapshot_id: str = "", run_tag: str = "", log: Callable[[str], None] | None = None,
                    provenance: Mapping[str, Any] | None = None,
                    navigation_tasks: Sequence[Mapping[str, Any]] = ()) -> TracesRun:
    """Demonstrations and (with a `teacher` backend) teacher rollouts for train `questions` on `snapshot`, written
    with `export_traces` to `out_dir` (card, provenance), then checked against TRACE_CHECKS."""
    log = log or (lambda msg: None)
    assert_train_only(questions)
    traces, rejections, teacher_summary = [], {}, {}
    if config.demonstrations:
        demos, demo_rej = demonstrations(questions, SearchEnv.factory(snapshot, session="sft-demo", **config.env),
                                         run_tag=run_tag)
        traces += demos
        rejections.update({f"demonstration_{k}": v for k, v in demo_rej.items()})
        log(f"{len(demos)} demonstrations; rejected {dict(demo_rej)}")
    if navigation_tasks:
        from training.traces_navigation import navigation_demonstrations

        nav, nav_rej = navigation_demonstrations(
            navigation_tasks, SearchEnv.factory(snapshot, session="sft-navigation", **config.env),
            human=config.navigation_human, shortest=config.navigation_shortest, run_tag=run_tag)
        traces += nav
        rejections.update({f"navigation_{k}": v for k, v in nav_rej.items()})
        log(f"{len(nav)} navigation demonstrations from {len(navigation_tasks)} tasks; rejected {dict(nav_rej)}")
    if config.teacher and teacher is not None:
        pool = list(questions[: config.teacher_questions] if config.teacher_questions else questions)
        kept, teacher_rej, teacher_summary = teacher_traces(
            teacher, pool, SearchEnv.factory(snapshot, session="sft-teacher", **config.env), config.teacher_config,
            log=log, run_tag=run_tag)
        traces += kept
        rejections.update({f"teacher_{k}": v for k, v in teacher_rej.items()})
        log(f"{len(kept)} teacher traces from {len(pool)} questions; rejected {dict(teacher_rej)}")
    rows = trace_rows(traces, snapshot_id=snapshot_id, teacher_model=teacher_model)
    stats = {"rejections": dict(sorted(rejections.items())),
             "by_source": {s: sum(1 for r in rows if r["source"] == s) for s in SOURCES},
             "teacher_summary": teacher_summary}
    tc = config.teacher_config
    full_provenance = {
        **dict(provenance or {}), "snapshot_id": snapshot_id, "teacher_model": teacher_model,
        "questions": len(questions), "env": dict(config.env), "prompt_version": PROMPT_VERSION,
        "agent": {"max_turns": tc.agent.max_turns, "max_tokens": tc.agent.max_tokens},
        "teacher": {"enabled": config.teacher and teacher is not None, "questions": config.teacher_questions,
                    "tries": tc.tries, "seed": tc.seed, "temperature": tc.temperature, "min_f1": tc.min_f1},
        **stats}
    export = export_traces(rows, out_dir, card=traces_card(rows, stats, full_provenance), provenance=full_provenance)
    demos = [r for r in rows if r["source"] in DEMONSTRATION_SOURCES]
    replay = demos[: config.replay_sample] if config.replay_sample else demos
    checks = check_traces(rows, traces, SearchEnv(snapshot, session="sft-replay", **config.env), replay)
    return TracesRun(rows, stats, full_provenance, export, checks, len(replay))


def check_traces(rows: Sequence[dict], traces: Sequence[dict], replay_env: SearchEnv,
                 replay: Sequence[dict]) -> dict[str, tuple[int, list]]:
    """TRACE_CHECKS over dataset rows (and the traces they were made from); `replay`: the rows to re-run."""
    not_train = [str(t["question"].get("id")) for t in traces if t["question"].get("split") != "train"]
    malformed = [f"{r['id']}: {p}" for r in rows for p in trace_problems(r["messages"])]
    mismatches = [f"{r['id']}: {p}" for r in replay for p in replay_mismatches(r["messages"], replay_env)]
    return {"train_split_only": (len(not_train), not_train[:5]), "well_formed": (len(malformed), malformed[:5]),
            "demonstrations_replay": (len(mismatches), mismatches[:5])}
