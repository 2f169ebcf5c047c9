// devise_token_auth's JavaScript clients against devise_server from another origin, in
// headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): a page on one
// 127.0.0.1 port loads the client library, the API listens on another port with
// `--cors-origin` set to the page's origin, each client in the configuration the README
// recommends for it. Covered so far: j-toker (jQuery; form-encoded bodies, If-Modified-Since
// on every request, stores every response's headers, so the server runs with
// `--batch-token current`), @websanova/vue-auth 4's devise driver (Vue 3, axios, as ES
// modules through an import map; the server's defaults; `staySignedIn: false`), and
// ng-token-auth (AngularJS 1.8; the server's defaults).
//
//   node devise-server/e2e/clients.test.mjs     # DEVISE_SERVER_BIN=path/to/devise_server
//
// Prints "N passed, N failed" and exits non-zero on any failure.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const bin = process.env.DEVISE_SERVER_BIN || join(here, "..", "..", "target", "debug", "devise_server");

let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) { passed++; console.log("ok   " + name); }
  else { failed++; console.log("FAIL " + name + (detail ? ": " + detail : "")); }
}

// The pages' origin: static files from node_modules and one HTML page per client.
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

function startApi(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ["--addr", "127.0.0.1:0", "--db", ":memory:", "--quiet", "--insecure-fast-hashing", ...args],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ROTAUTH_KEY: "cd".repeat(32) } });
    let out = "";
    const timer = setTimeout(() => reject(new Error("server did not start")), 20000);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve({ child, url: m[1] }); }
    });
    child.on("exit", (code) => reject(new Error("server exited " + code)));
  });
}

const apiRef = { url: "" };
const pageServer = await startPages(apiRef);
const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
const profile = mkdtempSync(join(tmpdir(), "rotauth-chromium-"));
const deadline = setTimeout(() => { console.log("FAIL timed out"); process.exit(1); }, 120000);
let browser, api;
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });

  // ---- j-toker: README configuration `--batch-token current`.
  api = await startApi(["--cors-origin", pageOrigin, "--batch-token", "current", "--batch-window-ms", "1000"]);
  apiRef.url = api.url;
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  await page.goto(pageOrigin + "/j-toker.html");
  await page.waitForFunction(() => window.ready === true);
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
  api = await startApi(["--cors-origin", pageOrigin, "--batch-window-ms", "1000"]);
  apiRef.url = api.url;
  const blank = await browser.newPage();
  await blank.goto(pageOrigin + "/j-toker.html");
  await blank.waitForFunction(() => window.ready === true);
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
  api = await startApi(["--cors-origin", pageOrigin, "--batch-window-ms", "1000"]);
  apiRef.url = api.url;
  const vue = await browser.newPage();
  const vueErrors = [];
  vue.on("console", (m) => { if (m.type() === "error") vueErrors.push(m.text()); });
  vue.on("pageerror", (e) => vueErrors.push(String(e)));
  await vue.goto(pageOrigin + "/vue-auth.html");
  await vue.waitForFunction(() => window.ready === true, null, { timeout: 20000 });
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
  api = await startApi(["--cors-origin", pageOrigin, "--batch-window-ms", "1000"]);
  apiRef.url = api.url;
  const ng = await browser.newPage();
  const ngErrors = [];
  const ngRequestHeaders = [];
  ng.on("console", (m) => { if (m.type() === "error") ngErrors.push(m.text()); });
  ng.on("pageerror", (e) => ngErrors.push(String(e)));
  ng.on("request", (req) => { if (req.url().startsWith(api.url)) ngRequestHeaders.push(req.headers()); });
  await ng.goto(pageOrigin + "/ng-token-auth.html");
  await ng.waitForFunction(() => window.ready === true, null, { timeout: 20000 });
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
} catch (e) {
  check("clients test ran to the end", false, String(e && e.stack || e));
} finally {
  clearTimeout(deadline);
  if (browser) await browser.close().catch(() => {});
  if (api) api.child.kill("SIGTERM");
  pageServer.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
