"""What both conformance fixtures serve alike: the tools, resources, prompts and completions
that the server scenarios of `@modelcontextprotocol/conformance` call by name (the conformance
repo's former SERVER_REQUIREMENTS.md, now the scenario descriptions; see `conformance list`),
on one official `mcp` 2.x `MCPServer` (`server`). The fixtures import it and add the tools
that ask the client, each in its own style:

- `conformance_server.py`: era-aware, `input_required` results in 2026-07-28 (SEP-2322);
- `handshake_server.py`: the usual style, server-to-client requests on the session.

`serve()` runs the server over stdio or Streamable HTTP as the command line asks.
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import warnings
from typing import Any

import mcp.types as types
import uvicorn
from announcing import AnnouncingServer
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPError

# The logging and sampling APIs are deprecated by 2026-07-28 but are what the scenarios test.
warnings.simplefilter("ignore")

MODERN = "2026-07-28"
# JSON-RPC code of MissingRequiredClientCapabilityError (2026-07-28).
MISSING_CAPABILITY = -32021

# A 1x1 red PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="


def tiny_wav() -> str:
    """A valid WAV file: 8 kHz, 16-bit mono, 80 samples of silence (10 ms), base64."""
    rate, samples = 8000, 80
    data = b"\x00\x00" * samples
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return base64.b64encode(header + fmt + b"data" + struct.pack("<I", len(data)) + data).decode()


WAV = tiny_wav()

server = MCPServer(name="mcp-conformance-test-server", version="1.0.0")


def text_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def modern(ctx: Context) -> bool:
    return ctx.protocol_version == MODERN


def client_has(ctx: Context, capability: str) -> bool:
    capabilities = ctx.client_capabilities
    return capabilities is not None and getattr(capabilities, capability, None) is not None


def missing_capability(capability: str) -> MCPError:
    return MCPError(
        MISSING_CAPABILITY,
        f"this tool needs the client capability `{capability}`",
        {"requiredCapabilities": {capability: {}}},
    )


def dump(value: Any) -> Any:
    return value.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(value, "model_dump") else value


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------


@server.tool(description="Returns a simple text response")
def test_simple_text() -> types.CallToolResult:
    return text_result("This is a simple text response for testing.")


@server.tool(description="Returns image content (a 1x1 red PNG)")
def test_image_content() -> types.CallToolResult:
    return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")])


@server.tool(description="Returns audio content (a short WAV)")
def test_audio_content() -> types.CallToolResult:
    return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")])


@server.tool(description="Returns an embedded resource")
def test_embedded_resource() -> types.CallToolResult:
    resource = types.TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=resource)])


@server.tool(description="Returns text, image and resource content together")
def test_multiple_content_types() -> types.CallToolResult:
    resource = types.TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
    )
    return types.CallToolResult(
        content=[
            types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG, mime_type="image/png"),
            types.EmbeddedResource(type="resource", resource=resource),
        ]
    )


@server.tool(description="Sends three info log messages while it runs")
async def test_tool_with_logging(ctx: Context) -> types.CallToolResult:
    for step, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if step:
            await asyncio.sleep(0.05)
        if logs("info"):
            await ctx.info(message, logger_name="conformance-test-server")
    return text_result("Tool with logging executed successfully")


# RFC 5424 severities, least severe first, and the lowest one `logging/setLevel` asked for
# (one level per process: every client of a handshake-era session shares it).
LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LOG_LEVEL = {"level": "debug"}


def logs(level: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(LOG_LEVEL["level"])


@server.tool(description="Reports progress 0, 50 and 100 of 100")
async def test_tool_with_progress(ctx: Context) -> types.CallToolResult:
    for step, progress in enumerate((0, 50, 100)):
        if step:
            await asyncio.sleep(0.05)
        await ctx.report_progress(progress, 100, f"Completed step {step + 1} of 3")
    return text_result("Tool with progress executed successfully")


@server.tool(description="Always fails (isError result)")
def test_error_handling() -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="This tool intentionally returns an error for testing")],
        is_error=True,
    )


@server.tool(description="Tool with JSON Schema 2020-12 features (SEP-1613)")
def json_schema_2020_12_tool(name: str = "", address: dict[str, Any] | None = None) -> types.CallToolResult:
    return text_result(f"name={name}, address={json.dumps(address)}")


# The input schema is given verbatim: SEP-1613 checks that `$schema`, `$defs` and
# `additionalProperties` survive listing.
server._tool_manager.get_tool("json_schema_2020_12_tool").parameters = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


@server.tool(description="Echoes `region`, which calls also carry in the Mcp-Param-Region header (SEP-2243)")
def test_custom_header(region: str) -> types.CallToolResult:
    return text_result(f"region={region}")


# `x-mcp-header` marks the argument a 2026-07-28 client mirrors in a header (and the SDK's
# HTTP server checks against the body).
server._tool_manager.get_tool("test_custom_header").parameters = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    "required": ["region"],
}


@server.tool(description="Logs at info level (no log without a requested level in 2026-07-28)")
async def test_logging_tool(ctx: Context) -> types.CallToolResult:
    await ctx.info("test_logging_tool ran", logger_name="conformance-test-server")
    return text_result("Logging tool executed")

# ---------------------------------------------------------------------------------------------
# List mutation (server-stateless: list-changed notifications on `subscriptions/listen`)
# ---------------------------------------------------------------------------------------------


def dynamic_tool() -> types.CallToolResult:
    return text_result("This tool comes and goes with test_trigger_tool_change.")


def dynamic_prompt() -> list[UserMessage]:
    return [UserMessage("This prompt comes and goes with test_trigger_prompt_change.")]


@server.tool(description="Adds or removes the tool `test_dynamic_tool` and announces the tool-list change")
async def test_trigger_tool_change(ctx: Context) -> types.CallToolResult:
    if server._tool_manager.get_tool("test_dynamic_tool") is None:
        server.add_tool(dynamic_tool, name="test_dynamic_tool", description="A tool added at run time")
        change = "added"
    else:
        server.remove_tool("test_dynamic_tool")
        change = "removed"
    if modern(ctx):
        await ctx.notify_tools_changed()
    else:
        await ctx.session.send_tool_list_changed()
    return text_result(f"Tool list changed: test_dynamic_tool {change}")


@server.tool(description="Adds or removes the prompt `test_dynamic_prompt` and announces the prompt-list change")
async def test_trigger_prompt_change(ctx: Context) -> types.CallToolResult:
    if server._prompt_manager.get_prompt("test_dynamic_prompt") is None:
        server.add_prompt(
            Prompt.from_function(dynamic_prompt, name="test_dynamic_prompt", description="A prompt added at run time")
        )
        change = "added"
    else:
        server.remove_prompt("test_dynamic_prompt")
        change = "removed"
    if modern(ctx):
        await ctx.notify_prompts_changed()
    else:
        await ctx.session.send_prompt_list_changed()
    return text_result(f"Prompt list changed: test_dynamic_prompt {change}")


# ---------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------


@server.resource(
    "test://static-text",
    name="Static Text Resource",
    description="A static text resource for testing",
    mime_type="text/plain",
)
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource(
    "test://static-binary",
    name="Static Binary Resource",
    description="A static binary resource (image) for testing",
    mime_type="image/png",
)
def static_binary() -> bytes:
    return base64.b64decode(PNG)


@server.resource(
    "test://template/{id}/data",
    name="Resource Template",
    description="A resource template with parameter substitution",
    mime_type="application/json",
)
def template_data(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


@server.resource(
    "test://watched-resource",
    name="Watched Resource",
    description="A resource that can be subscribed to",
    mime_type="text/plain",
)
def watched_resource() -> str:
    return "Watched resource content"


SUBSCRIPTIONS: set[str] = set()


async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIPTIONS.add(str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIPTIONS.discard(str(params.uri))
    return types.EmptyResult()


@server.tool(description="Announces an update of every resource subscribed to here (and names this process)")
async def test_touch_subscribed(ctx: Context) -> types.CallToolResult:
    touched = sorted(SUBSCRIPTIONS)
    for uri in touched:
        if modern(ctx):
            await ctx.notify_resource_updated(uri)
        else:
            await ctx.session.send_resource_updated(uri)
    return text_result(f"pid={os.getpid()} updated={','.join(touched)}")


async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    LOG_LEVEL["level"] = params.level
    return types.EmptyResult()


lowlevel = server._lowlevel_server
lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)

# ---------------------------------------------------------------------------------------------
# Prompts and completion
# ---------------------------------------------------------------------------------------------


@server.prompt(description="A simple prompt without arguments")
def test_simple_prompt() -> list[UserMessage]:
    return [UserMessage("This is a simple prompt for testing.")]


@server.prompt(description="A prompt with required arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]


@server.prompt(description="A prompt that includes an embedded resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    resource = types.TextResourceContents(
        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
    )
    return [
        UserMessage(types.EmbeddedResource(type="resource", resource=resource)),
        UserMessage("Please process the embedded resource above."),
    ]


@server.prompt(description="A prompt that includes image content")
def test_prompt_with_image() -> list[UserMessage]:
    return [
        UserMessage(types.ImageContent(type="image", data=PNG, mime_type="image/png")),
        UserMessage("Please analyze the image above."),
    ]


COMPLETIONS = {
    "arg1": ["paris", "park", "party"],
    "arg2": ["world", "wonder", "work"],
    "resourceUri": ["test://static-text", "test://static-binary", "test://watched-resource"],
    "id": ["1", "2", "3", "123"],
}


@server.completion()
async def complete(ref: Any, argument: types.CompletionArgument, context: Any) -> types.Completion:
    values = [value for value in COMPLETIONS.get(argument.name, []) if value.startswith(argument.value)]
    return types.Completion(values=values, total=len(values), has_more=False)


# Prompt arguments get descriptions in prompts/list, as the requirements show them.
_ARGUMENT_DESCRIPTIONS = {
    "arg1": "First test argument",
    "arg2": "Second test argument",
    "resourceUri": "URI of the resource to embed",
}
for _prompt in server._prompt_manager.list_prompts():
    for _argument in _prompt.arguments or []:
        _argument.description = _ARGUMENT_DESCRIPTIONS.get(_argument.name, _argument.description)


# ---------------------------------------------------------------------------------------------
# What the interactive tools ask, and how they report the answer (the scenarios check the text)
# ---------------------------------------------------------------------------------------------

ELICITATION_SCHEMA = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}

SEP1034_MESSAGE = "Please review and update the form fields with defaults"
SEP1034_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}

SEP1330_MESSAGE = "Please select options from the enum fields"
SEP1330_SCHEMA = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Select one option",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


def refusal(capability: str) -> types.CallToolResult:
    """The result of an interactive tool called by a client without `capability`."""
    text = f"Client does not support {capability}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def sampling_result(answer: Any) -> types.CallToolResult:
    content = dump(answer).get("content", {})
    text = content.get("text") if isinstance(content, dict) else json.dumps(content)
    return text_result(f"LLM response: {text}")


def elicitation_result(answer: Any) -> types.CallToolResult:
    answer = dump(answer)
    return text_result(f"User response: action={answer.get('action')}, content={json.dumps(answer.get('content'))}")


def completed_result(answer: Any) -> types.CallToolResult:
    answer = dump(answer)
    return text_result(
        f"Elicitation completed: action={answer.get('action')}, content={json.dumps(answer.get('content', {}))}"
    )


def serve(description: str) -> None:
    """Runs `server` as the command line asks: stdio by default; `--http` serves Streamable HTTP
    on 127.0.0.1 (`--port`, 0 picks one) and prints `LISTENING <port>` once it accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp instead of stdio")
    parser.add_argument("--port", type=int, default=0, help="with --http: 0 picks a free port")
    args = parser.parse_args()
    if not args.http:
        server.run("stdio")
        return
    # Bound here, so that port 0 yields a known port before uvicorn starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    AnnouncingServer(config, sock.getsockname()[1]).run(sockets=[sock])

