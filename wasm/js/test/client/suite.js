// The suite of `rotauth/client`. It runs unchanged in Node (node:test), Deno, Bun and
// Chromium; each runner (test/client/run*.js, browser.html) hands it:
//
//   client    the package's `rotauth/client` entry
//   rotauth   the package's main entry, for the fake server's rotator
//   hono      `rotauth/hono`, whose request loop the fake server runs
//   vectors   the text of the crate's tests/vectors/tokens.txt
//
// The server is rotauth on a virtual clock (fake-server.js); tabs are clients sharing one
// store and one `BroadcastChannel` name, as a page's tabs share `localStorage`.
import { deepEqual, equal, ok } from '../assert.js';
import { ORIGIN, fakeServer, until } from './fake-server.js';
import { formatTests, generationOf } from './format.js';

const W = 5_000;

/** A store in memory that records every value written, to check that it only moves up. */
function recordingStorage({ delay = false } = {}) {
  const items = new Map();
  const writes = [];
  const later = (value) => (delay ? new Promise((resolve) => setTimeout(() => resolve(value), 0)) : value);
  return {
    writes,
    raw: (key) => items.get(key),
    getItem: (key) => later(items.get(key) ?? null),
    setItem: (key, value) => {
      items.set(key, value);
      writes.push(JSON.parse(value));
      return later(undefined);
    },
    removeItem: (key) => {
      items.delete(key);
      return later(undefined);
    },
  };
}

/** The tests, as `{ name, kind, fn }`. */
export function clientSuite(env) {
  const { client: lib } = env;
  const { createClient, memoryStorage } = lib;
  const tests = formatTests(env);
  const test = (name, fn) => tests.push({ name, kind: 'client', fn });
  let channels = 0;
  const channelName = () => `rotauth-test-${Date.now()}-${(channels += 1)}-${Math.random().toString(36).slice(2)}`;

  /** A server and a way to make clients of it that are closed when the test ends. */
  async function setup(options = {}) {
    const server = await fakeServer({ rotauth: env.rotauth, hono: env.hono, ...options });
    const open = [];
    const signedOut = new Map();
    const make = (extra = {}) => {
      const events = [];
      const c = createClient({
        protocol: server.protocol,
        fetch: (request) => server.fetch(request),
        now: server.now,
        sleep: (ms) => server.sleep(ms),
        storage: memoryStorage(),
        channel: false,
        tabStorage: false,
        batchWindowMs: server.windowMs,
        onSignedOut: (event) => events.push(event),
        ...extra,
      });
      open.push(c);
      signedOut.set(c, events);
      return c;
    };
    const done = () => open.forEach((c) => c.close());
    return { server, make, signedOut: (c) => signedOut.get(c), done };
  }

  const signIn = async (c, uid = 'ada') => {
    const response = await c.fetch(`${ORIGIN}/sign_in?uid=${uid}`, { method: 'POST' });
    equal(response.status, 200, 'signed in');
    return c.session;
  };
  const data = (c, query = '') => c.fetch(`${ORIGIN}/data${query}`);
  /** The token the server saw on its last request, and whether it is the current one. */
  const lastSeen = async (server) => {
    const entry = server.log.at(-1);
    return { ...entry, current: (await server.current(entry.client))?.token === entry.token };
  };

  // -- one client ----------------------------------------------------------------------

  for (const protocol of ['devise', 'bearer']) {
    test(`${protocol}_presents_the_newest_token_and_keeps_it_through_blank_and_missing_ones`, async () => {
      const { server, make, done } = await setup({ protocol });
      try {
        const c = make();
        await signIn(c);
        equal(server.log[0].token, undefined, 'the sign-in is sent without credentials');
        equal(c.session.generation, 0n);
        const batch = await data(c);
        deepEqual([batch.status, server.log.at(-1).kind], [200, 'batch_reuse']);
        if (protocol === 'devise') equal(batch.headers.get('access-token'), '', 'a batch response carries a blank token');
        else equal(batch.headers.get('rotauth-token'), null, 'a batch response carries no token');
        await c.fetch(`${ORIGIN}/public`);
        equal(c.session.generation, 0n, 'blank and missing tokens keep the held one');
        server.advance(W);
        await data(c);
        deepEqual([server.log.at(-1).kind, c.session.generation], ['rotate', 1n], 'the rotation is adopted');
        await data(c);
        const seen = await lastSeen(server);
        ok(seen.current, 'the next request presents the new token');
        if (protocol === 'devise') equal(c.session.uid, 'ada');
      } finally {
        done();
      }
    });

    test(`${protocol}_out_of_order_responses_never_move_the_client_back`, async () => {
      const { server, make, done } = await setup({ protocol });
      try {
        const c = make();
        await signIn(c);
        server.advance(W);
        server.hold = 'response';
        const rotating = data(c); // T(0) after the window: rotates, hands out T(1)
        await until(() => server.parked.length === 1, 'the first request served');
        const forced = data(c, '?unbatch=true'); // T(0) in the new window, forced: T(2)
        await until(() => server.parked.length === 2, 'the second request served');
        deepEqual(server.log.slice(-2).map((e) => e.kind), ['rotate', 'rotate']);
        server.hold = null;
        await server.release(1);
        equal((await forced).status, 200);
        equal(c.session.generation, 2n, 'T(2) adopted');
        await server.release(0);
        equal((await rotating).status, 200);
        equal(c.session.generation, 2n, 'the late T(1) is not adopted');
        await data(c);
        ok((await lastSeen(server)).current, 'the next request presents T(2)');
      } finally {
        done();
      }
    });
  }

  test('a_late_batch_response_echoing_an_older_token_is_ignored', async () => {
    // A host that echoes the current token in batch responses (`echoCurrent`) can send a
    // token older than one already delivered, if the responses cross.
    const { server, make, done } = await setup({ echoCurrent: true });
    try {
      const c = make();
      await signIn(c);
      server.advance(1);
      server.hold = 'response';
      const batch = data(c);
      await until(() => server.parked.length === 1, 'the batch request served');
      server.hold = null;
      server.advance(W);
      await data(c);
      equal(c.session.generation, 1n, 'T(1) adopted');
      await server.release();
      const late = await batch;
      equal(generationOf(late.headers.get('access-token')), 0n, 'the late response carries T(0)');
      equal(c.session.generation, 1n, 'and the client keeps T(1)');
    } finally {
      done();
    }
  });

  test('a_503_is_waited_out_a_bounded_number_of_times', async () => {
    const { server, make, done } = await setup();
    try {
      const c = make({ retries: 2, maxRetryAfterMs: 30_000 });
      await signIn(c);
      server.unavailable.push('2', '1');
      const served = await data(c);
      deepEqual([served.status, server.waits], [200, [2_000, 1_000]], 'served after waiting what each 503 asked');
      server.unavailable.push('1', '1', '1');
      const given = await data(c);
      deepEqual([given.status, server.waits.length, server.unavailable.length], [503, 4, 0], 'two retries, then the 503');
      server.unavailable.push('31');
      equal((await data(c)).status, 503, 'a wait longer than the bound is not waited');
      server.unavailable.push(null);
      equal((await data(c)).status, 503, 'a 503 without Retry-After is not rotauth asking to retry');
      equal(server.waits.length, 4, 'neither was waited');
      deepEqual(server.log.filter((e) => e.path === '/data').length, 3 + 3 + 1 + 1);
    } finally {
      done();
    }
  });

  // -- refusals ------------------------------------------------------------------------

  test('a_401_for_an_older_token_is_retried_once_with_the_newest', async () => {
    const { server, make, signedOut, done } = await setup();
    try {
      const storage = memoryStorage();
      const a = make({ storage });
      const b = make({ storage });
      await signIn(a);
      server.hold = 'request';
      const stale = data(a); // presents T(0), held on the way to the server
      await until(() => server.parked.length === 1, 'the request to be held');
      server.hold = null;
      for (let i = 0; i < 2; i += 1) {
        server.advance(W);
        await data(b); // another tab rotates to T(2)
      }
      server.advance(W);
      await server.release(); // T(0), two generations back, after the window: refused
      const response = await stale;
      const mine = server.log.filter((e) => e.path === '/data').map((e) => e.status);
      deepEqual(mine, [200, 200, 401, 200], 'refused, then served with the newest');
      equal(response.status, 200);
      equal(signedOut(a).length, 0, 'a refusal of an older token is no sign-out');

      // Once: a retry refused too (the other tab ran on meanwhile) is returned as it is.
      const rotateTwice = async () => {
        server.hold = null;
        for (let i = 0; i < 2; i += 1) {
          server.advance(W);
          await data(b);
        }
        server.advance(W);
        server.hold = 'request';
      };
      server.hold = 'request';
      const again = data(a); // presents T(n)
      await until(() => server.parked.length === 1, 'the request to be held');
      await rotateTwice();
      await server.release(); // T(n) refused; the retry presents T(n+2), held
      await until(() => server.parked.length === 1, 'the retry to be held');
      await rotateTwice();
      server.hold = null;
      await server.release(); // T(n+2) refused
      const refused = await again;
      equal(refused.status, 401, 'the second refusal is returned');
      equal(signedOut(a).length, 0, 'and is no sign-out either: a newer token is held');
      ok(a.session !== undefined, 'the session lives on');
    } finally {
      done();
    }
  });

  test('a_401_for_the_newest_token_ends_the_session_in_every_tab', async () => {
    const { server, make, signedOut, done } = await setup();
    try {
      const storage = recordingStorage();
      const channel = channelName();
      const a = make({ storage, channel, key: 'k' });
      const b = make({ storage, channel, key: 'k' });
      const { client } = await signIn(a);
      await until(() => b.session !== undefined, 'the other tab to hear of the sign-in');
      const token = (await server.current(client)).token;
      await server.end(client);
      equal((await data(a)).status, 401);
      deepEqual(signedOut(a), [{ reason: 'refused', elsewhere: false }]);
      await until(() => signedOut(b).length === 1, 'the other tab to hear of it');
      deepEqual(signedOut(b), [{ reason: 'refused', elsewhere: true }]);
      deepEqual([a.session, b.session], [undefined, undefined]);
      ok(!storage.raw('k').includes(token), 'the store keeps no token');
      await data(b);
      equal(server.log.at(-1).token, undefined, 'a signed-out tab sends no credentials');
      equal(signedOut(b).length, 1, 'and a 401 then is no second sign-out');
    } finally {
      done();
    }
  });

  // -- tabs ----------------------------------------------------------------------------

  test('tabs_sharing_a_store_and_a_channel_never_go_backwards', async () => {
    const { server, make, signedOut, done } = await setup();
    try {
      const storage = recordingStorage();
      const channel = channelName();
      const tabs = [0, 1, 2].map(() => make({ storage, channel, key: 'k' }));
      await signIn(tabs[0]);
      let seed = 0x2545f491;
      const random = (n) => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) % n;
      };
      const seen = tabs.map(() => -1n);
      const check = (step) => {
        tabs.forEach((tab, i) => {
          const g = tab.session?.generation;
          ok(g !== undefined && g >= seen[i], `step ${step}: tab ${i} went from ${seen[i]} to ${g}`);
          seen[i] = g;
        });
      };
      let forced = false;
      const pending = [];
      server.hold = 'response';
      for (let round = 0; round < 40; round += 1) {
        // A burst from random tabs at one instant. At most one request between two moves of
        // the clock forces a rotation: several rotate the session more than two generations
        // past the tokens in flight, which the server refuses by design.
        const burst = 1 + random(4);
        const parked = server.parked.length + burst;
        for (let i = 0; i < burst; i += 1) {
          const force = !forced && random(3) === 0;
          forced ||= force;
          pending.push(data(tabs[random(3)], force ? '?unbatch=true' : ''));
        }
        await until(() => server.parked.length === parked, 'the burst to be served');
        // Responses come back in any order, some only after the next burst.
        const keep = round % 3 === 2 ? 0 : random(server.parked.length);
        while (server.parked.length > keep) {
          await server.release(random(server.parked.length));
          check(round);
        }
        if (keep === 0) {
          // Every answer let through is read before the clock moves on: an answer not read
          // by then is one delayed past the window, which no client can survive in Strict
          // mode.
          await Promise.all(pending.splice(0));
          forced = false;
          server.advance(random(2) === 0 ? 1 + random(W) : W + random(W));
        }
      }
      server.hold = null;
      while (server.parked.length > 0) await server.release(random(server.parked.length));
      const statuses = server.log.filter((e) => e.path.startsWith('/data')).map((e) => e.status);
      ok(statuses.length > 80 && statuses.every((s) => s === 200), `every request served (${statuses.length})`);
      ok(server.log.filter((e) => e.kind === 'rotate').length > 10, 'the session rotated many times');
      const generations = storage.writes.map((w) => generationOf(w.token));
      ok(generations.every((g, i) => i === 0 || g > generations[i - 1]), `the store only moved up: ${generations.join(' ')}`);
      const { generation } = await server.current(tabs[0].session.client);
      await until(() => tabs.every((t) => t.session.generation === generation), 'every tab to hold the newest token');
      check('end');
      ok(tabs.every((t) => signedOut(t).length === 0), 'no tab signed out');
    } finally {
      done();
    }
  });

  test('sign_out_clears_the_store_and_reaches_every_tab', async () => {
    const { server, make, signedOut, done } = await setup();
    try {
      const storage = recordingStorage();
      const channel = channelName();
      const a = make({ storage, channel, key: 'k' });
      const b = make({ storage, channel, key: 'k' });
      const lagging = make({ storage, key: 'k' }); // no channel: hears only through the store
      const { client } = await signIn(a);
      await lagging.fetch(`${ORIGIN}/public`);
      const before = storage.raw('k');
      const token = (await server.current(client)).token;
      const response = await a.signOut(`${ORIGIN}/sign_out`, { method: 'DELETE' });
      equal(response.status, 200);
      equal(server.log.at(-1).token, token, 'the sign-out request carried the credentials');
      equal(await server.current(client), undefined, 'the server ended the session');
      deepEqual(signedOut(a), [{ reason: 'signed_out', elsewhere: false }]);
      await until(() => signedOut(b).length === 1, 'the other tab to hear of it');
      deepEqual(signedOut(b), [{ reason: 'signed_out', elsewhere: true }]);
      ok(!storage.raw('k').includes(token), 'the store keeps no token');
      // A message from before the sign-out, arriving late, does not bring the session back.
      const late = new BroadcastChannel(channel);
      late.postMessage(before);
      late.close();
      await new Promise((resolve) => setTimeout(resolve, 20));
      equal(b.session, undefined, 'a late message is older than the end');
      await data(lagging);
      deepEqual([server.log.at(-1).token, lagging.session], [undefined, undefined], 'a tab that had not heard sends nothing');
      deepEqual(signedOut(lagging), [{ reason: 'signed_out', elsewhere: true }]);
    } finally {
      done();
    }
  });

  test('a_sign_in_in_another_tab_takes_over_and_the_old_session_never_returns', async () => {
    const { server, make, done } = await setup();
    try {
      const storage = memoryStorage();
      const channel = channelName();
      const a = make({ storage, channel, key: 'k' });
      const b = make({ storage, channel, key: 'k' });
      const first = await signIn(a, 'ada');
      server.advance(W);
      server.hold = 'response';
      const late = data(a); // rotates the first session; its answer comes after the switch
      await until(() => server.parked.length === 1, 'the request served');
      server.hold = null;
      server.advance(1);
      const second = await signIn(b, 'bob');
      ok(second.uid === 'bob' && second.since > first.since, 'a sign-in in a signed-in tab starts the later session');
      await until(() => a.session?.client === second.client, 'the first tab to take the new session');
      server.advance(1); // the late answer comes after the sign-in, by any clock
      await server.release();
      await late;
      deepEqual([a.session.client, a.session.uid], [second.client, 'bob'], 'T(1) of the old session is not adopted');
      await data(a);
      equal(server.log.at(-1).client, second.client);
      ok(first.client !== second.client);
    } finally {
      done();
    }
  });

  test('an_asynchronous_store_is_shared_and_a_failing_one_keeps_the_session_in_memory', async () => {
    const { server, make, done } = await setup();
    try {
      const storage = recordingStorage({ delay: true });
      const a = make({ storage, key: 'k' });
      await signIn(a);
      const b = make({ storage, key: 'k' });
      await b.ready;
      equal(b.session?.client, a.session.client, 'a client made later loads the session');
      server.advance(W);
      await data(b);
      await data(a);
      ok((await lastSeen(server)).current, "the first client presents the second's new token");
      const broken = {
        getItem: async () => null,
        setItem: async () => {
          throw new Error('quota');
        },
        removeItem: async () => {},
      };
      const c = make({ storage: broken });
      await signIn(c);
      server.advance(W);
      equal((await data(c)).status, 200);
      equal((await data(c)).status, 200);
      equal(c.session.generation, 1n, 'rotations are kept in memory');
    } finally {
      done();
    }
  });

  test('requests_bypass_the_http_cache_unless_the_caller_chose_a_mode', async () => {
    const { server, make, done } = await setup();
    try {
      const modes = [];
      const c = make({ fetch: (request) => (modes.push(request.cache), server.fetch(request)) });
      await signIn(c);
      await data(c);
      await c.fetch(`${ORIGIN}/data`, { cache: 'reload' });
      await c.fetch(new Request(`${ORIGIN}/data`, { cache: 'no-cache' }));
      await c.signOut(`${ORIGIN}/sign_out`, { method: 'DELETE' });
      deepEqual(modes, ['no-store', 'no-store', 'reload', 'no-cache', 'no-store']);
    } finally {
      done();
    }
  });

  test('a_page_unloading_with_a_rotation_in_flight_is_recovered_by_the_next_page', async () => {
    const scenario = async ({ refresh, delay }) => {
      const { server, make, signedOut, done } = await setup();
      try {
        const storage = memoryStorage();
        const tab = memoryStorage(); // the tab's own, surviving its reload
        const refreshUrl = refresh ? `${ORIGIN}/refresh` : undefined;
        const page = make({ storage, tabStorage: tab, key: 'k', refreshUrl });
        const other = make({ storage, key: 'k' });
        await signIn(page);
        server.advance(W);
        server.hold = 'response';
        void data(page); // rotates to T(1); the page goes before the answer comes
        await until(() => server.parked.length === 1, 'the request served');
        server.hold = null;
        page.close();
        server.parked.length = 0;
        server.advance(delay);
        const next = make({ storage, tabStorage: tab, key: 'k', refreshUrl });
        await next.ready;
        if (refresh && delay < W) await until(() => next.session?.generation === 2n, 'the forced rotation');
        server.advance(W);
        const response = await data(other);
        return { status: response.status, log: server.log.map((e) => e.path), signedOut: signedOut(other) };
      } finally {
        done();
      }
    };
    const recovered = await scenario({ refresh: true, delay: 300 });
    ok(recovered.log.includes('/refresh?unbatch=true'), 'the next page asked for a forced rotation');
    deepEqual([recovered.status, recovered.signedOut], [200, []], 'and the other tab is served after the window');
    // The same story without the recovery loses the session: the test above can fail.
    const lost = await scenario({ refresh: false, delay: 300 });
    deepEqual([lost.status, lost.signedOut], [401, [{ reason: 'refused', elsewhere: false }]], 'without it, the session is lost');
    const late = await scenario({ refresh: true, delay: W });
    ok(!late.log.some((p) => p.startsWith('/refresh')), 'once the window has closed there is nothing to recover');
  });

  test('a_rotation_that_reached_the_server_late_is_recovered_until_a_window_after_the_page_went', async () => {
    const { server, make, signedOut, done } = await setup();
    try {
      const storage = memoryStorage();
      const tab = memoryStorage();
      const refreshUrl = `${ORIGIN}/refresh`;
      const page = make({ storage, tabStorage: tab, key: 'k', refreshUrl });
      const other = make({ storage, key: 'k' });
      await signIn(page);
      server.advance(W);
      server.hold = 'request';
      void data(page); // sent now; the network holds it
      await until(() => server.parked.length === 1, 'the request on the wire');
      server.advance(W / 2);
      page.close(); // the page goes with its request still on the wire
      server.hold = null;
      await server.drop(0); // it arrives and rotates to T(1), half a window after it was sent
      server.advance(W / 2 + W / 4); // more than a window since the send; the rotation's window is open
      const next = make({ storage, tabStorage: tab, key: 'k', refreshUrl });
      await next.ready;
      await until(() => next.session?.generation === 2n, 'the forced rotation');
      server.advance(W);
      const response = await data(other);
      deepEqual([response.status, signedOut(other)], [200, []], 'the other tab is served after the window');
    } finally {
      done();
    }
  });

  return tests;
}
