#!/usr/bin/env python3
"""Drive an MCP server (the gateway, usually) with the official `mcp` Python client.

Rust integration tests spawn this script to check the gateway against a real, independent
client. It reads a JSON list of steps on stdin, runs them in order on ONE connection and
writes ONE JSON document to stdout:

    mcp_client.py URL [--mode legacy|auto|2026-07-28] [--cafile F] [--cert F --key F]
                      [--header 'K: V']... [--timeout S]

    stdin:  [{"op": "list_tools"}, {"op": "call_tool", "name": "echo", "arguments": {"message": "hi"}}]
    stdout: {"protocol_version": "2025-11-25", "results": [{"ok": {...}}, {"ok": {...}}], "events": [...]}

Each result is {"ok": <result>} or {"error": {"code", "message", "data"}} (a JSON-RPC error does
not stop later steps). A transport failure (connect, TLS, reset) stops the run: the document then
carries "fatal": "<ExceptionType: message>" plus the results so far, and the exit code is 2.
Bad input (unknown op, unreadable JSON) exits 3. See tests/README.md for every op.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import time
import warnings
from typing import Any

import httpx2
import mcp.types as types
from mcp import Client, MCPDeprecationWarning, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

# Tests exercise deprecated-but-live features (ping, logging/setLevel) on purpose.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

EXIT_FATAL = 2
EXIT_USAGE = 3


class UsageError(Exception):
    """The steps on stdin are malformed; not the server's fault."""


def to_json(value: Any) -> Any:
    """SDK models as the wire showed them: camelCase aliases, no nulls, and no SDK defaults
    for fields the server did not send (exclude_unset: a legacy answer must not seem to carry
    2026 fields such as ttlMs or resultType just because the model defaults them)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def error_entry(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MCPError):
        return {"error": {"code": exc.code, "message": exc.message, "data": exc.data}}
    # Not a JSON-RPC error but the server's fault all the same (e.g. a result that fails
    # validation, a timeout): report it on the step and keep going; code null marks it.
    return {"error": {"code": None, "message": f"{type(exc).__name__}: {exc}", "data": None}}


def is_step_error(exc: BaseException) -> bool:
    """Errors that belong to one step; anything else is a transport failure (fatal)."""
    from pydantic import ValidationError

    return isinstance(exc, (MCPError, ValidationError, TimeoutError))


# Every op and the step fields it requires; checked before connecting so that a typo in a
# test is reported as such and not as a server failure.
OPS: dict[str, tuple[str, ...]] = {
    "list_tools": (),
    "call_tool": ("name",),
    "concurrent_calls": ("name", "count"),
    "list_prompts": (),
    "get_prompt": ("name",),
    "list_resources": (),
    "list_resource_templates": (),
    "read_resource": ("uri",),
    "complete": ("ref", "argument"),
    "set_logging_level": ("level",),
    "ping": (),
    "sleep": ("seconds",),
    "wait_tools_changed": (),
    "wait_notification": ("method",),
}

# Ops that wait for server notifications; in the 2026 era they need a subscriptions/listen stream.
WAIT_OPS = ("wait_tools_changed", "wait_notification")


def validate(steps: Any) -> list[dict[str, Any]]:
    if not isinstance(steps, list):
        raise UsageError("stdin must be a JSON list of step objects")
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("op") not in OPS:
            raise UsageError(f"step {index}: unknown op in {step!r}; known: {', '.join(OPS)}")
        missing = [key for key in OPS[step["op"]] if key not in step]
        if missing:
            raise UsageError(f"step {index} ({step['op']}): missing {', '.join(missing)}")
    return steps


class Recorder:
    """Arrival-ordered log of everything the server sent, shared by all steps.

    Tests use it to assert ordering, e.g. that every progress notification of a call
    arrived before its result.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.notifications: dict[str, int] = {}
        self.changed = asyncio.Condition()
        self.started = time.monotonic()

    def add(self, step: int | None, event: str, **fields: Any) -> None:
        entry = {"step": step, "event": event, "t": round(time.monotonic() - self.started, 4)}
        entry.update(fields)
        self.events.append(entry)

    async def message_handler(self, message: Any) -> None:
        """Receives server notifications and transport-level exceptions from the session."""
        if isinstance(message, Exception):
            self.add(None, "transport_exception", message=f"{type(message).__name__}: {message}")
            return
        method = getattr(message, "method", type(message).__name__)
        if method == "notifications/progress":
            return  # recorded per call by the progress callback, with its step index
        self.add(None, "notification", method=method)
        async with self.changed:
            self.notifications[method] = self.notifications.get(method, 0) + 1
            self.changed.notify_all()


class Runner:
    def __init__(self, client: Client, recorder: Recorder) -> None:
        self.client = client
        self.recorder = recorder
        # How many list_changed notifications earlier wait steps already consumed, so a
        # notification that arrived before its wait step started still counts.
        self.consumed: dict[str, int] = {}

    async def run(self, index: int, step: dict[str, Any]) -> dict[str, Any]:
        return await getattr(self, f"op_{step['op']}")(index, step)

    async def plain(self, index: int, call: Any) -> dict[str, Any]:
        """Await one request; a step error becomes this step's entry."""
        try:
            result = await call
        except Exception as exc:
            if not is_step_error(exc):
                raise
            self.recorder.add(index, "error")
            return error_entry(exc)
        self.recorder.add(index, "result")
        return {"ok": to_json(result)}

    async def op_list_tools(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.list_tools())

    async def op_list_prompts(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.list_prompts())

    async def op_list_resources(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.list_resources())

    async def op_list_resource_templates(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.list_resource_templates())

    async def op_read_resource(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.read_resource(s["uri"]))

    async def op_get_prompt(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.get_prompt(s["name"], s.get("arguments")))

    async def op_complete(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        ref_json = s["ref"]
        if ref_json.get("type") == "ref/prompt":
            ref: Any = types.PromptReference.model_validate(ref_json)
        else:
            ref = types.ResourceTemplateReference.model_validate(ref_json)
        return await self.plain(i, self.client.complete(ref, s["argument"], s.get("context")))

    async def op_set_logging_level(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.set_logging_level(s["level"]))

    async def op_ping(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.plain(i, self.client.send_ping())

    async def op_sleep(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(s["seconds"]))
        return {"ok": True}

    async def op_call_tool(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        progress: list[dict[str, Any]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            # No await in here: the SDK runs this as a task, and keeping it atomic keeps the
            # event log in the order the notifications were dispatched.
            progress.append({"progress": value, "total": total, "message": message})
            self.recorder.add(i, "progress", progress=value)

        call = self.client.call_tool(
            s["name"], s.get("arguments") or {}, progress_callback=on_progress if s.get("progress") else None
        )
        entry = await self.plain(i, call)
        if s.get("progress"):
            entry["progress"] = progress
        return entry

    async def op_concurrent_calls(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        count = int(s["count"])
        calls = [self.client.call_tool(s["name"], s.get("arguments") or {}) for _ in range(count)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        entries = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if not is_step_error(outcome):
                    raise outcome
                entries.append(error_entry(outcome))
            else:
                entries.append({"ok": to_json(outcome)})
        self.recorder.add(i, "result")
        return {"ok": entries}

    async def op_wait_tools_changed(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.wait_notification(i, "notifications/tools/list_changed", float(s.get("timeout", 10)))

    async def op_wait_notification(self, i: int, s: dict[str, Any]) -> dict[str, Any]:
        return await self.wait_notification(i, s["method"], float(s.get("timeout", 10)))

    async def wait_notification(self, i: int, method: str, timeout: float) -> dict[str, Any]:
        rec = self.recorder
        wanted = self.consumed.get(method, 0) + 1
        try:
            async with rec.changed:
                await asyncio.wait_for(rec.changed.wait_for(lambda: rec.notifications.get(method, 0) >= wanted), timeout)
        except TimeoutError:
            return {"error": {"code": None, "message": f"timeout: no {method} within {timeout} s", "data": None}}
        self.consumed[method] = wanted
        return {"ok": True}


async def listen_for_changes(client: Client, recorder: Recorder, stack: contextlib.AsyncExitStack) -> None:
    """2026-07-28 has no GET stream: list_changed events come on a subscriptions/listen stream,
    which must be open before the change happens, so open it before the first step."""
    sub = await stack.enter_async_context(
        client.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True)
    )

    async def drain() -> None:
        # The SDK tees each event to the message handler (which records it); draining only
        # keeps the subscription's backlog from filling up.
        async for _event in sub:
            pass

    task = asyncio.create_task(drain())
    stack.callback(task.cancel)


def callbacks(args: argparse.Namespace, recorder: Recorder) -> dict[str, Any]:
    """The server-to-client request handlers the options ask for; each records its request.
    Without an option the client does not declare that capability."""
    handlers: dict[str, Any] = {}
    if args.sampling_reply is not None:

        async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
            recorder.add(None, "request", method="sampling/createMessage", params=to_json(params))
            content = types.TextContent(type="text", text=args.sampling_reply)
            return types.CreateMessageResult(role="assistant", content=content, model="test-model")

        handlers["sampling_callback"] = sampling
    if args.elicitation_action is not None:

        async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            recorder.add(None, "request", method="elicitation/create", params=to_json(params))
            content = json.loads(args.elicitation_content) if args.elicitation_action == "accept" else None
            return types.ElicitResult(action=args.elicitation_action, content=content)

        handlers["elicitation_callback"] = elicitation
    if args.roots:

        async def roots(context: Any) -> types.ListRootsResult:
            recorder.add(None, "request", method="roots/list")
            return types.ListRootsResult(roots=[types.Root(uri=uri) for uri in args.roots])

        handlers["list_roots_callback"] = roots
    return handlers


def ssl_context(args: argparse.Namespace) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def parse_headers(raw: list[str]) -> dict[str, str]:
    headers = {}
    for item in raw:
        name, sep, value = item.partition(":")
        if not sep:
            raise UsageError(f"--header {item!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


async def drive(args: argparse.Namespace, steps: list[dict[str, Any]], out: dict[str, Any]) -> None:
    recorder = Recorder()
    out["events"] = recorder.events
    # Generous read timeout: progress tests and slow downstreams keep a response open for long.
    timeout = httpx2.Timeout(30.0, read=args.timeout)
    async with httpx2.AsyncClient(verify=ssl_context(args), headers=parse_headers(args.header), timeout=timeout) as http:
        client = Client(
            streamable_http_client(args.url, http_client=http),
            mode=args.mode,
            message_handler=recorder.message_handler,
            read_timeout_seconds=args.timeout,
            # No client-side response cache: every step must reach the server under test.
            cache=None,
            **callbacks(args, recorder),
        )
        async with client, contextlib.AsyncExitStack() as stack:
            out["protocol_version"] = client.protocol_version
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS and any(s["op"] in WAIT_OPS for s in steps):
                await listen_for_changes(client, recorder, stack)
            runner = Runner(client, recorder)
            for index, step in enumerate(steps):
                out["results"].append(await runner.run(index, step))


def describe(exc: BaseException) -> str:
    """Type and message of the innermost cause; task groups wrap transport errors in groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    if isinstance(exc, BaseExceptionGroup):
        text += " [" + "; ".join(describe(e) for e in exc.exceptions) + "]"
    elif exc.__cause__ is not None:
        text += f" (caused by {describe(exc.__cause__)})"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--mode", default="legacy", help="legacy | auto | 2026-07-28 (default: legacy)")
    parser.add_argument("--cafile", help="PEM bundle to trust instead of the system store")
    parser.add_argument("--cert", help="client certificate (PEM) for mTLS")
    parser.add_argument("--key", help="private key (PEM) of --cert")
    parser.add_argument("--header", action="append", default=[], help="extra HTTP header 'Name: value'")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request read timeout, s")
    parser.add_argument("--sampling-reply", help="declare sampling; answer every request with this text")
    parser.add_argument(
        "--elicitation-action", choices=["accept", "decline", "cancel"], help="declare elicitation; answer so"
    )
    parser.add_argument("--elicitation-content", default="{}", help="JSON content of an accepted elicitation")
    parser.add_argument("--roots", nargs="*", help="declare roots; list these URIs")
    args = parser.parse_args()
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")

    out: dict[str, Any] = {"protocol_version": None, "results": []}
    code = 0
    try:
        steps = validate(json.load(sys.stdin))
        asyncio.run(drive(args, steps, out))
    except UsageError as exc:
        out["usage_error"] = str(exc)
        code = EXIT_USAGE
    except json.JSONDecodeError as exc:
        out["usage_error"] = f"stdin is not JSON: {exc}"
        code = EXIT_USAGE
    except BaseException as exc:  # noqa: BLE001 - any transport failure ends the run, reported as data
        if isinstance(exc, KeyboardInterrupt):
            raise
        out["fatal"] = describe(exc)
        code = EXIT_FATAL
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
