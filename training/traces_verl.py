"""veRL's SFT trainer on websim's traces: the dataset class veRL loads with `data.custom_cls`, shipped in the folder.

veRL's `MultiTurnSFTDataset` (verl 0.9.1, `verl/utils/dataset/multiturn_sft_dataset.py`) reads the Parquet with
pandas and hands each row's `tools` and `messages` to `apply_chat_template` as pandas gives them, lists and dicts
made of numpy arrays and nothing decoded (veRL dropped its `json.loads` of `tools` in July 2025). No Parquet column
gives websim's four tools that way: a JSON string stays a string, which transformers refuses ("Tools should either be
a JSON schema, or a callable function"); a list of structs gives every tool the other tools' parameters as nulls
(`"url": null` in `search`'s schema), since one struct type holds them all. Messages are alike: `arguments` as a
struct would be null-filled the same way, as the JSON string of the OpenAI wire format it is rendered double-encoded
by templates that `tojson` it (Qwen2.5's, websim's own), and a key a message lacks comes back as a null.

So the traces folder carries this file as `verl_sft_dataset.py` (`FILE_NAME`), and veRL trains on `data/` with it:

    python -m verl.trainer.sft_trainer data.train_files=<traces>/data/train.parquet \\
        data.val_files=<traces>/data/train.parquet data.custom_cls.path=<traces>/verl_sft_dataset.py \\
        data.custom_cls.name=WebsimSFTDataset ...

`WebsimSFTDataset` is veRL's own class with two steps in front of it: each row's `tools` decoded to the list of
OpenAI tool dicts (`decode_tools`), each message given as a chat template takes it (`template_messages`: no null
keys, `arguments` as an object). That is the chat the `hf/` copy holds for TRL, token for token.

The file imports nothing of websim (it runs wherever veRL is installed), and veRL only when veRL asks for the class
(`load_extern_object` does `getattr(module, "WebsimSFTDataset")`), so websim imports and tests it without veRL.
"""

from __future__ import annotations

import functools
import json
from typing import Any

CLASS_NAME = "WebsimSFTDataset"
FILE_NAME = "verl_sft_dataset.py"
"""The name of this file in a traces folder: `data.custom_cls.path=<traces>/verl_sft_dataset.py`."""


def plain(value: Any) -> Any:
    """numpy arrays (pandas' default reader) and pyarrow-backed lists as Python lists, recursively."""
    if hasattr(value, "as_py"):  # a pyarrow scalar
        value = value.as_py()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else value
        return [plain(v) for v in items] if isinstance(items, list) else items
    return value


def decode_tools(tools: Any) -> list[dict] | None:
    """A row's `tools` (websim's JSON string, or already a list) as the list of tool dicts a chat template takes."""
    if tools is None:
        return None
    return json.loads(tools) if isinstance(tools, (str, bytes)) else plain(tools)


def template_messages(messages: Any) -> list[dict]:
    """A stored chat as chat templates take it: keys whose value is null dropped (but `content`, which veRL reads
    from every message), every call's `arguments` an object (the Parquet holds the OpenAI wire format, arguments
    as a JSON string)."""
    out = []
    for message in plain(messages):
        message = {k: v for k, v in message.items() if v is not None or k == "content"}
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                call = {k: v for k, v in call.items() if v is not None}
                fn = {k: v for k, v in call["function"].items() if v is not None}
                if isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.loads(fn["arguments"])
                calls.append({**call, "function": fn})
            message["tool_calls"] = calls
        else:
            message.pop("tool_calls", None)
        out.append(message)
    return out


def dataset_class(base: type | None = None) -> type:
    """`WebsimSFTDataset`: `base` (veRL's `MultiTurnSFTDataset` when None) reading websim's traces."""
    if base is None:
        from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset as base

    class WebsimSFTDataset(base):  # type: ignore[misc, valid-type]
        """veRL's multi-turn SFT dataset on websim's `sft_traces` Parquet: tools decoded, messages template-shaped."""

        def _read_files_and_process(self):
            super()._read_files_and_process()
            if self.tools is not None:
                self.tools = [decode_tools(t) for t in self.tools]

        def _build_messages(self, example: dict):
            return super()._build_messages({**example,
                                            self.messages_key: template_messages(example[self.messages_key])})

    return WebsimSFTDataset


@functools.cache
def _verl_dataset_class() -> type:
    return dataset_class()


def __getattr__(name: str) -> Any:
    if name == CLASS_NAME:
        return _verl_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
