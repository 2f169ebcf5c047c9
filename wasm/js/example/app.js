// An example app: devise_token_auth's routes on Hono with rotauth, as rotauth's Rust
// example server serves them (users and sessions in memory). It runs wherever Hono does;
// `worker.js` serves it from Cloudflare Workers and workerd.
import { Hono } from 'hono';
import { cors } from 'hono/cors';
import { MemoryStore, check, forbiddenResponse, rotauth, screenRequest, signOutHeaders, startSession } from 'rotauth/hono';

const MIN_PASSWORD = 8;
const encoder = new TextEncoder();

/** A password hash for the example: PBKDF2-SHA256 from Web Crypto, which every runtime has. */
async function hashPassword(password, salt, iterations) {
  const key = await crypto.subtle.importKey('raw', encoder.encode(password), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, 256);
  return new Uint8Array(bits);
}

function sameBytes(a, b) {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}

async function body(c) {
  const type = c.req.header('content-type') ?? '';
  try {
    if (type.includes('application/x-www-form-urlencoded')) return Object.fromEntries(new URLSearchParams(await c.req.text()));
    const json = await c.req.json();
    return json !== null && typeof json === 'object' ? json : {};
  } catch {
    return {};
  }
}

const userJson = (user) => ({ id: user.id, email: user.email, uid: user.email, provider: 'email' });

/**
 * The app. `rotator` from `createRotator`; `store` a `SessionStore` (default in memory);
 * `passwordIterations` the PBKDF2 cost (default 600 000, OWASP's figure for SHA-256);
 * `origins` the browser origins allowed to call it (CORS, as devise apps set up rack-cors);
 * `clock` (Unix ms) and `echoCurrent` as the middleware takes them. With `protocol:
 * 'cookie'` (and the middleware's `cookie` and `csrf` settings) the credentials travel in
 * the httpOnly cookie instead of devise's headers: sign-up and sign-in are screened for
 * forgery before the password is checked, and sign-out clears the cookie. `POST
 * /demo/members_only` is an unsafe protected route (it echoes what a form posted).
 */
export function createApp({
  rotator,
  store = new MemoryStore(),
  clock = Date.now,
  echoCurrent = false,
  passwordIterations = 600_000,
  origins = [],
  protocol = 'devise',
  cookie,
  csrf,
}) {
  const users = new Map();
  const auth = { rotator, store, clock, echoCurrent, protocol, cookie, csrf };
  const cookieMode = protocol === 'cookie';
  const app = new Hono();
  if (origins.length > 0) {
    // Clients read the devise headers from responses, and send whatever headers they like
    // (ng-token-auth and j-toker send If-Modified-Since).
    app.use('*', cors({
      origin: origins,
      exposeHeaders: ['access-token', 'client', 'uid', 'expiry', 'token-type', 'authorization'],
    }));
  }

  const answer = (c, status, json, headers) => {
    const response = c.json(json, status);
    for (const [name, value] of headers) {
      if (name === 'set-cookie') response.headers.append(name, value);
      else response.headers.set(name, value);
    }
    return response;
  };
  // Login CSRF: a forged sign-in would sign the victim in as the attacker.
  const forged = (c) => {
    const reason = screenRequest(auth, c.req.raw);
    return reason === undefined ? undefined : forbiddenResponse(reason);
  };

  app.post('/auth', async (c) => {
    const refused = forged(c);
    if (refused !== undefined) return refused;
    const { email, password, password_confirmation: confirmation } = await body(c);
    const errors = {};
    if (typeof email !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(email)) errors.email = ['is not an email'];
    else if (users.has(email)) errors.email = ['has already been taken'];
    if (typeof password !== 'string' || password.length < MIN_PASSWORD) {
      errors.password = [`is too short (minimum is ${MIN_PASSWORD} characters)`];
    } else if (confirmation !== undefined && confirmation !== password) {
      errors.password_confirmation = ["doesn't match Password"];
    }
    if (Object.keys(errors).length > 0) {
      const full = Object.entries(errors).map(([field, [message]]) => `${field[0].toUpperCase()}${field.slice(1).replaceAll('_', ' ')} ${message}`);
      return c.json({ status: 'error', data: { email }, errors: { ...errors, full_messages: full } }, 422);
    }
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const user = { id: users.size + 1, email, salt, hash: await hashPassword(password, salt, passwordIterations) };
    users.set(email, user);
    const { headers } = await startSession({ ...auth, uid: email, now: clock() });
    return answer(c, 200, { status: 'success', data: userJson(user) }, headers);
  });

  app.post('/auth/sign_in', async (c) => {
    const refused = forged(c);
    if (refused !== undefined) return refused;
    const { email, password } = await body(c);
    const user = typeof email === 'string' ? users.get(email) : undefined;
    const ok = user !== undefined && typeof password === 'string' && sameBytes(await hashPassword(password, user.salt, passwordIterations), user.hash);
    if (!ok) return c.json({ success: false, errors: ['Invalid login credentials. Please try again.'] }, 401);
    const { headers } = await startSession({ ...auth, uid: email, now: clock() });
    return answer(c, 200, { data: userJson(user) }, headers);
  });

  app.get(
    '/auth/validate_token',
    // In cookie mode the middleware's own 401, which clears the cookie of a revoked session.
    rotauth(cookieMode ? auth : { ...auth, onUnauthorized: (c) => c.json({ success: false, errors: ['Invalid login credentials'] }, 401) }),
    (c) => c.json({ success: true, data: userJson(users.get(c.var.rotauth.uid)) }),
  );

  app.delete('/auth/sign_out', async (c) => {
    // Any token the decision accepts (batch members too) signs the session out; nothing rotates.
    const result = await check(auth, c.req.raw);
    if (result.status === 403) return forbiddenResponse(result.reason);
    if (!result.ok || !(await store.delete(result.clientId))) {
      return c.json({ success: false, errors: ['User was not found or was not logged in.'] }, 404);
    }
    return cookieMode ? answer(c, 200, { success: true }, signOutHeaders(auth)) : c.json({ success: true });
  });

  app.use('/demo/*', rotauth(auth));
  app.get('/demo/members_only', (c) => {
    const user = users.get(c.var.rotauth.uid);
    return c.json({ data: { message: `Welcome ${user.email}`, user: userJson(user) } });
  });
  app.post('/demo/members_only', async (c) => c.json({ data: { posted: await body(c), user: c.var.rotauth.uid } }));

  return app;
}
