#!/usr/bin/env python3
"""A tiny stdio MCP server for the package smoke test (stdlib only).

Tools: `echo` returns its `text`; `whoami` names the runtime, its user and the length of the
DEMO_SECRET environment variable (the gateway fills it from a systemd credential)."""
import json
import os
import pwd
import sys


def result(request):
    method, params = request.get("method"), request.get("params") or {}
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo-py", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return {"tools": [
            {"name": "echo", "description": "Echoes text", "inputSchema": schema},
            {"name": "whoami", "description": "Runtime and user", "inputSchema": {"type": "object"}},
        ]}
    if method == "tools/call":
        args = params.get("arguments") or {}
        if params.get("name") == "echo":
            text = args.get("text", "")
        else:
            user = pwd.getpwuid(os.getuid()).pw_name
            text = f"python user={user} secret_len={len(os.environ.get('DEMO_SECRET', ''))}"
        return {"content": [{"type": "text", "text": text}]}
    return None


for line in sys.stdin:
    request = json.loads(line)
    if "id" not in request:
        continue
    answer = result(request)
    if answer is None:
        reply = {"jsonrpc": "2.0", "id": request["id"],
                 "error": {"code": -32601, "message": "method not found"}}
    else:
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": answer}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
