"""The second conformance fixture, written the way most MCP servers are: its interactive tools
ask the client with server-to-client requests on the session (`ctx.session.create_message`,
`ctx.elicit`, `ctx.session.elicit_form`), with no branch on the protocol era. The official
`mcp` 2.x `MCPServer` still serves both eras on one endpoint (stdio included); in the
2026-07-28 era those tools fail, since a stateless request has no back channel.

    $NEXUS_TEST_TOOLS/bin/python tests/servers/handshake_server.py [--http [--port P]]

Everything else (content, logging, progress, resources, prompts, completions, list changes)
is `conformance_common`'s, shared with `conformance_server.py`.
"""

import mcp.types as types
from conformance_common import (
    ELICITATION_SCHEMA,
    SEP1034_MESSAGE,
    SEP1034_SCHEMA,
    SEP1330_MESSAGE,
    SEP1330_SCHEMA,
    client_has,
    completed_result,
    elicitation_result,
    refusal,
    sampling_result,
    serve,
    server,
)
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field


@server.tool(description="Asks the client's LLM (sampling) and returns its answer")
async def test_sampling(prompt: str, ctx: Context) -> types.CallToolResult:
    if not client_has(ctx, "sampling"):
        return refusal("sampling")
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
    answer = await ctx.session.create_message([message], max_tokens=100, related_request_id=ctx.request_id)
    return sampling_result(answer)


class Contact(BaseModel):
    """What `test_elicitation` asks for (`ctx.elicit` derives the form from this model)."""

    username: str = Field(description=ELICITATION_SCHEMA["properties"]["username"]["description"])
    email: str = Field(description=ELICITATION_SCHEMA["properties"]["email"]["description"])


@server.tool(description="Asks the user (elicitation) for a username and an email")
async def test_elicitation(message: str, ctx: Context) -> types.CallToolResult:
    if not client_has(ctx, "elicitation"):
        return refusal("elicitation")
    answer = await ctx.elicit(message, schema=Contact)
    content = answer.data.model_dump() if answer.action == "accept" else None
    return elicitation_result({"action": answer.action, "content": content})


async def elicit_form(ctx: Context, message: str, schema: dict) -> types.CallToolResult:
    """A form whose schema no model expresses (defaults, every enum form): sent as written."""
    if not client_has(ctx, "elicitation"):
        return refusal("elicitation")
    answer = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return completed_result(answer)


@server.tool(description="Elicitation with defaults for every primitive type (SEP-1034)")
async def test_elicitation_sep1034_defaults(ctx: Context) -> types.CallToolResult:
    return await elicit_form(ctx, SEP1034_MESSAGE, SEP1034_SCHEMA)


@server.tool(description="Elicitation with every enum schema form (SEP-1330)")
async def test_elicitation_sep1330_enums(ctx: Context) -> types.CallToolResult:
    return await elicit_form(ctx, SEP1330_MESSAGE, SEP1330_SCHEMA)


if __name__ == "__main__":
    serve(__doc__.split("\n\n")[0])
