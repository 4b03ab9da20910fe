// A real OpenID provider (the npm package oidc-provider, OpenID Certified) on loopback, for
// kokoma's sign-in tests. Started and stopped by tests/oidc_provider.py.
//
// Environment:
//   OIDC_JWKS_FILE  private JWKS ({"keys": [...]}) the provider signs with (written by the test)
//   OIDC_AUDIENCE   the resource server (audience) issued by default
//   OIDC_PORT       port to listen on (0 or unset: a free one)
//
// Prints one line "listening <issuer>" once it accepts requests.
//
// Test clients are registered dynamically (POST /reg) with the grant client_credentials and
// two extra metadata fields: `kokoma_claims` (an object put into every access token the
// client gets: roles, kokoma_organisation, email, email_verified, name, …) and `kokoma_alg`
// (the signing algorithm of its access tokens, RS256 by default). Access tokens for a resource
// (RFC 8707 resource indicators; the default is OIDC_AUDIENCE) are JWTs (RFC 9068).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const jwks = JSON.parse(readFileSync(process.env.OIDC_JWKS_FILE, 'utf8'));
const audience = process.env.OIDC_AUDIENCE || 'https://kokoma.test/api';
const port = Number(process.env.OIDC_PORT || 0);

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));

server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks,
    clients: [],
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => audience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator, client) => ({
          scope: 'kokoma',
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: client.kokoma_alg || 'RS256' } },
        }),
      },
    },
    extraClientMetadata: {
      properties: ['kokoma_claims', 'kokoma_alg'],
      validator(_ctx, key, value) {
        if (value === undefined) return;
        if (key === 'kokoma_claims' && (typeof value !== 'object' || Array.isArray(value))) {
          throw new Error('kokoma_claims must be an object');
        }
        if (key === 'kokoma_alg' && !['RS256', 'PS256', 'ES256'].includes(value)) {
          throw new Error('kokoma_alg must be RS256, PS256 or ES256');
        }
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const client = ctx.oidc.client || (await ctx.oidc.provider.Client.find(token.clientId));
      return client?.kokoma_claims || undefined;
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  handler = provider.callback();
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
