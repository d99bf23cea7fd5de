"""websim's verifiers export and its MCP server, loaded by the `verifiers` library itself: its classic `Environment`
takes the exported dataset and its `MCPEnv` lists and calls websim's tools over stdio.

No verifiers release installs beside websim (openai>=3.57, mcp 2.x, datasets>=4.7): 0.4.0 pins openai<3 and
mcp==2.0.0, 0.3.x mcp<2, 0.2.x and older datasets<4.7. So verifiers 0.3.1 (the last release with dataset
environments and MCPEnv) lives in a venv of its own, .venv-verifiers (scripts/setup.sh), and
tests/pipeline/datasets/verifiers_check.py runs there and prints what verifiers saw; the MCP server it starts is
websim's, run by this interpreter."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.datasets.exports import ExportConfig, export_for_trainers
from pipeline.simulator.tools import TOOL_SCHEMAS, WebTools
from pipeline.simulator.web import Simulator
from tests.support import REPO, small_questions

VF_PYTHON = REPO / ".venv-verifiers" / "bin" / "python"
QUERY = "flightless bird"


@pytest.fixture(scope="module")
def seen(small_snapshot, tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not VF_PYTHON.exists():
        pytest.skip("no .venv-verifiers (scripts/setup.sh makes it)")
    root = tmp_path_factory.mktemp("verifiers")
    (root / "hard_queries" / "data").mkdir(parents=True)
    for split in ("train", "eval"):
        rows = [q for q in small_questions() if q["split"] == split]
        pq.write_table(pa.Table.from_pylist(rows), root / "hard_queries" / "data" / f"{split}.parquet")
    export_for_trainers(root / "hard_queries", small_snapshot, root / "exports",
                        ExportConfig(verl=False, search_r1=False, retrieval=False, corpus=False))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([str(VF_PYTHON), str(REPO / "tests" / "pipeline" / "datasets" / "verifiers_check.py"),
                           str(root / "exports"), sys.executable, str(small_snapshot.path), QUERY],
                          capture_output=True, text=True, timeout=300, cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), root / "exports"


def test_verifiers_loads_the_exported_dataset(seen):
    import pandas as pd

    got, out = seen
    assert got["verifiers"] == "0.3.1"
    for split, n in (("train", 4), ("test", 2)):
        exported = pd.read_parquet(out / "verifiers" / f"{split}.parquet").to_dict("records")
        rows = got[split]
        assert len(rows) == n and [r["example_id"] for r in rows] == list(range(n))  # verifiers numbers them
        for row, ex in zip(rows, exported):
            assert row["id"] == ex["id"] and row["answer"] == ex["answer"] and row["task"] == "websim-search"
            assert row["prompt"] == [dict(m) for m in ex["prompt"]]  # the system + user turns, as exported
            assert row["prompt"][1]["content"] == row["question"]
            assert row["info"]["aliases"] == list(ex["info"]["aliases"])
            assert row["info"]["evidence_urls"] == list(ex["info"]["evidence_urls"])
    assert got["train"][0]["id"] == "basalt" and got["train"][0]["answer"] == "watches"


def test_verifiers_mcpenv_lists_and_calls_websims_tools(seen, small_snapshot):
    got, _ = seen
    assert got["mcp"].split(".")[0] == "1"  # verifiers' own MCP client (mcp<2) against websim's server
    tools = {t["name"]: t for t in got["tools"]}
    assert sorted(tools) == sorted(s["function"]["name"] for s in TOOL_SCHEMAS)
    for schema in TOOL_SCHEMAS:
        fn = schema["function"]
        assert set(tools[fn["name"]]["parameters"]["properties"]) == set(fn["parameters"]["properties"])
        assert tools[fn["name"]]["description"].startswith(fn["description"])
    reference = WebTools(Simulator(small_snapshot)).search(query=QUERY)
    assert got["search"] == {"role": "tool", "tool_call_id": "call_0", "content": reference}
    assert "Penguin" in reference
    assert got["missing"]["content"].startswith("Error 404")
