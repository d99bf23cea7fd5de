"""The agent's tool environment: TRL's environment_factory contract, the four tools, the step limit, the call log."""

import inspect
import uuid

import pytest

from pipeline.simulator.calllog import read_trajectory
from pipeline.simulator.web import Link
from training.env import ANSWER_RECEIVED, TOOL_NAMES, TOOL_SCHEMAS, SearchEnv, match_link, tool_methods
from tests.support import WIKI


@pytest.fixture()
def env(small_snapshot):
    e = SearchEnv(small_snapshot.path, session="test-env", max_tool_calls=6)
    e.reset(id="q1", trajectory_id=f"traj-env-{uuid.uuid4().hex}")
    return e


def url(title: str) -> str:
    return (WIKI + title).replace(" ", "_")


def test_trl_sees_exactly_the_four_tools_and_reset():
    # GRPOTrainer lists the class's public functions (inspect.isfunction on the class): those are its tools.
    public = {name for name, _ in inspect.getmembers(SearchEnv, predicate=inspect.isfunction)
              if not name.startswith("_")}
    assert public == {"reset", *TOOL_NAMES}
    assert TOOL_NAMES == ("search", "open_url", "follow_link", "answer")


def test_schemas_are_what_transformers_derives_from_the_methods(env):
    from transformers.utils import get_json_schema

    assert [get_json_schema(m) for m in tool_methods(env)] == TOOL_SCHEMAS


def test_a_rollout_search_open_follow_answer(env):
    results = env.search("volcanic lava rock")
    assert "Basalt" in results and url("Basalt") in results
    page = env.open_url(url("Aardvark"))
    assert page.startswith("Title: Aardvark") and env.current_url == url("Aardvark")
    assert "Links (" in page and "links(url)" not in page  # no pointer to a tool this env does not have
    page = env.follow_link("Basalt")
    assert page.startswith("Title: Basalt") and env.current_url == url("Basalt")
    page = env.follow_link("quartz")  # case and anchor text both find the link
    assert page.startswith("Title: Quartz")
    assert env.visited == [url("Aardvark"), url("Basalt"), url("Quartz")]
    assert env.steps == 4 and not env.done
    assert env.answer("watches") == ANSWER_RECEIVED
    assert env.done and env.final_answer == "watches" and env.steps == 4
    assert env.answer("again").startswith("Error") and env.final_answer == "watches"
    assert env.search("more").startswith("Error: you have already answered")


def test_the_call_log_holds_the_rollout_under_its_trajectory_id(env):
    env.search("Aardvark")
    env.open_url(url("Aardvark"))
    env.follow_link("Penguin")
    env.simulator.call_log.flush()
    calls = read_trajectory(env.simulator.snapshot.log_dir, env.trajectory_id)
    assert [c["op"] for c in calls] == ["search", "fetch", "links", "fetch"]
    assert {c["session"] for c in calls} == {"test-env"}


def test_errors_are_text_and_count_as_steps(env):
    assert env.follow_link("Basalt").startswith("Error: no page is open")
    assert env.open_url("https://nowhere.example/x").startswith("Error 404")
    assert env.current_url is None
    env.open_url(url("Aardvark"))
    assert env.follow_link("Nebula").startswith('Error: the open page has no link "Nebula"')
    assert env.follow_link("  ").startswith("Error")
    assert env.search("").startswith("Error")
    assert env.search(None).startswith("Error") and env.open_url(3).startswith("Error")
    assert env.steps == 7 - 1  # every call above is a step; the limit is 6
    assert env.search("Basalt").startswith("Error: step limit reached")
    assert env.answer(1915) == ANSWER_RECEIVED and env.final_answer == "1915"


def test_reset_starts_a_new_rollout(env):
    env.open_url(url("Aardvark"))
    env.answer("x")
    env.reset(id="q2")
    assert env.steps == 0 and env.current_url is None and env.final_answer is None and env.visited == []
    assert env.trajectory_id.startswith("q2-")
    env.reset(trajectory_id="fixed", answer="gold", question="?")  # dataset columns arrive as kwargs
    assert env.trajectory_id == "fixed"
    assert env.reset() is None  # TRL appends a returned string to the prompt: this env adds nothing


def test_reading_on_with_an_offset(small_snapshot):
    env = SearchEnv(small_snapshot.path, max_chars=40)
    first = env.open_url(url("Aardvark"))
    assert "open_url(url, offset=40) reads on" in first
    second = env.open_url(url("Aardvark"), offset=40)
    assert "[characters 40-80" in second


def test_factory_shares_one_simulator(small_snapshot):
    make = SearchEnv.factory(small_snapshot.path, max_tool_calls=3)
    a, b = make(), make()
    assert a is not b and a.simulator is b.simulator and a.max_tool_calls == 3
    assert a.trajectory_id != b.trajectory_id


def test_match_link():
    links = [Link(url="https://w/Aardvark", title="Aardvark", anchor="odd animal", clicks=3, page_id=1),
             Link(url="https://w/Basalt_rock", title="Basalt rock", anchor="rocks", clicks=0, page_id=2),
             Link(url="https://w/Basalt_(disambiguation)", title="Basalt (disambiguation)", anchor="", clicks=0,
                  page_id=3)]
    assert match_link("aardvark", links).page_id == 1
    assert match_link("Odd  Animal", links).page_id == 1
    assert match_link("https://w/Basalt_rock", links).page_id == 2
    assert match_link("Basalt_rock", links).page_id == 2
    assert match_link("disambiguation", links).page_id == 3  # the only title containing it
    assert match_link("Basalt", links) is None  # ambiguous
    assert match_link("Quartz", links) is None
