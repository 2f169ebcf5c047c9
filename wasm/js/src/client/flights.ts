// Requests in flight when a page goes away. A request presenting the newest token after the
// batch window rotates the session, and only its response carries the next token: if the
// page unloads (a reload, a navigation) before that response arrives, the server has moved
// on and every tab still holds the token it just replaced, which the server refuses once
// the new window closes. Inside that window the old token is still a batch member, and a
// forced rotation (`?unbatch=true`) with it hands out a fresh token. So the page notes what
// was in flight in its tab's own storage (which survives a reload, and which no other tab
// reads, so one tab recovers, not all), and the page that follows asks for that rotation if
// the window may still be open. The rotation happened after the request was sent and, if
// before the page went, no later than that: the window it opened closes no later than one
// window after the page went, and that is how long the next page tries. (A request still
// on the wire when the page went rotates later still, and its window closes later.) Trying
// once the window has closed costs a refused request, but nothing more: the token every
// tab holds is then refused anyway.

import { type Known, type Session, isLive } from './session.js';
import { tokenGeneration } from './token.js';

/** What a page left in flight: the session, the generation presented, the first send time, when the page went. */
export interface InFlight {
  readonly client: string;
  readonly generation: bigint;
  readonly sentAt: number;
  readonly leftAt: number;
}

export class Flights {
  #next = 0;
  readonly #open = new Map<number, Omit<InFlight, 'leftAt'>>();

  /** Notes a request presenting `session`'s token; call the returned function when it ends. */
  start(session: Session, sentAt: number): () => void {
    const id = this.#next;
    this.#next += 1;
    this.#open.set(id, { client: session.client, generation: tokenGeneration(session.token) ?? 0n, sentAt });
    return () => {
      this.#open.delete(id);
    };
  }

  /**
   * The note for `held`, left by a page going away at `leftAt`: the earliest send among the
   * requests in flight that present its token, or `undefined` if none does. A request
   * presenting an older token cannot have rotated past it.
   */
  note(held: Known | undefined, leftAt: number): string | undefined {
    if (!isLive(held)) return undefined;
    const generation = tokenGeneration(held.token);
    let sentAt: number | undefined;
    for (const flight of this.#open.values()) {
      if (flight.client === held.client && flight.generation === generation) {
        sentAt = Math.min(sentAt ?? flight.sentAt, flight.sentAt);
      }
    }
    if (sentAt === undefined || generation === undefined) return undefined;
    return JSON.stringify({ v: 1, client: held.client, generation: String(generation), sentAt, leftAt: Math.max(leftAt, sentAt) });
  }
}

/** The note `Flights.note` wrote, or `undefined` for anything else. */
export function readNote(value: unknown): InFlight | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const { v, client, generation, sentAt, leftAt } = JSON.parse(value) as Record<string, unknown>;
    if (v !== 1 || typeof client !== 'string' || typeof generation !== 'string' || !/^\d{1,20}$/.test(generation)) return undefined;
    if (typeof sentAt !== 'number' || !Number.isFinite(sentAt)) return undefined;
    // A note without `leftAt` (an earlier version's) counts from the send.
    const left = typeof leftAt === 'number' && Number.isFinite(leftAt) ? Math.max(leftAt, sentAt) : sentAt;
    return { client, generation: BigInt(generation), sentAt, leftAt: left };
  } catch {
    return undefined;
  }
}

/**
 * Whether to ask for a forced rotation: the note is of the session still held, at the
 * generation still held (no tab has received a newer token since), and the window the lost
 * request may have opened may still be open: less than a window since the page went.
 */
export function mustRecover(note: InFlight | undefined, held: Known | undefined, now: number, batchWindowMs: number): boolean {
  if (note === undefined || !isLive(held) || held.client !== note.client) return false;
  return tokenGeneration(held.token) === note.generation && now < note.leftAt + batchWindowMs;
}
