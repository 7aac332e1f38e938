// Start oidc-provider (npm) as an OAuth 2.0 authorization server for the interop
// suite of authcfg (`cargo xtask interop`).
//
// The client-credentials grant is enabled, and two confidential clients are
// registered: one that authenticates at the token endpoint with
// `client_secret_basic`, one with `client_secret_post`. Both may request the
// scopes `api:read` and `api:write`.
//
// oidc-provider accepts either of the two methods from a client registered
// for one of them. The suite checks that authcfg sends the method that the data
// source names, so a middleware here rejects the other one with `invalid_client`.
//
// The introspection endpoint (`/token/introspection`) is enabled, so that the
// suite can check that the tokens authcfg hands out are live.
//
// The scope `api:admin` is known to the server but granted to no client, so a
// request for it fails with `invalid_scope`. oidc-provider drops scopes that it
// does not know at all without an error.
//
// Everything comes from the environment, so that the suite can generate fresh
// secrets per run:
//   OIDC_PORT               port to listen on, on 127.0.0.1 only (required)
//   OIDC_TOKEN_TTL          access token lifetime in seconds (default 60)
//   OIDC_BASIC_CLIENT_ID, OIDC_BASIC_CLIENT_SECRET   the client_secret_basic client
//   OIDC_POST_CLIENT_ID, OIDC_POST_CLIENT_SECRET     the client_secret_post client
//
// The script prints `listening on http://127.0.0.1:PORT` once the server
// accepts connections, and stops on SIGTERM or SIGINT.
//
// The suite copies this file next to `node_modules/` in its install folder,
// because Node resolves `import 'oidc-provider'` relative to the importing file.

import querystring from 'node:querystring';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`error: environment variable ${name} is missing: set it before starting`);
    process.exit(2);
  }
  return value;
}

const port = Number.parseInt(required('OIDC_PORT'), 10);
const tokenTtl = Number.parseInt(process.env.OIDC_TOKEN_TTL ?? '60', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`error: OIDC_PORT ${JSON.stringify(process.env.OIDC_PORT)} is not a port number: give 1 to 65535`);
  process.exit(2);
}
if (!Number.isInteger(tokenTtl) || tokenTtl <= 0) {
  console.error(`error: OIDC_TOKEN_TTL ${JSON.stringify(process.env.OIDC_TOKEN_TTL)} is not a positive number of seconds`);
  process.exit(2);
}

// A client for the client-credentials grant only: no redirect URIs and no
// response types, because no browser flow is ever used.
function client(idVariable, secretVariable, authMethod) {
  return {
    client_id: required(idVariable),
    client_secret: required(secretVariable),
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: authMethod,
    scope: 'api:read api:write',
  };
}

const clients = [
  client('OIDC_BASIC_CLIENT_ID', 'OIDC_BASIC_CLIENT_SECRET', 'client_secret_basic'),
  client('OIDC_POST_CLIENT_ID', 'OIDC_POST_CLIENT_SECRET', 'client_secret_post'),
];
const registeredAuthMethod = new Map(clients.map((c) => [c.client_id, c.token_endpoint_auth_method]));

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients,
  scopes: ['openid', 'offline_access', 'api:read', 'api:write', 'api:admin'],
  features: {
    clientCredentials: { enabled: true },
    // The suite checks that authcfg hands out tokens that the server knows.
    // Any confidential client may introspect any token of this server.
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client) => client.clientAuthMethod !== 'none',
    },
    devInteractions: { enabled: false },
  },
  ttl: {
    ClientCredentials: tokenTtl,
  },
});

// Read the body of a token request, name the client authentication method it
// uses, and reject a method other than the registered one. The body is handed on
// as `ctx.request.body`, which oidc-provider reads when the stream is consumed.
async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function usedAuthMethod(ctx, form) {
  const authorization = ctx.headers.authorization ?? '';
  if (authorization.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
    const clientId = decodeURIComponent(decoded.split(':', 1)[0].replace(/\+/g, '%20'));
    return { clientId, method: 'client_secret_basic' };
  }
  if (form.client_secret !== undefined) {
    return { clientId: form.client_id, method: 'client_secret_post' };
  }
  return { clientId: form.client_id, method: 'none' };
}

provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/token') {
    return next();
  }

  const raw = await readBody(ctx.req);
  ctx.request.body = raw;
  const { clientId, method } = usedAuthMethod(ctx, querystring.parse(raw));
  const registered = registeredAuthMethod.get(clientId);
  console.log(`token request of client ${clientId} with ${method}`);

  if (registered !== undefined && registered !== method) {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', 'Basic realm="token"');
    ctx.body = {
      error: 'invalid_client',
      error_description: `client is registered for ${registered} but used ${method}`,
    };
    return undefined;
  }
  return next();
});

// Log every token endpoint outcome with the client id and the error code only.
provider.on('grant.success', (ctx) => {
  console.log(`token issued to client ${ctx.oidc.client?.clientId}`);
});
provider.on('grant.error', (ctx, error) => {
  console.log(`token request of client ${ctx.oidc.client?.clientId} failed: ${error.error}`);
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${issuer}`);
});

function stop() {
  server.close(() => process.exit(0));
  // Keep-alive connections would hold `close` open: end them too.
  server.closeAllConnections();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
