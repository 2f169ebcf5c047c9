// The demo page at GET / in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core; no browser is downloaded): sign up, let the batch window run out, fire
// a burst and read the timeline (one rotation, the rest batch members), an unbatched
// burst (its forced request rotates, the rest batch), and a replay (refused).
//
//   node devise-server/e2e/page.test.mjs        # DEVISE_SERVER_BIN=path/to/devise_server
//
// Prints "N passed, N failed" and exits non-zero on any failure.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.DEVISE_SERVER_BIN || join(here, "..", "..", "target", "debug", "devise_server");
const WINDOW_MS = 1500;
const N = 5;

let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) { passed++; console.log("ok   " + name); }
  else { failed++; console.log("FAIL " + name + (detail ? ": " + detail : "")); }
}

function startServer(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ["--addr", "127.0.0.1:0", "--db", ":memory:", "--quiet", ...args],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ROTAUTH_KEY: "ab".repeat(32) } });
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

const profile = mkdtempSync(join(tmpdir(), "rotauth-chromium-"));
const { child, url } = await startServer(["--batch-window-ms", String(WINDOW_MS), "--insecure-fast-hashing"]);
let browser;
const deadline = setTimeout(() => { console.log("FAIL timed out"); process.exit(1); }, 120000);
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = browser.pages()[0] || await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const response = await page.goto(url + "/");
  check("GET / serves the page", response.status() === 200 && (await page.title()).includes("rotation"));
  check("the page knows the batch window", (await page.textContent("#w")) === String(WINDOW_MS));

  await page.click("#sign-up");
  await page.waitForSelector("tr[data-kind=signin]");
  const who = await page.textContent("#who");
  check("sign-up through the page", who.startsWith("visitor-"), who);

  // Rows of the timeline as data.
  const rows = () => page.$$eval("#timeline tr", (trs) => trs.map((tr) => ({ ...tr.dataset, text: tr.textContent })));
  const burstRows = async (start) => {
    await page.waitForFunction((s) => document.querySelectorAll("tr[data-kind=burst-end]").length > s, start, { timeout: 20000 });
    const all = await rows();
    const begin = all.map((r) => r.kind).lastIndexOf("burst-start");
    const end = all.map((r) => r.kind).lastIndexOf("burst-end");
    return all.slice(begin + 1, end);
  };

  // A burst after the window: exactly one rotation, the rest batch members.
  await page.waitForSelector("tr[data-kind=window-end]", { timeout: WINDOW_MS + 5000 });
  await page.fill("#n", String(N));
  await page.click("#burst");
  let burst = await burstRows(0);
  let rotated = burst.filter((r) => r.kind === "rotate");
  let batch = burst.filter((r) => r.kind === "batch");
  check("burst: N responses, all 200", burst.length === N && burst.every((r) => r.status === "200"), JSON.stringify(burst));
  check("burst: one rotation, to generation 1", rotated.length === 1 && rotated[0].generation === "1", JSON.stringify(rotated));
  check("burst: the rest are batch members with the blank token", batch.length === N - 1, JSON.stringify(batch));
  check("current token shown at generation 1", (await page.textContent("#current")).includes("generation 1"));

  // An unbatched burst inside the window: the forced request rotates, the rest batch.
  await page.click("#unbatch");
  burst = await burstRows(1);
  rotated = burst.filter((r) => r.kind === "rotate");
  batch = burst.filter((r) => r.kind === "batch");
  check("unbatch burst: one rotation, to generation 2", rotated.length === 1 && rotated[0].generation === "2", JSON.stringify(burst));
  check("unbatch burst: the rest are batch members", batch.length === N - 1, JSON.stringify(burst));

  // One more rotation after the window, then a replay of a token two generations old.
  await page.waitForFunction(() => document.querySelectorAll("tr[data-kind=window-end]").length >= 2, null, { timeout: WINDOW_MS + 5000 });
  await page.click("#one");
  await page.waitForFunction(() => document.querySelectorAll("tr[data-kind=rotate][data-generation='3']").length === 1, null, { timeout: 10000 });
  await page.waitForFunction(() => document.querySelectorAll("tr[data-kind=window-end]").length >= 3, null, { timeout: WINDOW_MS + 5000 });
  await page.click("#replay");
  await page.waitForSelector("tr[data-kind=rejected]", { timeout: 10000 });
  const rejected = (await rows()).filter((r) => r.kind === "rejected");
  check("replay of an old token is refused with 401", rejected.length === 1 && rejected[0].status === "401", JSON.stringify(rejected));
  check("no script errors on the page", errors.length === 0, errors.join("; "));
} catch (e) {
  check("page test ran to the end", false, String(e && e.stack || e));
} finally {
  clearTimeout(deadline);
  if (browser) await browser.close().catch(() => {});
  child.kill("SIGTERM");
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
