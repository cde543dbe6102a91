"""The conformance fixture: a stdio MCP server with the tools, resources and prompts that the
server scenarios of `@modelcontextprotocol/conformance` call by name (the conformance repo's
former SERVER_REQUIREMENTS.md, now the scenario descriptions; see `conformance list`).

Run behind the gateway as its only downstream, with `prefix = "when-needed"` and
`tools = "direct"` so the names reach the conformance client unchanged:

    $NEXUS_TEST_TOOLS/bin/python tests/servers/conformance_server.py

Official `mcp` 2.x `MCPServer`, both protocol eras as the SDK allows: in the handshake era the
interactive tools send `sampling/createMessage` / `elicitation/create` to the client; in the
2026-07-28 era (no server-to-client requests) they answer with an `input_required` result and
finish when the client retries with `inputResponses`.

The `test_input_required_result_*` tools (and prompt) serve the SEP-2322 scenarios, 2026-07-28
only. Their `requestState` is sealed and verified by `MCPServer`'s request-state boundary
(AES-256-GCM under a process-local key; a state it did not issue is answered with -32602
"Invalid or expired requestState"), and each tool also checks that the plaintext is one it mints.
`test_trigger_tool_change` / `test_trigger_prompt_change` mutate the tool / prompt list and
publish the change to `subscriptions/listen` streams (server-stateless scenario).
"""

import asyncio
import base64
import json
import struct
import sys
import warnings
from typing import Any

import mcp.types as types
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


async def ask(ctx: Context, key: str, request: types.ElicitRequest | types.CreateMessageRequest) -> Any:
    """One server-to-client request in either era: sent on the session (handshake era) or, in
    the 2026-07-28 era, returned as `input_required` (the caller returns it) until the client
    retries with the answer under `key`. Returns the answer, or the `InputRequiredResult`."""
    if modern(ctx):
        answer = (ctx.input_responses or {}).get(key)
        if answer is not None:
            return answer
        return types.InputRequiredResult(input_requests={key: request})
    if isinstance(request, types.ElicitRequest):
        return await ctx.session.elicit_form(
            request.params.message, request.params.requested_schema, related_request_id=ctx.request_id
        )
    params = request.params
    return await ctx.session.create_message(
        params.messages, max_tokens=params.max_tokens, related_request_id=ctx.request_id
    )


def elicit_request(message: str, schema: dict[str, Any]) -> types.ElicitRequest:
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


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
    await ctx.info("Tool execution started", logger_name="conformance-test-server")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data", logger_name="conformance-test-server")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed", logger_name="conformance-test-server")
    return text_result("Tool with logging executed successfully")


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


@server.tool(description="Asks the client's LLM (sampling) and returns its answer")
async def test_sampling(prompt: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    if not client_has(ctx, "sampling"):
        return types.CallToolResult(
            content=[types.TextContent(type="text", text="Client does not support sampling")], is_error=True
        )
    request = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=100,
        )
    )
    answer = await ask(ctx, "sampling", request)
    if isinstance(answer, types.InputRequiredResult):
        return answer
    content = dump(answer).get("content", {})
    text = content.get("text") if isinstance(content, dict) else json.dumps(content)
    return text_result(f"LLM response: {text}")


def elicitation_tool(ctx: Context) -> types.CallToolResult | None:
    if client_has(ctx, "elicitation"):
        return None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="Client does not support elicitation")], is_error=True
    )


@server.tool(description="Asks the user (elicitation) for a username and an email")
async def test_elicitation(message: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    if refused := elicitation_tool(ctx):
        return refused
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    answer = await ask(ctx, "elicitation", elicit_request(message, schema))
    if isinstance(answer, types.InputRequiredResult):
        return answer
    answer = dump(answer)
    return text_result(f"User response: action={answer.get('action')}, content={json.dumps(answer.get('content'))}")


async def elicitation_completed(
    ctx: Context, message: str, schema: dict[str, Any]
) -> types.CallToolResult | types.InputRequiredResult:
    if refused := elicitation_tool(ctx):
        return refused
    answer = await ask(ctx, "elicitation", elicit_request(message, schema))
    if isinstance(answer, types.InputRequiredResult):
        return answer
    answer = dump(answer)
    return text_result(
        f"Elicitation completed: action={answer.get('action')}, content={json.dumps(answer.get('content', {}))}"
    )


@server.tool(description="Elicitation with defaults for every primitive type (SEP-1034)")
async def test_elicitation_sep1034_defaults(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    schema = {
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
    return await elicitation_completed(ctx, "Please review and update the form fields with defaults", schema)


@server.tool(description="Elicitation with every enum schema form (SEP-1330)")
async def test_elicitation_sep1330_enums(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    schema = {
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
    return await elicitation_completed(ctx, "Please select options from the enum fields", schema)


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


@server.tool(description="Needs the client's sampling capability; without it fails with -32021 (2026-07-28)")
def test_missing_capability(ctx: Context) -> types.CallToolResult:
    if not client_has(ctx, "sampling"):
        raise missing_capability("sampling")
    return text_result("The client declared the sampling capability.")


@server.tool(description="Streams progress, then asks the user (input_required in 2026-07-28)")
async def test_streaming_elicitation(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    if not client_has(ctx, "elicitation"):
        raise missing_capability("elicitation")
    for progress in (1, 2):
        await ctx.report_progress(progress, 3, f"step {progress} of 3")
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "Your answer"}},
        "required": ["answer"],
    }
    answer = await ask(ctx, "answer", elicit_request("Please answer to finish the stream", schema))
    if isinstance(answer, types.InputRequiredResult):
        return answer
    return text_result(f"Streaming elicitation completed: {json.dumps(dump(answer))}")


@server.tool(description="Logs at info level (no log without a requested level in 2026-07-28)")
async def test_logging_tool(ctx: Context) -> types.CallToolResult:
    await ctx.info("test_logging_tool ran", logger_name="conformance-test-server")
    return text_result("Logging tool executed")


# ---------------------------------------------------------------------------------------------
# SEP-2322 multi round-trip requests (2026-07-28): `input_required` results
# ---------------------------------------------------------------------------------------------

# The answer type each input request method expects under its key in `inputResponses`.
ANSWER_TYPES: dict[str, tuple[type, ...]] = {
    "elicitation/create": (types.ElicitResult,),
    "sampling/createMessage": (types.CreateMessageResult, types.CreateMessageResultWithTools),
    "roots/list": (types.ListRootsResult,),
}
# The client capability each input request method needs.
METHOD_CAPABILITIES = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}

InputRequest = types.ElicitRequest | types.CreateMessageRequest | types.ListRootsRequest


def require_modern(ctx: Context) -> None:
    if not modern(ctx):
        raise MCPError(types.INVALID_REQUEST, f"input_required results need protocol version {MODERN}")


def gather(
    ctx: Context, requests: dict[str, InputRequest], state: str | None = None
) -> dict[str, Any] | types.InputRequiredResult:
    """The answers to `requests` (by key) once the client has given every one of them, else an
    `input_required` result (re)requesting the missing ones, carrying `state`. Answers under
    other keys are ignored, and an answer of the wrong type counts as missing."""
    for request in requests.values():
        if not client_has(ctx, METHOD_CAPABILITIES[request.method]):
            raise missing_capability(METHOD_CAPABILITIES[request.method])
    responses = ctx.input_responses or {}
    answers = {
        key: responses[key]
        for key, request in requests.items()
        if isinstance(responses.get(key), ANSWER_TYPES[request.method])
    }
    missing = {key: request for key, request in requests.items() if key not in answers}
    if missing:
        return types.InputRequiredResult(input_requests=missing, request_state=state)
    return answers


def issued_state(ctx: Context, tool: str) -> dict[str, Any] | None:
    """The plaintext `requestState` echoed to `tool`, which must be one that tool minted (the
    SDK's boundary has already verified the seal), or None on a first round."""
    if ctx.request_state is None:
        return None
    try:
        state = json.loads(ctx.request_state)
    except ValueError:
        state = None
    if not isinstance(state, dict) or state.get("tool") != tool:
        raise MCPError(types.INVALID_PARAMS, "Invalid requestState")
    return state


def mint_state(tool: str, **fields: Any) -> str:
    return json.dumps({"tool": tool, **fields}, separators=(",", ":"))


def name_request(message: str = "What is your name?") -> types.ElicitRequest:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    return elicit_request(message, schema)


def sampling_request(text: str, max_tokens: int) -> types.CreateMessageRequest:
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=text))],
            max_tokens=max_tokens,
        )
    )


def roots_request() -> types.ListRootsRequest:
    return types.ListRootsRequest(params=types.RequestParams())


def elicited(answer: Any, field: str) -> Any:
    return (dump(answer).get("content") or {}).get(field)


def sampled_text(answer: Any) -> str:
    content = dump(answer).get("content", {})
    return content.get("text", "") if isinstance(content, dict) else json.dumps(content)


def root_uris(answer: Any) -> str:
    return ", ".join(root.get("uri", "") for root in dump(answer).get("roots", []))


@server.tool(description="SEP-2322: asks the user's name (elicitation) via an input_required result")
def test_input_required_result_elicitation(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    answers = gather(ctx, {"user_name": name_request()})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    if answers["user_name"].action != "accept":
        return text_result(f"Elicitation {answers['user_name'].action}ed")
    return text_result(f"Hello, {elicited(answers['user_name'], 'name')}!")


@server.tool(description="SEP-2322: asks the client's LLM (sampling) via an input_required result")
def test_input_required_result_sampling(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    answers = gather(ctx, {"capital_question": sampling_request("What is the capital of France?", 100)})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return text_result(f"LLM response: {sampled_text(answers['capital_question'])}")


@server.tool(description="SEP-2322: asks the client's roots (roots/list) via an input_required result")
def test_input_required_result_list_roots(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    answers = gather(ctx, {"client_roots": roots_request()})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return text_result(f"Client roots: {root_uris(answers['client_roots'])}")


def confirmed_with_state(ctx: Context, tool: str) -> types.CallToolResult | types.InputRequiredResult:
    """Asks for a confirmation with a `requestState`; completes (with "state-ok") only on a retry
    that echoes the state this tool issued."""
    state = issued_state(ctx, tool)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    request = {"confirm": elicit_request("Please confirm", schema)}
    if state is None or state.get("step") != "confirm":
        # A first round, or answers without the state: (re)issue the question and the state.
        return types.InputRequiredResult(input_requests=request, request_state=mint_state(tool, step="confirm"))
    answers = gather(ctx, request, ctx.request_state)
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return text_result(f"state-ok: confirm={json.dumps(elicited(answers['confirm'], 'ok'))}")


@server.tool(description="SEP-2322: round-trips a requestState; answers state-ok when it comes back")
def test_input_required_result_request_state(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    return confirmed_with_state(ctx, "test_input_required_result_request_state")


@server.tool(description="SEP-2322: integrity-protected requestState; a tampered one is rejected (-32602)")
def test_input_required_result_tampered_state(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    return confirmed_with_state(ctx, "test_input_required_result_tampered_state")


@server.tool(description="SEP-2322: elicitation, sampling and roots/list in one input_required result")
def test_input_required_result_multiple_inputs(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    tool = "test_input_required_result_multiple_inputs"
    issued_state(ctx, tool)
    requests: dict[str, InputRequest] = {
        "user_name": name_request(),
        "greeting": sampling_request("Generate a greeting", 50),
        "client_roots": roots_request(),
    }
    answers = gather(ctx, requests, mint_state(tool, step="all"))
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return text_result(
        f"name={elicited(answers['user_name'], 'name')}, greeting={sampled_text(answers['greeting'])}, "
        f"roots={root_uris(answers['client_roots'])}"
    )


@server.tool(description="SEP-2322: two rounds of input_required, the requestState evolving")
def test_input_required_result_multi_round(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    tool = "test_input_required_result_multi_round"
    state = issued_state(ctx, tool)
    step1 = {"step1": name_request("Step 1: What is your name?")}
    if state is None or state.get("step") != 2:
        answers = gather(ctx, step1, mint_state(tool, step=1))
        if isinstance(answers, types.InputRequiredResult):
            return answers
        state = {"step": 2, "name": elicited(answers["step1"], "name")}
    schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    step2 = {"step2": elicit_request("Step 2: What is your favorite color?", schema)}
    answers = gather(ctx, step2, mint_state(tool, step=2, name=state.get("name")))
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return text_result(f"{state.get('name')}'s favorite color is {elicited(answers['step2'], 'color')}")


@server.tool(description="SEP-2322: asks only for what the client declared (sampling, elicitation, roots)")
def test_input_required_result_capabilities(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    require_modern(ctx)
    candidates: dict[str, InputRequest] = {
        "user_name": name_request(),
        "greeting": sampling_request("Generate a greeting", 50),
        "client_roots": roots_request(),
    }
    requests = {
        key: request for key, request in candidates.items() if client_has(ctx, METHOD_CAPABILITIES[request.method])
    }
    if not requests:
        raise missing_capability("sampling")
    answers = gather(ctx, requests)
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return text_result(f"Answered: {', '.join(sorted(answers))}")


@server.prompt(description="SEP-2322: a prompt that asks the user (elicitation) for its context first")
def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | types.InputRequiredResult:
    require_modern(ctx)
    schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
    answers = gather(ctx, {"user_context": elicit_request("What context should the prompt use?", schema)})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return [UserMessage(f"Prompt with context: {elicited(answers['user_context'], 'context')}")]


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


async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
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


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit("usage: conformance_server.py (stdio only)")
    server.run("stdio")
