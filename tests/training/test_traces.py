"""SFT traces: demonstrations are real simulator calls returning what the trace says, teacher rollouts are
rejection-sampled against gold, eval questions never get in, and the dataset keeps every message exact."""

import json

import pytest

from pipeline.simulator.calllog import read_trajectory
from training.agent_loop import AgentConfig
from training.env import ANSWER_RECEIVED, TOOL_SCHEMAS, SearchEnv
from training.tool_parser import ToolCall, format_call
from training.traces import (
    TeacherConfig,
    assert_train_only,
    chat_messages,
    demonstration,
    demonstrations,
    plan_hops,
    replay_mismatches,
    teacher_traces,
    trace_problems,
    trace_rows,
    trace_table,
)
from tests.support import WIKI, SeededTeacher, question, small_questions, step, train_questions


@pytest.fixture()
def make_env(small_snapshot):
    return SearchEnv.factory(small_snapshot.path, session="test-demo")


def tool_calls(messages):
    return [c["function"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]


def clean(messages):
    """Messages as they were made, from a stored row (null keys dropped, arguments decoded)."""
    return chat_messages(messages)


# ---- demonstrations ---------------------------------------------------------------------------------------------

def test_a_demonstration_walks_the_chain_with_real_calls(make_env, small_snapshot):
    env = make_env()
    # a run tag of its own: other tests replay the same question on this snapshot into the same call log
    trace, reason = demonstration(small_questions()[0], env, run_tag="walks-the-chain")
    assert reason is None
    calls = tool_calls(trace["messages"])
    assert calls == [{"name": "search", "arguments": {"query": "Aardvark"}},
                     {"name": "open_url", "arguments": {"url": WIKI + "Aardvark"}},
                     {"name": "follow_link", "arguments": {"title": "Basalt"}},
                     {"name": "follow_link", "arguments": {"title": "Quartz"}},
                     {"name": "answer", "arguments": {"answer": "watches"}}]
    messages = trace["messages"]
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "tool"] * 5 + ["assistant"]
    assert all(m["content"] for m in messages if m["role"] == "assistant")  # reasoning before every call
    assert messages[-1] == {"role": "assistant", "content": "Final answer: watches"}
    assert "used in watches" in messages[-3]["content"]  # the answer turn quotes the page it read
    assert trace_problems(messages) == []
    # every step is a real simulator call returning what the trace says...
    assert replay_mismatches(messages, make_env()) == []
    # ...and the call log holds them under the trace's trajectory id
    env.simulator.call_log.flush()
    logged = read_trajectory(small_snapshot.log_dir, trace["trajectory_id"])
    assert [c["op"] for c in logged] == ["search", "fetch", "links", "fetch", "links", "fetch"]


def test_the_start_page_is_searched_with_the_questions_words_for_it(make_env):
    # a question describes its first page ("a burrowing mammal ..."): the demonstration searches those words and
    # opens the result that fits, never the page's name, which the agent cannot know yet
    row = {**small_questions()[0], "clues": [
        {"kind": "kind", "text": "thing"},
        {"kind": "description", "text": "a burrowing nocturnal mammal that feeds on ants"},
        {"kind": "named_page", "text": "Penguin"}]}
    trace, reason = demonstration(row, make_env())
    assert reason is None
    calls = tool_calls(trace["messages"])
    assert calls[:2] == [{"name": "search", "arguments": {"query": "a burrowing nocturnal mammal that feeds on ants"}},
                         {"name": "open_url", "arguments": {"url": WIKI + "Aardvark"}}]
    said = [m["content"] for m in trace["messages"] if m["role"] == "assistant"]
    assert "Aardvark" not in said[0] and 'The result Aardvark fits "a burrowing' in said[1]
    assert replay_mismatches(trace["messages"], make_env()) == []
    # a description the search does not find is no demonstration
    lost = {**row, "clues": [{"kind": "description", "text": "a lighthouse keeper"}]}
    assert demonstration(lost, make_env()) == (None, "start_not_found")
    # a named first page is searched by its name as the question writes it
    named = {**row, "clues": [{"kind": "named_page", "text": "Aardvark"}]}
    assert tool_calls(demonstration(named, make_env())[0]["messages"])[0]["arguments"] == {"query": "Aardvark"}


def test_a_linked_from_both_question_opens_both_pages_before_it_follows_their_common_link(wikispeedia_snapshot):
    import re

    from pipeline.simulator.web import Simulator

    sim = Simulator(wikispeedia_snapshot)
    target = WIKI + "Africa"
    page = sim.fetch(target)
    a, b = [link for link in sim.links(target, backlinks=True).backlinks if link.title != "Africa"][:2]
    sentence = next(x for x in re.split(r"(?<=[.!?])\s+", page.text) if "Africa is" in x)
    row = {"id": "both", "question": f"Which continent is linked from both the article on {a.title} and the one on "
                                     f"{b.title}?", "answer": "Africa", "aliases": [], "split": "train",
           "family": "shared_link", "hops": 2,
           "chain": [{"url": a.url, "title": a.title, "quote": ""}, {"url": target, "title": "Africa", "quote": sentence}],
           "evidence": [{"url": a.url, "quote": ""}, {"url": b.url, "quote": ""}, {"url": target, "quote": sentence}],
           "clues": [{"kind": "kind", "text": "continent"}, {"kind": "named_page", "text": a.title},
                     {"kind": "named_page", "text": b.title}]}
    make = SearchEnv.factory(wikispeedia_snapshot.path, session="test-both")
    trace, reason = demonstration(row, make())
    assert reason is None, reason
    calls = tool_calls(trace["messages"])
    assert [c["name"] for c in calls][:5] == ["search", "open_url", "search", "open_url", "follow_link"]
    assert calls[3]["arguments"] == {"url": b.url} and calls[4]["arguments"] == {"title": "Africa"}
    said = [m["content"] for m in trace["messages"] if m["role"] == "assistant"]
    assert said[4] == f"Both {a.title} and {b.title} link to Africa, the continent the question asks for; I follow " \
                      "that link."
    assert calls[-1] == {"name": "answer", "arguments": {"answer": "Africa"}}
    assert replay_mismatches(trace["messages"], make()) == []
    # the second page not found by what the question says of it: no demonstration
    lost = {**row, "clues": row["clues"][:2] + [{"kind": "description", "text": "zzqx wvut"}]}
    assert demonstration(lost, make()) == (None, "other_page_not_found")


def test_replay_catches_a_trace_that_lies(make_env):
    trace, _ = demonstration(small_questions()[0], make_env())
    messages = [dict(m) for m in trace["messages"]]
    messages[5]["content"] = messages[5]["content"].replace("Aardvark", "Anteater")
    problems = replay_mismatches(messages, make_env())
    assert len(problems) == 1 and "open_url" in problems[0]


def test_a_hop_that_is_no_link_detours_through_the_most_clicked_page(make_env):
    env = make_env()
    assert plan_hops(env, [WIKI + "Aardvark", WIKI + "Quartz"]) == [("Basalt", WIKI + "Basalt"),
                                                                    ("Quartz", WIKI + "Quartz")]
    trace, reason = demonstration(small_questions()[2], env)
    assert reason is None
    assert [c["arguments"].get("title") for c in tool_calls(trace["messages"])[2:4]] == ["Basalt", "Quartz"]
    assert "readers usually go through Basalt" in trace["messages"][6]["content"]
    assert replay_mismatches(trace["messages"], make_env()) == []


def test_long_pages_are_read_on_to_the_answer(small_snapshot):
    make = SearchEnv.factory(small_snapshot.path, max_chars=60)
    trace, reason = demonstration(small_questions()[0], make())
    assert reason is None
    read_on = tool_calls(trace["messages"])[-2]
    assert read_on["name"] == "open_url" and read_on["arguments"]["offset"] > 0
    assert "watches" in trace["messages"][-4]["content"]
    assert replay_mismatches(trace["messages"], make()) == []


def test_rejections_are_counted_with_reasons(make_env):
    rows = train_questions() + [
        question("nostart", ["Aardvark", "Basalt"], "lava", chain=[step("Aardvark") | {"title": "zzqx"},
                                                                   step("Basalt")]),
        question("nolink", ["Kelvin", "Fjord"], "Norway"),
        question("noanswer", ["Aardvark", "Penguin"], "penguins are not here"),
        question("toolong", ["Aardvark", "Basalt", "Quartz"], "watches"),
    ]
    traces, rejected = demonstrations(rows, make_env)
    assert sorted(t["question"]["id"] for t in traces) == ["basalt", "detour", "nebula", "penguin", "toolong"]
    assert rejected == {"start_not_found": 1, "no_link": 1, "answer_not_shown": 1}
    short = SearchEnv.factory(make_env().simulator, max_tool_calls=3)
    assert demonstration(rows[-1], short())[1] == "too_many_steps"


def test_eval_questions_never_become_traces(make_env):
    with pytest.raises(ValueError, match="not of the train split"):
        demonstrations(small_questions(), make_env)
    with pytest.raises(ValueError):
        assert_train_only([{"id": "x", "split": "eval"}])
    with pytest.raises(ValueError):
        assert_train_only([{"id": "x"}])
    assert demonstration(small_questions()[4], make_env()) == (None, "eval_split")
    trace, _ = demonstration(small_questions()[0], make_env())
    with pytest.raises(ValueError):
        trace_rows([{**trace, "source": "demonstration", "question": small_questions()[4]}], snapshot_id="s")


# ---- teacher rollouts -------------------------------------------------------------------------------------------

def call(name, **arguments):
    return "Step. " + format_call(ToolCall(name, arguments))


def test_teacher_rollouts_are_rejection_sampled(make_env):
    rows = train_questions()
    teacher = SeededTeacher({
        "basalt": {"any": [call("search", query="Basalt"), call("open_url", url=WIKI + "Quartz"),
                           call("answer", answer="Watches")]},  # right at the first try
        "penguin": {0: [call("answer", answer="ants")],  # wrong, then right with the next seed
                    1: [call("search", query="Penguin"), call("answer", answer="termites")]},
        "detour": {"any": ["<tool_call>{bad json</tool_call>", call("answer", answer="piezoelectric effect")]},
        "nebula": {"any": ["It is absolute zero."]},  # never calls answer
    })
    config = TeacherConfig(tries=3, seed=0, temperature=0.9, agent=AgentConfig(max_turns=4))
    kept, rejected, summaries = teacher_traces(teacher, rows, make_env, config)
    assert sorted((t["question"]["id"], t["try_index"], t["seed"]) for t in kept) == [
        ("basalt", 0, 0), ("penguin", 1, 1)]
    assert rejected == {"wrong_answer": 1, "invalid_turns": 3, "no_answer": 3}
    assert [p.temperature for p in teacher.params[:1]] == [0.0] and teacher.params[-1].temperature == 0.9
    assert {p.seed for p in teacher.params} == {0, 1, 2}
    assert set(summaries) == {"try_0", "try_1", "try_2"} and summaries["try_0"]["trajectories"] == 4
    for t in kept:
        assert trace_problems(t["messages"]) == []
        assert t["messages"][-2] == {"role": "tool", "tool_call_id": t["messages"][-3]["tool_calls"][0]["id"],
                                     "name": "answer", "content": ANSWER_RECEIVED}
        assert replay_mismatches(t["messages"], make_env()) == []
    with pytest.raises(ValueError):
        teacher_traces(teacher, small_questions(), make_env, config)


# ---- the dataset --------------------------------------------------------------------------------------------------

@pytest.fixture()
def exported(make_env, tmp_path):
    from training.traces import export_traces

    traces, _ = demonstrations(train_questions(), make_env)
    rows = trace_rows(traces, snapshot_id="snap-1")
    out = export_traces(rows, tmp_path / "sft_traces", card="card", provenance={"x": 1})
    return traces, rows, out


def test_every_call_has_an_id_that_its_tool_message_answers(make_env):
    trace, _ = demonstration(small_questions()[0], make_env(), run_tag="ids")
    messages = trace["messages"]
    ids = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    assert ids == [f"call_{i}" for i in range(5)]
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == ids
    # a teacher rollout has none of its own: trace_rows gives them, the same way
    bare = [{k: v for k, v in m.items() if k != "tool_call_id"} for m in messages]
    bare = [{**m, "tool_calls": [{k: v for k, v in c.items() if k != "id"} for c in m["tool_calls"]]}
            if m.get("tool_calls") else m for m in bare]
    assert trace_problems(bare) == ["message 3: tool_call_id None answers no open call",
                                    "message 5: tool_call_id None answers no open call",
                                    "message 7: tool_call_id None answers no open call",
                                    "message 9: tool_call_id None answers no open call",
                                    "message 11: tool_call_id None answers no open call",
                                    "tool call ids missing or repeated"]
    [row] = trace_rows([{**trace, "messages": bare, "source": "teacher", "question": small_questions()[0]}],
                       snapshot_id="s")
    assert row["messages"] == messages


def test_a_stored_trace_replays_through_openai_types_and_vllm(exported):
    from openai.types.chat import ChatCompletionMessageParam
    from pydantic import TypeAdapter

    import pyarrow.parquet as pq

    _, rows, out = exported
    stored = pq.read_table(out["parquet"]["train"]).to_pylist()[0]
    wire = chat_messages(stored["messages"], arguments="string")
    assert all(isinstance(c["function"]["arguments"], str) for m in wire for c in m.get("tool_calls") or [])
    adapter = TypeAdapter(list[ChatCompletionMessageParam])
    assert len(adapter.validate_python(wire)) == len(wire)  # raises on a message the OpenAI types refuse
    # the OpenAI types do require the ids: the shape before this change fails
    no_ids = [{k: v for k, v in m.items() if k != "tool_call_id"} for m in wire]
    with pytest.raises(Exception, match="tool_call_id"):
        adapter.validate_python(no_ids)
    jsonl_first = json.loads(open(out["jsonl"]["train"]).readline())
    assert jsonl_first["messages"] == wire  # the JSONL copy is the wire shape already: objects, no null keys
    try:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    except ImportError:  # vLLM is optional; the openai SDK's types above are the same contract
        return
    request = ChatCompletionRequest(model="m", messages=jsonl_first["messages"], tools=json.loads(stored["tools"]))
    assert len(request.messages) == len(wire)


def to_lists(value):
    """numpy arrays to lists, recursively: what veRL's MultiTurnSFTDataset does to each row it reads with pandas
    (`convert_nested_value_to_list_recursive`)."""
    import numpy as np

    if isinstance(value, dict):
        return {k: to_lists(v) for k, v in value.items()}
    if isinstance(value, (list, np.ndarray)):
        return [to_lists(v) for v in list(value)]
    return value


def test_pandas_reads_messages_as_lists_of_dicts(exported):
    import pandas as pd

    traces, _, out = exported
    df = pd.read_parquet(out["parquet"]["train"])
    messages = to_lists(df["messages"].iloc[0])
    assert isinstance(messages, list) and isinstance(messages[0], dict)
    assert clean(messages) == traces[0]["messages"]
    assert json.loads(df["tools"].iloc[0]) == TOOL_SCHEMAS


def test_the_dataset_keeps_every_message_exactly(exported, make_env):
    import datasets

    traces, rows, out = exported
    assert [r["id"] for r in rows] == [f"demonstration-{q}-0" for q in ("basalt", "penguin", "detour", "nebula")]
    assert all(r["exact_match"] == 1.0 and r["split"] == "train" and r["model"] == "demonstration" for r in rows)
    hf = datasets.load_from_disk(out["hf"])["train"]
    assert hf.features["tools"] == datasets.Json()
    first = hf[0]
    # hf/: what a chat template renders, arguments as objects (TRL's SFTTrainer reads this copy)
    assert clean(first["messages"]) == traces[0]["messages"]
    assert first["messages"][2]["tool_calls"][0]["function"]["arguments"] == {"query": "Aardvark"}
    assert first["tools"] == TOOL_SCHEMAS
    for ds in (datasets.load_dataset("parquet", data_files=out["parquet"]["train"])["train"],
               datasets.load_dataset("json", data_files=out["jsonl"]["train"])["train"]):
        assert clean(ds[0]["messages"]) == traces[0]["messages"]
        assert json.loads(ds[0]["tools"]) == TOOL_SCHEMAS
    assert clean(first["messages"])[3] == {"role": "tool", "tool_call_id": "call_0", "name": "search",
                                           "content": traces[0]["messages"][3]["content"]}
    assert trace_problems(first["messages"]) == [] and replay_mismatches(first["messages"], make_env()) == []


def test_the_hf_copy_renders_in_the_chat_template_with_arguments_as_objects(exported):
    import datasets
    from transformers.utils.chat_template_utils import render_jinja_template

    from pipeline.llm.model_setup import TOOL_CHAT_TEMPLATE

    _, _, out = exported
    row = datasets.load_from_disk(out["hf"])["train"][0]

    def render(messages, tools):
        rendered = render_jinja_template([messages], tools=tools, chat_template=TOOL_CHAT_TEMPLATE)[0]
        return rendered[0] if isinstance(rendered, list) else rendered

    text = render(row["messages"], row["tools"])
    assert '{"name": "search", "arguments": {"query": "Aardvark"}}' in text
    assert '"url": null' not in text  # no other tool's keys
    # the Parquet copy holds the OpenAI wire format; chat_messages gives a template the same chat
    stored = datasets.load_dataset("parquet", data_files=out["parquet"]["train"])["train"][0]
    assert '"arguments": "{' in render(stored["messages"], json.loads(stored["tools"]))
    assert render(chat_messages(stored["messages"]), json.loads(stored["tools"])) == text
