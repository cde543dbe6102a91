"""The files of a directory over HTTPS, for the gateway's bearer-token tests: an authorization
server's JWKS and discovery documents, re-read from disk on every request (so a test rotates
keys by replacing a file), and one `GET <path>` line on stdout per request (so a test counts
fetches).

    python jwks_server.py --dir DIR --certfile S.pem --keyfile S.key [--port 0] [--cafile CA.pem]

Prints `LISTENING <port>` (flushed) once it accepts connections; binds 127.0.0.1 only. With
`--cafile`, clients must present a certificate issued by that CA (mutual TLS).
"""

import argparse
import functools
import http.server
import ssl
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        print(f"GET {self.path}", flush=True)
        super().do_GET()

    def guess_type(self, path):
        return "application/json"

    def log_message(self, format, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that stops reading (the gateway refusing an oversized document) is normal;
        # it shows as a socket or TLS error (both OSError).
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cafile")
    args = parser.parse_args()
    handler = functools.partial(Handler, directory=args.dir)
    server = Server(("127.0.0.1", args.port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certfile, args.keyfile)
    if args.cafile:
        context.load_verify_locations(args.cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
