"""The search agent loop: any model of the generation layer, many questions at once, tools on the simulated web.

`run_agent(backend, questions, make_env, config)` keeps one chat and one `SearchEnv` per question and, per turn,
makes ONE batched `backend.generate(...)` over every trajectory still running (the tools are rendered by the
chat template: `TOOL_SCHEMAS`). Each output is parsed (`training.tool_parser`); well-formed calls that fit the
tools run in the env and come back as `tool` messages; a malformed or ill-fitting call is answered with an
error message and counted, never fatal. A trajectory ends when the model calls `answer` (the one answer
convention, see `training.env`), when it writes a turn without any tool call, when the backend fails on it,
or at `max_turns`.

It lives in `training/` beside the environment and the parser: it is the agent's runtime (teacher rollouts,
before/after evaluation, and the same loop GRPO runs inside TRL), not a data transformation.

`summarize(trajectories)` turns a batch into the figures the assets report: valid tool-call rate per turn and
per trajectory, answer rate, exact match and F1 against gold (`pipeline.text.answers`), error counts by kind.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pipeline.text.answers import exact_match, squad_f1
from pipeline.synthesis.questions import golds_of
from training.env import TOOL_SCHEMAS, SearchEnv
from training.tool_parser import check_call, parse_turn, to_message

logger = logging.getLogger(__name__)

PROMPT_VERSION = "search-agent-v1"
SYSTEM_PROMPT = (
    "You are a web research agent. Answer the user's question using the tools: search the web, open pages, "
    "follow their links and read them. Write one short sentence of reasoning, then make exactly one tool call. "
    "When you know the answer, call answer with a short answer (a name, a number or a few words)."
)
FINISH_REASONS = ("answered", "no_tool_call", "max_turns", "backend_error")


@dataclass(frozen=True)
class AgentConfig:
    """How the loop samples and when it stops."""

    max_turns: int = 6
    """Assistant turns per trajectory (each turn: one generation, then its tool calls)."""
    max_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    system_prompt: str = SYSTEM_PROMPT
    prompt_version: str = PROMPT_VERSION

    def sampling_params(self):
        from pipeline.llm import SamplingParams

        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                              seed=self.seed)


@dataclass
class Trajectory:
    """One question's rollout: the chat (OpenAI / TRL message shape), how it ended, and its counters."""

    question_id: str
    question: str
    trajectory_id: str
    messages: list[dict[str, Any]]
    gold: list[str] = field(default_factory=list)
    final_answer: str | None = None
    finish: str = "max_turns"
    turns: int = 0
    valid_turns: int = 0
    """Turns whose tool calls all parsed and fitted the tools (and had at least one)."""
    invalid_turns: int = 0
    """Turns with tool-call syntax that did not parse or did not fit."""
    no_call_turns: int = 0
    tool_calls: int = 0
    errors: Counter = field(default_factory=Counter)
    visited: list[str] = field(default_factory=list)
    seed: int | None = None
    seconds: float = 0.0
    """Wall time of the whole batch this trajectory was rolled out in (turns are generated together)."""

    @property
    def exact_match(self) -> float:
        return exact_match(self.final_answer, self.gold) if self.final_answer is not None and self.gold else 0.0

    @property
    def f1(self) -> float:
        return squad_f1(self.final_answer, self.gold) if self.final_answer is not None and self.gold else 0.0

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["errors"] = dict(self.errors)
        row["exact_match"], row["f1"] = self.exact_match, self.f1
        return row


def initial_messages(question: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]


def golds(row: Mapping[str, Any]) -> list[str]:
    """The gold answer and its aliases of a question row (`hard_queries` schema), answer first."""
    return golds_of(row.get("answer") or "", row.get("aliases") or ())


def run_agent(backend: Any, questions: Sequence[Mapping[str, Any]], make_env: Callable[[], SearchEnv],
              config: AgentConfig = AgentConfig(), *, trajectory_prefix: str = "",
              log: Callable[[str], None] | None = None) -> list[Trajectory]:
    """Roll out every question with `backend` (a `pipeline.llm.Backend` or anything with its `generate`).

    A question row needs `id` and `question`; `answer`/`aliases`, when present, are the gold for scoring.
    Every row is passed to its env's `reset` (as TRL does). Returns one `Trajectory` per question, in order.
    """
    log = log or logger.info
    params = config.sampling_params()
    envs: list[SearchEnv] = []
    trajs: list[Trajectory] = []
    started = time.perf_counter()
    for i, row in enumerate(questions):
        env = make_env()
        qid = str(row.get("id", i))
        tid = f"{trajectory_prefix}{qid}" + (f"-s{config.seed}" if config.seed is not None else "")
        env.reset(**{**dict(row), "trajectory_id": tid})
        envs.append(env)
        trajs.append(Trajectory(question_id=qid, question=str(row["question"]), trajectory_id=env.trajectory_id,
                                messages=initial_messages(str(row["question"]), config.system_prompt),
                                gold=golds(row), seed=config.seed))
    live = list(range(len(trajs)))
    for turn in range(config.max_turns):
        if not live:
            break
        t0 = time.perf_counter()
        outputs = backend.generate([trajs[i].messages for i in live], params, tools=TOOL_SCHEMAS)
        still = []
        for i, completion in zip(live, outputs):
            if _step(trajs[i], envs[i], completion):
                still.append(i)
        log(f"turn {turn + 1}: {len(live)} generated in {time.perf_counter() - t0:.1f} s, {len(still)} go on")
        live = still
    for i in live:
        trajs[i].finish = "max_turns"
    elapsed = time.perf_counter() - started
    for traj, env in zip(trajs, envs):
        traj.visited = env.visited
        traj.seconds = round(elapsed, 3)
    return trajs


def _step(traj: Trajectory, env: SearchEnv, completion: Any) -> bool:
    """Apply one generated turn; True while the trajectory goes on."""
    traj.turns += 1
    if getattr(completion, "finish_reason", "stop") == "error":
        traj.errors[f"backend_{completion.error or 'error'}"] += 1
        traj.finish = "backend_error"
        return False
    text = completion.text
    turn = parse_turn(text)
    problems = [(e.kind, e.detail) for e in turn.errors]
    problems += [p for p in (check_call(c, TOOL_SCHEMAS) for c in turn.calls) if p is not None]
    if problems:
        traj.invalid_turns += 1
        for kind, _ in problems:
            traj.errors[kind] += 1
        traj.messages.append({"role": "assistant", "content": text.strip()})
        traj.messages.append({"role": "tool", "name": "error", "content": error_message(problems)})
        return True
    if not turn.calls:
        traj.no_call_turns += 1
        traj.messages.append({"role": "assistant", "content": turn.content})
        traj.finish = "no_tool_call"
        return False
    traj.valid_turns += 1
    traj.messages.append(to_message(turn))
    for call in turn.calls:
        traj.tool_calls += 1
        try:
            result = getattr(env, call.name)(**call.arguments)
        except Exception as exc:  # noqa: BLE001 - a tool that raises is the model's error message, not ours
            traj.errors["tool_exception"] += 1
            result = f"Error: {call.name} failed ({type(exc).__name__}: {exc})"
        traj.messages.append({"role": "tool", "name": call.name, "content": result})
        if call.name == "answer" and env.done:
            traj.final_answer = env.final_answer
            traj.finish = "answered"
            return False
    return True


def error_message(problems: Sequence[tuple[str, str]]) -> str:
    """What the model reads after a bad tool call: what was wrong and the format to use."""
    details = "; ".join(f"{kind}: {detail}" for kind, detail in problems)
    example = json.dumps({"name": "search", "arguments": {"query": "keywords"}})
    return (f"Error: invalid tool call ({details}). Write exactly one call as "
            f"<tool_call>\n{example}\n</tool_call>")


def summarize(trajs: Sequence[Trajectory]) -> dict[str, Any]:
    """Figures of a batch of rollouts, shaped for Dagster metadata."""
    n = len(trajs)
    turns = sum(t.turns for t in trajs)
    errors: Counter = Counter()
    for t in trajs:
        errors.update(t.errors)
    answered = [t for t in trajs if t.final_answer is not None]
    return {
        "trajectories": n,
        "turns": turns,
        "valid_tool_call_rate": round(sum(t.valid_turns for t in trajs) / turns, 4) if turns else 0.0,
        "trajectories_with_valid_call": round(sum(1 for t in trajs if t.valid_turns) / n, 4) if n else 0.0,
        "invalid_turns": sum(t.invalid_turns for t in trajs),
        "no_call_turns": sum(t.no_call_turns for t in trajs),
        "tool_calls": sum(t.tool_calls for t in trajs),
        "answered_rate": round(len(answered) / n, 4) if n else 0.0,
        "exact_match": round(sum(t.exact_match for t in trajs) / n, 4) if n else 0.0,
        "f1": round(sum(t.f1 for t in trajs) / n, 4) if n else 0.0,
        "finish": dict(Counter(t.finish for t in trajs)),
        "errors": dict(errors),
    }



def evaluate_model(model: str, questions: Sequence[Mapping[str, Any]], make_env: Callable[[], SearchEnv],
                   config: AgentConfig = AgentConfig(), *, backend: str = "transformers",
                   data_dir: str | None = None, num_threads: int | None = None,
                   log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[Trajectory]]:
    """Roll out `questions` with `model` (a folder or "embedded") on a fresh backend; (summary, trajectories)."""
    from pipeline.llm import make_backend

    options = {"num_threads": num_threads} if backend == "transformers" and num_threads else {}
    llm = make_backend(backend, None if model in ("", "embedded") else model, data_dir=data_dir, **options)
    try:
        trajs = run_agent(llm, questions, make_env, config, log=log)
    finally:
        llm.close()
    return summarize(trajs), trajs
