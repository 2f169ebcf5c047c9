// The package's one test suite. It runs unchanged in Node (node:test), Deno, Bun,
// Chromium and workerd; each runner (test/run-*.js) imports it, hands it the environment
// below, and runs every test once:
//
//   rotauth     the package's main entry (the one the runtime resolves)
//   vectors     the text of the crate's tests/vectors/tokens.txt
//   fetch       (path, init) => Response from the example app (test/app-config.js), in
//               process or over HTTP
//
// Tests of kind 'api' call the package; tests of kind 'http' talk to the example app
// through `fetch` with the real clock (its batch window is WINDOW_MS).
import { Skip, deepEqual, equal, notEqual, ok, rejects, throws } from './assert.js';
import { ORIGIN, WINDOW_MS } from './app-config.js';
import { cookieTests } from './cookie.js';
import { loopTests } from './loop.js';

const T0 = 1_700_000_000_000;
const W = 5_000;
const DAY = 86_400_000;
const KEY = new Uint8Array(32).fill(0x42);
const U64_MAX = (1n << 64n) - 1n;

const hex = (text) => Uint8Array.from(text.match(/../g) ?? [], (b) => parseInt(b, 16));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The record layout of format 1, written by hand: big-endian integers. */
function encodeRecord({ clientId, seed, keyId, generation, created, rotated, expires, flags = 0, version = 0n }) {
  const out = new Uint8Array(75);
  const view = new DataView(out.buffer);
  out[0] = 1;
  out.set(clientId, 1);
  out.set(seed, 17);
  out[33] = keyId;
  view.setBigUint64(34, generation);
  view.setBigUint64(42, BigInt(created));
  view.setBigUint64(50, BigInt(rotated));
  view.setBigUint64(58, BigInt(expires));
  out[66] = flags;
  view.setBigUint64(67, version);
  return out;
}

function parseVectors(text) {
  return text
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#'))
    .map((line) => {
      const [key, keyId, clientId, seed, generation, token] = line.trim().split(/\s+/);
      return { key: hex(key), keyId: Number(keyId), clientId: hex(clientId), seed: hex(seed), generation: BigInt(generation), token };
    });
}

function indexOf(haystack, needle) {
  outer: for (let i = 0; i + needle.length <= haystack.length; i += 1) {
    for (let j = 0; j < needle.length; j += 1) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** The tests, as `{ name, kind, fn }`. */
export function suite(env) {
  const { rotauth } = env;
  const { createRotator, RotauthError, KeyError, ConfigError, RecordError, InputError } = rotauth;
  const tests = [];
  const api = (name, fn) => tests.push({ name, kind: 'api', fn });
  const http = (name, fn) => tests.push({ name, kind: 'http', fn });
  const make = (options = {}) => createRotator({ keys: [{ id: 1, key: KEY }], ...options });

  /** A session at generation `n`, rotated at `T0 + n·2W`; tokens T(0)..T(n). */
  function chain(rotator, n) {
    const signedIn = rotator.signIn(T0);
    let record = signedIn.record;
    const tokens = [signedIn.token];
    for (let g = 1; g <= n; g += 1) {
      const d = rotator.decide(record, tokens.at(-1), T0 + g * 2 * W);
      equal(d.kind, 'rotate');
      record = d.record;
      tokens.push(d.token);
    }
    return { record, tokens, rotatedAt: T0 + n * 2 * W };
  }

  // -- known answers --------------------------------------------------------------------

  api('known_answer_tokens_equal_the_crate_vectors', async () => {
    const vectors = parseVectors(env.vectors);
    ok(vectors.length >= 7, 'vectors parse');
    for (const v of vectors) {
      const rotator = await createRotator({ keys: [{ id: v.keyId, key: v.key }] });
      const record = encodeRecord({ ...v, created: 0, rotated: 0, expires: U64_MAX });
      equal(rotator.currentToken(record), v.token, `T(${v.generation})`);
      if (v.generation === 0n) {
        const signedIn = rotator.signIn(T0, new Uint8Array([...v.clientId, ...v.seed]));
        equal(signedIn.token, v.token, 'sign-in T(0)');
        deepEqual(signedIn.record.subarray(1, 17), v.clientId);
      }
    }
  });

  api('sign_in_returns_record_client_id_and_t0', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    equal(s.record.length, 75);
    ok(/^[A-Za-z0-9_-]{22}$/.test(s.clientId), 'client id is 22 base64url characters');
    ok(/^[A-Za-z0-9_-]{55}$/.test(s.token), 'token is 55 base64url characters');
    equal(s.version, 0n);
    equal(s.expiresAt, T0 + 14 * DAY);
    const info = rotator.inspect(s.record);
    deepEqual([info.clientId, info.generation, info.createdAt, info.rotatedAt, info.keyId], [s.clientId, 0n, T0, T0, 1]);
    notEqual(rotator.signIn(T0).clientId, s.clientId, 'entropy comes from crypto.getRandomValues');
  });

  // -- the decision table ----------------------------------------------------------------

  api('current_token_batch_inside_the_window_rotates_after', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    const batch = rotator.decide(s.record, s.token, T0 + W - 1);
    deepEqual([batch.kind, batch.accepted, batch.record, batch.token, batch.revoke], ['batch_reuse', true, undefined, undefined, false]);
    equal(batch.expiresAt, T0 + 14 * DAY);
    const rotated = rotator.decide(s.record, s.token, T0 + W);
    equal(rotated.kind, 'rotate');
    equal(rotated.version, 1n);
    equal(rotator.inspect(rotated.record).generation, 1n);
    equal(rotated.expiresAt, T0 + W + 14 * DAY);
    notEqual(rotated.token, s.token);
    equal(rotator.currentToken(rotated.record), rotated.token);
  });

  api('previous_and_last_tokens_batch_inside_the_window_and_replay_after', async () => {
    const rotator = await make();
    const { record, tokens, rotatedAt } = chain(rotator, 3);
    for (const [g, behind] of [[2, 1], [1, 2]]) {
      equal(rotator.decide(record, tokens[g], rotatedAt + W - 1).kind, 'batch_reuse', `T(n-${behind}) in window`);
      const late = rotator.decide(record, tokens[g], rotatedAt + W);
      deepEqual([late.kind, late.reason, late.behind, late.revoke], ['reject', 'replayed', behind, false]);
    }
    const old = rotator.decide(record, tokens[0], rotatedAt + 1);
    deepEqual([old.kind, old.reason, old.behind], ['reject', 'replayed', 3]);
  });

  api('a_token_from_the_future_fast_forwards', async () => {
    const rotator = await make();
    // The host lost the write of generation 2: its store still holds generation 1.
    const s = rotator.signIn(T0);
    const r1 = rotator.decide(s.record, s.token, T0 + 2 * W);
    const r2 = rotator.decide(r1.record, r1.token, T0 + 4 * W);
    const ahead = rotator.decide(r1.record, r2.token, T0 + 4 * W + 10);
    equal(ahead.kind, 'batch_reuse');
    const info = rotator.inspect(ahead.record);
    deepEqual([info.generation, info.rotatedAt, info.version], [2n, T0 + 4 * W + 10, 2n], 'the record to store adopts T(2) as current');
    equal(rotator.decide(rotator.signIn(T0).record, r2.token, T0).reason, 'forged', 'only for its own session');
  });

  api('expiry_and_absolute_lifetime_reject', async () => {
    const rotator = await make({ lifespanMs: 60_000, absoluteLifetimeMs: 100_000 });
    const s = rotator.signIn(T0);
    equal(rotator.decide(s.record, s.token, T0 + 60_000).reason, 'expired');
    const r1 = rotator.decide(s.record, s.token, T0 + 50_000);
    equal(r1.kind, 'rotate');
    equal(r1.expiresAt, T0 + 100_000, 'expiry capped by the absolute lifetime');
    equal(rotator.decide(r1.record, r1.token, T0 + 100_000).reason, 'too_old');
  });

  api('rotation_off_accepts_the_sign_in_token_until_it_expires', async () => {
    const rotator = await make({ rotate: false });
    const s = rotator.signIn(T0);
    const d = rotator.decide(s.record, s.token, T0 + 10 * W);
    deepEqual([d.kind, d.accepted, d.token, d.record], ['accept', true, undefined, undefined]);
    equal(rotator.decide(s.record, s.token, T0 + 14 * DAY).reason, 'expired');
  });

  api('unbatch_rotates_the_current_token_inside_the_window', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    const forced = rotator.decide(s.record, s.token, T0 + 1, { unbatch: true });
    equal(forced.kind, 'rotate');
    equal(rotator.decide(s.record, s.token, T0 + 1, { unbatch: false }).kind, 'batch_reuse');
  });

  api(
    'unbatch_rotates_every_batch_member_but_changes_nothing_outside_the_window',
    async () => {
      const rotator = await make();
      const { record, tokens, rotatedAt } = chain(rotator, 2);
      for (const g of [1, 0]) {
        const d = rotator.decide(record, tokens[g], rotatedAt + 1, { unbatch: true });
        equal(d.kind, 'rotate', `T(n-${2 - g}) with unbatch in the window`);
        equal(rotator.inspect(d.record).generation, 3n);
        equal(d.token, rotator.currentToken(d.record));
      }
      const late = rotator.decide(record, tokens[1], rotatedAt + W, { unbatch: true });
      deepEqual([late.kind, late.reason], ['reject', 'replayed']);
    }
  );

  api('recover_mode_reissues_a_lost_token_until_the_new_one_is_used', async () => {
    const rotator = await make({ mode: 'recover' });
    const s = rotator.signIn(T0);
    const r1 = rotator.decide(s.record, s.token, T0 + W);
    const reissued = rotator.decide(r1.record, s.token, T0 + 3 * W);
    deepEqual([reissued.kind, reissued.token], ['reissue', r1.token]);
    // T(1) used inside the window acknowledges it; T(0) can no longer be exchanged.
    const used = rotator.decide(r1.record, r1.token, T0 + W + 1);
    equal(used.kind, 'batch_reuse');
    ok(used.record !== undefined && rotator.inspect(used.record).acknowledged, 'first use recorded');
    const late = rotator.decide(used.record, s.token, T0 + 3 * W);
    deepEqual([late.kind, late.reason], ['reject', 'replayed']);
    equal((await make()).decide(r1.record, s.token, T0 + 3 * W).reason, 'replayed', 'Strict never reissues');
  });

  api(
    'recover_mode_grants_a_recovery_once',
    async () => {
      const rotator = await make({ mode: 'recover' });
      const s = rotator.signIn(T0);
      const r1 = rotator.decide(s.record, s.token, T0 + W);
      const reissued = rotator.decide(r1.record, s.token, T0 + 3 * W);
      equal(reissued.kind, 'reissue');
      ok(reissued.record !== undefined, 'the reissue is recorded');
      ok(rotator.inspect(reissued.record).reissued, 'record marked reissued');
      const r2 = rotator.decide(reissued.record, r1.token, T0 + 5 * W);
      equal(r2.kind, 'rotate');
      // Out of a reissued generation, T(2) starts acknowledged: T(1) is a replay.
      const again = rotator.decide(r2.record, r1.token, T0 + 7 * W);
      deepEqual([again.kind, again.reason], ['reject', 'replayed']);
    }
  );

  api('revoke_policy_tells_the_host_to_delete_the_session', async () => {
    const rotator = await make({ replayPolicy: 'revoke_session' });
    const { record, tokens, rotatedAt } = chain(rotator, 1);
    const d = rotator.decide(record, tokens[0], rotatedAt + W);
    deepEqual([d.kind, d.accepted, d.revoke, d.reason, d.behind, d.record], ['revoke', false, true, 'replayed', 1, undefined]);
    equal(rotator.decide(record, 'x', rotatedAt + W).revoke, false, 'only a replay revokes');
  });

  api('bad_tokens_are_refused_with_their_reason', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    const other = rotator.signIn(T0);
    const reason = (token, record = s.record) => rotator.decide(record, token, T0).reason;
    equal(reason('abc'), 'malformed');
    equal(reason(''), 'malformed');
    equal(reason('!'.repeat(55)), 'malformed');
    equal(reason('é'.repeat(55)), 'malformed');
    equal(reason('A'.repeat(10_000)), 'malformed');
    equal(reason(other.token), 'forged');
    equal(reason(s.token.slice(0, 54) + (s.token[54] === 'A' ? 'Q' : 'A')), 'forged');
    equal(reason('Ag' + s.token.slice(2)), 'unknown_key');
    equal(reason(s.token, null), 'unknown_session');
    equal(reason('abc', null), 'unknown_session', 'no session is checked before the token');
  });

  // -- keys -----------------------------------------------------------------------------

  api('key_rotation_logs_no_one_out', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    const next = new Uint8Array(48).fill(0x17);
    rotator.addKey(2, next);
    deepEqual(rotator.keyIds, [1, 2]);
    equal(rotator.decide(s.record, s.token, T0 + 1).kind, 'batch_reuse', 'a new key changes nothing until primary');
    rotator.setPrimary(2);
    equal(rotator.primaryKeyId, 2);
    const rotated = rotator.decide(s.record, s.token, T0 + W);
    equal(rotated.kind, 'rotate', 'the old key still verifies');
    equal(rotator.inspect(rotated.record).keyId, 2, 'the rotation moves the session to the primary');
    ok(rotated.token.startsWith('Ag'), 'the new token names key 2');
    rotator.removeKey(1);
    equal(rotator.decide(s.record, s.token, T0 + 1).reason, 'unknown_key');
    equal(rotator.decide(rotated.record, rotated.token, T0 + W + 1).kind, 'batch_reuse');
    equal(rotator.signIn(T0).token.slice(0, 2), 'Ag');
    const both = await createRotator({ keys: [{ id: 1, key: KEY }, { id: 2, key: next }], primary: 2 });
    deepEqual(both.keyIds, [2, 1]);
  });

  // -- bad input: a typed error, and nothing changes ---------------------------------------

  api('errors_are_typed_with_a_code', async () => {
    const rotator = await make();
    const e = throws(() => rotator.decide(new Uint8Array(3), 'x', T0), RecordError, 'record_length');
    ok(e instanceof RotauthError && e instanceof Error, 'RotauthError extends Error');
    equal(e.name, 'RecordError');
    equal(typeof e.message, 'string');
  });

  api('bad_records_are_refused_and_nothing_changes', async () => {
    const rotator = await make({ mode: 'recover' });
    const s = rotator.signIn(T0);
    const before = s.record.slice();
    const expected = rotator.decide(s.record, s.token, T0 + W);
    const bad = (patch) => {
      const r = s.record.slice();
      patch(r, new DataView(r.buffer));
      return r;
    };
    throws(() => rotator.decide(s.record.subarray(0, 74), s.token, T0), RecordError, 'record_length');
    throws(() => rotator.decide(new Uint8Array(76), s.token, T0), RecordError, 'record_length');
    throws(() => rotator.decide(bad((r) => (r[0] = 2)), s.token, T0), RecordError, 'record_format');
    throws(() => rotator.decide(bad((r, v) => v.setBigUint64(42, BigInt(T0 + 1))), s.token, T0), RecordError, 'record_invalid');
    throws(() => rotator.decide(bad((r, v) => v.setBigUint64(58, BigInt(T0 - 1))), s.token, T0), RecordError, 'record_invalid');
    throws(() => rotator.decide(bad((r) => (r[66] = 0x80)), s.token, T0), RecordError, 'record_invalid');
    throws(() => rotator.inspect(bad((r) => (r[0] = 0))), RecordError, 'record_format');
    throws(() => rotator.currentToken(new Uint8Array(0)), RecordError, 'record_length');
    throws(() => rotator.decide('not bytes', s.token, T0), InputError, 'invalid_record');
    deepEqual(s.record, before, 'the input record is never written');
    deepEqual(rotator.decide(s.record, s.token, T0 + W), expected, 'the rotator decides as before');
  });

  api(
    'records_no_decision_can_produce_are_refused',
    async () => {
      const rotator = await make();
      const s = rotator.signIn(T0);
      const r = s.record.slice();
      new DataView(r.buffer).setBigUint64(50, BigInt(T0 + 1)); // generation 0, rotated_at ≠ created_at
      throws(() => rotator.decide(r, s.token, T0 + 2), RecordError, 'record_invalid');
      const reissuedAtZero = s.record.slice();
      reissuedAtZero[66] = 2;
      throws(() => rotator.inspect(reissuedAtZero), RecordError, 'record_invalid');
    }
  );

  api('bad_arguments_are_refused_and_nothing_changes', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    const expected = rotator.decide(s.record, s.token, T0 + W);
    for (const now of [-1, 1.5, Number.NaN, Infinity, '1700000000000', null, 1n << 64n, -1n]) {
      throws(() => rotator.decide(s.record, s.token, now), InputError, 'invalid_time');
      throws(() => rotator.signIn(now), InputError, 'invalid_time');
    }
    equal(rotator.decide(s.record, s.token, BigInt(T0 + 1)).kind, 'batch_reuse', 'bigint time');
    equal(rotator.decide(s.record, s.token, new Date(T0 + 1)).kind, 'batch_reuse', 'Date time');
    for (const token of [undefined, null, 42, new Uint8Array(55)]) {
      throws(() => rotator.decide(s.record, token, T0), InputError, 'invalid_token');
    }
    throws(() => rotator.signIn(T0, new Uint8Array(31)), InputError, 'invalid_entropy');
    throws(() => rotator.signIn(T0, new Uint8Array(33)), InputError, 'invalid_entropy');
    throws(() => rotator.signIn(T0, 'random'), InputError, 'invalid_entropy');
    throws(() => rotator.addKey(2, new Uint8Array(31)), KeyError, 'key_too_short');
    throws(() => rotator.addKey(2, new Uint8Array(257)), KeyError, 'key_too_long');
    throws(() => rotator.addKey(256, KEY), KeyError, 'invalid_key_id');
    throws(() => rotator.addKey(-1, KEY), KeyError, 'invalid_key_id');
    throws(() => rotator.addKey(1, KEY), KeyError, 'duplicate_key_id');
    throws(() => rotator.setPrimary(9), KeyError, 'unknown_key_id');
    throws(() => rotator.removeKey(1), KeyError, 'removing_primary');
    throws(() => rotator.removeKey(9), KeyError, 'unknown_key_id');
    rotator.addKey(2, KEY);
    rotator.addKey(3, KEY);
    rotator.addKey(4, KEY);
    throws(() => rotator.addKey(5, KEY), KeyError, 'keyring_full');
    deepEqual(rotator.keyIds, [1, 2, 3, 4]);
    deepEqual(rotator.decide(s.record, s.token, T0 + W), expected, 'the rotator decides as before');
  });

  api('bad_policies_are_refused_when_the_rotator_is_made', async () => {
    await rejects(make({ lifespanMs: 0 }), ConfigError, 'zero_lifespan');
    await rejects(make({ absoluteLifetimeMs: 0 }), ConfigError, 'zero_absolute_lifetime');
    await rejects(make({ batchWindowMs: 10_000, lifespanMs: 9_999 }), ConfigError, 'window_longer_than_lifespan');
    await rejects(make({ mode: 'lenient' }), InputError, 'invalid_option');
    await rejects(make({ replayPolicy: 'revoke' }), InputError, 'invalid_option');
    await rejects(make({ rotate: 'yes' }), InputError, 'invalid_option');
    await rejects(make({ batchWindowMs: -5 }), InputError, 'invalid_time');
    await rejects(createRotator({ keys: [] }), InputError, 'invalid_option');
    await rejects(createRotator({ keys: [{ id: 1, key: new Uint8Array(8) }] }), KeyError, 'key_too_short');
    await rejects(createRotator({ keys: [{ id: 1, key: KEY }], primary: 2 }), KeyError, 'unknown_key_id');
    await rejects(createRotator({ keys: [{ id: 1, key: KEY }, { id: 1, key: KEY }] }), KeyError, 'duplicate_key_id');
    await rejects(createRotator(undefined), InputError, 'invalid_option');
    const zeroWindow = await make({ batchWindowMs: 0 });
    const s = zeroWindow.signIn(T0);
    equal(zeroWindow.decide(s.record, s.token, T0).kind, 'rotate', 'a zero window rotates every request');
  });

  api(
    'an_absolute_lifetime_shorter_than_the_window_is_refused',
    async () => {
      await rejects(make({ batchWindowMs: 5_000, absoluteLifetimeMs: 4_999 }), ConfigError, 'absolute_lifetime_shorter_than_window');
    }
  );

  api('disposed_rotators_are_wiped_and_refuse_calls', async () => {
    const rotator = await make();
    const s = rotator.signIn(T0);
    rotator.dispose();
    ok(new Uint8Array(rotauth.wasmMemory(rotator).buffer).every((b) => b === 0), 'memory zeroed');
    throws(() => rotator.decide(s.record, s.token, T0), InputError, 'disposed');
  });

  // -- secrets --------------------------------------------------------------------------

  api('no_key_seed_record_or_token_is_left_in_linear_memory', async () => {
    const key = Uint8Array.from({ length: 40 }, (_, i) => 0x80 + i);
    const extra = Uint8Array.from({ length: 32 }, (_, i) => 0xc0 + i);
    const entropy = Uint8Array.from({ length: 32 }, (_, i) => 0x10 + i);
    const rotator = await createRotator({ keys: [{ id: 1, key }], mode: 'recover' });
    const memory = () => new Uint8Array(rotauth.wasmMemory(rotator).buffer);
    const ascii = (text) => new TextEncoder().encode(text);
    const s = rotator.signIn(T0, entropy);
    const seed = entropy.subarray(16);
    const rotated = rotator.decide(s.record, s.token, T0 + W);
    rotator.decide(rotated.record, s.token, T0 + 3 * W); // reissue
    rotator.decide(rotated.record, rotated.token, T0 + W + 1);
    rotator.currentToken(rotated.record);
    rotator.addKey(2, extra);
    const secrets = {
      key: key.subarray(0, 16),
      'added key': extra.subarray(0, 16),
      seed,
      'seed, second half': seed.subarray(8),
      'client id': entropy.subarray(0, 16),
      'record': s.record.subarray(0, 34),
      'T(0)': ascii(s.token).subarray(0, 16),
      'T(1)': ascii(rotated.token).subarray(0, 16),
      'T(1) MAC': ascii(rotated.token).subarray(20),
    };
    // The needles are real: each is found where it must be.
    ok(indexOf(s.record, seed) === 17 && indexOf(rotated.record, seed) === 17, 'the seed is in the records');
    const copy = memory().slice();
    copy.set(s.record, 1000);
    ok(indexOf(copy, seed) === 1017, 'a search of memory finds a planted seed');
    for (const [name, needle] of Object.entries(secrets)) {
      equal(indexOf(memory(), needle), -1, `${name} left in linear memory`);
    }
  });

  // -- the request loop: the Hono middleware driving rotauth's exchange ------------------

  loopTests(env, api, make);

  // -- the middleware's cookie transport --------------------------------------------------

  cookieTests(env, api, make);

  // -- the example app over HTTP (devise headers) -----------------------------------------

  const json = (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const authHeaders = (from) => ({
    'access-token': from.get('access-token'),
    client: from.get('client'),
    uid: from.get('uid'),
  });
  let users = 0;
  async function signUp() {
    const email = `user${(users += 1)}-${Math.random().toString(36).slice(2)}@example.com`;
    const response = await env.fetch('/auth', json({ email, password: 'correct horse', password_confirmation: 'correct horse' }));
    equal(response.status, 200, 'sign up');
    await response.json();
    return { email, headers: response.headers };
  }

  http('devise_sign_up_sign_in_and_validate', async () => {
    const { email } = await signUp();
    const refused = await env.fetch('/auth/sign_in', json({ email, password: 'wrong horse' }));
    equal(refused.status, 401);
    deepEqual(await refused.json(), { success: false, errors: ['Invalid login credentials. Please try again.'] });
    const response = await env.fetch('/auth/sign_in', json({ email, password: 'correct horse' }));
    equal(response.status, 200);
    deepEqual((await response.json()).data.email, email);
    const h = response.headers;
    ok(/^[A-Za-z0-9_-]{55}$/.test(h.get('access-token')), 'access-token');
    deepEqual([h.get('token-type'), h.get('uid'), h.get('cache-control')], ['Bearer', email, 'no-store']);
    ok(/^\d+$/.test(h.get('expiry')), 'expiry in seconds');
    const valid = await env.fetch('/auth/validate_token', { headers: authHeaders(h) });
    equal(valid.status, 200);
    const { success, data } = await valid.json();
    deepEqual([success, data.email, data.uid, data.provider], [true, email, email, 'email']);
    const invalid = await env.fetch('/auth/validate_token', { headers: { ...authHeaders(h), 'access-token': 'nope' } });
    equal(invalid.status, 401);
    deepEqual(await invalid.json(), { success: false, errors: ['Invalid login credentials'] });
  });

  http('devise_batch_rotation_unbatch_and_replay', async () => {
    const { email, headers } = await signUp();
    const first = authHeaders(headers);
    const batch = await env.fetch('/demo/members_only', { headers: first });
    equal(batch.status, 200);
    // devise sends " "; Fetch's Headers trim values, and so does every HTTP parser: "".
    deepEqual([batch.headers.get('access-token').trim(), batch.headers.get('expiry').trim()], ['', ''], 'a batch response carries blanks');
    equal((await batch.json()).data.message, `Welcome ${email}`);
    // A client that stored the blank sends it back: a blank token counts as absent.
    const blank = await env.fetch('/demo/members_only', { headers: { ...first, 'access-token': ' ' } });
    equal(blank.status, 401);
    deepEqual(await blank.json(), { errors: ['You need to sign in or sign up before continuing.'] });
    const forced = await env.fetch('/demo/members_only?unbatch=true', { headers: first });
    equal(forced.status, 200);
    const second = forced.headers.get('access-token');
    ok(second.trim() !== '' && second !== first['access-token'], 'unbatch=true rotates inside the window');
    await sleep(WINDOW_MS + 100);
    const replay = await env.fetch('/demo/members_only', { headers: first });
    equal(replay.status, 401, 'the previous token after the window is a replay');
    // The Authorization form carries all five fields.
    const bearer = forced.headers.get('authorization');
    ok(bearer.startsWith('Bearer '), 'authorization header on a response with a token');
    const rotated = await env.fetch('/demo/members_only', { headers: { authorization: bearer } });
    equal(rotated.status, 200);
    const third = rotated.headers.get('access-token');
    ok(third.trim() !== '' && third !== second, 'after the window the current token rotates');
  });

  http('devise_a_burst_of_parallel_requests_rotates_once', async () => {
    const { headers } = await signUp();
    const first = authHeaders(headers);
    await sleep(WINDOW_MS + 100);
    const responses = await Promise.all(Array.from({ length: 16 }, () => env.fetch('/demo/members_only', { headers: first })));
    deepEqual(responses.map((r) => r.status), Array(16).fill(200), 'every request is served');
    await Promise.all(responses.map((r) => r.arrayBuffer()));
    const tokens = responses.map((r) => r.headers.get('access-token')).filter((t) => t.trim() !== '');
    equal(tokens.length, 1, 'exactly one response carries a new token');
    const next = await env.fetch('/demo/members_only', { headers: { ...first, 'access-token': tokens[0] } });
    deepEqual([next.status, next.headers.get('access-token').trim()], [200, ''], 'the new token is current and in its window');
  });

  http('devise_cors_exposes_the_auth_headers', async () => {
    // Browsers drop the Origin header from requests that scripts make: nothing to send.
    if (new Request('http://x.test/', { headers: { origin: ORIGIN } }).headers.get('origin') === null) {
      throw new Skip('this runtime does not let a script set the Origin header');
    }
    const preflight = await env.fetch('/demo/members_only', {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'access-token, client, uid, if-modified-since' },
    });
    equal(preflight.status, 204);
    equal(preflight.headers.get('access-control-allow-origin'), ORIGIN);
    ok(/if-modified-since/i.test(preflight.headers.get('access-control-allow-headers') ?? ''), 'any request header allowed');
    const { headers } = await signUp();
    const response = await env.fetch('/demo/members_only', { headers: { ...authHeaders(headers), origin: ORIGIN } });
    equal(response.status, 200);
    const exposed = (response.headers.get('access-control-expose-headers') ?? '').toLowerCase();
    for (const name of ['access-token', 'client', 'uid', 'expiry', 'token-type', 'authorization']) ok(exposed.includes(name), `${name} exposed`);
    const other = await env.fetch('/demo/members_only', { headers: { ...authHeaders(headers), origin: 'https://evil.example' } });
    equal(other.headers.get('access-control-allow-origin'), null, 'other origins are not allowed');
  });

  http('devise_sign_out', async () => {
    const { headers } = await signUp();
    const out = await env.fetch('/auth/sign_out', { method: 'DELETE', headers: authHeaders(headers) });
    equal(out.status, 200);
    deepEqual(await out.json(), { success: true });
    const again = await env.fetch('/auth/sign_out', { method: 'DELETE', headers: authHeaders(headers) });
    equal(again.status, 404);
    deepEqual(await again.json(), { success: false, errors: ['User was not found or was not logged in.'] });
    equal((await env.fetch('/demo/members_only', { headers: authHeaders(headers) })).status, 401);
  });

  return tests;
}

/** Runs `tests` one after the other; prints one line each and the closing count. */
export async function runAll(tests, log = console.log) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const { name, fn } of tests) {
    try {
      await fn();
      passed += 1;
      log(`test ${name} ... ok`);
    } catch (error) {
      if (error instanceof Skip || error?.name === 'Skip') {
        skipped += 1;
        log(`test ${name} ... skipped: ${error.message}`);
        continue;
      }
      failed += 1;
      log(`test ${name} ... FAILED\n${error?.stack ?? error}`);
    }
  }
  log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
  return { passed, failed, skipped };
}
