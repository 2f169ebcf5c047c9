// The client's pure functions: token text, the order of sessions, `Retry-After`. Part of
// the client's suite (suite.js), checked against the crate's known-answer vectors.
import { deepEqual, equal, ok } from '../assert.js';

const base64url = (bytes) => btoa(String.fromCharCode(...bytes)).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');

/** Token text of `generation`, written from the format (key id ‖ n ‖ MAC), not by the client. */
function tokenOf(generation, keyId = 1) {
  const bytes = new Uint8Array(41).fill(7);
  bytes[0] = keyId;
  new DataView(bytes.buffer).setBigUint64(1, BigInt(generation));
  return base64url(bytes);
}

/** The generation token text claims, decoded here without the client's code. */
export function generationOf(token) {
  const binary = atob(token.slice(0, 12).replaceAll('-', '+').replaceAll('_', '/'));
  return new DataView(Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer).getBigUint64(1);
}

function parseVectors(text) {
  return text
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#'))
    .map((line) => {
      const [, keyId, , , generation, token] = line.trim().split(/\s+/);
      return { keyId: Number(keyId), generation: BigInt(generation), token };
    });
}

/** The tests of the pure functions, as `{ name, kind, fn }`. */
export function formatTests(env) {
  const { newer, readToken, retryAfterMs, sameSession, tokenGeneration } = env.client;
  const tests = [];
  const test = (name, fn) => tests.push({ name, kind: 'client', fn });

  test('token_generation_reads_the_crate_vectors', () => {
    const vectors = parseVectors(env.vectors);
    ok(vectors.length >= 7, 'vectors parse');
    for (const v of vectors) {
      deepEqual(readToken(v.token), { keyId: v.keyId, generation: v.generation }, `T(${v.generation})`);
      equal(tokenGeneration(v.token), v.generation);
    }
    equal(tokenGeneration(tokenOf((1n << 64n) - 1n, 255)), (1n << 64n) - 1n, 'u64::MAX');
  });

  test('token_generation_refuses_what_the_server_refuses_as_malformed', () => {
    const good = parseVectors(env.vectors)[1].token;
    ok(tokenGeneration(good) !== undefined, 'the control parses');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const trailing = good.slice(0, -1) + alphabet[alphabet.indexOf(good.at(-1)) | 1];
    for (const [what, text] of [
      ['one short', good.slice(1)],
      ['one long', `${good}A`],
      ['padding', `${good.slice(0, -1)}=`],
      ['standard base64', `+${good.slice(1)}`],
      ['a blank', ` ${good.slice(1)}`],
      ['non-zero trailing bits', trailing],
      ['empty', ''],
      ['not text', 42],
    ]) {
      equal(tokenGeneration(text), undefined, what);
    }
  });

  test('newer_orders_generations_then_ends_then_sign_ins', () => {
    const at = (generation, since = 1, client = 'C1', uid) => ({ client, uid, since, token: tokenOf(generation) });
    ok(newer(at(3), at(2)) && !newer(at(2), at(3)), 'a higher generation of one session is newer');
    ok(!newer(at(2), at(2)), 'the same generation changes nothing');
    ok(newer(at(256), at(255)) && newer(at(1n << 40n), at(2)), 'generations compare as numbers, not text');
    ok(newer(at(0, 1, 'C1', 'ada'), undefined) && !newer(undefined, at(0)), 'anything beats nothing');
    const end = { client: 'C1', since: 1, ended: 'refused' };
    ok(newer(end, at(99)) && !newer(at(100), end), 'an end beats every token of its session');
    ok(newer(at(0, 2, 'C2'), at(50, 1)) && !newer(at(50, 1), at(0, 2, 'C2')), 'a later sign-in wins whatever the generations');
    ok(newer(at(0, 2, 'C2'), end), 'a later sign-in beats the end of an older session');
    ok(newer(at(0, 1, 'C2'), at(9, 1, 'C1')) !== newer(at(9, 1, 'C1'), at(0, 1, 'C2')), 'a tie between sessions is broken one way');
    ok(sameSession({ client: 'C1', uid: 'a' }, { client: 'C1' }) && !sameSession({ client: 'C1', uid: 'a' }, { client: 'C1', uid: 'b' }), 'uid');
    ok(!newer(at(5, 1, 'C1', 'a'), at(4, 1, 'C1', 'b')) || !newer(at(4, 1, 'C1', 'b'), at(5, 1, 'C1', 'a')), 'another uid is another session');
  });

  test('retry_after_reads_seconds_and_dates', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    equal(retryAfterMs('2', now), 2_000);
    equal(retryAfterMs(' 0 ', now), 0);
    equal(retryAfterMs('Wed, 01 Jan 2025 00:00:03 GMT', now), 3_000);
    equal(retryAfterMs('Tue, 31 Dec 2024 23:00:00 GMT', now), 0, 'a date past is no wait');
    for (const bad of [null, '', '-1', '1.5', 'soon']) equal(retryAfterMs(bad, now), undefined, String(bad));
  });

  return tests;
}
