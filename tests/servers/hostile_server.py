"""A downstream MCP server that attacks the gateway, for the tests of its limits.

    python hostile_server.py stdio
    python hostile_server.py [--port N] http    # prints LISTENING <port>; POST /mcp on 127.0.0.1

Standard library only. It answers initialize, tools/list and ping like any server; each tool is
one attack, started by calling it, so a test decides when the attack happens:

stdio:
  flood {count}       writes `count` notifications/tools/list_changed as fast as it can, then
                      answers (the flood runs on its own thread: requests are still served)
  huge_line {mb}      answers with a result line of `mb` MiB (id first, as servers write it)
  garbage             writes a line of bytes that are not UTF-8, then answers normally
  stop_reading        answers, then never reads stdin again
  stats               the number of tools/list requests received so far
  get_env {name}      the value of an environment variable, or "(unset)"
http:
  huge_body {mb}      answers with a JSON body of `mb` MiB
  huge_event {mb}     answers with an SSE stream whose one event is `mb` MiB
  echo_auth           answers 401 with a body that repeats the request's Authorization header,
                      with a terminal escape and a forged log line in it
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOLS = ["flood", "huge_line", "garbage", "stop_reading", "stats", "get_env",
         "huge_body", "huge_event", "echo_auth"]
MIB = 1 << 20
write_lock = threading.Lock()
listed = 0


def tool(name):
    return {"name": name, "inputSchema": {"type": "object"}}


def result(msg_id, value):
    return {"jsonrpc": "2.0", "id": msg_id, "result": value}


def text(msg_id, content):
    return result(msg_id, {"content": [{"type": "text", "text": content}]})


def answer_common(message):
    """The answer to a method every server has, or None for a tool call."""
    global listed
    method, msg_id = message.get("method"), message.get("id")
    if method == "initialize":
        return result(msg_id, {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": "hostile", "version": "1"},
        })
    if method == "tools/list":
        listed += 1
        return result(msg_id, {"tools": [tool(name) for name in TOOLS]})
    if method == "tools/call":
        return None
    return {"jsonrpc": "2.0", "id": msg_id,
            "error": {"code": -32601, "message": f"no method {method}"}}


def write_raw(data):
    with write_lock:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def send(message):
    write_raw(json.dumps(message).encode() + b"\n")


def flood(count):
    line = b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n'
    block = line * 10_000
    for _ in range(count // 10_000):
        write_raw(block)
    write_raw(line * (count % 10_000))


def huge_line(msg_id, mib):
    head = json.dumps({"jsonrpc": "2.0", "id": msg_id})[:-1]
    chunk = b"x" * MIB
    with write_lock:
        out = sys.stdout.buffer
        out.write(head.encode() + b',"result":{"content":[{"type":"text","text":"')
        for _ in range(mib):
            out.write(chunk)
        out.write(b'"}]}}\n')
        out.flush()


def serve_stdio():
    for raw in sys.stdin.buffer:
        message = json.loads(raw)
        if "id" not in message:
            continue
        reply = answer_common(message)
        if reply is not None:
            send(reply)
            continue
        msg_id, params = message["id"], message["params"]
        name, args = params["name"], params.get("arguments") or {}
        if name == "flood":
            threading.Thread(target=flood, args=(args["count"],), daemon=True).start()
            send(text(msg_id, "flooding"))
        elif name == "huge_line":
            huge_line(msg_id, args["mb"])
        elif name == "garbage":
            write_raw(b"\xff\xfe not UTF-8 \xc3\x28\n")
            send(text(msg_id, "after garbage"))
        elif name == "stop_reading":
            send(text(msg_id, "no longer reading"))
            # Alive but deaf: the gateway's writes to stdin now block (until SIGTERM).
            while True:
                time.sleep(3600)
        elif name == "stats":
            send(text(msg_id, str(listed)))
        elif name == "get_env":
            send(text(msg_id, os.environ.get(args["name"], "(unset)")))
        else:
            send(text(msg_id, f"{name} is an HTTP attack"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, content_type, head, size, tail):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(head) + size + len(tail)))
        self.end_headers()
        try:
            self.wfile.write(head)
            chunk = b"x" * MIB
            for _ in range(size // MIB):
                self.wfile.write(chunk)
            self.wfile.write(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway stopped reading at its limit, as it should
        self.close_connection = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        message = json.loads(body)
        if "id" not in message:
            return self.reply(202, b"")
        reply = answer_common(message)
        if reply is not None:
            return self.reply(200, json.dumps(reply).encode())
        msg_id, params = message["id"], message["params"]
        name, args = params["name"], params.get("arguments") or {}
        prefix = json.dumps({"jsonrpc": "2.0", "id": msg_id})[:-1].encode()
        prefix += b',"result":{"content":[{"type":"text","text":"'
        if name == "huge_body":
            self.stream("application/json", prefix, args["mb"] * MIB, b'"}]}}')
        elif name == "huge_event":
            self.stream("text/event-stream", b"event: message\ndata: " + prefix,
                        args["mb"] * MIB, b'"}]}}\n\n')
        elif name == "echo_auth":
            sent = self.headers.get("Authorization", "")
            echo = f'{{"error":"invalid credentials: {sent}","token":"{sent.split(" ")[-1]}"}}'
            echo += "\n\x1b[31mERROR forged log line\x1b[0m"
            self.reply(401, echo.encode())
        else:
            self.reply(200, json.dumps(text(msg_id, f"{name} is a stdio attack")).encode())


def serve_http(port):
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["stdio"]:
        serve_stdio()
    else:
        port = int(args[args.index("--port") + 1]) if "--port" in args else 0
        serve_http(port)
