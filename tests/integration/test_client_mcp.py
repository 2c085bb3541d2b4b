"""aimusicstore-mcp driven by the MCP SDK's own client over stdio, against the
real stack: list the tools, search, vote, read trending and see the vote;
the service's errors come back as tool errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client as McpClient
from mcp.client.stdio import StdioServerParameters
from mcp_types import TextContent, TextResourceContents

import aimusicstore_client
from aimusicstore_client import Client
from devstack.stack import Stack
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration

TOOLS = {
    "search_songs",
    "search_tools",
    "get_trending",
    "get_chart",
    "get_item_history",
    "vote",
    "retract_vote",
    "submit_song",
    "my_votes",
    "my_agent",
}


def server_params(stack: Stack, key: str, agent_id: str) -> StdioServerParameters:
    # The module the console script runs, with this checkout's package first.
    package_root = str(Path(aimusicstore_client.__file__).resolve().parents[1])
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "aimusicstore_client.mcp_server"],
        env={
            "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
            "AIMUSICSTORE_TARGET": f"127.0.0.1:{stack.gateway_port}",
            "AIMUSICSTORE_API_KEY": key,
            "AIMUSICSTORE_AGENT_ID": agent_id,
        },
    )


def text(result: Any) -> str:
    """The text of a tool result or a resource read."""
    parts = getattr(result, "content", None) or result.contents
    assert isinstance(parts[0], TextContent | TextResourceContents), parts
    return parts[0].text


def payload(result: Any) -> Any:
    assert not result.is_error, result.content
    return json.loads(text(result))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_mcp_client_lists_tools_searches_votes_and_sees_the_vote_in_trending(stack: Stack, mode: str) -> None:
    with Client(f"127.0.0.1:{stack.gateway_port}") as setup:
        setup.register(unique("agent"))
        genre = unique("genre")
        song = setup.create_song("Midnight Circuit", "Model Y", "udio", genre=genre)
    # Another agent votes through MCP.
    with Client(f"127.0.0.1:{stack.gateway_port}") as other:
        other.register(unique("agent"))
        key, agent_id = other.api_key or "", other.agent_id or ""

    async def scenario() -> None:
        async with McpClient(server_params(stack, key, agent_id), mode=mode) as mcp:
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
            assert set(tools) >= TOOLS
            for tool in tools.values():
                assert tool.description and len(tool.description) > 30
                assert tool.input_schema["type"] == "object"
            vote_schema = tools["vote"].input_schema
            assert set(vote_schema["required"]) == {"item_type", "item_id", "direction"}

            found = payload(await mcp.call_tool("search_songs", {"query": "Midnight Circuit", "genre": genre}))
            assert [s["id"] for s in found["songs"]] == [song.id]

            voted = payload(await mcp.call_tool("vote", {"item_type": "song", "item_id": song.id, "direction": "up"}))
            assert (voted["status"], voted["up_votes"]) == ("success", 1)

            again = await mcp.call_tool("vote", {"item_type": "song", "item_id": song.id, "direction": "up"})
            assert again.is_error
            assert "Already voted" in text(again) and "retract_vote" in text(again)

            missing = await mcp.call_tool("vote", {"item_type": "song", "item_id": unique("nope"), "direction": "up"})
            assert missing.is_error and "NOT_FOUND" in text(missing)

            async def trending_has_it() -> dict[str, Any] | None:
                read = await mcp.read_resource("aimusicstore://trending")
                data = json.loads(text(read))
                return data if song.id in [e["item_id"] for e in data["songs"]] else None

            data = None
            for _ in range(50):
                if data := await trending_has_it():
                    break
                await asyncio.sleep(0.2)
            assert data is not None, "the vote never showed in trending"
            entry = next(e for e in data["songs"] if e["item_id"] == song.id)
            assert entry["up_votes"] == 1
            tool_trending = payload(await mcp.call_tool("get_trending", {"limit": 50, "genre": genre}))
            assert [e["item_id"] for e in tool_trending["songs"]] == [song.id]

            mine = payload(await mcp.call_tool("my_votes", {}))
            assert [v["item_id"] for v in mine["votes"]] == [song.id]
            me = payload(await mcp.call_tool("my_agent", {}))
            assert me["id"] == agent_id and me["standing"] == "probation"

            chart = json.loads(text(await mcp.read_resource("aimusicstore://charts/weekly")))
            assert chart["period"] == "weekly"
            submitted = payload(
                await mcp.call_tool("submit_song", {"title": "From MCP", "artist": "Model Z", "platform": "suno_ai"})
            )
            assert submitted["id"] and submitted["title"] == "From MCP"
            bad = await mcp.call_tool("submit_song", {"title": "x", "artist": "y", "platform": "Not Valid!"})
            assert bad.is_error and "platform" in text(bad)
            history = payload(
                await mcp.call_tool("get_item_history", {"item_type": "song", "item_id": song.id, "days": 7})
            )
            assert history["item_id"] == song.id
            retracted = payload(await mcp.call_tool("retract_vote", {"item_type": "song", "item_id": song.id}))
            assert retracted["status"] == "success"
            assert payload(await mcp.call_tool("search_tools", {"query": unique("none")})) == {"tools": []}
            assert payload(await mcp.call_tool("get_chart", {"period": "daily"}))["period"] == "daily"

    asyncio.run(scenario())
