"""The agent loop: one batched generation per turn, tool results fed back, malformed calls answered and counted,
the answer convention, and a real run of the embedded model."""

import pytest

from pipeline.llm import Completion
from training.agent_loop import AgentConfig, run_agent, summarize
from training.env import ANSWER_RECEIVED, TOOL_SCHEMAS, SearchEnv
from training.tool_parser import ToolCall, format_call
from tests.support import WIKI

QUESTIONS = [
    {"id": "basalt", "question": "Which mineral used in watches is linked from the page on a volcanic rock?",
     "answer": "Quartz", "aliases": ["quartz crystal"], "split": "eval"},
    {"id": "penguin", "question": "Which flightless bird do readers of the aardvark page click most?",
     "answer": "Penguin", "aliases": [], "split": "eval"},
    {"id": "fjord", "question": "What warns ships near the Norwegian inlets?", "answer": "Lighthouse",
     "aliases": [], "split": "eval"},
]


class ScriptedBackend:
    """A generation backend whose answer to a chat is `script(question, turn, chat)`; records every call."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def generate(self, chats, params=None, schema=None, *, tools=None):
        self.calls.append({"batch": len(chats), "params": params, "tools": tools})
        out = []
        for chat in chats:
            turn = sum(1 for m in chat if m["role"] == "assistant")
            text = self.script(chat[1]["content"], turn, chat)
            out.append(text if isinstance(text, Completion) else Completion(text=text))
        return out


def call(name, **arguments):
    return format_call(ToolCall(name, arguments))


def script(question, turn, chat):
    if question.startswith("Which mineral"):  # solves it in four turns
        return ["Search. " + call("search", query="volcanic rock"),
                "Open. " + call("open_url", url=WIKI + "Basalt"),
                "Link. " + call("follow_link", title="Quartz"),
                "Done. " + call("answer", answer="quartz")][turn]
    if question.startswith("Which flightless"):  # a malformed call, then plain text
        return ['<tool_call>\n{"name": "search", "arguments": {"query": "aardvark"}\n</tool_call>',
                "I think it is the penguin."][turn]
    return "Thinking. " + call("search", query="lighthouse")  # never answers


@pytest.fixture()
def make_env(small_snapshot):
    return SearchEnv.factory(small_snapshot.path, session="test-loop")


def test_one_batched_generation_per_turn_over_live_trajectories(make_env):
    backend = ScriptedBackend(script)
    trajs = run_agent(backend, QUESTIONS, make_env, AgentConfig(max_turns=5))
    assert [c["batch"] for c in backend.calls] == [3, 3, 2, 2, 1]  # penguin stops at turn 2, basalt at turn 4
    assert all(c["tools"] == TOOL_SCHEMAS for c in backend.calls)
    assert backend.calls[0]["params"].temperature == 0 and backend.calls[0]["params"].max_tokens == 160
    basalt, penguin, fjord = trajs
    assert [t.finish for t in trajs] == ["answered", "no_tool_call", "max_turns"]

    assert basalt.final_answer == "quartz" and basalt.exact_match == 1.0 and basalt.f1 == 1.0
    assert basalt.turns == 4 and basalt.valid_turns == 4 and basalt.tool_calls == 4
    assert basalt.visited == [WIKI + "Basalt", WIKI + "Quartz"]
    roles = [m["role"] for m in basalt.messages]
    assert roles == ["system", "user"] + ["assistant", "tool"] * 4
    assert basalt.messages[2]["tool_calls"] == [{"type": "function", "function": {
        "name": "search", "arguments": {"query": "volcanic rock"}}}]
    assert basalt.messages[2]["content"] == "Search."
    assert basalt.messages[7]["content"].startswith("Title: Quartz")
    assert basalt.messages[-1] == {"role": "tool", "name": "answer", "content": ANSWER_RECEIVED}

    assert penguin.invalid_turns == 1 and penguin.no_call_turns == 1 and penguin.errors == {"invalid_json": 1}
    error = penguin.messages[3]
    assert error["role"] == "tool" and error["content"].startswith("Error: invalid tool call (invalid_json")
    assert "<tool_call>" in error["content"]  # shows the format to use
    assert penguin.messages[2]["content"].startswith("<tool_call>")  # the bad turn stays as the model wrote it
    assert penguin.final_answer is None and penguin.exact_match == 0.0

    assert fjord.turns == 5 and fjord.valid_turns == 5 and fjord.final_answer is None

    s = summarize(trajs)
    assert s["trajectories"] == 3 and s["turns"] == 11
    assert s["valid_tool_call_rate"] == round(9 / 11, 4)
    assert s["trajectories_with_valid_call"] == round(2 / 3, 4)
    assert s["answered_rate"] == round(1 / 3, 4) and s["exact_match"] == round(1 / 3, 4)
    assert s["finish"] == {"answered": 1, "no_tool_call": 1, "max_turns": 1}
    assert s["errors"] == {"invalid_json": 1}


def test_calls_that_do_not_fit_the_tools_are_answered_not_run(make_env):
    outputs = [call("browse", url="x"), call("search", query="a", k=3), call("open_url", url=WIKI + "Kelvin",
                                                                            offset="1"),
               call("search", query="Kelvin") + call("nonsense"), "<tool_call>oops"]

    backend = ScriptedBackend(lambda q, turn, chat: outputs[turn])
    [traj] = run_agent(backend, QUESTIONS[:1], make_env, AgentConfig(max_turns=5))
    assert traj.invalid_turns == 5 and traj.tool_calls == 0 and traj.finish == "max_turns"
    assert traj.errors == {"unknown_tool": 2, "unknown_argument": 1, "wrong_type": 1, "unclosed_tag": 1}
    tool_messages = [m["content"] for m in traj.messages if m["role"] == "tool"]
    assert all(m.startswith("Error: invalid tool call") for m in tool_messages)


def test_backend_errors_end_only_their_trajectory(make_env):
    def flaky(question, turn, chat):
        if question.startswith("Which flightless"):
            return Completion(text="", finish_reason="error", error="prompt_too_long")
        return call("answer", answer="Lighthouse")

    trajs = run_agent(ScriptedBackend(flaky), QUESTIONS, make_env)
    assert [t.finish for t in trajs] == ["answered", "backend_error", "answered"]
    assert trajs[1].errors == {"backend_prompt_too_long": 1}
    assert trajs[2].exact_match == 1.0 and trajs[0].exact_match == 0.0


def test_each_trajectory_gets_its_own_env_and_id(make_env, small_snapshot):
    from pipeline.simulator.calllog import read_trajectory

    backend = ScriptedBackend(lambda q, turn, chat: call("search", query=q[:20]))
    trajs = run_agent(backend, QUESTIONS, make_env, AgentConfig(max_turns=1, seed=7), trajectory_prefix="t-")
    assert [t.trajectory_id for t in trajs] == ["t-basalt-s7", "t-penguin-s7", "t-fjord-s7"]
    assert backend.calls[0]["params"].seed == 7
    SearchEnv.factory(small_snapshot.path)().simulator.call_log.flush()
    logged = read_trajectory(small_snapshot.log_dir, "t-penguin-s7")
    assert [c["op"] for c in logged] == ["search"]
    assert logged[0]["args"]["query"] == QUESTIONS[1]["question"][:20]


@pytest.mark.slow
def test_the_embedded_model_in_the_loop(make_env, tmp_path_factory):
    """The real 135M model, 3 questions, 2 turns, short outputs: the loop runs end to end whatever it writes."""
    from pipeline.llm.model_setup import ensure_embedded_model
    from pipeline.llm.transformers_backend import TransformersBackend

    model_dir = ensure_embedded_model(tmp_path_factory.getbasetemp() / "websim_home")
    backend = TransformersBackend(str(model_dir), num_threads=1, cache=None)
    batches = []
    generate = backend.generate
    backend.generate = lambda chats, *a, **k: batches.append(len(chats)) or generate(chats, *a, **k)
    try:
        trajs = run_agent(backend, QUESTIONS, make_env, AgentConfig(max_turns=2, max_tokens=24))
    finally:
        backend.close()
    assert len(trajs) == 3 and batches[0] == 3 and len(batches) <= 2
    for t in trajs:
        assert t.turns >= 1 and t.finish in ("answered", "no_tool_call", "max_turns")
        assert t.messages[:2][1] == {"role": "user", "content": t.question}
        assert t.valid_turns + t.invalid_turns + t.no_call_turns == t.turns
        assert all(m["role"] in ("assistant", "tool") for m in t.messages[2:])
    s = summarize(trajs)
    assert 0.0 <= s["valid_tool_call_rate"] <= 1.0 and s["turns"] == sum(t.turns for t in trajs)
