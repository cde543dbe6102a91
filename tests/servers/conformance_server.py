"""The conformance fixture: an MCP server (stdio, or Streamable HTTP with `--http`) with the
tools, resources and prompts that the server scenarios of `@modelcontextprotocol/conformance`
call by name; what it shares with `handshake_server.py` is in `conformance_common.py`.

Run behind the gateway as its only downstream, with `prefix = "when-needed"` and
`tools = "direct"` so the names reach the conformance client unchanged, and
`protocol_version = "2026-07-28"` (its SEP-2322 tools work only in that era):

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

import json
from typing import Any

import mcp.types as types
from conformance_common import (
    ELICITATION_SCHEMA,
    MODERN,
    SEP1034_MESSAGE,
    SEP1034_SCHEMA,
    SEP1330_MESSAGE,
    SEP1330_SCHEMA,
    UserMessage,
    client_has,
    completed_result,
    dump,
    elicitation_result,
    missing_capability,
    modern,
    refusal,
    sampling_result,
    serve,
    server,
    text_result,
)
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError


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


@server.tool(description="Asks the client's LLM (sampling) and returns its answer")
async def test_sampling(prompt: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    if not client_has(ctx, "sampling"):
        return refusal("sampling")
    request = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=100,
        )
    )
    answer = await ask(ctx, "sampling", request)
    if isinstance(answer, types.InputRequiredResult):
        return answer
    return sampling_result(answer)


@server.tool(description="Asks the user (elicitation) for a username and an email")
async def test_elicitation(message: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    if not client_has(ctx, "elicitation"):
        return refusal("elicitation")
    answer = await ask(ctx, "elicitation", elicit_request(message, ELICITATION_SCHEMA))
    if isinstance(answer, types.InputRequiredResult):
        return answer
    return elicitation_result(answer)


async def elicitation_completed(
    ctx: Context, message: str, schema: dict[str, Any]
) -> types.CallToolResult | types.InputRequiredResult:
    if not client_has(ctx, "elicitation"):
        return refusal("elicitation")
    answer = await ask(ctx, "elicitation", elicit_request(message, schema))
    if isinstance(answer, types.InputRequiredResult):
        return answer
    return completed_result(answer)


@server.tool(description="Elicitation with defaults for every primitive type (SEP-1034)")
async def test_elicitation_sep1034_defaults(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    return await elicitation_completed(ctx, SEP1034_MESSAGE, SEP1034_SCHEMA)


@server.tool(description="Elicitation with every enum schema form (SEP-1330)")
async def test_elicitation_sep1330_enums(ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    return await elicitation_completed(ctx, SEP1330_MESSAGE, SEP1330_SCHEMA)


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


if __name__ == "__main__":
    serve(__doc__.split("\n\n")[0])
