// The rotations the proxy of test/tabs.mjs saw handed out, per session, and from them why
// a request was refused. The proxy sees the server from outside: a rotation happened
// somewhere between the moment its request was passed to the server and the moment the
// server answered it, and so did the refusal of a refused request; the age of the
// rotation at the refusal is known only within those bounds, and is printed as a range.

export class Rotations {
  /** client id -> rotations seen, oldest first: `{ generation, sentAt, answeredAt }`. */
  #sessions = new Map();
  #windowMs;
  /** What refuses `T(n-1)` past the window, and `T(n-2)`, in the host's mode. */
  #late;
  #replay;

  constructor(windowMs, mode = 'strict') {
    this.#windowMs = windowMs;
    this.#late = mode === 'strict' ? 'Strict refuses' : 'Recover refuses (T(n) was presented, or reissued once already)';
    this.#replay = mode === 'strict' ? 'Strict refuses it as a replay' : 'Recover refuses it as a replay';
  }

  /** Notes a token handed out (`{ client, generation }`) by a request sent and answered at the times given. */
  saw(out, sentAt, answeredAt) {
    const list = this.#sessions.get(out.client) ?? [];
    if (!list.some((r) => r.generation === out.generation)) {
      list.push({ generation: out.generation, sentAt, answeredAt, lost: false });
      list.sort((a, b) => (a.generation < b.generation ? -1 : 1));
    }
    this.#sessions.set(out.client, list);
  }

  /** Notes that the response handing out `out` never reached the browser: its page had gone. */
  lost(out) {
    const rotation = this.#sessions.get(out.client)?.find((r) => r.generation === out.generation);
    if (rotation !== undefined) rotation.lost = true;
  }

  /**
   * Why the request presenting `presented` (`{ client, generation }` or undefined), sent
   * to the server at `sentAt` and answered at `answeredAt`, may have been refused: the
   * newest generation handed out before the server could have decided, how long before,
   * and the rule that applies. Call it once later rotations have been answered too.
   */
  explain(presented, sentAt, answeredAt) {
    if (presented === undefined) return 'presented no token';
    const g = presented.generation;
    const before = (this.#sessions.get(presented.client) ?? []).filter((r) => r.sentAt < answeredAt);
    const newest = before.at(-1);
    if (newest === undefined) return `presented T${g}: no token of that session seen handed out`;
    const n = newest.generation;
    if (g >= n) return `presented T${g}, the newest handed out (${this.#age(newest, sentAt, answeredAt)} old): the session is gone (signed out)`;
    // The rotation that replaced the presented token: to T(g+1).
    const replaced = before.find((r) => r.generation === g + 1n) ?? newest;
    const age = this.#age(replaced, sentAt, answeredAt);
    const [low, high] = this.#bounds(replaced, sentAt, answeredAt);
    if (g + 1n < n) {
      return `presented T${g} = T(n-${n - g}) with T${n} handed out (${this.#age(newest, sentAt, answeredAt)} before): older than T(n-1), ${this.#replay} (T${g + 1n} came ${age} before)`;
    }
    let rule = `at the edge of the ${this.#windowMs} ms window (the bounds straddle it)`;
    if (low > this.#windowMs) rule = `past the ${this.#windowMs} ms window, ${this.#late}`;
    else if (high <= this.#windowMs) rule = `inside the ${this.#windowMs} ms window: a batch member, which should have been served`;
    const lost = replaced.lost ? ` (the response that handed out T${g + 1n} was lost: the page that sent the request had gone)` : '';
    return `presented T${g} = T(n-1), ${age} after its rotation to T${n}${lost}: ${rule}`;
  }

  /** How long before the decision `rotation` happened, as lower and upper bound in ms. */
  #bounds(rotation, sentAt, answeredAt) {
    return [sentAt - rotation.answeredAt, answeredAt - rotation.sentAt];
  }

  #age(rotation, sentAt, answeredAt) {
    const [low, high] = this.#bounds(rotation, sentAt, answeredAt);
    return low === high ? `${low} ms` : `${Math.max(0, low)}–${high} ms`;
  }
}
