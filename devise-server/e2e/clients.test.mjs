// devise_token_auth's JavaScript clients against devise_server from another origin, in
// headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): a page on one
// 127.0.0.1 port loads the client library, the API listens on another port with
// `--cors-origin` set to the page's origin, each client in the configuration the README
// recommends for it. Covered so far: j-toker (jQuery; form-encoded bodies, If-Modified-Since
// on every request, stores every response's headers, so the server runs with
// `--batch-token current`), @websanova/vue-auth 4's devise driver (Vue 3, axios, as ES
// modules through an import map; the server's defaults; `staySignedIn: false`),
// ng-token-auth (AngularJS 1.8; the server's defaults), devise-token-auth-client (axios 0.17;
// the server's defaults; `baseURL`) and redux-token-auth (React 15 + Redux 3 + axios 0.16; it
// never reads a token after sign-in, so the server runs with `--no-rotation`). The last two
// ship as CommonJS only: bundle.mjs bundles them with esbuild before Chromium starts.
//
//   node devise-server/e2e/clients.test.mjs     # DEVISE_SERVER_BIN=path/to/devise_server
//
// Prints "N passed, N failed" and exits non-zero on any failure.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join, dirname, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleClients } from "./bundle.mjs";
import { check, runInChromium, startServer } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");

// A request from Node (not a client library) with the given devise headers: its status.
async function rawStatus(base, path, creds) {
  const headers = {};
  for (const key of ["access-token", "client", "uid"]) if (creds && creds[key]) headers[key] = creds[key];
  const r = await fetch(base + path, { headers });
  await r.arrayBuffer();
  return r.status;
}

// The pages' origin: static files from node_modules, the bundles and one HTML page per client.
const bundles = await bundleClients();
const pages = {
  "/j-toker.html": (api) => `<!doctype html><meta charset="utf-8"><title>j-toker</title>
<script src="/m/jquery/dist/jquery.js"></script>
<script src="/m/jquery.cookie/jquery.cookie.js"></script>
<script src="/m/jquery-deparam/jquery-deparam.js"></script>
<script src="/m/pubsub-js/src/pubsub.js"></script>
<script src="/m/j-toker/dist/jquery.j-toker.js"></script>
<script>$.auth.configure({ apiUrl: ${JSON.stringify(api)} }); window.ready = true;</script>`,
  // ng-token-auth on AngularJS 1.8 with angular-cookie, as its README sets it up.
  "/ng-token-auth.html": (api) => `<!doctype html><meta charset="utf-8"><title>ng-token-auth</title>
<script src="/m/angular/angular.js"></script>
<script src="/m/angular-cookie/angular-cookie.js"></script>
<script src="/m/ng-token-auth/dist/ng-token-auth.js"></script>
<script>
angular.module("app", ["ng-token-auth"])
  .config(["$authProvider", function ($authProvider) {
    $authProvider.configure({ apiUrl: ${JSON.stringify(api)} });
  }])
  .run(["$auth", "$http", function ($auth, $http) { window.$auth = $auth; window.$http = $http; window.ready = true; }]);
</script>
<body ng-app="app"></body>`,
  // vue-auth 4 with Vue 3, vue-router 4 and axios 1 as ES modules (no build step), with
  // the devise driver and the options vue-auth's documentation gives for devise.
  "/vue-auth.html": (api) => `<!doctype html><meta charset="utf-8"><title>vue-auth</title>
<script type="importmap">{"imports": {
  "vue": "/m/vue/dist/vue.runtime.esm-browser.prod.js",
  "vue-router": "/m/vue-router/dist/vue-router.esm-browser.js",
  "@vue/devtools-api": "/m/@vue/devtools-api/lib/esm/index.js",
  "axios": "/m/axios/dist/esm/axios.js"}}</script>
<div id="app"></div>
<script type="module">
import { createApp, h } from "vue";
import { createRouter, createWebHashHistory } from "vue-router";
import axios from "axios";
import { createAuth } from "/m/@websanova/vue-auth/dist/v3/vue-auth.esm.js";
import driverAuthDevise from "/m/@websanova/vue-auth/dist/drivers/auth/devise.esm.js";
import driverHttpAxios from "/m/@websanova/vue-auth/dist/drivers/http/axios.1.x.esm.js";
import driverRouterVueRouter from "/m/@websanova/vue-auth/dist/drivers/router/vue-router.2.x.esm.js";
axios.defaults.baseURL = ${JSON.stringify(api)};
const router = createRouter({ history: createWebHashHistory(), routes: [{ path: "/", component: { render: () => null } }] });
const auth = createAuth({
  plugins: { http: axios, router },
  drivers: { http: driverHttpAxios, auth: driverAuthDevise, router: driverRouterVueRouter },
  options: {
    registerData: { url: "/auth", method: "POST", redirect: null },
    loginData: { url: "/auth/sign_in", method: "POST", redirect: null, fetchUser: true },
    logoutData: { url: "/auth/sign_out", method: "DELETE", redirect: null, makeRequest: true },
    fetchData: { url: "/auth/validate_token", method: "GET", enabled: true },
    refreshData: { enabled: false },
  },
});
const app = createApp({ render: () => h("div") });
app.use(router);
app.use(auth);
app.mount("#app");
window.auth = auth;
window.axios = axios;
window.ready = true;
</script>`,
  // devise-token-auth-client as its README sets it up in a browser (the cookie session
  // handler), with axios's spelling `baseURL`: the README's `baseUrl` is not an axios option
  // and would send the requests to the page's own origin. `dispatch` (its Redux hook) records
  // the actions it dispatches, so the test sees SIGN_OUT_SUCCESS from SIGN_OUT_ERROR.
  "/devise-token-auth-client.html": (api) => `<!doctype html><meta charset="utf-8"><title>devise-token-auth-client</title>
<script src="/bundle/devise-token-auth-client.js"></script>
<script>
window.actions = [];
const ApiClient = DeviseTokenAuthClient.default;
window.client = new ApiClient({ baseURL: ${JSON.stringify(api)}, dispatch: (action) => window.actions.push(action.type) });
window.client.isInitialized.then(() => { window.ready = true; });
</script>`,
  "/redux-token-auth.html": (api) => `<!doctype html><meta charset="utf-8"><title>redux-token-auth</title>
<div id="app"></div>
<script>window.reduxTokenAuthConfig = { apiUrl: ${JSON.stringify(api)} };</script>
<script src="/bundle/redux-token-auth-app.js"></script>`,
};
function startPages(apiRef) {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      const path = new URL(req.url, "http://x").pathname;
      if (path === "/favicon.ico") { res.writeHead(204); return res.end(); }
      if (pages[path]) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        return res.end(pages[path](apiRef.url));
      }
      if (path.startsWith("/bundle/") && bundles[path.slice(8)]) {
        res.writeHead(200, { "content-type": "application/javascript" });
        return res.end(bundles[path.slice(8)]);
      }
      if (path.startsWith("/m/")) {
        const file = normalize(join(modules, path.slice(3)));
        if (file.startsWith(modules)) {
          try {
            const body = readFileSync(file);
            res.writeHead(200, { "content-type": "application/javascript" });
            return res.end(body);
          } catch (e) { /* fall through */ }
        }
      }
      res.writeHead(404);
      res.end();
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

const apiRef = { url: "" };
const pageServer = await startPages(apiRef);
const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
let browser, api;

// A fresh API (`--cors-origin` the pages' origin, a 1 s batch window, then `flags`) and a
// page of the pages' origin on it, the page's console errors and uncaught exceptions
// collected in `errors`.
async function openClient(path, flags = []) {
  const server = await startServer(["--cors-origin", pageOrigin, "--batch-window-ms", "1000", ...flags]);
  apiRef.url = server.url;
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(pageOrigin + path);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 20000 });
  return { server, page, errors };
}

await runInChromium("clients test ran to the end", 240000, async (chromium) => {
  browser = chromium;

  // ---- j-toker: README configuration `--batch-token current`.
  const jt = await openClient("/j-toker.html", ["--batch-token", "current"]);
  api = jt.server;
  const page = jt.page, consoleErrors = jt.errors;
  // jQuery deferreds into promises that resolve with the status (and the body).
  const call = (fn, arg) => page.evaluate(([fn, arg]) => new Promise((resolve) => {
    const d = fn === "ajax"
      ? $.ajax({ url: $.auth.getApiUrl() + arg, type: "GET" })
      : $.auth[fn](arg);
    d.then(
      (body, _s, xhr) => resolve({ ok: true, status: (xhr && xhr.status) || 200, body }),
      (xhrOrBody) => resolve({ ok: false, status: (xhrOrBody && xhrOrBody.status) || 0, body: xhrOrBody && (xhrOrBody.data || xhrOrBody.responseJSON || xhrOrBody) }));
  }), [fn, arg]);
  const email = "jtoker-" + Date.now() + "@example.com";
  let r = await call("emailSignUp", { email, password: "correct horse battery", password_confirmation: "correct horse battery" });
  check("j-toker: emailSignUp (form-encoded, cross-origin)", r.ok, JSON.stringify(r));
  r = await call("emailSignIn", { email, password: "correct horse battery" });
  check("j-toker: emailSignIn", r.ok, JSON.stringify(r));
  r = await call("validateToken");
  check("j-toker: validateToken (If-Modified-Since allowed by the preflight)", r.ok, JSON.stringify(r));
  // A burst inside the window, then requests after it: the stored token keeps working.
  const burst = await page.evaluate(() => Promise.all([1, 2, 3, 4].map(() => new Promise((resolve) =>
    $.ajax({ url: $.auth.getApiUrl() + "/demo/members_only" }).then(() => resolve(200), (x) => resolve(x.status))))));
  check("j-toker: a burst of 4 is served", burst.every((s) => s === 200), JSON.stringify(burst));
  await new Promise((res) => setTimeout(res, 1200));
  for (let i = 0; i < 3; i++) {
    r = await call("ajax", "/demo/members_only");
    check(`j-toker: request ${i + 1} after the window`, r.ok, JSON.stringify(r));
    await new Promise((res) => setTimeout(res, 1100));
  }
  r = await call("updateAccount", { email: "2" + email });
  check("j-toker: updateAccount (PUT /auth)", r.ok, JSON.stringify(r));
  r = await call("ajax", "/demo/members_only");
  check("j-toker: signed in under the new uid", r.ok && r.body.data.user.uid === "2" + email, JSON.stringify(r));
  r = await call("destroyAccount");
  check("j-toker: destroyAccount (DELETE /auth)", r.ok, JSON.stringify(r));
  check("j-toker: no console errors", consoleErrors.length === 0, consoleErrors.join("; "));
  await page.close();
  api.child.kill("SIGTERM");

  // Why `current`: with devise's blank batch tokens j-toker stores the blank and is
  // signed out at its first request after the window.
  const jtBlank = await openClient("/j-toker.html");
  api = jtBlank.server;
  const blank = jtBlank.page;
  const outcome = await blank.evaluate(async (email) => {
    const p = (d) => new Promise((resolve) => d.then(() => resolve(200), (x) => resolve((x && x.status) || 0)));
    await p($.auth.emailSignUp({ email, password: "correct horse battery", password_confirmation: "correct horse battery" }));
    await p($.auth.emailSignIn({ email, password: "correct horse battery" }));
    const burst = await Promise.all([1, 2, 3].map(() => p($.ajax({ url: $.auth.getApiUrl() + "/demo/members_only" }))));
    await new Promise((res) => setTimeout(res, 1200));
    const after = await p($.ajax({ url: $.auth.getApiUrl() + "/demo/members_only" }));
    return { burst, after };
  }, "blank-" + Date.now() + "@example.com");
  check("j-toker with --batch-token blank: served in the burst, then refused (why the README recommends current)",
    outcome.burst.every((s) => s === 200) && outcome.after === 401, JSON.stringify(outcome));
  await blank.close();
  api.child.kill("SIGTERM");

  // ---- vue-auth's devise driver: README configuration, the defaults (blank batch
  // tokens; the driver ignores a blank access-token and keeps the newest expiry).
  const va = await openClient("/vue-auth.html");
  api = va.server;
  const vue = va.page, vueErrors = va.errors;
  const vueEmail = "vue-" + Date.now() + "@example.com";
  const v = await vue.evaluate(async (email) => {
    const out = {};
    const status = (p) => p.then((r) => (r && r.status) || 200, (e) => (e && e.response && e.response.status) || String(e));
    const password = "correct horse battery";
    out.register = await status(auth.register({ data: { email, password, password_confirmation: password }, autoLogin: false, redirect: null }));
    out.login = await status(auth.login({ data: { email, password }, redirect: null, fetchUser: true, staySignedIn: false }));
    out.check = auth.check();
    out.uid = auth.user() && auth.user().uid;
    out.burst = await Promise.all([1, 2, 3, 4].map(() => status(axios.get("/demo/members_only"))));
    out.after = [];
    for (let i = 0; i < 3; i++) {
      await new Promise((res) => setTimeout(res, 1100));
      out.after.push(await status(axios.get("/demo/members_only")));
    }
    out.update = await status(axios.put("/auth", { email: "2" + email }));
    out.logout = await status(auth.logout({ redirect: null, makeRequest: true }));
    out.checkAfter = auth.check();
    return out;
  }, vueEmail);
  check("vue-auth: register", v.register === 200, JSON.stringify(v));
  check("vue-auth: login and fetch the user", v.login === 200 && v.check === true && v.uid === vueEmail, JSON.stringify(v));
  check("vue-auth: a burst of 4 is served", v.burst.every((s) => s === 200), JSON.stringify(v.burst));
  check("vue-auth: requests after the window follow the rotation", v.after.every((s) => s === 200), JSON.stringify(v.after));
  check("vue-auth: account update (PUT /auth)", v.update === 200, JSON.stringify(v));
  check("vue-auth: logout", v.logout === 200 && v.checkAfter === false, JSON.stringify(v));
  check("vue-auth: no console errors", vueErrors.length === 0, vueErrors.join("; "));
  await vue.close();
  api.child.kill("SIGTERM");

  // ---- ng-token-auth: the server's defaults (it ignores blank batch headers and keeps
  // the newest expiry).
  const nta = await openClient("/ng-token-auth.html");
  api = nta.server;
  const ng = nta.page, ngErrors = nta.errors;
  // The API requests the client makes from here on, with their headers.
  const ngRequestHeaders = [];
  ng.on("request", (req) => { if (req.url().startsWith(api.url)) ngRequestHeaders.push(req.headers()); });
  const ngEmail = "ng-" + Date.now() + "@example.com";
  const n = await ng.evaluate(async ([email, api]) => {
    const out = {};
    const status = (p) => new Promise((resolve) => p.then((r) => resolve((r && r.status) || 200), (e) => resolve((e && e.status) || JSON.stringify(e))));
    const password = "correct horse battery";
    out.register = await status($auth.submitRegistration({ email, password, password_confirmation: password }));
    out.login = await status($auth.submitLogin({ email, password }));
    out.validate = await status($auth.validateUser());
    out.burst = await Promise.all([1, 2, 3, 4].map(() => status($http.get(api + "/demo/members_only"))));
    out.after = [];
    for (let i = 0; i < 3; i++) {
      await new Promise((res) => setTimeout(res, 1100));
      out.after.push(await status($http.get(api + "/demo/members_only")));
    }
    out.update = await status($auth.updateAccount({ email: "2" + email }));
    out.members = await status($http.get(api + "/demo/members_only"));
    out.signOut = await status($auth.signOut());
    return out;
  }, [ngEmail, api.url]);
  check("ng-token-auth: submitRegistration", n.register === 200, JSON.stringify(n));
  check("ng-token-auth: submitLogin and validateUser", n.login === 200 && n.validate === 200, JSON.stringify(n));
  check("ng-token-auth: sends If-Modified-Since cross-origin",
    ngRequestHeaders.some((h) => "if-modified-since" in h), JSON.stringify(ngRequestHeaders.slice(-1)));
  check("ng-token-auth: a burst of 4 is served", n.burst.every((s) => s === 200), JSON.stringify(n.burst));
  check("ng-token-auth: requests after the window follow the rotation", n.after.every((s) => s === 200), JSON.stringify(n.after));
  check("ng-token-auth: updateAccount (PUT /auth), then served under the new uid", n.update === 200 && n.members === 200, JSON.stringify(n));
  check("ng-token-auth: signOut", n.signOut === 200, JSON.stringify(n));
  // At page load ng-token-auth validates a token it does not have yet and leaves the
  // rejection ("No credentials", its own) unhandled; anything else is an error.
  const ngOther = ngErrors.filter((e) => !e.includes("No credentials"));
  check("ng-token-auth: no console errors", ngOther.length === 0, ngOther.join("; "));
  await ng.close();
  api.child.kill("SIGTERM");

  // ---- devise-token-auth-client: the server's defaults (its response interceptor stores a
  // response's headers only when `access-token` is not blank, so batch answers are ignored).
  const dtc = await openClient("/devise-token-auth-client.html");
  api = dtc.server;
  const dtac = dtc.page, dtacErrors = dtc.errors;
  const dtacEmail = "dtac-" + Date.now() + "@example.com";
  const dt = await dtac.evaluate(async (email) => {
    const out = {};
    const password = "correct horse battery";
    const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
    const status = (p) => p.then((r) => (r && r.status) || 200, (e) => (e && e.response && e.response.status) || String(e && e.message || e));
    const stored = async () => (await client.session.get()) || {};
    // What each response carried in access-token, as the library saw it ("" = blank).
    const carried = [];
    client.interceptors.response.use((r) => { carried.push(r.headers["access-token"] || ""); return r; });
    try {
      out.signUp = (await client.emailSignUp({ email, password, passwordConfirmation: password })).uid;
    } catch (e) { out.signUp = String(e.message) + JSON.stringify(e.validationErrors); }
    const signUpCreds = await stored();
    try {
      out.signIn = (await client.emailSignIn({ email, password })).uid;
    } catch (e) { out.signIn = String(e.message) + JSON.stringify(e.validationErrors); }
    const signInCreds = await stored();
    out.newSession = !!signInCreds.client && signInCreds.client !== signUpCreds.client;
    try { out.validate = (await client.validateToken()).uid; } catch (e) { out.validate = String(e.message); }
    await sleep(1100);
    const before = (await stored())["access-token"];
    carried.length = 0;
    out.burst = await Promise.all([1, 2, 3, 4].map(() => status(client.get("demo/members_only"))));
    out.burstTokens = carried.filter((t) => t !== "").length;
    const afterBurst = await stored();
    out.burstStored = afterBurst["access-token"] !== before && carried.includes(afterBurst["access-token"]);
    out.after = [];
    const tokens = new Set([afterBurst["access-token"]]);
    for (let i = 0; i < 3; i++) {
      await sleep(1100);
      out.after.push(await status(client.get("demo/members_only")));
      tokens.add((await stored())["access-token"]);
    }
    out.distinctTokens = tokens.size;
    out.update = await status(client.put("auth", { email: "2" + email }));
    out.uidAfterUpdate = (await stored()).uid;
    return out;
  }, dtacEmail);
  check("devise-token-auth-client: emailSignUp", dt.signUp === dtacEmail, JSON.stringify(dt));
  check("devise-token-auth-client: emailSignIn (a new session) and validateToken",
    dt.signIn === dtacEmail && dt.newSession && dt.validate === dtacEmail, JSON.stringify(dt));
  check("devise-token-auth-client: a burst of 4 is served, one response rotates and the client keeps its token",
    dt.burst.every((s) => s === 200) && dt.burstTokens === 1 && dt.burstStored, JSON.stringify(dt));
  check("devise-token-auth-client: requests after the window rotate and are served",
    dt.after.every((s) => s === 200) && dt.distinctTokens === 4, JSON.stringify(dt));
  check("devise-token-auth-client: account update (PUT /auth) stores the new uid",
    dt.update === 200 && dt.uidAfterUpdate === "2" + dtacEmail, JSON.stringify(dt));
  // A reload: the new client instance reads the cookie and validates it at start.
  await new Promise((res) => setTimeout(res, 1100));
  await dtac.reload();
  await dtac.waitForFunction(() => window.ready === true, null, { timeout: 20000 });
  const dr = await dtac.evaluate(async () => {
    const out = { init: window.actions.slice() };
    const r = await client.get("demo/members_only").then((r) => r, (e) => e.response);
    out.members = r && r.status;
    out.uid = r && r.data && r.data.data && r.data.data.user && r.data.data.user.uid;
    out.creds = await client.session.get();
    return out;
  });
  check("devise-token-auth-client: after a reload the stored token validates and is served",
    dr.init.includes("@@dtaClient:VALIDATE_TOKEN_SUCCESS") && dr.members === 200 && dr.uid === "2" + dtacEmail,
    JSON.stringify({ init: dr.init, members: dr.members, uid: dr.uid }));
  const dso = await dtac.evaluate(async () => {
    window.actions.length = 0;
    await client.signOut();
    return { actions: window.actions.slice(), creds: await client.session.get() };
  });
  check("devise-token-auth-client: signOut is accepted with the token it ended with",
    dso.actions.includes("@@dtaClient:SIGN_OUT_SUCCESS") && !dso.actions.includes("@@dtaClient:SIGN_OUT_ERROR") && !(dso.creds && dso.creds["access-token"]),
    JSON.stringify(dso.actions));
  check("devise-token-auth-client: its last token is refused after sign-out",
    !!(dr.creds && dr.creds["access-token"]) && await rawStatus(api.url, "/demo/members_only", dr.creds) === 401);
  check("devise-token-auth-client: no console errors", dtacErrors.length === 0, dtacErrors.join("; "));
  await dtac.close();
  api.child.kill("SIGTERM");

  // ---- redux-token-auth: `--no-rotation` (devise's change_headers_on_each_request = false).
  // It sets the token of sign-up, sign-in and validate_token on axios's default headers and
  // never reads another response's headers, so it cannot follow a rotation.
  const rtc = await openClient("/redux-token-auth.html", ["--no-rotation"]);
  api = rtc.server;
  const rta = rtc.page, rtaErrors = rtc.errors;
  const rtaEmail = "rta-" + Date.now() + "@example.com";
  const rt = await rta.evaluate(async ([email, api]) => {
    const { store, actions, axios } = window.app;
    const out = { log: [] };
    const password = "correct horse battery";
    const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
    const user = () => store.getState().reduxTokenAuth.currentUser;
    const text = () => document.getElementById("status").textContent;
    // The status and token of every response, the library's own requests included.
    axios.interceptors.response.use(
      (r) => { out.log.push([r.config.method, r.config.url.replace(api, ""), r.status, r.headers["access-token"] || ""]); return r; },
      (e) => { out.log.push([e.config.method, e.config.url.replace(api, ""), e.response && e.response.status]); throw e; });
    const status = (p) => p.then((r) => r.status, (e) => (e && e.response && e.response.status) || String(e));
    out.register = await status(store.dispatch(actions.registerUser({ email, password, passwordConfirmation: password })).then(() => ({ status: 200 })));
    out.afterRegister = [user().isSignedIn, user().attributes.uid];
    out.signIn = await status(store.dispatch(actions.signInUser({ email, password })).then(() => ({ status: 200 })));
    out.afterSignIn = [user().isSignedIn, user().attributes.uid, text()];
    const creds = () => ({ "access-token": localStorage.getItem("access-token"), client: localStorage.getItem("client"), uid: localStorage.getItem("uid") });
    // verifyToken, as verifyCredentials dispatches it (the stored credentials as parameters).
    await store.dispatch(actions.verifyToken(creds()));
    out.afterVerify = [user().isSignedIn, user().isLoading];
    out.burst = await Promise.all([1, 2, 3, 4].map(() => status(axios.get(api + "/demo/members_only"))));
    out.after = [];
    for (let i = 0; i < 3; i++) {
      await sleep(1100);
      out.after.push(await status(axios.get(api + "/demo/members_only")));
    }
    out.creds = creds();
    out.headersMatch = axios.defaults.headers.common["access-token"] === out.creds["access-token"];
    return out;
  }, [rtaEmail, api.url]);
  const rtaToken = rt.creds["access-token"];
  check("redux-token-auth: registerUser", rt.register === 200 && rt.afterRegister[0] === true && rt.afterRegister[1] === rtaEmail, JSON.stringify(rt));
  check("redux-token-auth: signInUser, and the connected component shows it",
    rt.signIn === 200 && rt.afterSignIn[0] === true && rt.afterSignIn[2] === "signed in as " + rtaEmail, JSON.stringify(rt.afterSignIn));
  check("redux-token-auth: verifyToken", rt.afterVerify[0] === true && rt.afterVerify[1] === false &&
    rt.log.some(([m, u, s]) => m === "get" && u.startsWith("/auth/validate_token") && s === 200), JSON.stringify(rt.log));
  check("redux-token-auth: a burst of 4 through axios is served", rt.burst.every((s) => s === 200), JSON.stringify(rt.burst));
  check("redux-token-auth: requests after the window are served", rt.after.every((s) => s === 200), JSON.stringify(rt.after));
  check("redux-token-auth: every response carries the token it holds (one token per session)",
    rt.headersMatch && rt.log.filter(([, u]) => u === "/demo/members_only").every((l) => l[3] === rtaToken), JSON.stringify(rt.log));
  check("redux-token-auth: the server accepts the token it holds",
    !!rtaToken && await rawStatus(api.url, "/auth/validate_token", rt.creds) === 200);
  const rso = await rta.evaluate(async () => {
    const { store, actions, axios } = window.app;
    const r = await store.dispatch(actions.signOutUser()).then(() => 200, (e) => (e && e.response && e.response.status) || String(e));
    return { status: r, signedIn: store.getState().reduxTokenAuth.currentUser.isSignedIn, stored: localStorage.getItem("access-token"),
      header: axios.defaults.headers.common["access-token"] || null, text: document.getElementById("status").textContent };
  });
  check("redux-token-auth: signOutUser", rso.status === 200 && rso.signedIn === false && rso.stored === null && rso.header === null && rso.text === "signed out", JSON.stringify(rso));
  check("redux-token-auth: its token is refused after sign-out",
    !!rtaToken && await rawStatus(api.url, "/demo/members_only", rt.creds) === 401);
  // A reload: the app's start calls verifyCredentials, which sends the stored credentials
  // as query parameters of GET /auth/validate_token, with no auth headers (devise reads
  // `params` when the headers are absent).
  const reloadCreds = await rta.evaluate(async (email) => {
    const { store, actions } = window.app;
    await store.dispatch(actions.signInUser({ email, password: "correct horse battery" }));
    return { "access-token": localStorage.getItem("access-token"), client: localStorage.getItem("client"), uid: localStorage.getItem("uid") };
  }, rtaEmail);
  check("redux-token-auth: signInUser again, its token accepted in the headers",
    !!reloadCreds["access-token"] && await rawStatus(api.url, "/auth/validate_token", reloadCreds) === 200);
  check("redux-token-auth: its stored credentials are accepted in the query string, as devise reads params",
    await rawStatus(api.url, "/auth/validate_token?" + new URLSearchParams(reloadCreds), {}) === 200);
  await rta.reload();
  await rta.waitForFunction(() => window.ready === true && !window.app.store.getState().reduxTokenAuth.currentUser.isLoading, null, { timeout: 20000 });
  const afterReload = await rta.evaluate(() => [window.app.store.getState().reduxTokenAuth.currentUser.isSignedIn, document.getElementById("status").textContent]);
  check("redux-token-auth: signed in after a reload (verifyCredentials)",
    afterReload[0] === true && afterReload[1] === "signed in as " + rtaEmail, JSON.stringify(afterReload));
  check("redux-token-auth: no console errors", rtaErrors.length === 0, rtaErrors.join("; "));
  await rta.close();
  api.child.kill("SIGTERM");

  // Why `--no-rotation`: with rotation the library keeps the token of sign-up, and the
  // second request after the window presents a replayed token.
  const rtcRot = await openClient("/redux-token-auth.html");
  api = rtcRot.server;
  const rtaRot = rtcRot.page;
  const rotated = await rtaRot.evaluate(async ([email, api]) => {
    const { store, actions, axios } = window.app;
    const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
    const status = (p) => p.then((r) => r.status, (e) => (e && e.response && e.response.status) || String(e));
    const password = "correct horse battery";
    await store.dispatch(actions.registerUser({ email, password, passwordConfirmation: password }));
    const out = [];
    for (let i = 0; i < 2; i++) {
      await sleep(1100);
      out.push(await status(axios.get(api + "/demo/members_only")));
    }
    return out;
  }, ["rta-rot-" + Date.now() + "@example.com", api.url]);
  check("redux-token-auth with rotation: the second request after the window is refused (why the README recommends --no-rotation)",
    rotated[0] === 200 && rotated[1] === 401, JSON.stringify(rotated));
  await rtaRot.close();
  api.child.kill("SIGTERM");
});
