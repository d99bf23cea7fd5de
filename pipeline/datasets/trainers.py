"""websim's questions in the RL trainers' own dataset formats: veRL / Search-R1 parquet and verifiers datasets.

Questions in (`hard_queries` rows: id, question, answer, aliases, split, chain, evidence, ...), rows out; every row
keeps the question's websim id, gold answers and evidence URLs so that a reward or an analysis can go back to it.

- `verl_rows(questions, flavor=...)`: the RL parquet of Search-R1's `scripts/data_process/nq_search.py` and veRL's
  `examples/data_preprocess/preprocess_search_r1_dataset.py`: `data_source, prompt, ability, reward_model{style,
  ground_truth{target}}, extra_info`. `data_source` picks the reward function in both trainers (Search-R1's
  `_select_rm_score_fn`, veRL's `default_compute_score`), so the defaults are names they score with exact match:
  `hotpotqa` (Search-R1: the `<search>` prompt, one user turn) and `searchR1_hotpotqa` (veRL: system + user turn for
  its tool-calling search agent, `extra_info.tools_kwargs` for its search tool).
- `verifiers_rows(questions)`: verifiers' dataset columns: `prompt` (system + user messages), `question`, `answer`,
  `info` (everything else a rubric may read), `task`, and `id`: what the classic `Environment(dataset=...)` reads
  (`prompt` or `question`, `answer`, `info`, `task`) and the fields of verifiers 0.4's `TaskData` (`id`, `prompt`).

`write_split_parquet(rows_by_split, out_dir)` writes `<split>.parquet` per split; the eval split is named `test`,
as both trainers' scripts expect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

SEARCH_R1_PREFIX = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get new "
    "information. After reasoning, if you find you lack some knowledge, you can call a search engine by <search> "
    "query </search> and it will return the top searched results between <information> and </information>. You can "
    "search as many times as your want. If you find no further external knowledge needed, you can directly provide "
    "the answer inside <answer> and </answer>, without detailed illustrations. For example, <answer> Beijing "
    "</answer>. Question: ")
"""Search-R1's `make_prefix(template_type='base')`: its reward extracts the answer from `<answer>` tags."""
VERL_SYSTEM = "You are a helpful and harmless assistant."
VERL_USER_PREFIX = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get new "
    "information. After reasoning, if you find you lack some knowledge, you can call a search engine by <tool_call> "
    "query </tool_call> and it will return the top searched results between <tool_response> and </tool_response>. "
    "You can search as many times as your want. If you find no further external knowledge needed, you can directly "
    "provide the answer inside <answer> and </answer>, without detailed illustrations. For example, <answer> Beijing "
    "</answer>. Question: ")
"""veRL's search-agent prompt (`preprocess_search_r1_dataset.py`), for its `search` tool."""
FLAVORS = {"search-r1": "hotpotqa", "verl": "searchR1_hotpotqa"}
"""Flavor -> default `data_source` (a multi-hop QA source each trainer scores with exact match)."""
VERIFIERS_SYSTEM = ("Answer the question by searching the web: search, open pages, follow their links and read them. "
                    "When you know the answer, give it in a few words.")


def golden_answers(row: Mapping[str, Any]) -> list[str]:
    """The answer and its aliases, each once, in order."""
    out: list[str] = []
    for a in [row.get("answer"), *(row.get("aliases") or [])]:
        if a and str(a) not in out:
            out.append(str(a))
    return out


def evidence_urls(row: Mapping[str, Any]) -> list[str]:
    """Every page the answer depends on: the chain's pages, then the evidence pages, each once."""
    out: list[str] = []
    for step in [*(row.get("chain") or []), *(row.get("evidence") or [])]:
        if step.get("url") and step["url"] not in out:
            out.append(step["url"])
    return out


def _question(row: Mapping[str, Any]) -> str:
    """The question on one line, ending like a question (Search-R1's scripts add a "?" where none ends it)."""
    q = " ".join(str(row["question"]).split())
    return q if q.endswith(("?", ".", "!")) else q + "?"


def trainer_split(split: str) -> str:
    """websim's split name as the trainers' scripts name their files: eval -> test."""
    return "test" if split == "eval" else split


def _websim_info(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "websim_split": str(row.get("split") or ""), "answer_url": row.get("answer_url") or "",
            "evidence_urls": evidence_urls(row), "hops": int(row.get("hops") or 0),
            "snapshot_id": str(row.get("snapshot_id") or "")}


def verl_rows(questions: Iterable[Mapping[str, Any]], *, flavor: str = "verl", data_source: str | None = None
              ) -> list[dict[str, Any]]:
    """RL rows in the veRL / Search-R1 parquet shape; `index` counts rows within each split."""
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {sorted(FLAVORS)}, not {flavor!r}")
    source = data_source or FLAVORS[flavor]
    rows, index = [], {}
    for q in questions:
        split = trainer_split(str(q.get("split") or "train"))
        index[split] = index.get(split, -1) + 1
        question = _question(q)
        target = golden_answers(q)
        if flavor == "search-r1":
            prompt = [{"role": "user", "content": SEARCH_R1_PREFIX + question + "\n"}]
        else:
            prompt = [{"role": "system", "content": VERL_SYSTEM}, {"role": "user", "content": VERL_USER_PREFIX + question}]
        extra = {"split": split, "index": index[split], "question": question, **_websim_info(q)}
        if flavor == "verl":
            extra |= {"need_tools_kwargs": True, "tools_kwargs": {"search": {"create_kwargs": {
                "ground_truth": {"target": target}, "question": question, "data_source": source}}}}
        rows.append({"data_source": source, "prompt": prompt, "ability": "fact-reasoning",
                     "reward_model": {"style": "rule", "ground_truth": {"target": target}}, "extra_info": extra,
                     "id": str(q["id"]), "question": question, "golden_answers": target})
    return rows


def verifiers_rows(questions: Iterable[Mapping[str, Any]], *, system_prompt: str = VERIFIERS_SYSTEM,
                   task: str = "websim-search") -> list[dict[str, Any]]:
    """Rows for a verifiers environment: `id`, `prompt` messages, `question`, `answer`, `info`, `task`."""
    rows = []
    for q in questions:
        question = _question(q)
        rows.append({"id": str(q["id"]),
                     "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}],
                     "question": question, "answer": str(q["answer"]), "task": task,
                     "info": {"aliases": [str(a) for a in q.get("aliases") or []], **_websim_info(q)}})
    return rows


def write_split_parquet(rows_by_split: Mapping[str, Sequence[dict]], out_dir: str | Path) -> dict[str, str]:
    """One `<split>.parquet` per split (pyarrow infers the nested types: lists of structs, as pandas writes them);
    returns split -> path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in rows_by_split.items():
        if not rows:
            continue
        path = out / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(list(rows)), path)
        paths[split] = str(path)
    return paths


def by_split(rows: Iterable[dict], key: Any) -> dict[str, list[dict]]:
    """Rows grouped by `key(row)`, in order."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return groups
