// A test-only OpenID Connect provider for genvault's suite, built on oidc-provider
// (node-oidc-provider, OpenID Certified). Never use it outside tests: users, passwords and
// cookie keys come from a JSON file and everything lives in memory.
//
//   node server.mjs [--config PATH] [--port N] [--keys PATH]
//
// or with the environment: OIDC_CONFIG, OIDC_PORT, OIDC_KEYS. The flags win over the
// environment, which wins over the config file's own "port" / "keys_file".
//
// The config file (JSON):
//   {
//     "port": 4444,                                  // optional, 0 = any free port
//     "clients": [{                                  // or "client": { ... } for just one
//       "client_id": "genvault", "client_secret": "s3cret",
//       "redirect_uris": ["http://127.0.0.1:5000/ui/auth/callback"],
//       "post_logout_redirect_uris": [],             // optional
//       "token_endpoint_auth_method": "client_secret_basic"   // or "client_secret_post"
//     }],
//     "users": [{"username": "admin", "password": "pw-admin", "email": "admin@example.test",
//                "name": "Admin", "groups": ["genvault-admins"]}],
//     "keys_file": "/path/jwks.json",                // optional: {"keys": [JWK, ...]} or one JWK
//     "cookie_keys": ["..."]                         // optional
//   }
//
// Without a keys file a fresh RS256 key (with a fresh kid) is generated at every start, so a
// restart rotates the signing key and a relying party must refetch the JWKS.
//
// The issuer is http://127.0.0.1:PORT. When it listens it prints `READY <issuer>` on stdout.
// Interaction (login) pages, served by this file rather than by oidc-provider:
//   GET  /interaction/:uid          login form: inputs name/id "username", "password",
//                                   button id "submit"; a consent prompt is granted at once
//   POST /interaction/:uid/login    checks the password; a wrong one re-renders the form with
//                                   status 401 and an element id "error"
//   GET  /interaction/:uid/abort    ends the interaction with error=access_denied
// RP-initiated logout (GET /session/end) shows a form whose buttons have ids "logout-yes"
// and "logout-no".

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const SCOPES = ['openid', 'profile', 'email', 'groups'];
const AUTH_METHODS = ['client_secret_basic', 'client_secret_post'];

function fail(message) {
  process.stderr.write(`oidc test provider: ${message}\n`);
  process.exit(2);
}

const { values: argv } = parseArgs({
  options: {
    config: { type: 'string' },
    port: { type: 'string' },
    keys: { type: 'string' },
  },
  allowPositionals: false,
});

const configPath = argv.config ?? process.env.OIDC_CONFIG;
if (!configPath) fail('no config file: pass --config PATH or set OIDC_CONFIG');
let config;
try {
  config = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (err) {
  fail(`cannot read config ${configPath}: ${err.message}`);
}

const port = Number(argv.port ?? process.env.OIDC_PORT ?? config.port ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${port}`);

// ---- signing keys -------------------------------------------------------------------------

function loadKeys(path) {
  const parsed = JSON.parse(readFileSync(path, 'utf8'));
  const keys = Array.isArray(parsed.keys) ? parsed.keys : [parsed];
  if (!keys.length || !keys.every((k) => k && typeof k === 'object' && k.d)) {
    fail(`keys file ${path} must hold private JWKs ({"keys": [...]} or one JWK)`);
  }
  return keys;
}

function freshKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(12).toString('base64url'),
    alg: 'RS256',
    use: 'sig',
  };
}

const keysPath = argv.keys ?? process.env.OIDC_KEYS ?? config.keys_file;
const jwks = { keys: keysPath ? loadKeys(keysPath) : [freshKey()] };

// ---- users and clients --------------------------------------------------------------------

const users = new Map();
for (const user of config.users ?? []) {
  if (!user.username || typeof user.password !== 'string') {
    fail(`every user needs a username and a password: ${JSON.stringify(user)}`);
  }
  users.set(user.username, user);
}

function toClient(client) {
  if (!client.client_id || !client.client_secret || !client.redirect_uris?.length) {
    fail('every client needs client_id, client_secret and redirect_uris');
  }
  return {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  };
}

const clients = (config.clients ?? (config.client ? [config.client] : [])).map(toClient);
if (!clients.length) fail('the config names no client ("client" or "clients")');

async function findAccount(ctx, id) {
  const user = users.get(id);
  if (!user) return undefined;
  return {
    accountId: id,
    // oidc-provider keeps only the claims the granted scopes (and claims parameter) allow.
    async claims() {
      return {
        sub: id,
        email: user.email ?? `${id}@example.test`,
        email_verified: user.email_verified ?? true,
        name: user.name ?? id,
        groups: user.groups ?? [],
      };
    },
  };
}

// ---- the provider -------------------------------------------------------------------------

const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function buildProvider(issuer) {
  const configuration = {
    clients,
    findAccount,
    clientAuthMethods: AUTH_METHODS,
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    scopes: SCOPES,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // Scope-requested claims (groups, email, name) go into the ID token too, not only userinfo.
    conformIdTokenClaims: false,
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page(
            'Sign out',
            `${form}
<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button>`,
          );
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p id="signed-out">You are signed out.</p>');
        },
      },
    },
    jwks,
    cookies: {
      keys: config.cookie_keys ?? ['genvault-test-oidc-cookie-key'],
      // The relying party runs on the same host (cookies ignore ports): keep the names apart.
      names: {
        session: 'op_session',
        interaction: 'op_interaction',
        resume: 'op_interaction_resume',
      },
      // Plain http: SameSite=None cookies need Secure, which browsers refuse without https.
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page(
        'Error',
        Object.entries(out)
          .map(([key, value]) => `<p id="${esc(key)}">${esc(key)}: ${esc(value)}</p>`)
          .join('\n'),
      );
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.proxy = false;
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
    'end_session.error', 'introspection.error', 'revocation.error']) {
    provider.on(event, (ctx, err) => {
      const detail = err?.error_description ? ` (${err.error_description})` : '';
      process.stderr.write(`${event}: ${err?.message ?? err}${detail}\n`);
    });
  }
  return provider;
}

// ---- interaction pages --------------------------------------------------------------------

function send(res, status, html) {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(html),
  });
  res.end(html);
}

function loginPage(uid, { username = '', error, clientId } = {}) {
  return page(
    'Sign in',
    `<p>Sign in to continue to <span id="client">${esc(clientId)}</span>.</p>
${error ? `<p id="error" role="alert">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="username">Username</label>
  <input id="username" name="username" type="text" value="${esc(username)}" required autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button id="submit" type="submit">Sign in</button>
</form>
<p><a id="abort" href="/interaction/${esc(uid)}/abort">Cancel</a></p>`,
  );
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(provider, req, res, details) {
  const { prompt: { details: missing }, params, session } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
  } else {
    grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page('Error', '<p id="error">interaction mismatch</p>'));
    return;
  }
  const { prompt, params } = details;

  if (req.method === 'GET' && action === undefined) {
    if (prompt.name === 'consent') {
      await grantConsent(provider, req, res, details);
    } else if (prompt.name === 'login') {
      send(res, 200, loginPage(uid, { username: params.login_hint, clientId: params.client_id }));
    } else {
      send(res, 400, page('Error', `<p id="error">unsupported prompt ${esc(prompt.name)}</p>`));
    }
    return;
  }

  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const username = form.get('username') ?? '';
    const user = users.get(username);
    if (prompt.name !== 'login') {
      send(res, 400, page('Error', '<p id="error">no login is pending</p>'));
    } else if (!user || user.password !== (form.get('password') ?? '')) {
      const error = 'Invalid username or password.';
      send(res, 401, loginPage(uid, { username, error, clientId: params.client_id }));
    } else {
      const login = { accountId: username, amr: ['pwd'] };
      await provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
    }
    return;
  }

  if (req.method === 'GET' && action === 'abort') {
    const result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    return;
  }

  send(res, 405, page('Error', '<p id="error">method not allowed</p>'));
}

// ---- the server ---------------------------------------------------------------------------

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?\/?$/;
let provider;
let providerCallback;

const server = createServer(async (req, res) => {
  if (!provider) {
    send(res, 503, page('Starting', '<p>not ready</p>'));
    return;
  }
  const { pathname } = new URL(req.url, 'http://placeholder');
  const match = INTERACTION.exec(pathname);
  if (!match) {
    providerCallback(req, res);
    return;
  }
  try {
    await interaction(provider, req, res, match[1], match[2]);
  } catch (err) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof errors.SessionNotFound) {
      send(res, 400, page('Error', `<p id="error">${esc(err.error_description ?? err.message)}</p>`));
      return;
    }
    process.stderr.write(`interaction error: ${err?.stack ?? err}\n`);
    send(res, 500, page('Error', `<p id="error">${esc(err?.message ?? err)}</p>`));
  }
});

server.on('error', (err) => fail(`cannot listen on ${HOST}:${port}: ${err.message}`));
server.listen(port, HOST, () => {
  const issuer = `http://${HOST}:${server.address().port}`;
  try {
    provider = buildProvider(issuer);
  } catch (err) {
    fail(`bad configuration: ${err?.message ?? err}`);
  }
  providerCallback = provider.callback();
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown(signal) {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => {
    process.stderr.write(`oidc test provider: forced exit after ${signal}\n`);
    process.exit(0);
  }, 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
