// The JavaScript hosts the parity scenarios run on: the Hono middleware `rotauth()` in
// process over a `MemoryStore` that faults and races can be injected into, and the Hono
// example app over real HTTP (a Node `http` server), which takes neither. Each is made
// for one scenario's configuration; both decide at the time the runner sets (the
// middleware's and the app's `clock` option).
import { createServer } from 'node:http';
import { Hono } from 'hono';
import { createRotator } from 'rotauth';
import { MemoryStore, rotauth, startSession } from 'rotauth/hono';
import { createApp } from '../../example/app.js';
import { readResponse } from './runner.js';

const KEY = new Uint8Array(32).fill(0x5a);
const PASSWORD = 'correct horse battery';

/**
 * The rotator a configuration asks for, or a `Skip` reason when it cannot be made here.
 * `boundedHere`: the host takes the configuration's lost-swap bound, so any bound is fine.
 */
async function rotatorFor(config, boundedHere = false) {
  const rotator = await createRotator({
    keys: [{ id: 1, key: KEY }],
    batchWindowMs: config.batch_window_ms,
    mode: config.mode,
    replayPolicy: config.replay === 'revoke' ? 'revoke_session' : 'reject',
    rotate: config.rotate,
  });
  if (!boundedHere && config.max_attempts !== rotator.maxAttempts) {
    return { skip: `max_attempts is rotauth's ${rotator.maxAttempts} in JavaScript` };
  }
  return { rotator };
}

let users = 0;
const newUid = () => `parity-${process.pid}-${(users += 1)}@example.com`;

/** A store that does what a step's fault says, counts swaps, and can hold a load. */
class FaultyStore {
  constructor(inner) {
    this.inner = inner;
    this.set(undefined);
    this.hold = undefined;
  }

  set(fault) {
    this.fault = fault;
    this.struck = false;
    this.swapsTried = 0;
  }

  /** Whether a fault that strikes once strikes now. */
  strikeOnce() {
    const first = !this.struck;
    this.struck = true;
    return first;
  }

  async get(clientId) {
    if (this.fault === 'load_fails' || (this.fault === 'load_fails_once' && this.strikeOnce())) {
      throw new Error('injected by the parity scenario');
    }
    const stored = await this.inner.get(clientId);
    const hold = this.hold;
    this.hold = undefined;
    if (hold !== undefined) {
      hold.loaded();
      await hold.released;
    }
    return stored;
  }

  insert(clientId, session) {
    return this.inner.insert(clientId, session);
  }

  async compareAndSwap(clientId, expectedVersion, next) {
    this.swapsTried += 1;
    if (this.fault === 'swap_fails') throw new Error('injected by the parity scenario');
    if (this.fault === 'every_swap_lost') return false;
    if (this.fault === 'swap_lands_unacknowledged' && this.strikeOnce()) {
      if (await this.inner.compareAndSwap(clientId, expectedVersion, next)) {
        throw new Error('injected by the parity scenario: the acknowledgement was lost');
      }
      return false;
    }
    return this.inner.compareAndSwap(clientId, expectedVersion, next);
  }

  async delete(clientId) {
    if (this.fault === 'delete_fails') throw new Error('injected by the parity scenario');
    return this.inner.delete(clientId);
  }
}

/** What the runner asks of every host about the store: read, keep and put back a record. */
class StoreView {
  constructor(rotator, store) {
    this.rotator = rotator;
    this.store = store;
  }

  async generation(clientId) {
    const stored = await this.store.get(clientId);
    return stored === undefined ? undefined : Number(this.rotator.inspect(stored.record).generation);
  }

  async save(clientId) {
    this.saved = await this.store.get(clientId);
    if (this.saved === undefined) throw new Error('no session to save');
  }

  async restore(clientId) {
    const now = await this.store.get(clientId);
    const { record, version } = this.saved;
    if (now === undefined || !(await this.store.compareAndSwap(clientId, now.version, { record, version }))) {
      throw new Error('the restore lost its swap');
    }
  }
}

/** The middleware in front of a handler that answers 200, in process. */
export const middleware = {
  name: 'js/hono-middleware',
  supports: new Set(['faults', 'race', 'patience']),
  async make(config) {
    const { rotator, skip } = await rotatorFor(config, true);
    if (skip !== undefined) return { skip };
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    let now = 0;
    const app = new Hono();
    app.use('/parity', rotauth({
      rotator,
      store,
      clock: () => now,
      echoCurrent: config.batch_token === 'current',
      maxAttempts: config.max_attempts,
      // Without patience the first store failure is answered, as the scenario expects.
      storePatienceMs: config.patience ? undefined : 0,
    }));
    app.get('/parity', (c) => c.text('served'));
    const call = async ({ query, headers }) => readResponse(await app.request(`/parity${query}`, { headers }));
    const view = new StoreView(rotator, memory);
    return {
      host: {
        async signIn(at) {
          const uid = newUid();
          const { clientId, headers } = await startSession({ rotator, store, uid, now: at });
          return { client: clientId, uid, token: headers.get('access-token') };
        },
        async send(at, wire, fault) {
          now = at;
          store.set(fault);
          const response = await call(wire);
          const swapsTried = store.swapsTried;
          store.set(undefined);
          return { response, swapsTried };
        },
        async race(at, first, competing) {
          now = at;
          let loaded;
          let release;
          const hasLoaded = new Promise((resolve) => (loaded = resolve));
          store.hold = { loaded, released: new Promise((resolve) => (release = resolve)) };
          const ours = call(first);
          await hasLoaded;
          const theirs = await call(competing);
          release();
          return [await ours, theirs];
        },
        generation: (clientId) => view.generation(clientId),
        save: (clientId) => view.save(clientId),
        restore: (clientId) => view.restore(clientId),
      },
      close() {},
    };
  },
};

/** A Node `http` server for a fetch handler, on a free loopback port. */
async function listen(fetchHandler) {
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks);
    const url = `http://${req.headers.host}${req.url}`;
    const response = await fetchHandler(new Request(url, { method: req.method, headers: req.headers, body }));
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    base: `http://127.0.0.1:${port}`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The example app over HTTP, with devise's routes: sign up, then `GET /demo/members_only`. */
export const exampleHttp = {
  name: 'js/example-app-http',
  supports: new Set(),
  async make(config) {
    const { rotator, skip } = await rotatorFor(config);
    if (skip !== undefined) return { skip };
    const store = new MemoryStore();
    let now = 0;
    const app = createApp({
      rotator,
      store,
      clock: () => now,
      echoCurrent: config.batch_token === 'current',
      passwordIterations: 1_000,
    });
    const server = await listen((request) => app.fetch(request));
    const view = new StoreView(rotator, store);
    return {
      host: {
        async signIn(at) {
          now = at;
          const uid = newUid();
          const body = JSON.stringify({ email: uid, password: PASSWORD, password_confirmation: PASSWORD });
          const response = await fetch(`${server.base}/auth`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
          });
          if (response.status !== 200) throw new Error(`sign-up answered ${response.status}`);
          await response.arrayBuffer();
          return { client: response.headers.get('client'), uid: response.headers.get('uid'), token: response.headers.get('access-token') };
        },
        async send(at, { query, headers }) {
          now = at;
          const response = await fetch(`${server.base}/demo/members_only${query}`, { headers });
          await response.arrayBuffer();
          return { response: readResponse(response), swapsTried: undefined };
        },
        race() {
          throw new Error('no races over HTTP');
        },
        generation: (clientId) => view.generation(clientId),
        save: (clientId) => view.save(clientId),
        restore: (clientId) => view.restore(clientId),
      },
      close: () => server.close(),
    };
  },
};
