// Compiled by `tsc -p test/client/tsconfig.json` (no output): the client's declarations as a
// program that imports `rotauth/client` sees them, and misuse is a type error.
import {
  type ClientStorage,
  type SessionInfo,
  type SignedOutEvent,
  RotauthClient,
  createClient,
  memoryStorage,
  newer,
  tokenGeneration,
} from 'rotauth/client';

const asyncStore: ClientStorage = {
  getItem: async (key: string) => key,
  setItem: async () => {},
  removeItem: async () => {},
};
const client: RotauthClient = createClient({
  protocol: 'bearer',
  storage: asyncStore,
  tabStorage: memoryStorage(),
  channel: 'my-app',
  refreshUrl: '/auth/validate_token',
  batchWindowMs: 5_000,
  onSignedOut: (event: SignedOutEvent) => void event.reason.toUpperCase(),
});
await client.ready;
const response: Response = await client.fetch('/api/me', { method: 'GET' });
void response;
const info: SessionInfo | undefined = client.session;
const generation: bigint | undefined = info?.generation;
void generation;
const g: bigint | undefined = tokenGeneration('x');
void g;
void newer(undefined, undefined);
await client.signOut('/auth/sign_out', { method: 'DELETE' });
client.close();
// @ts-expect-error: the protocol is 'devise' or 'bearer'
createClient({ protocol: 'oauth' });
// @ts-expect-error: the token stays inside the client
void client.session?.token;
// @ts-expect-error: a storage needs removeItem too
createClient({ storage: { getItem: () => null, setItem: () => {} } });
