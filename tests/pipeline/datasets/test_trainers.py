"""Exports to the RL trainers' formats: veRL / Search-R1 parquet as pandas reads it, verifiers datasets."""

import pytest

from pipeline.datasets.trainers import (FLAVORS, SEARCH_R1_PREFIX, by_split, evidence_urls, trainer_split,
                                        verifiers_rows, verl_rows, write_split_parquet)
from tests.support import WIKI, small_questions


def test_verl_parquet_has_search_r1s_columns_as_pandas_reads_them(tmp_path):
    import pandas as pd

    questions = [{**q, "aliases": ["Watch"] if q["id"] == "basalt" else []} for q in small_questions()]
    rows = verl_rows(questions)
    paths = write_split_parquet(by_split(rows, lambda r: r["extra_info"]["split"]), tmp_path)
    assert sorted(paths) == ["test", "train"]  # eval is `test`, as the trainers' scripts name it
    df = pd.read_parquet(paths["train"])
    assert list(df.columns[:5]) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    first = df.iloc[0]
    assert first["data_source"] == "searchR1_hotpotqa" and first["ability"] == "fact-reasoning"
    prompt = list(first["prompt"])
    assert [m["role"] for m in prompt] == ["system", "user"] and prompt[1]["content"].endswith(
        "Question: Question basalt: follow 2 links and find the answer.")
    assert first["reward_model"]["style"] == "rule"
    assert list(first["reward_model"]["ground_truth"]["target"]) == ["watches", "Watch"]
    extra = first["extra_info"]
    assert (extra["split"], extra["index"], extra["id"]) == ("train", 0, "basalt")
    assert list(extra["evidence_urls"]) == [WIKI + t for t in ("Aardvark", "Basalt", "Quartz")]
    assert extra["tools_kwargs"]["search"]["create_kwargs"]["data_source"] == "searchR1_hotpotqa"
    assert list(pd.read_parquet(paths["test"])["extra_info"].map(lambda e: e["index"])) == [0, 1]


def test_search_r1_flavor_is_one_user_turn_with_its_prompt():
    [row] = verl_rows([small_questions()[0]], flavor="search-r1")
    assert row["data_source"] == FLAVORS["search-r1"] == "hotpotqa"  # a source Search-R1's reward scores
    assert row["prompt"] == [{"role": "user", "content": SEARCH_R1_PREFIX + row["question"] + "\n"}]
    assert "tools_kwargs" not in row["extra_info"]
    assert verl_rows([small_questions()[0]], data_source="websim")[0]["data_source"] == "websim"
    with pytest.raises(ValueError, match="flavor"):
        verl_rows([], flavor="openrlhf")


def test_verifiers_rows_load_as_a_dataset_with_prompt_question_answer_info(tmp_path):
    import datasets

    rows = verifiers_rows(small_questions())
    paths = write_split_parquet(by_split(rows, lambda r: trainer_split(r["info"]["websim_split"])), tmp_path)
    ds = datasets.load_dataset("parquet", data_files=paths)["train"]
    assert {"id", "prompt", "question", "answer", "info", "task"} <= set(ds.column_names)
    assert ds[0]["prompt"][1] == {"role": "user", "content": ds[0]["question"]}
    assert ds[0]["answer"] == "watches" and ds[0]["info"]["answer_url"] == WIKI + "Quartz" and ds[0]["id"] == "basalt"


def test_evidence_urls_are_the_chain_then_the_evidence_each_once():
    q = {**small_questions()[0], "evidence": [{"url": WIKI + "Quartz"}, {"url": WIKI + "Penguin"}]}
    assert evidence_urls(q) == [WIKI + t for t in ("Aardvark", "Basalt", "Quartz", "Penguin")]
