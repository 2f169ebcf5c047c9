// The parity scenarios (the repository's parity/scenarios/*.json, described in
// parity/README.md) for JavaScript hosts: read them, play one against a host following
// the tokens the responses carry as a devise client does, and check every expectation.
// The format's rules are checked once, by the Rust crate that owns it
// (`cargo test -p rotauth-parity`); this runner reads what it plays.
import { readFileSync, readdirSync } from 'node:fs';

/** The user a request claims with `"uid": "other"`. */
export const OTHER_UID = 'someone-else@example.com';

const DIR = new URL('../../../../parity/scenarios/', import.meta.url);

const CONFIG = Object.freeze({
  batch_window_ms: 5_000,
  mode: 'strict',
  replay: 'reject',
  batch_token: 'blank',
  max_attempts: 4,
  rotate: true,
  patience: false,
});

/** Every scenario, file by file, with its configuration's defaults filled in. */
export function loadScenarios() {
  const files = readdirSync(DIR).filter((name) => name.endsWith('.json')).sort();
  return files.flatMap((file) =>
    JSON.parse(readFileSync(new URL(file, DIR), 'utf8')).map((scenario) => ({
      ...scenario,
      file,
      config: { ...CONFIG, ...scenario.config },
      needs: scenario.needs ?? [],
    })),
  );
}

/** What a scenario needs that `supported` lacks, or `undefined`. */
export function missingNeed(scenario, supported) {
  return scenario.needs.find((need) => !supported.has(need));
}

/** `k` of `"T(k)"`, or `undefined`. */
function tokenIndex(text) {
  const match = /^T\((\d+)\)$/.exec(text);
  return match === null ? undefined : Number(match[1]);
}

/** The generation a token's text claims (bytes 1 to 8, big-endian), or `undefined`. */
function generationOf(text) {
  if (!/^[A-Za-z0-9_-]{55}$/.test(text)) return undefined;
  const binary = atob(`${text.replaceAll('-', '+').replaceAll('_', '/')}=`);
  let generation = 0n;
  for (let i = 1; i <= 8; i += 1) generation = (generation << 8n) | BigInt(binary.charCodeAt(i));
  return generation <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(generation) : undefined;
}

/** `token` with one character of its MAC changed: well formed, made with no key. */
function forged(token) {
  const at = 30;
  return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
}

/** What a sent `access-token` is, in the scenarios' words. */
function describe(sent) {
  if (sent === undefined) return 'no token';
  if (sent === '') return 'a blank';
  const generation = generationOf(sent);
  return generation === undefined ? 'text that is no token' : `T(${generation})`;
}

/** What a devise client holds: who it is, and the tokens it received by generation. */
class Client {
  constructor(signedIn) {
    this.signedIn = signedIn;
    this.tokens = new Map([[0, signedIn.token]]);
  }

  /** The request on the wire: `{ query, headers }` (query empty or starting with `?`). */
  wire(request) {
    let token;
    if (request.token === 'forged') token = forged(this.signedIn.token);
    else if (request.token === 'malformed') token = 'not-a-token';
    else {
      const k = tokenIndex(request.token);
      token = this.tokens.get(k);
      if (token === undefined) throw new Error(`${request.token} was never received`);
    }
    const uid = (request.uid ?? 'own') === 'own' ? this.signedIn.uid : OTHER_UID;
    const client = this.signedIn.client;
    const query = new URLSearchParams();
    const headers = {};
    switch (request.via ?? 'headers') {
      case 'headers':
        Object.assign(headers, { 'access-token': token, 'token-type': 'Bearer', client, uid });
        break;
      case 'bearer': {
        const json = JSON.stringify({ 'access-token': token, 'token-type': 'Bearer', client, uid });
        headers.authorization = `Bearer ${btoa(json)}`;
        break;
      }
      case 'query':
        query.append('access-token', token);
        query.append('client', client);
        query.append('uid', uid);
        break;
      default:
        throw new Error(`unknown way for credentials: ${request.via}`);
    }
    if (request.unbatch === true) query.append('unbatch', 'true');
    const text = query.toString();
    return { query: text === '' ? '' : `?${text}`, headers };
  }

  /** Checks `response` (`{ status, accessToken, authorization, retryAfter }`) against `expect`. */
  check(expect, response) {
    if (response.status !== expect.status) {
      throw new Error(`status ${response.status}, expected ${expect.status} (${expect.token})`);
    }
    const sent = response.accessToken?.trim();
    if (expect.token === 'none') {
      if (sent !== undefined || response.authorization) throw new Error('a token was sent with a refusal');
    } else if (expect.token === 'blank') {
      if (sent !== '') throw new Error(`a blank expected, got ${describe(sent)}`);
    } else {
      const k = tokenIndex(expect.token);
      if (k === undefined) throw new Error(`not a token expectation: ${expect.token}`);
      if (sent === undefined || sent === '' || generationOf(sent) !== k) {
        throw new Error(`T(${k}) expected, got ${describe(sent)}`);
      }
      const known = this.tokens.get(k);
      if (known !== undefined && known !== sent) throw new Error(`a second, different T(${k})`);
      this.tokens.set(k, sent);
    }
    if ((response.retryAfter ?? undefined) !== (expect.retry_after ?? undefined)) {
      throw new Error(`Retry-After ${response.retryAfter}, expected ${expect.retry_after}`);
    }
  }
}

/**
 * Plays `scenario` on `host` (made for its configuration): `signIn(now)`, `send(now, wire,
 * fault)` → `{ response, swapsTried }`, `race(now, first, competing)` → `[ours, theirs]`,
 * `generation(client)` → a number or `undefined`, `save(client)`, `restore(client)`. Times
 * are Unix milliseconds. Throws on the first expectation broken, naming the step.
 */
export async function play(scenario, host) {
  const start = Date.now();
  let client;
  for (const [i, step] of scenario.steps.entries()) {
    const now = start + step.at;
    try {
      if (step.sign_in === true) {
        client = new Client(await host.signIn(now));
      } else if (step.store === 'save') {
        await host.save(client.signedIn.client);
      } else if (step.store === 'restore') {
        await host.restore(client.signedIn.client);
      } else if (step.request !== undefined) {
        await request(host, client, now, step);
      } else {
        throw new Error('a step that is none of sign_in, store, request');
      }
    } catch (error) {
      error.message = `step ${i} (at ${step.at} ms): ${error.message}`;
      throw error;
    }
  }
}

async function request(host, client, now, step) {
  const wire = client.wire(step.request);
  let response;
  let swapsTried;
  if (step.race !== undefined) {
    const competing = client.wire(step.race.request);
    const [ours, theirs] = await host.race(now, wire, competing);
    try {
      client.check(step.race.expect, theirs);
    } catch (error) {
      error.message = `the competing request: ${error.message}`;
      throw error;
    }
    response = ours;
  } else {
    ({ response, swapsTried } = await host.send(now, wire, step.fault));
  }
  const { expect } = step;
  client.check(expect, response);
  if (expect.swaps_tried !== undefined && swapsTried !== expect.swaps_tried) {
    throw new Error(`${expect.swaps_tried} compare-and-swaps expected, ${swapsTried} tried`);
  }
  if (expect.generation !== undefined) {
    const stored = (await host.generation(client.signedIn.client)) ?? 'absent';
    if (stored !== expect.generation) throw new Error(`stored ${stored}, expected ${expect.generation}`);
  }
}

/** The fields the runner reads of a fetch `Response`. */
export function readResponse(response) {
  return {
    status: response.status,
    accessToken: response.headers.get('access-token') ?? undefined,
    authorization: response.headers.has('authorization'),
    retryAfter: response.headers.get('retry-after') ?? undefined,
  };
}
