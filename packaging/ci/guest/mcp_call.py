#!/usr/bin/env python3
"""Minimal MCP client over Streamable HTTP for the smoke test (stdlib only).

  mcp_call.py URL open                      -> prints the new session id
  mcp_call.py URL SESSION METHOD [PARAMS]   -> prints the JSON-RPC result (exit 1 on error)
"""
import json
import sys
import urllib.request

url = sys.argv[1]


def post(body, session=None):
    headers = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18"}
    if session:
        headers["Mcp-Session-Id"] = session
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=20) as response:
        text = response.read().decode()
        sid = response.headers.get("Mcp-Session-Id")
    if "text/event-stream" in (response.headers.get("Content-Type") or ""):
        datas = [l[5:].strip() for l in text.splitlines() if l.startswith("data:")]
        text = next((d for d in datas if d), "")
    return (json.loads(text) if text.strip() else None), sid


if sys.argv[2] == "open":
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "smoke", "version": "1"}}}
    reply, sid = post(init)
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    print(sid)
    sys.exit(0)

session, method = sys.argv[2], sys.argv[3]
params = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
reply, _ = post({"jsonrpc": "2.0", "id": 2, "method": method, "params": params}, session)
if "error" in reply:
    print(json.dumps(reply["error"]))
    sys.exit(1)
print(json.dumps(reply["result"]))
