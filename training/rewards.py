"""Verifier rewards of the search agent, in TRL's reward-function contract, and their sanity check.

Every reward is `f(completions, **kwargs) -> list[float | None]` (TRL 1.16 `GRPOTrainer(reward_funcs=...)`): dataset
columns arrive as keyword lists (`question`, `answer`, `aliases`, `hops`, `task_kind`, ...), and under
`environment_factory` TRL adds `environments`, the `SearchEnv` of each rollout. A completion is a string (one
assistant turn as the model wrote it) or a chat: the assistant and tool messages after the prompt, as TRL's tool
loop and `training.agent_loop` both build them. A row the reward does not grade gets None (TRL leaves it out).

The answer convention (`training.env`): the argument of the rollout's first `answer` call is its answer (the env
refuses later ones); under TRL the env's `final_answer` is used, which is the same thing, read from what ran.

- `exact_match` / `f1`: the answer against the gold answer and its aliases, SQuAD-normalised
  (`pipeline.text.answers`, the rule question synthesis verified the gold with); no answer scores 0.
- `tool_format` (`tool_format_reward`): the rubric, three checks worth a third each: every turn up to the answer
  made well-formed calls that fit the tools (share of such turns), exactly one `answer` call, and it is the last
  tool call with a non-empty argument. A closing turn without calls after the answer is allowed (the SFT traces end that way).
- `tool_cost`: <= 0: `-cost_per_extra_call` per tool call (answer not counted) beyond what the question needs,
  `hops + 2` (search, open the start page, one link per hop) plus `call_slack`, down to -1.
- the report-task verifiers (`training.rewards_report`), None on search rows; the search rewards are None on
  report rows, so one run can mix both kinds of task.
- `judge` (optional, weight 0 by default): a model of the generation layer says whether the answer means the
  gold answer (JSON `{"correct": bool}`, greedy, cached by the generation layer); None where it gave no verdict.

`make_rewards(RewardConfig)` gives the functions and their weights for `GRPOConfig(reward_weights=...)`;
`reward_sanity(rows, ...)` scores the gold answer and a wrong one for a sample of questions (the asset check).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

from pipeline.text.answers import exact_match, normalize_answer, squad_f1
from pipeline.synthesis.questions import golds_of
from training.env import ANSWER_RECEIVED, TOOL_SCHEMAS
from training.rewards_report import REPORT_REWARD_WEIGHTS, REPORT_REWARDS
from training.tool_parser import OPEN, ToolCall, check_call, parse_turn

SEARCH_KIND = "search"
"""`task_kind` of a search question row (report task rows carry their own kinds)."""
REPORT_KINDS = ("reorder", "synthesise", "analyse_merge")

RewardFunc = Callable[..., list]


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the rewards (0 leaves a reward out) and the cost term's parameters."""

    exact_match: float = 1.0
    f1: float = 0.5
    format: float = 0.25
    tool_cost: float = 0.25
    report: float = 1.0
    """Scales every report-task verifier's weight (`REPORT_REWARD_WEIGHTS`)."""
    navigation: float = 1.0
    """Scales every navigation reward's weight (`training.rewards_navigation.NAVIGATION_REWARD_WEIGHTS`)."""
    judge: float = 0.0
    """The LLM-judge reward's weight; > 0 needs a judge backend."""
    call_slack: int = 1
    """Tool calls allowed beyond hops + 2 before the cost starts (reading on in a long page)."""
    cost_per_extra_call: float = 0.25

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "RewardConfig":
        return cls(**dict(d or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def search_max(self) -> float:
        """The best total a search rollout can get (cost 0, judge agrees)."""
        return self.exact_match + self.f1 + self.format + self.judge


# ---- reading a rollout --------------------------------------------------------------------------------------------

@dataclass
class Rollout:
    """What the rewards need of one completion."""

    answer: str | None = None
    answer_calls: int = 0
    tool_calls: int = 0
    """Calls other than `answer`."""
    graded_turns: int = 0
    """Assistant turns up to (and with) the first answer, or all turns without one."""
    valid_turns: int = 0
    """Graded turns whose calls (at least one) all parsed and fit the tools."""
    calls_after_answer: int = 0


def as_messages(completion: Any) -> list[dict[str, Any]]:
    """A completion as a chat: a string is one assistant turn; a message dict is a one-message chat."""
    if completion is None:
        return []
    if isinstance(completion, str):
        return [{"role": "assistant", "content": completion}]
    if isinstance(completion, dict):
        return [completion]
    return [m for m in completion if isinstance(m, dict)]


def _turn_calls(message: Mapping[str, Any]) -> tuple[list[ToolCall], bool]:
    """(the calls of an assistant turn, whether all its tool syntax was good). Structured `tool_calls` are what a
    parser accepted (and a loop ran); raw `<tool_call>` text in the content is a call that did not parse, or a
    string completion that nobody parsed yet: parse it here."""
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    calls = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function", tc) if isinstance(tc, dict) else {}
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                return calls, False
        if not isinstance(args, dict) or not isinstance(fn.get("name"), str):
            return calls, False
        calls.append(ToolCall(fn["name"], args))
    ok = True
    if OPEN in content or "</tool_call>" in content:
        parsed = parse_turn(content)
        if message.get("tool_calls"):
            ok = False  # raw call text beside parsed calls: the parser left part of the turn behind
        else:
            calls.extend(parsed.calls)
            ok = not parsed.errors
    return calls, ok and all(check_call(c, TOOL_SCHEMAS) is None for c in calls)


def read_rollout(completion: Any) -> Rollout:
    r = Rollout()
    answered = False
    for message in as_messages(completion):
        if message.get("role") != "assistant":
            continue
        calls, ok = _turn_calls(message)
        if answered:
            r.calls_after_answer += len(calls) if ok else 1
            r.answer_calls += sum(1 for c in calls if c.name == "answer") if ok else 0
            continue
        r.graded_turns += 1
        r.valid_turns += bool(ok and calls)
        if not ok:
            continue  # a turn with a bad call runs none of its calls (agent loop), or fails (TRL)
        r.answer_calls += sum(1 for c in calls if c.name == "answer")
        for call in calls:
            if answered:
                r.calls_after_answer += 1
            elif call.name == "answer":
                answered = True
                value = call.arguments.get("answer")
                r.answer = value if isinstance(value, str) else (None if value is None else str(value))
            else:
                r.tool_calls += 1
    return r


def _env_answer(env: Any) -> tuple[bool, str | None]:
    """(whether `env` is a search env, its answer)."""
    if env is not None and hasattr(env, "final_answer") and hasattr(env, "steps"):
        return True, env.final_answer
    return False, None


def _column(kwargs: Mapping[str, Any], name: str, n: int) -> list:
    values = kwargs.get(name)
    return list(values) if values is not None else [None] * n


def _search_rows(completions: Sequence[Any], kwargs: Mapping[str, Any]):
    """(is a search row, rollout, answer, golds, hops) per completion."""
    n = len(completions)
    kinds, answers, aliases, hops = (_column(kwargs, k, n) for k in ("task_kind", "answer", "aliases", "hops"))
    envs = _column(kwargs, "environments", n)
    for i, completion in enumerate(completions):
        rollout = read_rollout(completion)
        is_env, env_answer = _env_answer(envs[i])
        answer = env_answer if is_env else rollout.answer
        search = (kinds[i] or SEARCH_KIND) == SEARCH_KIND and answers[i] is not None
        yield search, rollout, answer, golds_of(answers[i] or "", aliases[i] or ()), hops[i]


# ---- the rewards --------------------------------------------------------------------------------------------------

def exact_match_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """1 when the answer equals the gold answer or an alias after normalisation, else 0 (no answer: 0)."""
    return [(exact_match(answer, golds) if answer is not None and golds else 0.0) if search else None
            for search, _, answer, golds, _ in _search_rows(completions, kwargs)]


def f1_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """Token F1 of the answer against the best-matching gold answer or alias (no answer: 0)."""
    return [(squad_f1(answer, golds) if answer is not None and golds else 0.0) if search else None
            for search, _, answer, golds, _ in _search_rows(completions, kwargs)]


def format_score(rollout: Rollout) -> float:
    valid = rollout.valid_turns / rollout.graded_turns if rollout.graded_turns else 0.0
    one_answer = float(rollout.answer_calls == 1)
    last = float(rollout.answer_calls >= 1 and rollout.calls_after_answer == 0 and bool((rollout.answer or "").strip()))
    return (valid + one_answer + last) / 3


def tool_format_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
    """The rubric: valid calls in every turn, exactly one answer call, and it is the last call."""
    return [format_score(rollout) if search else None
            for search, rollout, _, _, _ in _search_rows(completions, kwargs)]


def calls_needed(hops: int | None, slack: int = 1) -> int:
    """Tool calls (answer not counted) a question needs: search, open the start page, one link per hop, + slack."""
    return max(int(hops or 1), 1) + 2 + max(slack, 0)


def make_tool_cost_reward(slack: int = 1, per_call: float = 0.25) -> RewardFunc:
    def tool_cost_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
        """-per_call for every tool call beyond what the question needs (hops + 2 + slack), down to -1."""
        return [-min(1.0, per_call * max(0, rollout.tool_calls - calls_needed(hops, slack))) if search else None
                for search, rollout, _, _, hops in _search_rows(completions, kwargs)]

    return tool_cost_reward


tool_cost_reward = make_tool_cost_reward()

JUDGE_SYSTEM = ("You grade answers to questions. Given a question, the correct answer (and accepted variants) and a "
                "proposed answer, say whether the proposed answer means the same thing as the correct answer. "
                'Reply with JSON: {"correct": true} or {"correct": false}.')
JUDGE_SCHEMA = {"type": "object", "properties": {"correct": {"type": "boolean"}}, "required": ["correct"]}


def judge_chat(question: str, golds: Sequence[str], answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Question: {question}\nCorrect answer: {' | '.join(golds)}\n"
                                        f"Proposed answer: {answer}"}]


def make_judge_reward(backend: Any, max_tokens: int = 16) -> RewardFunc:
    """An LLM-judge reward over a `pipeline.llm` backend: 1 if the judge calls the answer correct, 0 if not or if
    there is no answer, None where the judge gave no valid verdict. One batched, greedy, cached call per batch."""
    from pipeline.llm import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=0)

    def judge_reward(completions: Sequence[Any], **kwargs) -> list[float | None]:
        rows = list(_search_rows(completions, kwargs))
        questions = _column(kwargs, "question", len(completions))
        out: list[float | None] = [None if not search else 0.0 for search, *_ in rows]
        todo = [i for i, (search, _, answer, golds, _) in enumerate(rows)
                if search and golds and (answer or "").strip()]
        if todo:
            chats = [judge_chat(str(questions[i] or ""), rows[i][3], str(rows[i][2])) for i in todo]
            for i, completion in zip(todo, backend.generate(chats, params, schema=JUDGE_SCHEMA)):
                verdict = completion.parsed.get("correct") if isinstance(completion.parsed, dict) else None
                out[i] = float(verdict) if isinstance(verdict, bool) else None
        return out

    return judge_reward


def make_rewards(config: RewardConfig = RewardConfig(), judge_backend: Any = None
                 ) -> tuple[list[RewardFunc], list[float]]:
    """The reward functions with non-zero weight, and their weights (TRL's `reward_weights`), in one order."""
    pairs: list[tuple[RewardFunc, float]] = [
        (exact_match_reward, config.exact_match), (f1_reward, config.f1), (tool_format_reward, config.format),
        (make_tool_cost_reward(config.call_slack, config.cost_per_extra_call), config.tool_cost)]
    pairs += [(f, w * config.report) for f, w in zip(REPORT_REWARDS, REPORT_REWARD_WEIGHTS)]
    from training.rewards_navigation import NAVIGATION_REWARD_WEIGHTS, NAVIGATION_REWARDS  # it reads rollouts here

    pairs += [(f, w * config.navigation) for f, w in zip(NAVIGATION_REWARDS, NAVIGATION_REWARD_WEIGHTS)]
    if config.judge:
        if judge_backend is None:
            raise ValueError("the judge reward has weight > 0 but no judge backend was given")
        pairs.append((make_judge_reward(judge_backend), config.judge))
    pairs = [(f, float(w)) for f, w in pairs if w]
    return [f for f, _ in pairs], [w for _, w in pairs]


def total_rewards(funcs: Sequence[RewardFunc], weights: Sequence[float], completions: Sequence[Any],
                  **columns: Any) -> tuple[list[float | None], dict[str, list[float | None]]]:
    """The weighted sum TRL trains on (None rewards left out; None when every reward is None), and each reward."""
    outputs = [f(completions, **columns) for f in funcs]
    totals: list[float | None] = []
    for i in range(len(completions)):
        values = [(w, out[i]) for out, w in zip(outputs, weights)]
        scored = [w * v for w, v in values if v is not None]
        totals.append(sum(scored) if scored else None)
    return totals, {f.__name__: out for f, out in zip(funcs, outputs)}


# ---- sanity: gold answers high, wrong answers low -------------------------------------------------------------

def answer_completion(answer: str, hops: int | None = 1) -> list[dict[str, Any]]:
    """A well-formed rollout in the needed number of calls that answers `answer` (tool texts are placeholders:
    the rewards read calls and answers, not what the tools returned)."""
    def turn(name: str, **arguments: Any) -> list[dict[str, Any]]:
        call = ToolCall(name, arguments).as_message_call()
        result = ANSWER_RECEIVED if name == "answer" else f"({name} result)"
        return [{"role": "assistant", "content": f"I call {name}.", "tool_calls": [call]},
                {"role": "tool", "name": name, "content": result}]

    messages = turn("search", query="start page") + turn("open_url", url="https://example.org/start")
    for i in range(max(int(hops or 1), 1)):
        messages += turn("follow_link", title=f"link {i + 1}")
    return messages + turn("answer", answer=answer) + [{"role": "assistant", "content": f"Final answer: {answer}"}]


def _wrong_answer(row: Mapping[str, Any], pool: Sequence[str], rng: random.Random) -> str:
    golds = {normalize_answer(g) for g in golds_of(row.get("answer") or "", row.get("aliases") or ())}
    candidates = [a for a in pool if normalize_answer(a) not in golds and not squad_f1(a, list(golds))]
    return rng.choice(candidates) if candidates else "zzyzx quorble"


def reward_sanity(rows: Sequence[Mapping[str, Any]], config: RewardConfig = RewardConfig(), *, sample: int = 32,
                  seed: int = 0, gold_min: float = 0.9, random_max: float = 0.3) -> dict[str, Any]:
    """Score, for a sample of question rows, a rollout answering the gold answer and one answering another
    question's answer (a plausible wrong answer, sharing no token with gold), with the rewards of `config`
    (the judge left out). Totals are divided by the best possible total. Passes when the mean gold score is
    >= `gold_min`, the mean wrong score <= `random_max`, and gold beats wrong on every row."""
    rng = random.Random(seed)
    rows = [r for r in rows if (r.get("answer") or "").strip()]
    picked = rng.sample(rows, min(sample, len(rows))) if rows else []
    pool = [str(r["answer"]) for r in rows]
    cfg = RewardConfig(**{**config.to_dict(), "judge": 0.0})
    funcs, weights = make_rewards(cfg)
    best = cfg.search_max() or 1.0
    columns = {"task_kind": [SEARCH_KIND] * len(picked), "answer": [r["answer"] for r in picked],
               "aliases": [list(r.get("aliases") or []) for r in picked], "hops": [r.get("hops") for r in picked],
               "question": [r.get("question") for r in picked]}
    gold_answers = [str(r["answer"]) for r in picked]
    wrong_answers = [_wrong_answer(r, pool, rng) for r in picked]
    gold, _ = total_rewards(funcs, weights, [answer_completion(a, r.get("hops")) for a, r in zip(gold_answers, picked)],
                            **columns)
    wrong, _ = total_rewards(funcs, weights,
                             [answer_completion(a, r.get("hops")) for a, r in zip(wrong_answers, picked)], **columns)
    gold = [round((g or 0.0) / best, 4) for g in gold]
    wrong = [round((w or 0.0) / best, 4) for w in wrong]
    mean_gold = round(sum(gold) / len(gold), 4) if gold else 0.0
    mean_wrong = round(sum(wrong) / len(wrong), 4) if wrong else 0.0
    losers = [str(r.get("id")) for r, g, w in zip(picked, gold, wrong) if g <= w]
    passed = bool(picked) and mean_gold >= gold_min and mean_wrong <= random_max and not losers
    return {"passed": passed, "sampled": len(picked), "mean_gold": mean_gold, "mean_random": mean_wrong,
            "gold_min": gold_min, "random_max": random_max, "gold_not_above_random": losers[:10],
            "examples": [{"id": r.get("id"), "gold": a, "gold_score": g, "random": b, "random_score": w}
                         for r, a, g, b, w in list(zip(picked, gold_answers, gold, wrong_answers, wrong))[:5]],
            "weights": cfg.to_dict()}
