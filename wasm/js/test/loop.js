// The suite's tests of the request loop: the Hono middleware (`rotauth/hono`) driving
// rotauth's exchange through the WebAssembly module, against stores that lose swaps, fail,
// or stall. Each test names the rule it holds the loop to; every rule is the exchange's,
// so each would fail if the middleware (or the module) kept it another way.
import { deepEqual, equal, notEqual, ok, throws } from './assert.js';

const T0 = 1_700_000_000_000;
const W = 5_000;
const UID = 'a@example.com';

/** Adds the loop's tests through `api(name, fn)`; `make(options)` makes a rotator. */
export function loopTests(env, api, make) {
  const { MemoryStore, authenticate, check, rotauth, unavailableResponse, UNAVAILABLE_BODY } = env.hono;

  /** A session signed in at T0 in `store`, and a request presenting `token` for it. */
  async function signedIn(rotator, store) {
    const s = rotator.signIn(T0);
    await store.insert(s.clientId, { uid: UID, version: s.version, record: s.record });
    const request = (token = s.token, { uid = UID, query = '' } = {}) =>
      new Request(`http://example.test/demo${query}`, { headers: { 'access-token': token, client: s.clientId, uid } });
    return { ...s, request };
  }

  /** Runs the middleware on `request` as Hono would; the response it answers itself, if any. */
  async function middleware(options, request) {
    const c = {
      req: { raw: request },
      vars: {},
      set(name, value) {
        this.vars[name] = value;
      },
      json: (body, status) => new Response(JSON.stringify(body), { status }),
      res: new Response('handler'),
    };
    const answered = await rotauth(options)(c, async () => {});
    return answered ?? c.res;
  }

  api('a_burst_of_parallel_requests_rotates_once', async () => {
    const rotator = await make();
    const store = new MemoryStore();
    const s = await signedIn(rotator, store);
    const options = { rotator, store, clock: () => T0 + W };
    const results = await Promise.all(Array.from({ length: 24 }, () => authenticate(options, s.request())));
    ok(results.every((r) => r.ok), 'every request is served');
    const sent = results.map((r) => r.headers.get('access-token')).filter((t) => t.trim() !== '');
    equal(sent.length, 1, 'exactly one response carries a new token');
    equal(results.filter((r) => r.kind === 'rotate').length, 1, 'exactly one rotation');
    const stored = await store.get(s.clientId);
    deepEqual([rotator.inspect(stored.record).generation, stored.version], [1n, 1n]);
    equal(rotator.currentToken(stored.record), sent[0]);
  });

  api('echo_current_never_upgrades_a_token_two_generations_old', async () => {
    const rotator = await make();
    const store = new MemoryStore();
    const s = await signedIn(rotator, store);
    let now = T0;
    const options = { rotator, store, clock: () => now, echoCurrent: true };
    // Rotate once after the window, then again inside it with unbatch: T(0), T(1), T(2).
    now = T0 + W + 1;
    const first = await authenticate(options, s.request());
    equal(first.kind, 'rotate');
    const t1 = first.headers.get('access-token');
    now += 1;
    const second = await authenticate(options, s.request(t1, { query: '?unbatch=true' }));
    equal(second.kind, 'rotate');
    const t2 = second.headers.get('access-token');
    // T(0) is in the window, two generations back: served as a batch member, sent no token.
    now += 1;
    const stale = await authenticate(options, s.request());
    equal(stale.kind, 'batch_reuse');
    equal(stale.headers.get('access-token').trim(), '', 'T(n-2) is not upgraded to T(n)');
    // T(1) and T(2) are sent T(2).
    for (const held of [t1, t2]) {
      const member = await authenticate(options, s.request(held));
      equal(member.kind, 'batch_reuse');
      equal(member.headers.get('access-token'), t2);
    }
    equal(rotator.batchToken((await store.get(s.clientId)).record, 'not a token'), undefined);
  });

  api('lost_swaps_are_bounded_then_503_with_retry_after_and_no_token', async () => {
    const rotator = await make();
    equal(rotator.maxAttempts, 4, "rotauth's bound, as the Rust layer keeps it");
    // A store that always loses its swaps: exactly maxAttempts decisions, then 503.
    class Losing extends MemoryStore {
      loads = 0;
      async get(id) {
        this.loads += 1;
        return super.get(id);
      }
      async compareAndSwap() {
        return false;
      }
    }
    const store = new Losing();
    const s = await signedIn(rotator, store);
    const options = { rotator, store, clock: () => T0 + W + 1 };
    const lost = await authenticate(options, s.request());
    deepEqual([lost.ok, lost.status, lost.reason, store.loads], [false, 503, 'store_conflict', 4]);
    const response = await middleware(options, s.request());
    deepEqual([response.status, response.headers.get('retry-after')], [503, '1']);
    equal(response.headers.get('access-token'), null, 'a 503 carries no token');
    deepEqual(await response.json(), UNAVAILABLE_BODY);
    deepEqual(UNAVAILABLE_BODY, { errors: ['Service unavailable, please try again later.'] });
    store.loads = 0;
    const bounded = await authenticate({ ...options, maxAttempts: 2 }, s.request());
    deepEqual([bounded.reason, store.loads], ['store_conflict', 2], 'the bound is an option');
  });

  api('a_store_failing_on_load_is_tried_again_within_its_patience_then_503', async () => {
    const rotator = await make();
    class Flaky extends MemoryStore {
      failures = 0;
      loads = 0;
      async get(id) {
        this.loads += 1;
        if (this.failures > 0) {
          this.failures -= 1;
          throw new Error('connection refused');
        }
        return super.get(id);
      }
    }
    const store = new Flaky();
    const s = await signedIn(rotator, store);
    const options = { rotator, store, clock: () => T0 + W, storePatienceMs: 2_000 };
    store.failures = 2;
    const served = await authenticate(options, s.request());
    deepEqual([served.ok, served.kind, store.loads], [true, 'rotate', 3], 'served once the store is back');
    equal(served.headers.get('access-token'), rotator.currentToken((await store.get(s.clientId)).record));
    store.failures = Infinity;
    store.loads = 0;
    const failed = await authenticate({ ...options, storePatienceMs: 40 }, s.request());
    deepEqual([failed.ok, failed.status, failed.reason], [false, 503, 'store_failed']);
    ok(store.loads > 1, 'tried again before giving up');
    const response = await middleware({ ...options, storePatienceMs: 0 }, s.request());
    deepEqual([response.status, response.headers.get('retry-after'), response.headers.get('access-token')], [503, '1', null]);
  });

  api('a_compare_and_swap_that_failed_before_writing_is_decided_again', async () => {
    const rotator = await make();
    class Failing extends MemoryStore {
      failures = 1;
      async compareAndSwap(...args) {
        if (this.failures > 0) {
          this.failures -= 1;
          throw new Error('timeout');
        }
        return super.compareAndSwap(...args);
      }
    }
    const store = new Failing();
    const s = await signedIn(rotator, store);
    const options = { rotator, store, clock: () => T0 + W, storePatienceMs: 2_000 };
    const served = await authenticate(options, s.request());
    const stored = await store.get(s.clientId);
    deepEqual([served.ok, served.kind, rotator.inspect(stored.record).generation], [true, 'rotate', 1n]);
    equal(served.headers.get('access-token'), rotator.currentToken(stored.record), 'the stored rotation is the one sent');
    store.failures = Infinity;
    const failed = await authenticate({ ...options, clock: () => T0 + 3 * W, storePatienceMs: 30 }, s.request(served.headers.get('access-token')));
    deepEqual([failed.status, failed.reason, failed.headers], [503, 'store_failed', undefined]);
  });

  api('a_swap_that_landed_but_reported_failure_is_read_back_and_its_token_sent', async () => {
    const rotator = await make();
    // The write lands, then the connection drops before the acknowledgement.
    class Unacknowledged extends MemoryStore {
      failures = 1;
      async compareAndSwap(...args) {
        const swapped = await super.compareAndSwap(...args);
        if (this.failures > 0) {
          this.failures -= 1;
          throw new Error('connection reset');
        }
        return swapped;
      }
    }
    const store = new Unacknowledged();
    const s = await signedIn(rotator, store);
    const served = await authenticate({ rotator, store, clock: () => T0 + W, storePatienceMs: 2_000 }, s.request());
    const stored = await store.get(s.clientId);
    deepEqual([served.ok, served.kind, rotator.inspect(stored.record).generation, stored.version], [true, 'rotate', 1n, 1n]);
    // Decided again instead, the request would be a batch member of its own rotation and
    // send no token: the client would keep T(0), a replay once the window is over.
    equal(served.headers.get('access-token'), rotator.currentToken(stored.record), 'the landed rotation is sent');
  });

  api('a_revocation_whose_delete_fails_is_503_and_deletes_on_a_retry', async () => {
    const rotator = await make({ replayPolicy: 'revoke_session' });
    class Failing extends MemoryStore {
      failures = 1;
      async delete(id) {
        if (this.failures > 0) {
          this.failures -= 1;
          throw new Error('connection refused');
        }
        return super.delete(id);
      }
    }
    const store = new Failing();
    const s = await signedIn(rotator, store);
    const rotated = await authenticate({ rotator, store, clock: () => T0 + W }, s.request());
    equal(rotated.kind, 'rotate');
    const replay = { rotator, store, clock: () => T0 + 2 * W, storePatienceMs: 0 };
    const failed = await authenticate(replay, s.request());
    deepEqual([failed.status, failed.reason], [503, 'store_failed'], 'not refused before the session is gone');
    equal(store.size, 1);
    const revoked = await authenticate({ ...replay, storePatienceMs: 2_000 }, s.request());
    deepEqual([revoked.status, revoked.reason, revoked.revoked, store.size], [401, 'replayed', true, 0]);
  });

  api('a_uid_that_is_not_the_sessions_is_refused_as_such', async () => {
    const rotator = await make();
    class Counting extends MemoryStore {
      swaps = 0;
      async compareAndSwap(...args) {
        this.swaps += 1;
        return super.compareAndSwap(...args);
      }
    }
    const store = new Counting();
    const s = await signedIn(rotator, store);
    const options = { rotator, store, clock: () => T0 + W + 1 };
    const mismatch = await authenticate(options, s.request(s.token, { uid: 'b@example.com' }));
    deepEqual([mismatch.status, mismatch.reason, store.swaps], [401, 'user_mismatch', 0], 'refused before anything is stored');
    const checked = await check(options, s.request(s.token, { uid: 'b@example.com' }));
    deepEqual([checked.status, checked.reason], [401, 'user_mismatch']);
    const unknown = await authenticate(options, new Request('http://example.test/', { headers: { 'access-token': s.token, client: 'AAAAAAAAAAAAAAAAAAAAAA', uid: UID } }));
    deepEqual([unknown.status, unknown.reason], [401, 'unknown_session']);
    const response = await middleware(options, s.request(s.token, { uid: 'b@example.com' }));
    equal(response.status, 401);
    equal((await authenticate(options, s.request())).kind, 'rotate', 'the owner is served');
  });

  api('the_middleware_reads_credentials_checks_without_storing_and_refuses_corrupt_records', async () => {
    const rotator = await make();
    const store = new MemoryStore();
    const s = await signedIn(rotator, store);
    const options = { rotator, store, clock: () => T0 + 1 };
    // Credentials in the query string when the headers are absent, as devise reads params.
    const query = `?access-token=${encodeURIComponent(s.token)}&client=${s.clientId}&uid=a%40example.com`;
    ok((await authenticate(options, new Request(`http://example.test/demo${query}`))).ok, 'credentials from the query string');
    // A check stores nothing.
    const before = (await store.get(s.clientId)).version;
    const checked = await check({ ...options, clock: () => T0 + W + 1 }, s.request());
    ok(checked.ok && checked.headers === undefined, 'a check sends no headers');
    deepEqual([checked.kind, (await store.get(s.clientId)).version], ['rotate', before], 'a check stores nothing');
    // A record that is not one is refused, not thrown.
    const corrupt = new MemoryStore();
    await corrupt.insert(s.clientId, { uid: UID, version: 0n, record: new Uint8Array(75) });
    const refused = await authenticate({ ...options, store: corrupt }, s.request());
    deepEqual([refused.status, refused.reason], [401, 'corrupt_record']);
    // A store may hand the record back as an ArrayBuffer.
    const raw = { get: async () => ({ uid: UID, version: 0n, record: s.record.slice().buffer }) };
    equal((await authenticate({ ...options, store: raw }, s.request())).kind, 'batch_reuse');
    const response = unavailableResponse();
    deepEqual([response.status, response.headers.get('retry-after')], [503, '1']);
  });

  api('the_exchange_table_is_bounded_and_a_full_one_answers_503', async () => {
    const rotator = await make();
    const capacity = rotator.exchangeCapacity;
    ok(capacity >= 64, 'room for the requests of a busy process');
    // A store whose loads wait until released: every request holds its exchange.
    class Stalled extends MemoryStore {
      waiting = [];
      async get(id) {
        await new Promise((resolve) => this.waiting.push(resolve));
        return super.get(id);
      }
    }
    const store = new Stalled();
    const s = await signedIn(rotator, store);
    const options = { rotator, store, clock: () => T0 + 1 };
    const held = Array.from({ length: capacity }, () => authenticate(options, s.request()));
    await new Promise((resolve) => setTimeout(resolve, 0));
    equal(store.waiting.length, capacity, 'every request is waiting on its load');
    const full = await authenticate(options, s.request());
    deepEqual([full.ok, full.status, full.reason], [false, 503, 'exchanges_full']);
    const response = await middleware(options, s.request());
    deepEqual([response.status, response.headers.get('retry-after')], [503, '1']);
    throws(() => rotator.exchange(s.token, T0), env.rotauth.ExchangeError, 'exchanges_full');
    for (const release of store.waiting.splice(0)) release();
    const results = await Promise.all(held);
    ok(results.every((r) => r.ok && r.kind === 'batch_reuse'), 'the held requests are served');
    // Every answer freed its slot: the table is empty again.
    const again = Array.from({ length: capacity }, () => authenticate(options, s.request()));
    await new Promise((resolve) => setTimeout(resolve, 0));
    equal(store.waiting.length, capacity, 'the whole table is free again');
    for (const release of store.waiting.splice(0)) release();
    ok((await Promise.all(again)).every((r) => r.ok), 'served');
  });

  api('failed_and_abandoned_requests_free_their_exchanges', async () => {
    const rotator = await make();
    class Broken extends MemoryStore {
      async get() {
        throw new Error('connection refused');
      }
    }
    const s = rotator.signIn(T0);
    const request = () => new Request('http://example.test/', { headers: { 'access-token': s.token, client: s.clientId, uid: UID } });
    const options = { rotator, store: new Broken(), clock: () => T0, storePatienceMs: 0 };
    for (let i = 0; i < rotator.exchangeCapacity + 8; i += 1) {
      const failed = await authenticate(options, request());
      equal(failed.reason, 'store_failed', `request ${i}`);
    }
    // A host that stops driving an exchange closes it; its handle is then unknown.
    for (let i = 0; i < rotator.exchangeCapacity + 8; i += 1) rotator.exchange(s.token, T0).close();
    const exchange = rotator.exchange(s.token, T0);
    equal(exchange.step.kind, 'load');
    exchange.close();
    ok(exchange.done, 'closed');
    throws(() => exchange.loaded(s.record), env.rotauth.ExchangeError, 'unknown_exchange');
  });

  api('an_exchange_driven_by_hand_stores_before_it_answers', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    const exchange = rotator.exchange(s.token, T0 + W);
    const store = exchange.loaded(s.record);
    equal(store.kind, 'store');
    deepEqual([store.expectedVersion, store.version, rotator.inspect(store.record).generation], [0n, 1n, 1n]);
    const { kind, answer } = exchange.swapped(true);
    equal(kind, 'answer');
    deepEqual([answer.kind, answer.decision, answer.reply, answer.lostSwaps], ['serve', 'rotate', 'new_token', 0]);
    equal(answer.token, rotator.currentToken(store.record));
    equal(answer.expiresAt, rotator.inspect(store.record).expiresAt);
    ok(exchange.done, 'an answer ends the exchange');
    throws(() => exchange.swapped(true), env.rotauth.ExchangeError, 'unknown_exchange');
    // A replay is refused with its reason; a check answers without asking to store.
    const replay = rotator.exchange(s.token, T0 + 3 * W).loaded(store.record).answer;
    deepEqual([replay.kind, replay.refusal, replay.reason, replay.behind], ['refuse', 'rejected', 'replayed', 1]);
    const checked = rotator.exchange(answer.token, T0 + 3 * W, { check: true }).loaded(store.record).answer;
    deepEqual([checked.kind, checked.decision], ['accepted', 'rotate']);
    const malformed = rotator.exchange('nope', T0).loaded(s.record).answer;
    deepEqual([malformed.refusal, malformed.reason], ['rejected', 'malformed']);
    notEqual(rotator.exchange(s.token, T0).loaded(null).answer.reason, 'malformed', 'no session is refused as such');
    throws(() => rotator.exchange(s.token, T0, { batchToken: 'newest' }), env.rotauth.InputError, 'invalid_option');
  });

  api('ended_exchanges_leave_no_seed_record_or_token_in_linear_memory', async () => {
    const rotator = await make();
    const entropy = Uint8Array.from({ length: 32 }, (_, i) => 0x30 + i);
    const seed = entropy.subarray(16);
    const s = rotator.signIn(T0, entropy);
    const ascii = (text) => new TextEncoder().encode(text);
    const memory = () => new Uint8Array(env.rotauth.wasmMemory(rotator).buffer);
    // An exchange left before its answer, alive while the others run (so that they use
    // another slot of the table); one served after a lost swap; a replay refused; last, a
    // swap whose fate is unknown, read back: each moves records and tokens around its slot.
    const open = rotator.exchange(s.token, T0 + W);
    equal(open.loaded(s.record).kind, 'store');
    const served = rotator.exchange(s.token, T0 + W);
    served.loaded(s.record);
    const next = served.swapped(false).kind === 'load' ? served.loaded(s.record) : undefined;
    equal(next.kind, 'store');
    const { answer } = served.swapped(true);
    equal(rotator.exchange(s.token, T0 + 9 * W).loaded(next.record).answer.reason, 'replayed');
    const unknown = rotator.exchange(answer.token, T0 + 3 * W);
    const write = unknown.loaded(next.record);
    equal(unknown.swapFailed().kind, 'store_failed');
    equal(unknown.retry().kind, 'load');
    equal(unknown.loaded(write.record).answer.token, rotator.currentToken(write.record), 'read back');
    ok(indexOf(memory(), seed) !== -1, 'a live exchange holds its records');
    open.close();
    const secrets = { seed, 'T(0)': ascii(s.token).subarray(0, 16), 'T(1)': ascii(answer.token).subarray(0, 16), 'T(2)': ascii(rotator.currentToken(write.record)).subarray(0, 16) };
    for (const [name, needle] of Object.entries(secrets)) equal(indexOf(memory(), needle), -1, `${name} left in linear memory`);
  });
}

function indexOf(haystack, needle) {
  outer: for (let i = 0; i + needle.length <= haystack.length; i += 1) {
    for (let j = 0; j < needle.length; j += 1) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
