// The HTTP front of test/tabs.mjs: one origin per client kind that serves the tab page and
// the client's modules and passes every other request to the host, through a network
// model, counting what the host answered.
//
// The network: with `latencyMs` or `jitterMs` set, a request is held for
// `latencyMs ± jitterMs` (uniform, at least 0) after it has fully arrived and before the
// host sees it, and the host's response is held for another, independent
// `latencyMs ± jitterMs` before the browser gets it. Requests sent in one order so reach
// the host in another, and responses come back in yet another. A request the browser
// abandons meanwhile (a reload) still reaches the host, as one already on the wire would;
// its response is then dropped.
import { createServer } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { handedOut, presented } from './credentials.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const files = { '/tabs-page.js': join(here, '../client/tabs-page.js') };
const page = '<!doctype html><meta charset="utf-8"><title>tab</title><script type="module" src="/tabs-page.js"></script>';
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'content-length'];

const sleep = (ms) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : undefined);

/** The counters one client kind's proxy keeps. */
export const serverCounts = () => ({ server401: 0, server503: 0, recoveries: 0 });

/**
 * Starts the front for one client kind; resolves to its origin (`http://localhost:PORT`,
 * a secure context for Chromium, so that a `Secure` cookie is kept over plain HTTP) and a
 * `close()`. `host` is from hosts.js; `counts` from `serverCounts()`, updated in place;
 * `rotations` a `Rotations`; `log` receives one line per 401 and per recovery when set.
 */
export async function startProxy({ host, counts, rotations, latencyMs = 0, jitterMs = 0, windowMs, log }) {
  const delay = () => sleep(latencyMs + (Math.random() * 2 - 1) * jitterMs);
  const server = createServer(async (req, res) => {
    try {
      await serve(req, res);
    } catch (error) {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(String(error));
    }
  });

  async function serve(req, res) {
    const url = new URL(req.url, 'http://proxy');
    if (url.pathname === '/tab') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(404).end();
      return;
    }
    const lib = url.pathname.startsWith('/lib/client') ? join(here, '../..', normalize(url.pathname)) : files[url.pathname];
    if (lib !== undefined) {
      const ok = extname(lib) === '.js' && statSync(lib, { throwIfNoEntry: false })?.isFile();
      res.writeHead(ok ? 200 : 404, { 'content-type': 'text/javascript' }).end(ok ? readFileSync(lib) : '');
      return;
    }
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
    await delay(); // the request's way in
    const sent = presented(host.protocol, req.headers);
    const held = log !== undefined && sent !== undefined ? await host.held?.(sent.client) : undefined;
    const sentAt = Date.now();
    const response = await host.forward({ method: req.method, path: req.url, headers: req.headers, body });
    const answeredAt = Date.now();
    const out = handedOut(host.protocol, response.headers);
    if (out !== undefined) rotations.saw(out, sentAt, answeredAt);
    const recovery = url.searchParams.has('unbatch');
    if (response.status === 401) counts.server401 += 1;
    if (response.status === 503) counts.server503 += 1;
    if (recovery) counts.recoveries += 1;
    if (log !== undefined && (response.status === 401 || recovery)) {
      const line = `${req.method} ${url.pathname}${url.search} ${response.status}`;
      const why = () =>
        response.status === 401
          ? rotations.explain(sent, sentAt, answeredAt)
          : `presented ${sent === undefined ? 'no token' : `T${sent.generation}`}, got ${out === undefined ? 'no token' : `T${out.generation}`}`;
      const store = held === undefined ? '' : ` [store: n=${held.generation}, rotated ${sentAt - held.rotatedAt} ms before]`;
      // Later, so that rotations answered after this response are known too.
      setTimeout(() => log(`${line}: ${why()}${store}`), 2 * windowMs);
    }
    await delay(); // the response's way out
    if (res.destroyed) {
      if (out !== undefined) rotations.lost(out);
      return;
    }
    const headers = Object.fromEntries(Object.entries(response.headers).filter(([name]) => !HOP_BY_HOP.includes(name)));
    res.writeHead(response.status, headers).end(response.body);
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://localhost:${server.address().port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
