// How the suite's runners set up the example app: a short batch window so that the HTTP
// tests can wait it out on the real clock, and a cheap password hash.
export const WINDOW_MS = 1_000;
export const PASSWORD_ITERATIONS = 1_000;
/** The browser origin the example app allows (CORS). */
export const ORIGIN = 'https://app.example';
/** A test key (hex), never a real one. */
export const KEY_HEX = '746573742d6f6e6c79206b6579206f662074686520726f746175746820737569746521';

const hexBytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));

/**
 * The suite's environment with the example app in this process: `fetch` calls
 * `app.request`. `modules` holds the runtime's imports of the package, its Hono entry and
 * the example app.
 */
export async function inProcessEnv({ rotauth, hono, example, vectors }) {
  const rotator = await rotauth.createRotator({ keys: [{ id: 1, key: hexBytes(KEY_HEX) }], batchWindowMs: WINDOW_MS });
  const app = example.createApp({ rotator, passwordIterations: PASSWORD_ITERATIONS, origins: [ORIGIN] });
  return { rotauth, hono, vectors, fetch: (path, init) => app.request(path, init) };
}
