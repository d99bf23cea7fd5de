"""Run by the `verifiers` library's own venv (.venv-verifiers, made by scripts/setup.sh), never imported by the tests:
websim's verifiers export as a verifiers environment's dataset and websim's MCP server as its tools, through
verifiers' classic `Environment` dataset loading (`get_dataset`, `get_eval_dataset`) and its `MCPEnv` (stdio MCP
servers listed and called with verifiers' own client); what verifiers saw goes to stdout as one JSON object.

    .venv-verifiers/bin/python tests/pipeline/datasets/verifiers_check.py <export folder> <websim python> <snapshot> <query>
"""

import asyncio
import json
import os
import sys
from importlib.metadata import version

import datasets
import verifiers as vf
from verifiers.envs.experimental.mcp_env import MCPEnv


def main() -> None:
    folder, python, snapshot, query = sys.argv[1:5]
    files = {split: os.path.join(folder, "verifiers", f"{split}.parquet") for split in ("train", "test")}
    data = datasets.load_dataset("parquet", data_files=files)
    server = {"name": "websim", "command": python,
              "args": ["-m", "pipeline.simulator.mcp_server", "--snapshot", snapshot, "--session", "verifiers"],
              "env": {k: v for k, v in os.environ.items() if k.startswith("WEBSIM_")}}

    env = MCPEnv(mcp_servers=[server], dataset=data["train"], eval_dataset=data["test"], rubric=vf.Rubric(),
                 max_turns=4)
    try:
        train, test = env.get_dataset(), env.get_eval_dataset()
        message = asyncio.run(env.call_tool("search", {"query": query}, "call_0"))
        missing = asyncio.run(env.call_tool("open_url", {"url": "https://en.wikipedia.org/wiki/Unicorn"}, "call_1"))
        out = {"verifiers": version("verifiers"), "mcp": version("mcp"),
               "tools": [t.model_dump(exclude_none=True) for t in env.tool_defs],
               "train": [dict(row) for row in train], "test": [dict(row) for row in test],
               "search": dict(message), "missing": dict(missing)}
    finally:
        asyncio.run(env.teardown_mcp_servers())
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
