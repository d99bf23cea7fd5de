"""veRL's SFT trainer on websim's traces: veRL's own dataset code (verl 0.9.1, copied verbatim in
tests/training/verl_*.py) reads the exported folder with the class the folder ships (`data.custom_cls`), and the chat
template gets the four tools and every message without a null, the same tokens TRL trains on from `hf/`."""

import sys
import types
from pathlib import Path

import pytest

from tests.support import train_questions
from training.env import TOOL_SCHEMAS, SearchEnv
from training.traces import chat_messages, demonstrations, export_traces, trace_rows
from training.traces_verl import CLASS_NAME, FILE_NAME, decode_tools, template_messages

pytest.importorskip("torch")
pytest.importorskip("transformers")

CONFIG = {"max_length": 8192, "pad_mode": "no_padding", "truncation": "error", "messages_key": "messages"}
"""veRL's `data` config for multi-turn SFT (verl/trainer/config/sft_trainer_engine.yaml's keys), no padding."""


@pytest.fixture(scope="module")
def exported(small_snapshot, tmp_path_factory):
    traces, _ = demonstrations(train_questions(), SearchEnv.factory(small_snapshot.path, session="test-verl"))
    rows = trace_rows(traces, snapshot_id="snap-1")
    return export_traces(rows, tmp_path_factory.mktemp("verl") / "sft_traces", card="card", provenance={"x": 1})


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture()
def verl(monkeypatch):
    """`import verl.utils.dataset.multiturn_sft_dataset` finds the verbatim copy (veRL is not installed)."""
    from tests.training import verl_multiturn_sft_dataset

    for name in ("verl", "verl.utils", "verl.utils.dataset"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "verl.utils.dataset.multiturn_sft_dataset", verl_multiturn_sft_dataset)
    return verl_multiturn_sft_dataset


def nulls(value, where="") -> list[str]:
    """Where `value` holds a None, recursively."""
    if value is None:
        return [where or "."]
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in nulls(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in nulls(v, f"{where}[{i}]")]
    return []


def test_no_parquet_column_gives_verls_own_class_the_tools(exported, tokenizer, verl, tmp_path):
    """Why the folder ships a dataset class: veRL passes `tools` on as pandas reads it."""
    import pandas as pd

    train = exported["parquet"]["train"]
    stock = verl.MultiTurnSFTDataset(train, tokenizer, dict(CONFIG))
    assert isinstance(stock.tools[0], str)  # websim's JSON string reaches apply_chat_template as a string
    with pytest.raises(ValueError, match="Tools should either be a JSON schema"):
        stock[0]
    # the other shape a Parquet column can take: a list of structs, as pandas writes the tool dicts
    df = pd.read_parquet(train)
    df["tools"] = [TOOL_SCHEMAS] * len(df)
    df.to_parquet(tmp_path / "struct_tools.parquet")
    stock = verl.MultiTurnSFTDataset(str(tmp_path / "struct_tools.parquet"), tokenizer, dict(CONFIG))
    search = stock.tools[0][0]["function"]
    assert search["name"] == "search" and search["parameters"]["properties"]["query"]["type"] == "string"
    assert search["parameters"]["properties"]["url"] is None  # open_url's parameter, as a null in search's schema
    assert ".function.parameters.properties.url" in {w.split("]", 1)[1] for w in nulls(stock.tools[0])}


def test_verl_reads_the_traces_with_the_class_the_folder_ships(exported, tokenizer, verl):
    import datasets
    import torch

    from tests.training.verl_utils import load_extern_object, normalize_token_ids

    path = Path(exported["path"]) / FILE_NAME
    assert path.is_file()
    # veRL's sft_trainer.create_sft_dataset: load_extern_object(data.custom_cls.path, data.custom_cls.name)
    cls = load_extern_object(str(path), CLASS_NAME)
    assert issubclass(cls, verl.MultiTurnSFTDataset)
    ds = cls(parquet_files=exported["parquet"]["train"], tokenizer=tokenizer, config=dict(CONFIG), processor=None,
             max_samples=-1)
    assert len(ds) == 4 and all(tools == TOOL_SCHEMAS for tools in ds.tools) and nulls(ds.tools) == []
    hf = datasets.load_from_disk(exported["hf"])["train"]
    for i in range(len(ds)):
        messages = ds._build_messages(ds.dataframe.iloc[i].to_dict())  # what veRL hands apply_chat_template
        assert nulls(messages) == [] and messages == chat_messages(hf[i]["messages"])
        # __getitem__ tokenizes turn by turn (tools with the first) and its sanity_check compares that with the
        # whole chat's tokens; both are the tokens of the chat TRL renders from hf/
        item = ds[i]
        whole = tokenizer.apply_chat_template(chat_messages(hf[i]["messages"]), tools=hf[i]["tools"], tokenize=False)
        ids = normalize_token_ids(tokenizer.apply_chat_template(chat_messages(hf[i]["messages"]),
                                                                tools=hf[i]["tools"], tokenize=True))
        assert item["input_ids"].tolist() == ids
    text = tokenizer.decode(item["input_ids"])
    assert '"name": "open_url"' in text and '": null' not in text
    trained = tokenizer.decode(item["input_ids"][item["loss_mask"].to(torch.bool)])
    assert '"name": "answer"' in trained and "</tools>" not in trained  # the loss is on the assistant turns
    assert '"arguments": {"query": ' in whole  # arguments as an object, not a JSON string inside JSON


def test_both_pandas_readers_give_the_chat_template_shape(exported):
    """veRL before 0.9 reads with numpy-backed dtypes (arrays), 0.9 with pyarrow-backed ones (lists)."""
    import pandas as pd
    import pyarrow.parquet as pq

    train = exported["parquet"]["train"]
    stored = pq.read_table(train).to_pylist()[0]
    for df in (pd.read_parquet(train), pd.read_parquet(train, dtype_backend="pyarrow")):
        assert template_messages(df["messages"].iloc[0]) == chat_messages(stored["messages"])
        assert decode_tools(df["tools"].iloc[0]) == TOOL_SCHEMAS
    assert decode_tools(None) is None and decode_tools(TOOL_SCHEMAS) == TOOL_SCHEMAS
