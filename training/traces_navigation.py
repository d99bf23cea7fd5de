"""Navigation demonstrations for SFT: human paths and shortest paths replayed in the simulator as tool-call traces.

For a train-split navigation task (`pipeline.synthesis.navigation`), a trace opens the start page with `open_url`,
clicks each next page of a path with `follow_link` (the link's title as the simulator lists it), and on the target
calls `answer` with the target's title, then closes like every websim trace (`training.traces.closing_message`).
Every call runs in a `SearchEnv`, so every tool message is what the simulator returned.

- `human_path`: each resolved human path of the task (back-clicks already removed), kept only when every step is a
  real link of the snapshot and the env lands where the person did; otherwise rejected with a reason
  (`REJECTIONS`).
- `shortest_path`: the task's gold path (the most-clicked shortest path).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Mapping, Sequence

from training.agent_loop import SYSTEM_PROMPT
from training.env import SearchEnv
from training.traces import TraceWriter, closing_message

SOURCES = ("human_path", "shortest_path")
REJECTIONS = ("eval_split", "no_path", "revisits_page", "too_many_steps", "page_missing", "missing_link",
              "link_mismatch", "tool_error")


def question_of(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task as the question row traces and the agent loop read (id, question, answer, hops, split)."""
    return {"id": task["id"], "question": task["question"], "answer": task["answer"], "aliases": [],
            "hops": task.get("shortest_path_length"), "split": task["split"], "task_kind": "navigation",
            "prompt_version": task.get("prompt_version", "")}


def replay_path(task: Mapping[str, Any], path: Sequence[str], env: SearchEnv, *, source: str, trajectory_id: str,
                system_prompt: str = SYSTEM_PROMPT) -> tuple[dict | None, str | None]:
    """One trace walking `path` (URLs, start first, target last) for `task`; (trace, None) or (None, reason)."""
    if task.get("split") != "train":
        return None, "eval_split"
    if len(path) < 2 or path[0] != task["start_url"] or path[-1] != task["target_url"]:
        return None, "no_path"
    if len(set(path)) < len(path):
        return None, "revisits_page"
    if len(path) > env.max_tool_calls:  # open_url + one follow_link per hop
        return None, "too_many_steps"
    sim = env.simulator
    plan = []
    for src, dst in zip(path, path[1:]):
        resp = sim.links(src, limit=500, session=f"{env.session}-plan")
        if resp.status != 200:
            return None, "page_missing"
        link = next((l for l in resp.outlinks if l.url == dst), None)
        if link is None:
            return None, "missing_link"
        plan.append(link)
    env.reset(id=task["id"], trajectory_id=trajectory_id)
    w = TraceWriter(env, str(task["question"]), system_prompt)
    out = w.call(f"I start from the article on {task['start_title']}; I open it.", "open_url", url=path[0])
    if out.startswith("Error") or env.current_url != path[0]:
        return None, "tool_error"
    target = task["answer"] if task.get("variant") == "named" else "the described article"
    for i, link in enumerate(plan):
        last = i == len(plan) - 1
        thought = (f"This page links to {link.title}, which is the target; I follow it." if last and
                   task.get("variant") == "named" else
                   f"This page links to {link.title}, which matches the description; I follow it." if last else
                   f"To get closer to {target}, I follow the link to {link.title}.")
        out = w.call(thought, "follow_link", title=link.title)
        if out.startswith("Error"):
            return None, "tool_error"
        if env.current_url != link.url:
            return None, "link_mismatch"
    answer = str(task["answer"])
    w.call(f"I am on the target article, {answer}.", "answer", answer=answer)
    w.messages.append(closing_message(answer))
    return {"messages": w.messages, "final_answer": answer, "trajectory_id": env.trajectory_id,
            "n_tool_calls": w.calls, "seed": None, "try_index": 0, "source": source,
            "question": question_of(task)}, None


def navigation_demonstrations(tasks: Sequence[Mapping[str, Any]], make_env: Callable[[], SearchEnv], *,
                              human: bool = True, shortest: bool = True, max_human_per_task: int = 1,
                              run_tag: str = "") -> tuple[list[dict], Counter]:
    """Traces for train tasks: up to `max_human_per_task` human paths each, and the shortest path; returns
    (traces, rejections as `<source>_<reason>`: one count per human path or gold path not replayed)."""
    bad = [t["id"] for t in tasks if t.get("split") != "train"]
    if bad:
        raise ValueError(f"{len(bad)} navigation task(s) not of the train split would enter SFT traces: {bad[:5]}")
    env = make_env()
    traces, rejections = [], Counter()
    tag = f"-{run_tag}" if run_tag else ""
    for task in tasks:
        if human:
            kept = 0
            for i, path in enumerate(task.get("human_paths") or []):
                if kept >= max_human_per_task:
                    break
                trace, reason = replay_path(task, path, env, source="human_path",
                                            trajectory_id=f"nav-human-{task['id']}-{i}{tag}")
                if trace is None:
                    rejections[f"human_path_{reason}"] += 1
                else:
                    traces.append(trace)
                    kept += 1
        if shortest:
            trace, reason = replay_path(task, task["gold_path"], env, source="shortest_path",
                                        trajectory_id=f"nav-shortest-{task['id']}{tag}")
            if trace is None:
                rejections[f"shortest_path_{reason}"] += 1
            else:
                traces.append(trace)
    return traces, rejections
