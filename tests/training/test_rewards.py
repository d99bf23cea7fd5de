"""The search agent's rewards on literal completions: answer correctness against gold and aliases, the format
rubric, the tool-call cost, routing between search and report rows, the LLM judge, and the sanity check."""

import json

import pytest

from pipeline.llm import Completion
from training.env import ANSWER_RECEIVED
from training.rewards import (
    RewardConfig,
    answer_completion,
    calls_needed,
    exact_match_reward,
    f1_reward,
    make_judge_reward,
    make_rewards,
    make_tool_cost_reward,
    read_rollout,
    reward_sanity,
    tool_cost_reward,
    tool_format_reward,
    total_rewards,
)


def call(name, **arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def turn(name, result="(result)", **arguments):
    """An assistant turn with one parsed call and its tool message, as TRL's tool loop builds them."""
    return [{"role": "assistant", "content": f"Calling {name}.",
             "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "name": name, "content": result}]


COLS = {"task_kind": ["search"], "answer": ["Gustave Eiffel"], "aliases": [["Eiffel"]], "hops": [2],
        "question": ["Who built it?"]}


def cols(n=1, **overrides):
    return {k: v * n for k, v in {**COLS, **overrides}.items()}


# ---- correctness ----------------------------------------------------------------------------------------------------

def test_exact_match_and_f1_normalise_and_accept_aliases():
    completions = [
        "Found it. " + call("answer", answer="gustave eiffel."),      # case and punctuation
        "So: " + call("answer", answer="Eiffel"),                      # an alias
        call("answer", answer="the engineer Gustave Eiffel"),          # partial
        call("answer", answer="Paris"),                                # wrong
        "Gustave Eiffel",                                              # said, never answered through the tool
    ]
    c = cols(len(completions))
    assert exact_match_reward(completions, **c) == [1.0, 1.0, 0.0, 0.0, 0.0]
    f1 = f1_reward(completions, **c)
    assert f1[:2] == [1.0, 1.0] and f1[2] == pytest.approx(0.8) and f1[3:] == [0.0, 0.0]


def test_the_first_answer_call_counts_as_the_env_does():
    chat = turn("answer", ANSWER_RECEIVED, answer="Paris") + turn("answer", "Error: you have already answered.",
                                                                  answer="Gustave Eiffel")
    assert exact_match_reward([chat], **COLS) == [0.0]


def test_the_env_answer_is_authoritative_under_trl():
    class Env:  # what TRL passes as `environments`: the rollout's SearchEnv
        steps, final_answer = 1, "Gustave Eiffel"

    text_without_answer = [{"role": "assistant", "content": "I think it is Paris."}]
    assert exact_match_reward([text_without_answer], environments=[Env()], **COLS) == [1.0]
    Env.final_answer = None
    assert exact_match_reward([turn("answer", answer="Gustave Eiffel")], environments=[Env()], **COLS) == [0.0]


# ---- format ---------------------------------------------------------------------------------------------------------

def test_format_rubric_on_literal_completions():
    good = turn("search", query="tower") + turn("answer", ANSWER_RECEIVED, answer="Gustave Eiffel") + [
        {"role": "assistant", "content": "Final answer: Gustave Eiffel"}]
    completions = [
        good,
        "Step. " + call("search", query="tower") + "\n" + call("answer", answer="x"),   # one turn, valid, answer last
        turn("answer", ANSWER_RECEIVED, answer="x") + turn("search", query="more"),      # a call after the answer
        turn("answer", ANSWER_RECEIVED, answer="x") + turn("answer", "Error", answer="y"),  # two answers
        [{"role": "assistant", "content": '<tool_call>{"name": "search", "arguments": {"query": </tool_call>'},
         {"role": "tool", "name": "error", "content": "Error: invalid tool call"}]
        + turn("answer", ANSWER_RECEIVED, answer="x"),                                  # one malformed turn of two
        turn("search", query="tower"),                                                   # never answers
        call("answer", answer="x", extra=1),                                             # argument the tool lacks
        "The answer is Gustave Eiffel.",                                                 # no tool call at all
        turn("answer", ANSWER_RECEIVED, answer="  "),                                    # empty answer
    ]
    scores = tool_format_reward(completions, **cols(len(completions)))
    assert scores == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3, 5 / 6, 1 / 3, 0.0, 0.0, 2 / 3])


def test_read_rollout_counts_calls_turns_and_answer():
    r = read_rollout(answer_completion("Gustave Eiffel", hops=2))
    assert (r.answer, r.answer_calls, r.tool_calls, r.graded_turns, r.valid_turns, r.calls_after_answer) == (
        "Gustave Eiffel", 1, 4, 5, 5, 0)


# ---- cost -----------------------------------------------------------------------------------------------------------

def test_tool_cost_charges_only_calls_beyond_what_the_hops_need():
    assert calls_needed(2) == 5 and calls_needed(None) == 4 and calls_needed(3, slack=0) == 5

    def rollout(n_calls):
        return [m for i in range(n_calls) for m in turn("search", query=f"q{i}")] + turn("answer", answer="x")

    completions = [rollout(n) for n in (1, 5, 6, 7, 30)]
    assert tool_cost_reward(completions, **cols(5)) == [0.0, 0.0, -0.25, -0.5, -1.0]
    strict = make_tool_cost_reward(slack=0, per_call=0.5)
    assert strict.__name__ == "tool_cost_reward"
    assert strict(completions, **cols(5)) == [0.0, -0.5, -1.0, -1.0, -1.0]


# ---- search and report rows in one batch -------------------------------------------------------------------------

def test_search_rewards_skip_report_rows_and_report_rewards_skip_search_rows():
    from training.rewards_report import order_reward

    completions = [call("answer", answer="Gustave Eiffel"), "C2 C1 C3"]
    kwargs = {"task_kind": ["search", "reorder"], "answer": ["Gustave Eiffel", None], "aliases": [[], None],
              "hops": [1, None], "gold_order": [None, ["C1", "C2", "C3"]]}
    assert exact_match_reward(completions, **kwargs) == [1.0, None]
    assert tool_format_reward(completions, **kwargs)[1] is None
    assert order_reward(completions, **kwargs)[0] is None and order_reward(completions, **kwargs)[1] > 0
    funcs, weights = make_rewards(RewardConfig())
    totals, per = total_rewards(funcs, weights, completions, **kwargs)
    assert totals[0] == pytest.approx(1.0 + 0.5 + 0.25)  # exact, F1 1, perfect format, no cost
    second = [p[1] for p in per.values()]
    assert totals[1] == pytest.approx(sum(w * v for w, v in zip(weights, second) if v is not None))


def test_make_rewards_follows_the_weights():
    funcs, weights = make_rewards(RewardConfig(f1=0.0, report=0.0, navigation=0.0, tool_cost=0.5))
    assert [f.__name__ for f in funcs] == ["exact_match_reward", "tool_format_reward", "tool_cost_reward"]
    assert weights == [1.0, 0.25, 0.5]
    funcs, weights = make_rewards(RewardConfig(f1=0.0, report=0.0, navigation=2.0))
    assert [f.__name__ for f in funcs][-3:] == ["navigation_reached_reward", "navigation_efficiency_reward",
                                                "navigation_invalid_moves_reward"]
    assert weights[-3:] == [2.0, 1.0, 0.5]  # NAVIGATION_REWARD_WEIGHTS scaled
    with pytest.raises(ValueError, match="judge"):
        make_rewards(RewardConfig(judge=1.0))
    names = [f.__name__ for f in make_rewards(RewardConfig())[0]]
    assert len(names) == len(set(names))  # TRL logs rewards by name


# ---- the judge --------------------------------------------------------------------------------------------------

class ScriptedJudge:
    """A generation-layer backend whose verdict is whether the proposed answer contains "Eiffel"."""

    def __init__(self):
        self.calls = []

    def generate(self, chats, params, schema=None):
        self.calls.append((chats, params, schema))
        out = []
        for chat in chats:
            proposed = chat[-1]["content"].rsplit("Proposed answer: ", 1)[1]
            if proposed == "garbled":
                out.append(Completion(text="???", error="invalid_json"))
            else:
                out.append(Completion(text="", parsed={"correct": "Eiffel" in proposed}))
        return out


def test_judge_reward_asks_the_generation_layer_once_per_batch():
    judge = ScriptedJudge()
    reward = make_judge_reward(judge)
    completions = [call("answer", answer="Mr Eiffel"), call("answer", answer="Paris"), "no answer",
                   call("answer", answer="garbled"), "C1 C2"]
    kwargs = cols(5)
    kwargs["task_kind"] = ["search"] * 4 + ["reorder"]
    assert reward(completions, **kwargs) == [1.0, 0.0, 0.0, None, None]
    assert len(judge.calls) == 1
    chats, params, schema = judge.calls[0]
    assert len(chats) == 3 and params.temperature == 0.0 and schema["required"] == ["correct"]
    assert "Gustave Eiffel | Eiffel" in chats[0][-1]["content"] and "Who built it?" in chats[0][-1]["content"]
    funcs, weights = make_rewards(RewardConfig(judge=0.5), judge_backend=judge)
    assert funcs[-1].__name__ == "judge_reward" and weights[-1] == 0.5


# ---- sanity -----------------------------------------------------------------------------------------------------

ROWS = [{"id": f"q{i}", "question": f"Question {i}?", "answer": a, "aliases": al, "hops": 1 + i % 4}
        for i, (a, al) in enumerate([("watches", []), ("termites", ["termite"]), ("absolute zero", []),
                                     ("punched cards", ["punch cards"]), ("1889", []), ("Gustave Eiffel", [])])]


def test_reward_sanity_passes_for_gold_and_flags_a_broken_reward():
    report = reward_sanity(ROWS, sample=6)
    assert report["passed"] and report["sampled"] == 6
    assert report["mean_gold"] == 1.0 and report["mean_random"] <= 0.3
    assert all(e["gold"] != e["random"] for e in report["examples"])
    # a reward that pays for format alone cannot tell gold from wrong: the check fails
    broken = reward_sanity(ROWS, RewardConfig(exact_match=0.0, f1=0.0, tool_cost=0.0), sample=6)
    assert not broken["passed"] and len(broken["gold_not_above_random"]) == 6
    assert not reward_sanity([], sample=4)["passed"]
