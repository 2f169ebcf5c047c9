// Requests in flight when a page goes away. A request presenting the newest token after the
// batch window rotates the session, and only its response carries the next token: if the
// page unloads (a reload, a navigation) before that response arrives, the server has moved
// on and every tab still holds the token it just replaced, which the server refuses once
// the new window closes. Inside that window the old token is still a batch member, and a
// forced rotation (`?unbatch=true`) with it hands out a fresh token. So the page notes what
// was in flight in its tab's own storage (which survives a reload, and which no other tab
// reads, so one tab recovers, not all), and the page that follows asks for that rotation if
// the window is still open.

import { type Known, type Session, isLive } from './session.js';
import { tokenGeneration } from './token.js';

/** What a page left in flight: the session, the generation presented, the first send time. */
export interface InFlight {
  readonly client: string;
  readonly generation: bigint;
  readonly sentAt: number;
}

export class Flights {
  #next = 0;
  readonly #open = new Map<number, InFlight>();

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
   * The note for `held`: the earliest send among the requests in flight that present its
   * token, or `undefined` if none does. A request presenting an older token cannot have
   * rotated past it; the earliest send bounds from below when the rotation happened, so the
   * window it opened ends no sooner than `sentAt` plus the window.
   */
  note(held: Known | undefined): string | undefined {
    if (!isLive(held)) return undefined;
    const generation = tokenGeneration(held.token);
    let sentAt: number | undefined;
    for (const flight of this.#open.values()) {
      if (flight.client === held.client && flight.generation === generation) {
        sentAt = Math.min(sentAt ?? flight.sentAt, flight.sentAt);
      }
    }
    if (sentAt === undefined || generation === undefined) return undefined;
    return JSON.stringify({ v: 1, client: held.client, generation: String(generation), sentAt });
  }
}

/** The note `Flights.note` wrote, or `undefined` for anything else. */
export function readNote(value: unknown): InFlight | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const { v, client, generation, sentAt } = JSON.parse(value) as Record<string, unknown>;
    if (v !== 1 || typeof client !== 'string' || typeof generation !== 'string' || !/^\d{1,20}$/.test(generation)) return undefined;
    if (typeof sentAt !== 'number' || !Number.isFinite(sentAt)) return undefined;
    return { client, generation: BigInt(generation), sentAt };
  } catch {
    return undefined;
  }
}

/**
 * Whether to ask for a forced rotation: the note is of the session still held, at the
 * generation still held (no tab has received a newer token since), and the window the lost
 * request may have opened is still open.
 */
export function mustRecover(note: InFlight | undefined, held: Known | undefined, now: number, batchWindowMs: number): boolean {
  if (note === undefined || !isLive(held) || held.client !== note.client) return false;
  return tokenGeneration(held.token) === note.generation && now < note.sentAt + batchWindowMs;
}
