// A real OAuth 2.1 / OpenID Connect authorization server for the tests: npm `oidc-provider`
// (OpenID Certified), over HTTPS on 127.0.0.1, issuing JWT access tokens for one resource
// (RFC 8707 resource indicators). See tests/README.md ("tests/servers/oidc_provider.mjs").
//
//   node tests/servers/oidc_provider.mjs --modules DIR --cert C.pem --key K.pem
//        --resource URL [--scope 'mcp:tools mcp:admin'] [--port 0] [--client-id ID]
//        [--token-ttl SECONDS]
//   env OIDC_CLIENT_SECRET: the secret of the client-credentials client --client-id
//
// Prints `LISTENING <port>` once it accepts connections; the issuer is https://127.0.0.1:<port>.
// Everything secret (signing keys, cookie keys) is made at start and lives only in memory.
//
// Besides oidc-provider's own endpoints (discovery, /jwks, /reg, /auth, /token):
//   GET  /interaction/UID          the pending prompt as JSON: {uid, prompt, params}
//   POST /interaction/UID/login    JSON {"account": NAME}: that account logs in
//   POST /interaction/UID/consent  grants what the client asked for (scopes, resource scopes)
//   POST /test/rotate-keys         a new signing key goes first in the JWKS (the old one stays,
//                                  so tokens signed with it still verify); answers {"kids": [...]}
// so a test drives login and consent with plain HTTP requests, and rotates keys without a
// restart. The in-memory adapter is shared by every Provider instance in this process, so
// registrations, grants and sessions survive a rotation.

import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    resource: { type: 'string' },
    scope: { type: 'string', default: 'mcp:tools' },
    port: { type: 'string', default: '0' },
    'client-id': { type: 'string', default: 'nexus-test-service' },
    'token-ttl': { type: 'string', default: '600' },
  },
});
for (const required of ['modules', 'cert', 'key', 'resource']) {
  if (!args[required]) {
    console.error(`oidc_provider.mjs: --${required} is required`);
    process.exit(2);
  }
}

// stdout carries the one LISTENING line (a test may stop reading it then): oidc-provider's
// notices (console.info) go to stderr with everything else.
console.info = console.error;
console.log = console.error;

// oidc-provider is ESM only: loaded by path from the test tools, not from this script's folder.
const entry = pathToFileURL(path.join(args.modules, 'oidc-provider/lib/index.js')).href;
const { default: Provider, errors } = await import(entry);

const clientSecret = process.env.OIDC_CLIENT_SECRET;
if (!clientSecret) {
  console.error('oidc_provider.mjs: set OIDC_CLIENT_SECRET (the client-credentials client secret)');
  process.exit(2);
}

/** A fresh RS256 signing key as a private JWK with a random kid. */
function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(9).toString('base64url'), alg: 'RS256', use: 'sig' };
}

const tokenTtl = Number(args['token-ttl']);
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];
const resourceServer = {
  scope: args.scope,
  audience: args.resource,
  accessTokenTTL: tokenTtl,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
};

function configuration(keys) {
  return {
    clients: [
      {
        client_id: args['client-id'],
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: args.scope,
      },
    ],
    jwks: { keys },
    // The resource's scopes too: a client's registered `scope` may only hold supported values.
    scopes: ['openid', 'offline_access', ...args.scope.split(' ')],
    cookies: { keys: cookieKeys },
    // Explicit lifetimes (seconds), so the provider does not warn about its defaults.
    ttl: {
      AccessToken: tokenTtl,
      ClientCredentials: tokenTtl,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // A client that names no resource still gets a token for ours (one resource only).
        defaultResource: () => args.resource,
        // The token endpoint issues for the resource granted at the authorization endpoint.
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== args.resource) throw new errors.InvalidTarget();
          return resourceServer;
        },
      },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    // Refresh tokens without offline_access too: the MCP client asks for the resource's scopes.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  };
}

const keys = [signingKey()];
let provider;
let handle;

function build(issuer) {
  provider = new Provider(issuer, configuration(keys));
  handle = provider.callback();
  // Errors go to the client as OAuth errors; stderr keeps the reason for a failing test.
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
}

async function body(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 65536) throw new Error('request body over 64 KiB');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function json(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function consent(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { accountId } = details.session;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  const missing = details.prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } });
}

/** The routes a test drives instead of a browser; `null` when the request is oidc-provider's. */
function testRoute(req) {
  const url = new URL(req.url, 'https://127.0.0.1');
  const match = /^\/interaction\/([\w-]+)(?:\/(login|consent))?$/.exec(url.pathname);
  if (match && req.method === 'GET' && !match[2]) {
    return async (res) => {
      const { uid, prompt, params } = await provider.interactionDetails(req, res);
      json(res, 200, { uid, prompt, params });
    };
  }
  if (match && req.method === 'POST' && match[2] === 'login') {
    return async (res) => {
      const { account } = await body(req);
      if (typeof account !== 'string' || !account) return json(res, 400, { error: 'account missing' });
      return provider.interactionFinished(req, res, { login: { accountId: account } });
    };
  }
  if (match && req.method === 'POST' && match[2] === 'consent') {
    return (res) => consent(req, res);
  }
  if (url.pathname === '/test/rotate-keys' && req.method === 'POST') {
    return async (res) => {
      keys.unshift(signingKey());
      build(provider.issuer);
      json(res, 200, { kids: keys.map((key) => key.kid) });
    };
  }
  return null;
}

const server = https.createServer({
  cert: fs.readFileSync(args.cert),
  key: fs.readFileSync(args.key),
});
server.on('request', (req, res) => {
  const route = testRoute(req);
  if (!route) return handle(req, res);
  return route(res).catch((error) => {
    console.error(`${req.method} ${req.url}:`, error);
    if (!res.headersSent) json(res, 400, { error: String(error.message ?? error) });
  });
});
server.listen(Number(args.port), '127.0.0.1', () => {
  const { port } = server.address();
  build(`https://127.0.0.1:${port}`);
  process.stdout.write(`LISTENING ${port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
