// The client: `fetch` with rotauth's credentials. Every request presents the newest token
// any tab of the origin knows; a response's token is adopted only if it is newer (so
// out-of-order responses never move a tab backwards, and a blank or missing one keeps what
// the tab has); a 503 is waited out; a refusal of an older token is retried once with the
// newest; and only a refusal of the newest token ends the session, in every tab.

import { Flights, mustRecover, readNote } from './flights.js';
import { type Protocol, attach, offer } from './protocol.js';
import { retryAfterMs, sleep as defaultSleep } from './retry.js';
import { type EndReason, type Known, type Session, ended, isLive, newer, sameSession } from './session.js';
import { SharedSession } from './shared.js';
import { type ClientChannel, type ClientStorage, memoryStorage, openChannel, webStorage } from './storage.js';
import { tokenGeneration } from './token.js';

/** How a client is set up. Every field is optional. */
export interface ClientOptions {
  /** The wire protocol: `'devise'` (the default) or `'bearer'`. */
  protocol?: Protocol;
  /** Where the session is kept: `localStorage` in a page, else a store in memory. */
  storage?: ClientStorage;
  /** The storage key, also the default channel's name (`rotauth:<key>`). Default `'rotauth'`. */
  key?: string;
  /** The channel to the other tabs: a name, a channel, or `false` for none. */
  channel?: string | ClientChannel | false;
  /** The `fetch` to send requests with. Default `globalThis.fetch`. */
  fetch?: (request: Request) => Promise<Response>;
  /** How many times a 503 with `Retry-After` is sent again. Default 2. */
  retries?: number;
  /** The longest `Retry-After` waited out; a longer one is returned as it is. Default 10 000. */
  maxRetryAfterMs?: number;
  /** Whether a response refuses the credentials. Default: status 401. */
  refused?: (response: Response) => boolean;
  /** Told when the session ends: refused by the server, or signed out, here or in another tab. */
  onSignedOut?: (event: SignedOutEvent) => void;
  /** The server's batch window. Default 5 000, devise's and rotauth's. */
  batchWindowMs?: number;
  /**
   * A protected URL that rotates like any request (devise: `/auth/validate_token`). A page
   * that follows one which unloaded with a rotating request in flight calls it with
   * `?unbatch=true` to get a fresh token while the old one is still a batch member.
   */
  refreshUrl?: string | URL;
  /** Storage of this tab alone, for that note: `sessionStorage` in a page; `false` for none. */
  tabStorage?: ClientStorage | false;
  /** The clock, Unix ms. Default `Date.now`. */
  now?: () => number;
  /** Waits `ms`, or rejects when `signal` aborts. Default a timer. */
  sleep?: (ms: number, signal?: AbortSignal | null) => Promise<void>;
}

/** Why a session ended, and whether another tab saw it first. */
export interface SignedOutEvent {
  readonly reason: EndReason;
  readonly elsewhere: boolean;
}

/** The public parts of the held session (the token stays inside the client). */
export interface SessionInfo {
  readonly client: string;
  readonly uid?: string | undefined;
  readonly expiry?: string | undefined;
  readonly since: number;
  readonly generation: bigint;
}

const NOTE_SUFFIX = ':in-flight';

export class RotauthClient {
  /** Resolves once the stored session is loaded; `fetch` waits for it. */
  readonly ready: Promise<void>;
  readonly #protocol: Protocol;
  readonly #shared: SharedSession;
  readonly #channel: ClientChannel | undefined;
  readonly #ownsChannel: boolean;
  readonly #tabStorage: ClientStorage | undefined;
  readonly #noteKey: string;
  readonly #flights = new Flights();
  readonly #fetch: (request: Request) => Promise<Response>;
  readonly #retries: number;
  readonly #maxRetryAfterMs: number;
  readonly #refused: (response: Response) => boolean;
  readonly #onSignedOut: ((event: SignedOutEvent) => void) | undefined;
  readonly #batchWindowMs: number;
  readonly #refreshUrl: string | URL | undefined;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal | null) => Promise<void>;
  readonly #onPageHide = (): void => this.#leaveNote();

  constructor(options: ClientOptions = {}) {
    const protocol = options.protocol ?? 'devise';
    if (protocol !== 'devise' && protocol !== 'bearer') {
      throw new TypeError("rotauth client: `protocol` is 'devise' or 'bearer'");
    }
    this.#protocol = protocol;
    const key = options.key ?? 'rotauth';
    this.#noteKey = key + NOTE_SUFFIX;
    const storage = options.storage ?? webStorage('localStorage') ?? memoryStorage();
    this.#tabStorage = options.tabStorage === false ? undefined : (options.tabStorage ?? webStorage('sessionStorage'));
    const channel = options.channel ?? `rotauth:${key}`;
    this.#ownsChannel = typeof channel === 'string';
    this.#channel = typeof channel === 'string' ? openChannel(channel) : channel === false ? undefined : channel;
    this.#fetch = options.fetch ?? ((request) => globalThis.fetch(request));
    this.#retries = options.retries ?? 2;
    this.#maxRetryAfterMs = options.maxRetryAfterMs ?? 10_000;
    this.#refused = options.refused ?? ((response) => response.status === 401);
    this.#onSignedOut = options.onSignedOut;
    this.#batchWindowMs = options.batchWindowMs ?? 5_000;
    this.#refreshUrl = options.refreshUrl;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#shared = new SharedSession(storage, key, this.#channel, (previous, next, here) => {
      if (!isLive(next) && isLive(previous) && sameSession(previous, next)) this.#tell({ reason: next.ended, elsewhere: !here });
    });
    if (typeof document !== 'undefined') globalThis.addEventListener?.('pagehide', this.#onPageHide);
    this.ready = this.#start();
  }

  /** The session this client holds, or `undefined` when signed out. */
  get session(): SessionInfo | undefined {
    const held = this.#shared.held;
    if (!isLive(held)) return undefined;
    const { client, uid, expiry, since } = held;
    return { client, uid, expiry, since, generation: tokenGeneration(held.token) ?? 0n };
  }

  /**
   * `fetch` with the credentials of the newest token. A response from a request sent
   * signed out that hands out credentials (a sign-in) starts the session.
   */
  async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    await this.ready;
    return this.#send(uncached(new Request(input, init)));
  }

  /**
   * Takes the credentials a response hands out (a sign-in made with another `fetch`).
   * Resolves to whether they were adopted.
   */
  async adopt(response: Response): Promise<boolean> {
    await this.ready;
    return this.#receive(response, undefined);
  }

  /**
   * Ends the session here and in every tab: the store keeps no token, and each tab's
   * `onSignedOut` hears of it. With a request (devise: `DELETE /auth/sign_out`), sends it
   * first with the credentials, once, and returns its response; the session ends whatever
   * the answer.
   */
  async signOut(input?: RequestInfo | URL, init?: RequestInit): Promise<Response | undefined> {
    await this.ready;
    await this.#shared.sync();
    let response: Response | undefined;
    try {
      if (input !== undefined) {
        const request = uncached(new Request(input, init));
        const held = this.#shared.held;
        if (isLive(held)) attach(this.#protocol, request.headers, held);
        response = await this.#fetch(request);
      }
    } finally {
      const held = this.#shared.held;
      if (isLive(held)) await this.#shared.offer(ended(held, 'signed_out'));
    }
    return response;
  }

  /** Stops listening to other tabs. Requests still in flight are noted as a page unloading. */
  close(): void {
    this.#leaveNote();
    this.#shared.close();
    if (this.#ownsChannel) this.#channel?.close?.();
    globalThis.removeEventListener?.('pagehide', this.#onPageHide);
  }

  async #start(): Promise<void> {
    await this.#shared.sync();
    const note = await this.#takeNote();
    if (this.#refreshUrl === undefined || !mustRecover(note, this.#shared.held, this.#now(), this.#batchWindowMs)) return;
    let url;
    try {
      url = new URL(this.#refreshUrl, globalThis.location?.href);
    } catch {
      return;
    }
    url.searchParams.set('unbatch', 'true');
    // Not awaited by `ready`: the page's own requests need not wait for it, as they are
    // batch members of the window the lost rotation opened.
    void this.#send(uncached(new Request(url))).then(
      (response) => response.body?.cancel().catch(() => {}),
      () => {},
    );
  }

  async #send(base: Request): Promise<Response> {
    let unavailable = 0;
    let retried = false;
    for (;;) {
      await this.#shared.sync();
      const held = this.#shared.held;
      const sent = isLive(held) ? held : undefined;
      const request = base.clone();
      if (sent !== undefined) attach(this.#protocol, request.headers, sent);
      const done = sent === undefined ? undefined : this.#flights.start(sent, this.#now());
      let response;
      try {
        response = await this.#fetch(request);
      } finally {
        done?.();
      }
      await this.#receive(response, sent);
      if (response.status === 503 && unavailable < this.#retries) {
        const wait = retryAfterMs(response.headers.get('retry-after'), this.#now());
        if (wait !== undefined && wait <= this.#maxRetryAfterMs) {
          unavailable += 1;
          await discard(response);
          await this.#sleep(wait, base.signal);
          continue;
        }
      }
      if (sent === undefined || !this.#refused(response)) return response;
      // Another tab may have stored a newer token while this request was out.
      await this.#shared.sync();
      const newest = this.#shared.held;
      if (!isLive(newest) || !sameSession(newest, sent)) return response;
      if (!newer(newest, sent)) {
        await this.#shared.offer(ended(newest, 'refused'));
        return response;
      }
      if (retried) return response;
      retried = true;
      await discard(response);
    }
  }

  /** Adopts what `response` hands out, if it is newer than what is held. */
  async #receive(response: Response, sent: Session | undefined): Promise<boolean> {
    const offered = offer(this.#protocol, response.headers);
    if (offered === undefined) return false;
    let candidate: Known;
    if (sent !== undefined && sameSession(offered, sent)) {
      candidate = { ...offered, uid: offered.uid ?? sent.uid, since: sent.since };
    } else if (response.ok) {
      // Another session than the one presented: a sign-in, which supersedes whatever this
      // tab knows.
      candidate = { ...offered, since: Math.max(this.#now(), (this.#shared.held?.since ?? 0) + 1) };
    } else {
      return false;
    }
    return this.#shared.offer(candidate);
  }

  async #takeNote() {
    const storage = this.#tabStorage;
    if (storage === undefined) return undefined;
    try {
      const note = readNote(await storage.getItem(this.#noteKey));
      if (note !== undefined) await storage.removeItem(this.#noteKey);
      return note;
    } catch {
      return undefined;
    }
  }

  #leaveNote(): void {
    const note = this.#flights.note(this.#shared.held, this.#now());
    if (note === undefined || this.#tabStorage === undefined) return;
    try {
      // Not awaited: a page going away gets no later turn.
      void Promise.resolve(this.#tabStorage.setItem(this.#noteKey, note)).catch(() => {});
    } catch {
      // A store that refuses: the next page simply does not recover.
    }
  }

  #tell(event: SignedOutEvent): void {
    const listener = this.#onSignedOut;
    // Outside the client's own steps, so that a listener that throws cannot break them.
    if (listener !== undefined) queueMicrotask(() => listener(event));
  }
}

/** A client; see `ClientOptions`. */
export function createClient(options?: ClientOptions): RotauthClient {
  return new RotauthClient(options);
}

/**
 * `request` with cache mode `no-store` unless its sender chose one. A response to
 * credentials is never one to keep, and the mode matters for more than that: a browser's
 * HTTP cache lets one request per URL reach the network at a time while the others wait
 * for its response's headers (Chromium's cache lock), so parallel requests to one URL
 * leave one round trip apart; over a slow network a burst so outlasts the batch window,
 * and the last of its requests present a token the session rotated past, which Strict
 * mode refuses. `no-store` bypasses the cache, and its lock.
 */
function uncached(request: Request): Request {
  return request.cache === 'default' ? new Request(request, { cache: 'no-store' }) : request;
}

async function discard(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // Already read or errored: nothing to release.
  }
}
