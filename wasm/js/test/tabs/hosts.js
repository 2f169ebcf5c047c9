// The servers test/tabs.mjs runs the tabs against, each with the batch window and the mode
// (`strict` or `recover`) asked for:
//   hono          the Hono example app (example/app.js) in this process, devise headers;
//   devise        the devise server (target/debug/devise_server), SQLite in a temp dir;
//   axum-bearer   rotauth-axum's example app (target/debug/examples/axum_app), Bearer;
//   axum-cookie   the same app with credentials in a `__Host-` cookie.
// A host is `{ protocol, page, naive, forward, held?, signUp, stop }`: `protocol` is how
// credentials travel (`devise`, `bearer`, `cookie`); `page` the tab page's query
// parameters (paths, sign-in body); `naive` whether a naive twin of the client exists;
// `forward(request)` answers `{ method, path, headers, body }` with `{ status, headers,
// body }` (Node's header shapes); `held(client)` reads the session from the store, where
// the store is in this process.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KEY_HEX, PASSWORD_ITERATIONS } from '../app-config.js';

export const HOSTS = ['hono', 'devise', 'axum-bearer', 'axum-cookie'];
const PASSWORD = 'correct horse battery';
const root = fileURLToPath(new URL('../../../../', import.meta.url));
const target = process.env.CARGO_TARGET_DIR ?? join(root, 'target');
const hexBytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));

/** The devise routes the Hono app and the devise server share. */
const devisePage = (email) => ({
  protocol: 'devise',
  signIn: '/auth/sign_in',
  api: '/demo/members_only',
  refresh: '/auth/validate_token',
  credentials: JSON.stringify({ email, password: PASSWORD }),
});
/** The axum example's routes; its toy password check takes any user with "wonderland". */
const axumPage = (protocol) => (email) => ({
  protocol,
  signIn: '/sign_in',
  api: '/me',
  refresh: '/me',
  credentials: JSON.stringify({ user: email, password: 'wonderland' }),
});

export async function startHost(name, { windowMs, mode }) {
  if (name === 'hono') return hono(windowMs, mode);
  if (name === 'devise') {
    const dir = mkdtempSync(join(tmpdir(), 'tabs-devise-'));
    const args = ['--addr', '127.0.0.1:0', '--db', join(dir, 'tabs.sqlite3'), '--batch-window-ms', String(windowMs), '--mode', mode];
    // Sign-ins are not throttled: the naive client signs in again after every sign-out.
    args.push('--throttle-per-address', '0', '--throttle-per-address-account', '0', '--insecure-fast-hashing', '--quiet');
    const host = await spawnHost(binary('DEVISE_SERVER_BIN', 'debug/devise_server', 'devise-server --bin devise_server'), args, {}, dir);
    return { ...host, protocol: 'devise', page: devisePage, naive: true, signUp: (email) => signUpOver(host.forward, email) };
  }
  if (name === 'axum-bearer' || name === 'axum-cookie') {
    const protocol = name.slice('axum-'.length);
    const dir = mkdtempSync(join(tmpdir(), 'tabs-axum-'));
    const env = { AXUM_APP_ADDR: '127.0.0.1:0', AXUM_APP_DB: join(dir, 'sessions.sqlite3'), AXUM_APP_PROTOCOL: protocol, AXUM_APP_WINDOW_MS: String(windowMs), AXUM_APP_MODE: mode };
    const bin = binary('AXUM_APP_BIN', 'debug/examples/axum_app', 'rotauth-axum --example axum_app --features sqlite');
    const host = await spawnHost(bin, [], env, dir);
    // Cookies have no naive twin: the browser keeps the one cookie, and no script sees it.
    return { ...host, protocol, page: axumPage(protocol), naive: protocol === 'bearer', signUp: async () => {} };
  }
  throw new Error(`--host: one of ${HOSTS.join(', ')}, not ${name}`);
}

async function hono(windowMs, mode) {
  // Imported here: the other hosts run without the WebAssembly module built.
  const [{ createRotator }, { MemoryStore }, { createApp }] = await Promise.all([
    import('rotauth'),
    import('rotauth/hono'),
    import('../../example/app.js'),
  ]);
  const rotator = await createRotator({ keys: [{ id: 1, key: hexBytes(KEY_HEX) }], batchWindowMs: windowMs, mode });
  const store = new MemoryStore();
  const app = createApp({ rotator, store, passwordIterations: PASSWORD_ITERATIONS });
  const forward = async ({ method, path, headers, body }) => {
    const request = new Headers();
    for (const [name, value] of Object.entries(headers)) request.set(name, [value].flat().join(', '));
    const response = await app.fetch(new Request(new URL(path, `http://${headers.host}`), { method, headers: request, body }));
    const out = Object.fromEntries([...response.headers].filter(([name]) => name !== 'set-cookie'));
    if (response.headers.getSetCookie().length > 0) out['set-cookie'] = response.headers.getSetCookie();
    return { status: response.status, headers: out, body: Buffer.from(await response.arrayBuffer()) };
  };
  const held = async (client) => {
    const session = await store.get(client);
    return session === undefined ? undefined : rotator.inspect(session.record);
  };
  return { protocol: 'devise', page: devisePage, naive: true, forward, held, signUp: (email) => signUpOver(forward, email), stop: async () => {} };
}

async function signUpOver(forward, email) {
  const body = Buffer.from(JSON.stringify({ email, password: PASSWORD, password_confirmation: PASSWORD }));
  const headers = { host: 'localhost', 'content-type': 'application/json', 'content-length': String(body.length) };
  const response = await forward({ method: 'POST', path: '/auth', headers, body });
  if (response.status !== 200) throw new Error(`sign-up of ${email}: ${response.status} ${response.body}`);
}

function binary(variable, path, build) {
  const bin = process.env[variable] ?? join(target, path);
  if (!existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p ${build} (or set ${variable})`);
  return bin;
}

/** Starts a server that prints `listening on http://ADDR` first, and a `forward` to it. */
async function spawnHost(bin, args, env, dir) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const address = await new Promise((resolve, reject) => {
    let text = '';
    child.once('exit', (code) => reject(new Error(`${bin} exited with ${code} before listening`)));
    child.stdout.on('data', (chunk) => {
      text += chunk;
      const found = /listening on http:\/\/(\S+)/.exec(text);
      if (found !== null) resolve(found[1]);
    });
  });
  child.stdout.resume();
  const [hostname, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const forward = ({ method, path, headers, body }) =>
    new Promise((resolve, reject) => {
      const out = Object.fromEntries(Object.entries(headers).filter(([name]) => name !== 'connection' && name !== 'keep-alive'));
      const upstream = request({ hostname, port, method, path, headers: out, agent }, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      upstream.on('error', reject);
      upstream.end(body);
    });
  const stop = async () => {
    agent.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      // A graceful shutdown waits for open connections; a test server need not.
      const kill = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(kill);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { forward, stop };
}
