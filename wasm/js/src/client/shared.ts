// The newest session a tab knows, shared with the other tabs of its origin without a lock.
// A tab adopts only what the order of `session.ts` calls newer, writes the store only with
// a value newer than the one it reads there, and writes its own back when it sees the store
// hold an older one (two tabs' read-then-write can interleave, and the older may land
// last). Each write moves the store up the order, so it converges on the newest, and no tab
// ever waits for another: a tab that has not heard yet reads the store before each request.

import { type Known, decode, encode, newer } from './session.js';
import type { ClientChannel, ClientStorage } from './storage.js';

/** Told of every change of the held value: `here` when this tab caused it. */
export type ChangeListener = (previous: Known | undefined, next: Known, here: boolean) => void;

/** The subset of a `StorageEvent` a tab reads. */
interface StorageChange {
  readonly storageArea: unknown;
  readonly key: string | null;
  readonly newValue: string | null;
}

export class SharedSession {
  readonly #storage: ClientStorage;
  readonly #key: string;
  readonly #channel: ClientChannel | undefined;
  readonly #onChange: ChangeListener;
  #held: Known | undefined;
  #writes: Promise<void> = Promise.resolve();
  readonly #onMessage = (event: MessageEvent): void => {
    this.#take(decode(event.data), false);
  };
  readonly #onStorage = (event: Event): void => {
    const change = event as unknown as StorageChange;
    if (change.storageArea !== this.#storage || (change.key !== null && change.key !== this.#key)) return;
    const stored = decode(change.newValue);
    if (!this.#take(stored, false) && newer(this.#held, stored)) void this.#persist();
  };

  constructor(storage: ClientStorage, key: string, channel: ClientChannel | undefined, onChange: ChangeListener) {
    this.#storage = storage;
    this.#key = key;
    this.#channel = channel;
    this.#onChange = onChange;
    channel?.addEventListener('message', this.#onMessage);
    // Web Storage tells the other tabs of a write; a channel may be missing or late.
    globalThis.addEventListener?.('storage', this.#onStorage);
  }

  /** The newest value this tab knows. */
  get held(): Known | undefined {
    return this.#held;
  }

  /**
   * Reads the store: adopts a newer value, and writes the held one back over an older.
   * A store that fails leaves what the tab holds as it is.
   */
  async sync(): Promise<void> {
    let stored;
    try {
      stored = decode(await this.#storage.getItem(this.#key));
    } catch {
      return;
    }
    if (!this.#take(stored, false) && newer(this.#held, stored)) await this.#persist();
  }

  /**
   * Adopts `candidate` if it is newer than the held value, stores it and tells the other
   * tabs. Resolves, once stored, to whether it was adopted.
   */
  async offer(candidate: Known): Promise<boolean> {
    if (!this.#take(candidate, true)) return false;
    await this.#persist();
    const held = this.#held;
    try {
      if (held !== undefined) this.#channel?.postMessage(encode(held));
    } catch {
      // A closed channel: the store still carries the value to the other tabs.
    }
    return true;
  }

  /** Stops listening. */
  close(): void {
    this.#channel?.removeEventListener('message', this.#onMessage);
    globalThis.removeEventListener?.('storage', this.#onStorage);
  }

  #take(candidate: Known | undefined, here: boolean): boolean {
    if (candidate === undefined || !newer(candidate, this.#held)) return false;
    const previous = this.#held;
    this.#held = candidate;
    this.#onChange(previous, candidate, here);
    return true;
  }

  /**
   * Read, compare, write, one after the other in this tab (so that an asynchronous store
   * cannot land this tab's writes out of order).
   */
  #persist(): Promise<void> {
    const write = async (): Promise<void> => {
      try {
        const stored = decode(await this.#storage.getItem(this.#key));
        if (this.#take(stored, false)) return;
        const held = this.#held;
        if (held !== undefined && newer(held, stored)) await this.#storage.setItem(this.#key, encode(held));
      } catch {
        // A store that fails (quota, a broken native module) keeps the session in memory
        // only; the next sync writes it again.
      }
    };
    this.#writes = this.#writes.then(write);
    return this.#writes;
  }
}
