// Every error the package throws, and the module's negative statuses as errors.
import { ENTROPY_LEN, MAX_KEY_LEN, MAX_KEYS, MIN_KEY_LEN, RECORD_LEN } from './layout.js';

/** Every error this package throws: `code` says which, as a stable string. */
export class RotauthError extends Error {
  constructor(code, message) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}
/** A key or key id refused by the keyring: nothing changed. */
export class KeyError extends RotauthError {}
/** A policy refused when the rotator is made. */
export class ConfigError extends RotauthError {}
/** A stored session record that is not one (wrong length, format or impossible fields). */
export class RecordError extends RotauthError {}
/** An argument of the wrong type or range (time, entropy, token, record, options). */
export class InputError extends RotauthError {}
/**
 * An exchange that cannot start (`exchanges_full`: as many requests are in flight as the
 * rotator's table holds; answer 503) or go on (`unknown_exchange`: it has ended).
 */
export class ExchangeError extends RotauthError {}

// The module's negative statuses (wasm/src/lib.rs `Status`) as typed errors.
const STATUS = new Map([
  [-1, [KeyError, 'key_too_short', `a key must be at least ${MIN_KEY_LEN} bytes`]],
  [-2, [KeyError, 'key_too_long', `a key must be at most ${MAX_KEY_LEN} bytes`]],
  [-3, [KeyError, 'invalid_key_id', 'a key id must be an integer from 0 to 255']],
  [-4, [KeyError, 'duplicate_key_id', 'another key already has this id']],
  [-5, [KeyError, 'keyring_full', `the keyring already holds ${MAX_KEYS} keys`]],
  [-6, [KeyError, 'unknown_key_id', 'no key with this id in the keyring']],
  [-7, [KeyError, 'removing_primary', 'the primary key cannot be removed; make another primary first']],
  [-10, [ConfigError, 'zero_lifespan', 'lifespan must be longer than zero']],
  [-11, [ConfigError, 'zero_absolute_lifetime', 'absolute lifetime must be longer than zero']],
  [-12, [ConfigError, 'window_longer_than_lifespan', 'batch window must not be longer than the lifespan']],
  [-13, [ConfigError, 'absolute_lifetime_shorter_than_window', 'absolute lifetime must not be shorter than the batch window']],
  [-19, [ConfigError, 'invalid_config', 'the policy is refused']],
  [-20, [RecordError, 'record_length', `a session record is ${RECORD_LEN} bytes`]],
  [-21, [RecordError, 'record_format', 'the session record has an unknown format']],
  [-22, [RecordError, 'record_invalid', 'the session record holds values no decision can produce']],
  [-30, [InputError, 'token_too_long', 'token text too long']],
  [-31, [InputError, 'invalid_entropy', `sign-in needs ${ENTROPY_LEN} bytes of entropy`]],
  [-40, [InputError, 'disposed', 'the rotator has been disposed']],
  [-41, [KeyError, 'key_removed', "the key of the session's current token has been removed"]],
  [-50, [ExchangeError, 'exchanges_full', 'as many requests are in flight as the rotator holds exchanges']],
  [-51, [ExchangeError, 'unknown_exchange', 'the exchange has ended']],
]);

/** The typed error of a negative status. */
export function fail(status) {
  const [Class, code, message] = STATUS.get(status) ?? [RotauthError, 'internal', `status ${status}`];
  return new Class(code, message);
}

