// Compiled by `tsc -p test/tsconfig.json` (no output): the declarations describe the API
// the suite exercises, and misuse is a type error.
import { Hono } from 'hono';
import { createRotator, RotauthError, RecordError, type Decision, type Rotator } from 'rotauth';
import { MemoryStore, rotauth, signOutHeaders, startSession, type SessionStore } from 'rotauth/hono';

const rotator: Rotator = await createRotator({
  keys: [{ id: 1, key: new Uint8Array(32) }],
  batchWindowMs: 5_000,
  mode: 'recover',
  replayPolicy: 'revoke_session',
});
const { record, clientId, token, version } = rotator.signIn(Date.now());
const decision: Decision = rotator.decide(record, token, Date.now(), { unbatch: true });
if (decision.kind === 'rotate' && decision.record && decision.version !== undefined) {
  const next: bigint = decision.version + version;
  void next;
}
const store: SessionStore = new MemoryStore();
await startSession({ rotator, store, uid: 'a@example.com' });
const app = new Hono();
app.use('/demo/*', rotauth({ rotator, store }));
app.get('/demo/me', (c) => c.json({ uid: c.var.rotauth.uid, client: clientId }));
// The cookie transport.
const cookieMode = { protocol: 'cookie', cookie: { sameSite: 'Strict', doubleSubmit: true }, csrf: { allowedOrigins: ['https://admin.example'] } } as const;
await startSession({ rotator, store, uid: 'a@example.com', ...cookieMode });
app.use('/cookie/*', rotauth({ rotator, store, ...cookieMode }));
const cleared: Headers = signOutHeaders(cookieMode);
void cleared;
// @ts-expect-error: SameSite is 'Lax' or 'Strict'
rotauth({ rotator, store, protocol: 'cookie', cookie: { sameSite: 'None' } });
try {
  rotator.inspect(new Uint8Array(3));
} catch (error) {
  if (error instanceof RecordError) {
    const code: 'record_length' | 'record_format' | 'record_invalid' = error.code;
    void code;
  } else if (error instanceof RotauthError) {
    void error.code;
  }
}
// @ts-expect-error: mode is 'strict' or 'recover'
await createRotator({ keys: [], mode: 'lenient' });
// @ts-expect-error: a token is text
rotator.decide(record, new Uint8Array(55), 0);
// The exchange, driven by hand as a host with its own store would.
const exchange = rotator.exchange(token, Date.now(), { batchToken: 'current' });
let step = exchange.loaded(record);
if (step.kind === 'store') {
  const expected: bigint = step.expectedVersion;
  void expected;
  step = exchange.swapped(true);
}
if (step.kind === 'answer' && step.answer.kind === 'serve') {
  const sent: string | undefined = step.answer.token;
  void sent;
}
exchange.close();
app.use('/api/*', rotauth({ rotator, store, storePatienceMs: 1_000, maxAttempts: 3 }));
// @ts-expect-error: a batch member gets a blank or the current token
rotator.exchange(token, 0, { batchToken: 'newest' });
