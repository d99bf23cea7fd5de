"""The simulator's browsing tools (`WebTools`: search, open_url, find_in_page, links, sitemap) as an MCP server.

MCP clients (verifiers' MCP tool sets, BrowseComp-Plus-style agents, any MCP host) list and call the same tools a TRL
trainer gets from `tool_functions`, with the same text answers:

    python -m pipeline.simulator.mcp_server                          # stdio, the latest snapshot in process
    python -m pipeline.simulator.mcp_server --snapshot <id or folder>
    python -m pipeline.simulator.mcp_server --url http://127.0.0.1:8000   # a running `websim serve`
    python -m pipeline.simulator.mcp_server --transport streamable-http --port 8765   # on 127.0.0.1

One server process is one agent: its calls are one trajectory in the call log (`--session` names the caller).
Works with the `mcp` package 2.x (`MCPServer`) and 1.x (`FastMCP`).
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from pipeline.simulator.tools import WebTools, tool_functions

INSTRUCTIONS = ("A simulated web: search it, open pages (long pages in parts, from an offset), find a phrase in a page, "
                "list a page's links or a site's pages. Every page is a snapshot; nothing outside it exists.")


def build_server(tools: WebTools | None = None, *, name: str = "websim", **server_kwargs: Any):
    """An MCP server whose tools are the methods of `tools` (default: `WebTools()`, which finds its simulator from
    the environment: $WEBSIM_SIMULATOR_URL, $WEBSIM_SNAPSHOT, else the latest snapshot)."""
    try:
        from mcp.server.mcpserver import MCPServer as Server
    except ImportError:  # mcp 1.x
        try:
            from mcp.server.fastmcp import FastMCP as Server
        except ImportError:
            raise ImportError("the MCP server needs the `mcp` package: pip install mcp") from None
    tools = tools if tools is not None else WebTools()
    server = Server(name=name, instructions=INSTRUCTIONS, **server_kwargs)
    for fn in tool_functions(tools):
        server.add_tool(fn, name=fn.__name__, description=inspect.getdoc(fn))
    return server


def main(argv: list[str] | None = None) -> None:
    from pipeline.simulator.web import HttpSimulator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--snapshot", help="snapshot id or folder (default: the latest)")
    where.add_argument("--url", help="a running `websim serve` to browse over HTTP instead")
    parser.add_argument("--session", help="caller name for the call log")
    parser.add_argument("--transport", choices=("stdio", "streamable-http", "sse"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    simulator = HttpSimulator(args.url) if args.url else args.snapshot
    server = build_server(WebTools(simulator, session=args.session))
    if args.transport == "stdio":
        server.run("stdio")
    elif hasattr(server, "settings"):  # mcp 1.x: the address is a setting
        server.settings.host, server.settings.port = args.host, args.port
        server.run(args.transport)
    else:
        server.run(args.transport, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
