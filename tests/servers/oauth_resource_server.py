"""An OAuth-protected MCP server made with the official `mcp` SDK's own resource-server support,
to prove tests/servers/oauth_client.py against a real authorization server without the gateway.

    oauth_resource_server.py --port P --issuer I --cafile CA [--scope mcp:tools]

Serves Streamable HTTP at http://127.0.0.1:P/mcp: without a valid token the SDK answers 401 with
`WWW-Authenticate: Bearer ... resource_metadata=...` and serves RFC 9728 metadata at
/.well-known/oauth-protected-resource/mcp. Tokens are verified with PyJWT against the issuer's
JWKS (fetched through the test CA, again when a token names an unknown `kid`, so a key rotation
at the provider needs no restart). Prints `LISTENING <port>`. Tools: whoami() (the token's `sub`
and `kid`), add(a, b).
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
from typing import Any

import httpx2
import jwt
import uvicorn
from announcing import AnnouncingServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from oauth_client import FlowError, verify_access_token


class JwksVerifier:
    """`TokenVerifier`: a JWT access token signed by a key of the issuer's JWKS, for this resource."""

    def __init__(self, issuer: str, resource: str, verify: ssl.SSLContext) -> None:
        self.issuer = issuer
        self.resource = resource
        self.verify = verify
        self.jwks: dict[str, Any] = {"keys": []}

    async def refresh(self) -> None:
        async with httpx2.AsyncClient(verify=self.verify, timeout=10.0) as http:
            discovery = (await http.get(f"{self.issuer}/.well-known/openid-configuration")).json()
            self.jwks = (await http.get(discovery["jwks_uri"])).json()

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid not in {key["kid"] for key in self.jwks["keys"]}:
                await self.refresh()
            claims = verify_access_token(token, self.jwks, issuer=self.issuer, audience=self.resource)
        except (jwt.PyJWTError, FlowError) as exc:
            print(f"token refused: {exc}", file=sys.stderr)
            return None
        return AccessToken(
            token=token,
            client_id=claims["client_id"],
            scopes=claims.get("scope", "").split(),
            expires_at=claims["exp"],
            resource=self.resource,
            subject=claims["sub"],
            claims={"kid": kid},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--scope", default="mcp:tools")
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    resource = f"http://127.0.0.1:{args.port}/mcp"
    server = MCPServer(
        name="nexus-oauth-test-resource",
        token_verifier=JwksVerifier(args.issuer, resource, ssl.create_default_context(cafile=args.cafile)),
        auth=AuthSettings(issuer_url=args.issuer, resource_server_url=resource, required_scopes=[args.scope]),
    )

    @server.tool()
    def whoami() -> str:
        """The token's subject and signing key: `sub kid`."""
        token = get_access_token()
        return f"{token.subject} {token.claims['kid']}" if token else "anonymous"

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    AnnouncingServer(config, args.port).run(sockets=[sock])


if __name__ == "__main__":
    main()
