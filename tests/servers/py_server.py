#!/usr/bin/env python3
"""A real downstream MCP server for gateway tests: the official `mcp` SDK's MCPServer on uvicorn.

    py_server.py [--host 127.0.0.1] [--port 0] [--certfile F --keyfile F] [--cafile F]
                 [--require-client-cert] [--json-response]

Serves Streamable HTTP at /mcp (both protocol eras: 2025-11-25 with sessions and the stateless
2026-07-28), over HTTPS when --certfile is given. --cafile verifies client certificates
(optional unless --require-client-cert). Once the socket accepts connections it prints
`LISTENING <port>` on stdout (one line, flushed); everything else goes to stderr.

Tools: add(a, b), echo(message), slow(steps) with progress, whoami() (the verified client
certificate's subject), sleep(seconds), fail(message) (a tool error), toggle_extra_tool()
(adds/removes tool `extra` and announces tools/list_changed). Resource py://hello,
prompt greet(name).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import sys
from typing import Any

import uvicorn
from announcing import AnnouncingServer
from cryptography import x509
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from uvicorn.protocols.http.h11_impl import H11Protocol

server = MCPServer(name="nexus-py-test-server", version="0.1.0")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(message: str) -> str:
    """Return the message unchanged."""
    return message


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Take `steps` x 0.1 s, reporting progress after each step."""
    for step in range(1, steps + 1):
        await asyncio.sleep(0.1)
        await ctx.report_progress(step, steps, f"step {step} of {steps}")
    return f"done after {steps} steps"


@server.tool()
async def sleep(seconds: float) -> str:
    """Answer after `seconds` (for timeout and cancellation tests)."""
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


@server.tool()
def fail(message: str) -> str:
    """Always fails: the result comes back with isError true and the message."""
    raise ToolError(message)  # ToolError: the SDK passes its message to the client as is


@server.tool()
def whoami(ctx: Context) -> str:
    """Subject (RFC 4514) of the client certificate the TLS layer verified, or 'anonymous'."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None) or {}
    tls = scope.get("extensions", {}).get("tls", {})
    return tls.get("client_cert_name") or "anonymous"


def extra() -> str:
    """Exists only between two toggle_extra_tool calls."""
    return "extra"


@server.tool()
async def toggle_extra_tool(ctx: Context) -> str:
    """Add or remove tool `extra`, then tell clients the tool list changed (both eras)."""
    names = {tool.name for tool in await server.list_tools()}
    if "extra" in names:
        server.remove_tool("extra")
        state = "removed"
    else:
        server.add_tool(extra)
        state = "added"
    # 2025 sessions get the notification on their session; 2026 clients via subscriptions/listen.
    try:
        await ctx.session.send_tool_list_changed()
    except Exception as exc:  # the session API differs by era; the other path still runs
        print(f"send_tool_list_changed: {exc!r}", file=sys.stderr)
    await ctx.notify_tools_changed()
    return state


@server.resource("py://hello", mime_type="text/plain")
def hello() -> str:
    """A static text resource."""
    return "Hello from py_server"


@server.prompt()
def greet(name: str) -> str:
    """A one-message prompt with one argument."""
    return f"Please greet {name} warmly."


class TlsScopeProtocol(H11Protocol):
    """uvicorn's h11 protocol plus the ASGI TLS extension's client_cert_name/client_cert_chain.

    uvicorn does not fill scope["extensions"]["tls"]; the peer certificate is only on the
    transport, so each connection wraps the app with a scope that carries it.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:
            return
        cert = x509.load_der_x509_certificate(der)
        tls = {
            "client_cert_name": cert.subject.rfc4514_string(),
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)],
            "tls_version": ssl_object.version(),
        }
        app = self.app

        async def with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope = dict(scope, extensions={**scope.get("extensions", {}), "tls": tls})
            await app(scope, receive, send)

        self.app = with_tls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--certfile", help="server certificate chain (PEM); enables HTTPS")
    parser.add_argument("--keyfile", help="private key of --certfile (PEM)")
    parser.add_argument("--cafile", help="CA (PEM) that client certificates must chain to")
    parser.add_argument("--require-client-cert", action="store_true", help="reject clients without a valid cert")
    parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    args = parser.parse_args()
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if (args.cafile or args.require_client_cert) and not args.certfile:
        parser.error("--cafile/--require-client-cert need --certfile")
    if args.require_client_cert and not args.cafile:
        parser.error("--require-client-cert needs --cafile")

    # We bind the socket ourselves so that port 0 yields a known port before uvicorn starts.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]

    cert_reqs = ssl.CERT_NONE
    if args.cafile:
        cert_reqs = ssl.CERT_REQUIRED if args.require_client_cert else ssl.CERT_OPTIONAL
    app = server.streamable_http_app(json_response=args.json_response, host=args.host)
    config = uvicorn.Config(
        app,
        http=TlsScopeProtocol,
        log_level="warning",
        lifespan="on",
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        ssl_ca_certs=args.cafile,
        ssl_cert_reqs=cert_reqs,
    )
    AnnouncingServer(config, port).run(sockets=[sock])


if __name__ == "__main__":
    main()
