"""The tools through the MCP client: listed with their schemas, called in memory and over stdio (a real subprocess,
as an MCP host launches it), answering what WebTools answers."""

import asyncio
import os
import sys

import pytest

from pipeline.simulator.tools import TOOL_SCHEMAS, WebTools
from pipeline.simulator.web import Simulator
from tests.support import REPO, WIKI

mcp_client = pytest.importorskip("mcp.client.client")


def _text(result) -> str:
    assert not result.is_error, result
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def test_the_mcp_client_lists_and_calls_every_tool(small_snapshot):
    from pipeline.simulator.mcp_server import build_server

    tools = WebTools(Simulator(small_snapshot))
    reference = WebTools(Simulator(small_snapshot))

    async def run():
        async with mcp_client.Client(build_server(tools)) as client:
            listed = (await client.list_tools()).tools
            by_name = {t.name: t for t in listed}
            assert sorted(by_name) == sorted(s["function"]["name"] for s in TOOL_SCHEMAS)
            for schema in TOOL_SCHEMAS:
                fn = schema["function"]
                params = by_name[fn["name"]].input_schema
                assert set(params["properties"]) == set(fn["parameters"]["properties"])
                assert set(params.get("required", [])) == set(fn["parameters"]["required"])
                assert by_name[fn["name"]].description.startswith(fn["description"])
            calls = [("search", {"query": "volcanic lava rock", "k": 2}), ("open_url", {"url": WIKI + "Basalt"}),
                     ("find_in_page", {"url": WIKI + "Basalt", "text": "lava"}), ("links", {"url": WIKI + "Basalt"}),
                     ("sitemap", {"host": "en.wikipedia.org"})]
            for name, args in calls:
                assert _text(await client.call_tool(name, args)) == getattr(reference, name)(**args), name
            missing = await client.call_tool("open_url", {"url": WIKI + "Unicorn"})
            assert _text(missing).startswith("Error 404")

    asyncio.run(run())


def test_the_mcp_server_over_stdio(small_snapshot):
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, cwd=str(REPO),
                                   args=["-m", "pipeline.simulator.mcp_server", "--snapshot", str(small_snapshot.path)],
                                   env={**os.environ, "PYTHONPATH": str(REPO)})

    async def run():
        async with mcp_client.Client(params, read_timeout_seconds=120) as client:
            assert "find_in_page" in {t.name for t in (await client.list_tools()).tools}
            out = _text(await client.call_tool("search", {"query": "flightless bird"}))
            assert out.startswith('Results for "flightless bird"') and "Penguin" in out

    asyncio.run(asyncio.wait_for(run(), 180))
