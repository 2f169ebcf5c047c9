// Where a client keeps its session between page loads, and how tabs hear of each other's
// changes. Web Storage (`localStorage`, `sessionStorage`) and React Native's
// `AsyncStorage` have the same three methods, one synchronous and one not: either fits.

/** A key-value store of strings, synchronous or asynchronous. */
export interface ClientStorage {
  getItem(key: string): string | null | undefined | Promise<string | null | undefined>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
}

/** The part of `BroadcastChannel` a client uses. */
export interface ClientChannel {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
  removeEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
  close?(): void;
}

/**
 * A store in memory, for Node, Deno, Bun, tests and pages that keep nothing: clients given
 * the same one share it, as tabs share `localStorage`.
 */
export function memoryStorage(): ClientStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => {
      items.set(key, String(value));
    },
    removeItem: (key) => {
      items.delete(key);
    },
  };
}

/** `globalThis[name]` if this is a page and it may use that Web Storage, else `undefined`. */
export function webStorage(name: 'localStorage' | 'sessionStorage'): ClientStorage | undefined {
  // Deno has a `localStorage` that persists per script, not per origin: only a document's
  // storage is the one its tabs share.
  if (typeof document === 'undefined') return undefined;
  try {
    // Reading the property throws where the page may not use storage (sandboxed frames,
    // storage blocked by the user).
    return globalThis[name] ?? undefined;
  } catch {
    return undefined;
  }
}

/** A `BroadcastChannel` named `name`, if the runtime has one; it does not keep Node alive. */
export function openChannel(name: string): ClientChannel | undefined {
  if (typeof BroadcastChannel !== 'function') return undefined;
  const channel = new BroadcastChannel(name);
  (channel as { unref?: () => void }).unref?.();
  return channel;
}
