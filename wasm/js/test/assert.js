// Assertions for the shared suite: it runs in Node, Deno, Bun, workerd and Chromium, and
// not all of them have `node:assert`.
export class AssertionError extends Error {}

/** Thrown by a test that this runtime cannot run; the runner counts it as skipped. */
export class Skip extends Error {
  constructor(message) {
    super(message);
    this.name = 'Skip';
  }
}

const show = (value) => {
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`;
  try {
    return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? `Uint8Array(${v.length})` : v));
  } catch {
    return String(value);
  }
};

export function ok(value, message = 'expected a truthy value') {
  if (!value) throw new AssertionError(message);
}

export function equal(actual, expected, message = '') {
  if (!Object.is(actual, expected)) {
    throw new AssertionError(`${message ? `${message}: ` : ''}expected ${show(expected)}, got ${show(actual)}`);
  }
}

export function notEqual(actual, unexpected, message = '') {
  if (Object.is(actual, unexpected)) throw new AssertionError(`${message ? `${message}: ` : ''}did not expect ${show(actual)}`);
}

function same(a, b) {
  if (Object.is(a, b)) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return a.length === b.length && a.every((x, i) => x === b[i]);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = Object.keys(a).filter((k) => a[k] !== undefined);
    const other = Object.keys(b).filter((k) => b[k] !== undefined);
    return keys.length === other.length && keys.every((k) => same(a[k], b[k]));
  }
  return false;
}

export function deepEqual(actual, expected, message = '') {
  if (!same(actual, expected)) {
    throw new AssertionError(`${message ? `${message}: ` : ''}expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** `fn()` throws an instance of `Class` with this `code`. */
export function throws(fn, Class, code) {
  let thrown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  if (thrown === undefined) throw new AssertionError(`expected ${Class.name} ${code}, nothing was thrown`);
  if (!(thrown instanceof Class) || thrown.code !== code) {
    throw new AssertionError(`expected ${Class.name} ${code}, got ${thrown?.name} ${thrown?.code}: ${thrown?.message}`);
  }
  return thrown;
}

/** `promise` rejects with an instance of `Class` with this `code`. */
export async function rejects(promise, Class, code) {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof Class) || error.code !== code) {
      throw new AssertionError(`expected ${Class.name} ${code}, got ${error?.name} ${error?.code}: ${error?.message}`);
    }
    return error;
  }
  throw new AssertionError(`expected ${Class.name} ${code}, nothing was thrown`);
}
