#!/usr/bin/env python3
"""An HTTPS MCP server requiring a client certificate, for the smoke test (stdlib only).

  https_server.py PORT CERT KEY CLIENT_CA SERIAL_LOG

Answers Streamable HTTP POSTs with JSON. Tool `tls_whoami` returns the serial number of the
client certificate of the connection; every request appends that serial to SERIAL_LOG. Each
response closes its connection, so every request is a new TLS handshake: after a reload the
gateway's next request shows the client certificate it uses now (pooled connections made
before the reload would otherwise keep the old one, by design)."""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, cert, key, client_ca, serial_log = sys.argv[1:6]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def serial(self):
        peer = self.connection.getpeercert() or {}
        return peer.get("serialNumber", "none")

    def do_GET(self):
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with open(serial_log, "a") as log:
            log.write(self.serial() + "\n")
        self.close_connection = True
        if "id" not in body:
            self.send_response(202)
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        method, params = body.get("method"), body.get("params") or {}
        if method == "initialize":
            result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                      "capabilities": {"tools": {}},
                      "serverInfo": {"name": "secure", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "tls_whoami", "description": "Client cert serial",
                                 "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "serial=" + self.serial()}]}
        else:
            result = {}
        data = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.load_verify_locations(client_ca)
context.verify_mode = ssl.CERT_REQUIRED
server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
