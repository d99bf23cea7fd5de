"""The embedded model: converted once from the packaged GGUF, loadable offline, with a tool-call chat template."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.llm import model_setup
from pipeline.llm.model_setup import (
    MARKER_FILE,
    TOOL_CHAT_TEMPLATE,
    build_atomically,
    ensure_embedded_model,
    model_fingerprint,
    resolve_model,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "websim_home"  # the WEBSIM_HOME of tests/conftest.py


@pytest.fixture(scope="module")
def model_dir(data_dir):
    return ensure_embedded_model(data_dir)


def test_converted_folder_is_a_plain_bf16_hf_model(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", MARKER_FILE} <= names
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16" and config["architectures"] == ["LlamaForCausalLM"]
    assert not list(model_dir.parent.glob(".*tmp-*")), "no temporary folder is left behind"


def test_second_call_reuses_the_folder(model_dir, data_dir):
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_embedded_model(data_dir) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_loads_offline_and_answers(model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


def test_chat_template_supports_tools_and_trl_recognises_it(model_dir):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import add_response_schema, qwen2_5_chat_template, supports_tool_calling

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.chat_template == TOOL_CHAT_TEMPLATE == qwen2_5_chat_template
    assert supports_tool_calling(tokenizer)
    tool = {"type": "function", "function": {"name": "search", "description": "Search the web.",
                                             "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Find X."}],
        tools=[tool], tokenize=False, add_generation_prompt=True,
    )
    assert text.startswith("<|im_start|>system\nBe brief.") and '"name": "search"' in text and "<tool_call>" in text
    assert text.endswith("<|im_start|>assistant\n")
    add_response_schema(tokenizer)
    parsed = tokenizer.parse_response(
        '<tool_call>\n{"name": "search", "arguments": {"query": "X"}}\n</tool_call><|im_end|>', prefix=""
    )
    assert parsed["tool_calls"][0]["function"] == {"name": "search", "arguments": {"query": "X"}}


def test_failed_build_leaves_no_folder(tmp_path):
    target = tmp_path / "models" / "M"
    target.parent.mkdir(parents=True)

    def half_then_crash(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt  # what a Ctrl-C mid-conversion looks like

    with pytest.raises(KeyboardInterrupt):
        build_atomically(target, half_then_crash)
    assert not target.exists() and list(target.parent.iterdir()) == []

    build_atomically(target, lambda tmp: (tmp / "config.json").write_text("{}"))
    assert (target / "config.json").exists()


def test_resolve_model(model_dir, data_dir, tmp_path):
    assert resolve_model(None, data_dir) == str(model_dir)
    assert resolve_model("embedded", data_dir) == str(model_dir)
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_fingerprint_is_stable_and_tracks_weights(model_dir, tmp_path):
    fp = model_fingerprint(str(model_dir))
    assert fp.startswith("SmolLM2-135M-Instruct@") and fp == model_fingerprint(str(model_dir))
    copy = tmp_path / "SmolLM2-135M-Instruct"
    copy.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (copy / name).write_bytes((model_dir / name).read_bytes())
    (copy / "model.safetensors").write_bytes(b"\0" * 4096)
    assert model_fingerprint(str(copy)) != fp
    assert model_fingerprint("org/name") == "org/name"


def test_cli_prints_the_folder(model_dir, data_dir):
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.llm.model_setup", "--data-dir", str(data_dir)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
    )
    assert out.stdout.strip() == str(model_dir)


def test_default_data_dir_follows_websim_home(monkeypatch, tmp_path):
    monkeypatch.setenv("WEBSIM_HOME", str(tmp_path))
    assert model_setup.default_data_dir() == tmp_path.resolve()
    assert model_setup.embedded_model_dir() == tmp_path.resolve() / "models" / "SmolLM2-135M-Instruct"
