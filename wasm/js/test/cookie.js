// The suite's tests of the Hono middleware's cookie transport: the same rules and
// attributes as rotauth-axum's `CookieProtocol`. The cookie is set on rotation and never
// on a batch, a refusal keeps it and only a revocation or sign-out clears it, duplicates
// of its name are refused, and a request another site may have forged is answered 403
// before the loop spends a rotation on it.
import { deepEqual, equal, ok, throws } from './assert.js';

const T0 = 1_700_000_000_000;
const W = 5_000;
const UID = 'a@example.com';
const NAME = '__Host-rotauth';
const EXPIRES = (at) => new Date(at).toUTCString();

/** Whether this runtime keeps `Set-Cookie` in a `Response` a script makes (browsers do not). */
const keepsSetCookie = () => new Response(null, { headers: { 'set-cookie': 'a=1' } }).headers.has('set-cookie');

/** Adds the cookie tests through `api(name, fn)`; `make(options)` makes a rotator. */
export function cookieTests(env, api, make) {
  const { MemoryStore, rotauth, screenRequest, startSession, signOutHeaders } = env.hono;

  /** A cookie-mode app at a clock the test moves, signed in at T0. */
  async function app(extra = {}) {
    const rotator = await make();
    const store = new MemoryStore();
    const clock = { now: T0 };
    const options = { rotator, store, protocol: 'cookie', clock: () => clock.now, ...extra };
    const session = await startSession({ ...options, uid: UID, now: T0 });
    const middleware = rotauth(options);
    /** Runs the middleware as Hono would: its own answer, or the handler's with its headers. */
    async function call(method, headers = {}) {
      const request = requestLike(method, { host: 'app.example', ...headers });
      const c = {
        req: { raw: request },
        vars: {},
        set(name, value) {
          this.vars[name] = value;
        },
        json: (body, status) => new Response(JSON.stringify(body), { status }),
        // The handler's response, as the middleware sees it: headers it can add to. (A
        // browser drops `Set-Cookie` from a `Response` a script makes.)
        res: { status: 200, headers: new Headers() },
      };
      const answered = await middleware(c, async () => {});
      return { response: answered ?? c.res, vars: c.vars };
    }
    return { rotator, store, clock, session, call, options };
  }

  const setCookies = (headers) => headers.getSetCookie();
  /**
   * What the middleware reads of a request. Not a `Request`: a browser drops `Cookie`,
   * `Host`, `Origin` and `Sec-Fetch-Site` from the headers a script gives one.
   */
  const requestLike = (method, headers) => ({ method, url: 'https://app.example/me', headers: new Headers(headers) });
  const pairOf = (setCookie) => setCookie.split(';')[0];

  api('cookie_rotation_sets_the_cookie_with_exact_attributes_and_a_batch_sets_nothing', async () => {
    const { session, call, clock } = await app();
    const [set] = setCookies(session.headers);
    const cookie = pairOf(set);
    ok(cookie.startsWith(`${NAME}=${session.clientId}.`), cookie);
    equal(set, `${cookie}; Path=/; Expires=${EXPIRES(T0 + 14 * 86_400_000)}; Secure; HttpOnly; SameSite=Lax`);
    equal(session.headers.get('cache-control'), 'no-store');

    let { response, vars } = await call('GET', { cookie });
    equal(response.status, 200);
    deepEqual(setCookies(response.headers), [], 'a batch sets nothing');
    equal(vars.rotauth.uid, UID, 'the uid is the stored session’s');

    clock.now = T0 + W + 1;
    ({ response } = await call('GET', { cookie: `a=1; ${cookie}` }));
    const sets = setCookies(response.headers);
    equal(sets.length, 1);
    const next = pairOf(sets[0]);
    ok(next !== cookie && next.startsWith(`${NAME}=${session.clientId}.`), 'the next token');
    ok(sets[0].endsWith('; Secure; HttpOnly; SameSite=Lax'), sets[0]);
    equal(response.headers.get('cache-control'), 'no-store');
  });

  api('cookie_a_refusal_keeps_the_cookie_and_a_revocation_clears_it', async () => {
    const { session, call, clock } = await app();
    const first = pairOf(setCookies(session.headers)[0]);
    clock.now = T0 + W + 1;
    const second = pairOf(setCookies((await call('GET', { cookie: first })).response.headers)[0]);
    clock.now = T0 + 3 * W;
    const { response } = await call('GET', { cookie: first });
    equal(response.status, 401);
    deepEqual(setCookies(response.headers), [], 'a late 401 leaves the newer cookie alone');
    deepEqual(await response.json(), { errors: ['unauthorized'] });
    equal((await call('GET')).response.status, 401);
    equal((await call('GET', { cookie: second })).response.status, 200);

    const revoking = await app({ rotator: await make({ replayPolicy: 'revoke_session' }) });
    const old = pairOf(setCookies(revoking.session.headers)[0]);
    revoking.clock.now = T0 + W + 1;
    equal(setCookies((await revoking.call('GET', { cookie: old })).response.headers).length, 1);
    revoking.clock.now = T0 + 3 * W;
    const revoked = (await revoking.call('GET', { cookie: old })).response;
    equal(revoked.status, 401);
    if (keepsSetCookie()) {
      deepEqual(setCookies(revoked.headers), setCookies(signOutHeaders()), 'a revocation clears both cookies');
    }
    equal(revoking.store.size, 0);
  });

  api('cookie_sign_out_clears_both_cookies', async () => {
    const clear = (name, httpOnly) =>
      `${name}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure${httpOnly ? '; HttpOnly' : ''}; SameSite=Strict`;
    deepEqual(setCookies(signOutHeaders({ cookie: { sameSite: 'Strict' } })), [clear(NAME, true), clear(`${NAME}-csrf`, false)]);
  });

  api('cookie_a_cross_site_post_is_403_before_the_loop_and_keeps_the_cookie', async () => {
    const { session, call, clock, store } = await app();
    const cookie = pairOf(setCookies(session.headers)[0]);
    clock.now = T0 + W + 1;
    const before = (await store.get(session.clientId)).version;
    for (const [headers, reason] of [
      [{ origin: 'https://evil.example' }, 'cross_origin'],
      [{ origin: 'null' }, 'cross_origin'],
      [{ 'sec-fetch-site': 'cross-site' }, 'cross_site'],
      [{ 'sec-fetch-site': 'same-site' }, 'cross_site'],
      [{}, 'unknown_origin'],
    ]) {
      const { response } = await call('POST', { cookie, ...headers });
      equal(response.status, 403, reason);
      deepEqual(setCookies(response.headers), []);
      deepEqual(await response.json(), { errors: ['forbidden'], reason });
    }
    equal((await store.get(session.clientId)).version, before, 'no rotation spent');
    for (const passing of [{ origin: 'https://app.example' }, { 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-site': 'none' }]) {
      const { response } = await call('POST', { cookie, ...passing });
      equal(response.status, 200, JSON.stringify(passing));
    }
    equal((await call('GET', { cookie, origin: 'https://evil.example' })).response.status, 200, 'a safe method is not screened');
    // A sign-in route screens before its password check (login CSRF).
    const signIn = (headers) => requestLike('POST', { host: 'app.example', ...headers });
    equal(screenRequest({ protocol: 'cookie' }, signIn({ origin: 'https://evil.example' })), 'cross_origin');
    equal(screenRequest({ protocol: 'cookie' }, signIn({ origin: 'https://app.example' })), undefined);
    equal(screenRequest({}, signIn({ origin: 'https://evil.example' })), undefined, 'devise mode screens nothing');
  });

  api('cookie_allowed_origins_same_site_and_clients_that_are_not_browsers', async () => {
    const { session, call } = await app({
      csrf: { allowedOrigins: ['https://Admin.example/'], allowSameSite: true, allowUnknownOrigin: true },
    });
    const cookie = pairOf(setCookies(session.headers)[0]);
    for (const passing of [{ origin: 'https://admin.example' }, { 'sec-fetch-site': 'same-site' }, {}]) {
      equal((await call('POST', { cookie, ...passing })).response.status, 200, JSON.stringify(passing));
    }
    equal((await call('POST', { cookie, origin: 'https://evil.example' })).response.status, 403);
    equal((await call('POST', { cookie, 'sec-fetch-site': 'cross-site' })).response.status, 403);
  });

  api('cookie_double_submit_needs_the_header_equal_to_the_readable_cookie', async () => {
    const { session, call } = await app({ cookie: { doubleSubmit: true } });
    const sets = setCookies(session.headers);
    equal(sets.length, 2);
    const csrf = pairOf(sets[1]);
    equal(csrf, `${NAME}-csrf=${session.clientId}`);
    ok(sets[1].endsWith('; Secure; SameSite=Lax'), 'readable by scripts');
    const both = `${pairOf(sets[0])}; ${csrf}`;
    const origin = 'https://app.example';
    const wrong = (session.clientId[0] === 'B' ? 'C' : 'B') + session.clientId.slice(1);
    const reasonOf = async (headers) => {
      const { response } = await call('POST', { origin, ...headers });
      return response.status === 403 ? (await response.json()).reason : response.status;
    };
    equal(await reasonOf({ cookie: both }), 'csrf_token', 'no header');
    equal(await reasonOf({ cookie: both, 'x-csrf-token': wrong }), 'csrf_token', 'another value');
    const tossed = `${pairOf(sets[0])}; ${NAME}-csrf=${wrong}`;
    equal(await reasonOf({ cookie: tossed, 'x-csrf-token': wrong }), 'csrf_token', 'not the session’s');
    equal(await reasonOf({ cookie: both, 'x-csrf-token': session.clientId }), 200);
    equal(await reasonOf({ cookie: both, 'x-csrf-token': session.clientId, origin: 'https://evil.example' }), 'cross_origin');
  });

  api('cookie_duplicates_of_the_name_are_refused_unless_they_agree', async () => {
    const { session, call, rotator, store, options } = await app();
    const cookie = pairOf(setCookies(session.headers)[0]);
    const other = await startSession({ ...options, rotator, store, uid: 'b@example.com', now: T0 });
    const tossed = pairOf(setCookies(other.headers)[0]);
    for (const header of [`a=1; ${cookie};b=2`, `  ${cookie}  ;${cookie}`]) {
      equal((await call('GET', { cookie: header })).response.status, 200, header);
    }
    for (const header of [`${cookie}; ${tossed}`, `${tossed}; ${cookie}`, `${cookie}; ${NAME}=`]) {
      const { response } = await call('GET', { cookie: header });
      equal(response.status, 401, header);
    }
    equal((await env.hono.authenticate(options, requestLike('GET', { cookie: `${cookie}; ${tossed}` }))).reason, 'malformed_credentials');
    for (const [header, reason] of [
      [`${NAME}=`, 'no_credentials'],
      ['__host-rotauth=x.y', 'no_credentials'],
      [`${NAME}=nodot`, 'malformed_credentials'],
      [`${NAME}="a.b"`, 'malformed_credentials'],
    ]) {
      const result = await env.hono.authenticate(options, requestLike('GET', { cookie: header }));
      equal(result.reason, reason, header);
    }
  });

  api('cookie_settings_are_checked_at_start_up', async () => {
    const rotator = await make();
    const store = new MemoryStore();
    for (const cookie of [{ name: 'a b' }, { name: 'x', csrfName: 'x' }, { sameSite: 'None' }]) {
      throws(() => rotauth({ rotator, store, protocol: 'cookie', cookie }), TypeError);
    }
    throws(() => rotauth({ rotator, store, protocol: 'cookies' }), TypeError);
  });
}
