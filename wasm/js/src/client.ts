// rotauth/client: a `fetch` that keeps every tab of an origin on the newest token, without
// locks, for rotauth's devise and bearer protocols. No dependencies, no WebAssembly: it runs
// in browsers, Node, Deno, Bun and React Native.

export { type ClientOptions, RotauthClient, type SessionInfo, type SignedOutEvent, createClient } from './client/client.js';
export { type Offer, type Protocol, offer, attach } from './client/protocol.js';
export { retryAfterMs } from './client/retry.js';
export { type EndReason, type EndedSession, type Known, type Session, type SessionId, newer, sameSession } from './client/session.js';
export { type ClientChannel, type ClientStorage, memoryStorage } from './client/storage.js';
export { TOKEN_TEXT_LENGTH, type TokenHeader, readToken, tokenGeneration } from './client/token.js';
