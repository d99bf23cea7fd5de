"""Navigation demonstrations (human-path replay, with reasons for rejection) and navigation rewards/grades, on the
real Wikispeedia sample."""

import pytest

from pipeline.synthesis.navigation import NavigationConfig, make_navigation_dataset
from tests.support import sample
from training.env import SearchEnv
from training.rewards_navigation import (grade_navigation, navigation_efficiency_reward,
                                         navigation_invalid_moves_reward, navigation_reached_reward, wilson_interval)
from training.traces import replay_mismatches, trace_problems
from training.traces_navigation import navigation_demonstrations, replay_path


@pytest.fixture(scope="module")
def tasks(wikispeedia_snapshot, tmp_path_factory):
    run = make_navigation_dataset(
        wikispeedia_snapshot.path / "snapshot.duckdb", [sample("wikispeedia", "paths_unfinished.tsv")],
        tmp_path_factory.mktemp("nav") / "navigation_tasks", snapshot_id=wikispeedia_snapshot.id,
        config=NavigationConfig(n_tasks=40, max_candidates=300))
    return run.rows


@pytest.fixture(scope="module")
def env(wikispeedia_snapshot):
    return SearchEnv(str(wikispeedia_snapshot.path), session="test-nav")


def train_task(tasks, human=True):
    return next(t for t in tasks if t["split"] == "train" and (t["human_paths"] or not human)
                and 2 <= t["shortest_path_length"] <= 3)


def test_human_and_shortest_demonstrations_replay(tasks, env, wikispeedia_snapshot):
    train = [t for t in tasks if t["split"] == "train"][:10]
    traces, rejections = navigation_demonstrations(train, lambda: env)
    sources = {t["source"] for t in traces}
    assert "shortest_path" in sources and sum(1 for t in traces if t["source"] == "shortest_path") == len(train)
    for t in traces:
        assert trace_problems(t["messages"]) == []
        assert replay_mismatches(t["messages"], SearchEnv(str(wikispeedia_snapshot.path), session="r")) == []
    assert all(k.startswith("human_path_") for k in rejections)
    with pytest.raises(ValueError):
        navigation_demonstrations([t for t in tasks if t["split"] == "eval"][:1], lambda: env)


def test_a_path_through_a_missing_link_is_rejected(tasks, env):
    task = train_task(tasks, human=False)
    gold = task["gold_path"]
    skipping = [gold[0], gold[-1]]  # shortest >= 2: the start does not link to the target
    assert replay_path(task, skipping, env, source="human_path", trajectory_id="t-missing") == (None, "missing_link")
    assert replay_path(task, [gold[0], gold[1], gold[0], gold[-1]], env, source="human_path",
                       trajectory_id="t-loop")[1] == "revisits_page"
    assert replay_path(dict(task, split="eval"), gold, env, source="shortest_path", trajectory_id="t-e")[1] == \
        "eval_split"
    trace, reason = replay_path(task, gold, env, source="shortest_path", trajectory_id="t-ok")
    assert reason is None and trace["n_tool_calls"] == len(gold) + 1  # open_url, a follow_link per hop, answer


def test_rewards_and_grades_of_navigation_rollouts(tasks, env):
    task = train_task(tasks, human=False)
    gold_trace, _ = replay_path(task, task["gold_path"], env, source="shortest_path", trajectory_id="t-r")
    completion = gold_trace["messages"][2:]
    cols = {k: [task[k]] * 3 for k in ("start_url", "target_url", "shortest_path_length")}
    cols["task_kind"] = ["navigation", "navigation", "search"]
    env.reset(trajectory_id="t-bad")
    bad = [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "open_url", "arguments": {"url": task["start_url"]}}}]},
        {"role": "tool", "name": "open_url", "content": env.open_url(task["start_url"])},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "follow_link", "arguments": {"title": "No such page"}}}]},
        {"role": "tool", "name": "follow_link", "content": env.follow_link("No such page")},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "open_url", "arguments": {"url": task["target_url"]}}}]},
        {"role": "tool", "name": "open_url", "content": env.open_url(task["target_url"])}]
    completions = [completion, bad, completion]
    assert navigation_reached_reward(completions, **cols) == [1.0, 0.0, None]  # a jump to the target is no arrival
    assert navigation_efficiency_reward(completions, **cols) == [1.0, 0.0, None]
    assert navigation_invalid_moves_reward(completions, **cols) == [0.0, -0.5, None]
    summary, rows = grade_navigation([completion, bad], [task, task])
    assert summary["success_rate"] == 0.5 and summary["efficiency_vs_shortest"] == 1.0
    assert summary["invalid_moves_per_task"] == 1.0 and rows[1]["invalid_moves"] == 2
    lo, hi = summary["success_ci95"]
    assert lo < 0.5 < hi and wilson_interval(0, 0) == (0.0, 0.0)


def test_navigation_rows_in_the_stage_table_with_counts_and_intervals():
    from training.evaluate import results_table_md

    nav = {"tasks": 100, "success_rate": 0.12, "success_ci95": [0.07, 0.2], "efficiency_vs_shortest": 0.8,
           "efficiency_ci95": [0.7, 0.9], "reached": 12, "efficiency_vs_human": None, "invalid_moves_per_task": 1.5}
    search = {"questions": 0, "accuracy": None}
    table = results_table_md({"questions": 0, "navigation_tasks": 100, "snapshot_id": "s",
                              "models": {"base": {**search, "navigation": nav}, "sft": {**search, "navigation": {}}}})
    assert "| navigation success | 0.120 [0.07, 0.20] (n=100) | - |" in table
    assert "| navigation efficiency vs shortest | 0.800 [0.70, 0.90] (n=12) | - |" in table
    assert "accuracy" not in table.split("\n\n")[0]