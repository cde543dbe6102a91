#!/usr/bin/env python3
"""The official `mcp` client's OAuth support against a real authorization server
(tests/servers/oidc_provider.mjs), driven without a browser. One JSON document on stdout.

    oauth_client.py mcp URL --cafile CA [--flow auth-code|client-credentials] [--issuer I]
                    [--client-id ID] [--account NAME] [--call NAME] [--arguments JSON]
        Connects to the MCP server URL with `OAuthClientProvider` (auth-code: dynamic client
        registration, authorization code with PKCE; login and consent are driven over HTTP by
        the redirect handler) or `ClientCredentialsOAuthProvider` (--client-id, secret in env
        OIDC_CLIENT_SECRET, --issuer); tokens are kept in memory. Lists the tools, calls one.
        {"tools": [...], "call": <result>, "requests": [{"by","method","url","status"}...],
         "token": {"header", "claims"}}
        `requests`: every HTTP request in order, URLs without their query: the SDK's own
        ("by": "client", from httpx event hooks) and the login and consent steps of the
        redirect handler ("by": "user-agent").

    oauth_client.py token --issuer I --cafile CA --resource R [--flow ...] [--client-id ID]
                    [--account NAME]
        The same grants straight at the authorization server, no MCP server: discovery,
        registration (auth-code), authorization with PKCE, token. The access token is verified
        with PyJWT against the server's JWKS (signature, `iss`, `aud`).
        {"header", "claims", "jwks_kids", "token_type", "scope", "authorization"}

    oauth_client.py rotate --issuer I --cafile CA
        The provider's test route: a new signing key first in its JWKS. {"kids": [...]}

A failure prints {"fatal": "<type>: <message>"} and exits 2; the token is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import ssl
import sys
import warnings
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import jwt
from mcp import Client, MCPDeprecationWarning
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, PKCEParameters
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl, BaseModel

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

# Nothing listens here: the redirect handler reads the code off the provider's redirect.
REDIRECT_URI = "http://127.0.0.1:9/callback"
# Bound on the login/consent redirects of one authorization.
MAX_REDIRECTS = 12


class FlowError(Exception):
    """The authorization server answered something a completed flow never does."""


class MemoryStorage:
    """`TokenStorage` in memory: each run registers and authorizes afresh."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def entry(by: str, method: str, url: Any, status: int) -> dict[str, Any]:
    """One request of the log, its URL without the query (codes and states stay out)."""
    parts = urlsplit(str(url))
    return {"by": by, "method": method, "url": f"{parts.scheme}://{parts.netloc}{parts.path}", "status": status}


class Browser:
    """Plays the user agent: follows the authorization redirects, logs in and consents through
    the provider's JSON interaction routes, and stops at the redirect back to the client."""

    def __init__(self, verify: ssl.SSLContext, account: str, log: list[dict[str, Any]]) -> None:
        self.http = httpx2.AsyncClient(verify=verify, follow_redirects=False, timeout=30.0)
        self.account = account
        self.log = log

    async def record(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        response = await self.http.request(method, url, **kwargs)
        self.log.append(entry("user-agent", method, url, response.status_code))
        return response

    async def authorize(self, authorization_url: str) -> AuthorizationCodeResult:
        url = authorization_url
        for _ in range(MAX_REDIRECTS):
            response = await self.record("GET", url)
            if response.status_code == 200 and "/interaction/" in url:
                prompt = response.json()["prompt"]["name"]
                if prompt == "login":
                    response = await self.record("POST", f"{url}/login", json={"account": self.account})
                elif prompt == "consent":
                    response = await self.record("POST", f"{url}/consent")
                else:
                    raise FlowError(f"unexpected prompt {prompt!r} at {self.log[-1]['url']}")
            if response.status_code not in (302, 303):
                raise FlowError(f"{self.log[-1]['url']} answered {response.status_code}: {response.text[:300]}")
            url = urljoin(url, response.headers["location"])
            if url.startswith(REDIRECT_URI):
                query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
                if "error" in query:
                    raise FlowError(f"authorization refused: {query['error']}: {query.get('error_description')}")
                return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))
        raise FlowError(f"no redirect to the client after {MAX_REDIRECTS} steps")

    async def aclose(self) -> None:
        await self.http.aclose()


def token_summary(access_token: str) -> dict[str, Any]:
    """Header and claims of a JWT access token, unverified (the caller verifies where it can)."""
    return {
        "header": jwt.get_unverified_header(access_token),
        "claims": jwt.decode(access_token, options={"verify_signature": False}),
    }


def verify_access_token(access_token: str, jwks: dict[str, Any], *, issuer: str, audience: str) -> dict[str, Any]:
    """The claims of a JWT access token whose `kid` names a key of `jwks` that verifies its
    signature, and whose `iss` and `aud` are the ones given; raises otherwise."""
    header = jwt.get_unverified_header(access_token)
    keys = {key["kid"]: key for key in jwks["keys"]}
    if header.get("kid") not in keys:
        raise FlowError(f"token kid {header.get('kid')!r} is not in the JWKS ({', '.join(keys)})")
    key = jwt.PyJWK(keys[header["kid"]])
    return jwt.decode(access_token, key.key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer)


def to_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


def client_secret() -> str:
    secret = os.environ.get("OIDC_CLIENT_SECRET")
    if not secret:
        raise FlowError("set OIDC_CLIENT_SECRET for the client-credentials flow")
    return secret


def auth_code_metadata() -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="nexus oauth test client",
        redirect_uris=[AnyUrl(REDIRECT_URI)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )


async def run_mcp(args: argparse.Namespace, verify: ssl.SSLContext, out: dict[str, Any]) -> None:
    storage = MemoryStorage()
    requests: list[dict[str, Any]] = []
    out["requests"] = requests
    browser = Browser(verify, args.account, requests)
    pending: list[AuthorizationCodeResult] = []

    async def redirect_handler(authorization_url: str) -> None:
        pending.append(await browser.authorize(authorization_url))

    async def callback_handler() -> AuthorizationCodeResult:
        return pending.pop()

    if args.flow == "auth-code":
        auth: OAuthClientProvider = OAuthClientProvider(
            server_url=args.url,
            client_metadata=auth_code_metadata(),
            storage=storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
    else:
        auth = ClientCredentialsOAuthProvider(
            server_url=args.url,
            storage=storage,
            client_id=args.client_id,
            client_secret=client_secret(),
            issuer=args.issuer,
        )

    async def on_response(response: httpx2.Response) -> None:
        requests.append(entry("client", response.request.method, response.request.url, response.status_code))

    try:
        async with httpx2.AsyncClient(
            auth=auth, verify=verify, timeout=30.0, event_hooks={"response": [on_response]}
        ) as http:
            async with Client(streamable_http_client(args.url, http_client=http), mode=args.mode) as client:
                out["tools"] = sorted(tool.name for tool in (await client.list_tools()).tools)
                if args.call:
                    out["call"] = to_json(await client.call_tool(args.call, json.loads(args.arguments)))
    finally:
        await browser.aclose()
        if storage.tokens is not None:
            out["token"] = token_summary(storage.tokens.access_token)


async def run_token(args: argparse.Namespace, verify: ssl.SSLContext, out: dict[str, Any]) -> None:
    async with httpx2.AsyncClient(verify=verify, timeout=30.0) as http:
        discovery = await http.get(f"{args.issuer}/.well-known/openid-configuration")
        discovery.raise_for_status()
        metadata = discovery.json()
        if metadata["issuer"] != args.issuer:
            raise FlowError(f"discovery names issuer {metadata['issuer']!r}, not {args.issuer!r}")
        if args.flow == "auth-code":
            token = await auth_code_grant(http, metadata, args, verify, out)
        else:
            token = await http.post(
                metadata["token_endpoint"],
                auth=(args.client_id, client_secret()),
                data={"grant_type": "client_credentials", "resource": args.resource, "scope": args.scope},
            )
        if token.status_code != 200:
            raise FlowError(f"token endpoint answered {token.status_code}: {token.text[:300]}")
        body = token.json()
        jwks = (await http.get(metadata["jwks_uri"])).json()
    access_token = body["access_token"]
    claims = verify_access_token(access_token, jwks, issuer=args.issuer, audience=args.resource)
    out.update(
        header=jwt.get_unverified_header(access_token),
        claims=claims,
        jwks_kids=[key["kid"] for key in jwks["keys"]],
        token_type=body["token_type"],
        scope=body.get("scope"),
    )


async def auth_code_grant(
    http: httpx2.AsyncClient,
    metadata: dict[str, Any],
    args: argparse.Namespace,
    verify: ssl.SSLContext,
    out: dict[str, Any],
) -> httpx2.Response:
    registration = await http.post(
        metadata["registration_endpoint"],
        json=auth_code_metadata().model_dump(mode="json", exclude_none=True),
    )
    if registration.status_code != 201:
        raise FlowError(f"registration answered {registration.status_code}: {registration.text[:300]}")
    client = registration.json()
    pkce = PKCEParameters.generate()
    state = secrets.token_urlsafe(16)
    query = httpx2.QueryParams(
        response_type="code",
        client_id=client["client_id"],
        redirect_uri=REDIRECT_URI,
        scope=args.scope,
        resource=args.resource,
        state=state,
        code_challenge=pkce.code_challenge,
        code_challenge_method="S256",
    )
    out["authorization"] = []
    browser = Browser(verify, args.account, out["authorization"])
    try:
        result = await browser.authorize(f"{metadata['authorization_endpoint']}?{query}")
    finally:
        await browser.aclose()
    if result.state != state or result.iss != args.issuer:
        raise FlowError(f"redirect carries state {result.state!r} and iss {result.iss!r}")
    return await http.post(
        metadata["token_endpoint"],
        auth=(client["client_id"], client["client_secret"]),
        data={
            "grant_type": "authorization_code",
            "code": result.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.code_verifier,
            "resource": args.resource,
        },
    )


async def run_rotate(args: argparse.Namespace, verify: ssl.SSLContext, out: dict[str, Any]) -> None:
    async with httpx2.AsyncClient(verify=verify, timeout=30.0) as http:
        response = await http.post(f"{args.issuer}/test/rotate-keys")
        response.raise_for_status()
        out.update(response.json())


def describe(exc: BaseException) -> str:
    """Type and message of the innermost cause; task groups wrap errors in groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    if exc.__cause__ is not None:
        text += f" (caused by {describe(exc.__cause__)})"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    mcp = commands.add_parser("mcp")
    mcp.add_argument("url")
    mcp.add_argument("--mode", default="legacy", help="legacy | auto | 2026-07-28 (default: legacy)")
    mcp.add_argument("--call", help="a tool to call after tools/list")
    mcp.add_argument("--arguments", default="{}", help="its arguments, JSON")
    token = commands.add_parser("token")
    token.add_argument("--resource", required=True)
    token.add_argument("--scope", default="mcp:tools")
    rotate = commands.add_parser("rotate")
    for command in (mcp, token, rotate):
        command.add_argument("--cafile", required=True, help="the test CA the provider's certificate chains to")
        command.add_argument("--issuer", help="the authorization server's issuer URL")
    for command in (mcp, token):
        command.add_argument("--flow", choices=["auth-code", "client-credentials"], default="auth-code")
        command.add_argument("--client-id", default="nexus-test-service", help="client-credentials client")
        command.add_argument("--account", default="alice", help="who logs in at the authorization server")
    args = parser.parse_args()
    if args.command in ("token", "rotate") and not args.issuer:
        parser.error(f"{args.command} needs --issuer")
    verify = ssl.create_default_context(cafile=args.cafile)
    run = {"mcp": run_mcp, "token": run_token, "rotate": run_rotate}[args.command]
    out: dict[str, Any] = {}
    code = 0
    try:
        asyncio.run(run(args, verify, out))
    except Exception as exc:  # noqa: BLE001 - reported as data for the Rust test to show
        out["fatal"] = describe(exc)
        code = 2
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
