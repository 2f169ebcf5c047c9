// What the browser tests share: the checks and their tally, devise_server processes that
// never outlive the test, and headless Chromium (Debian's /usr/bin/chromium, or CHROMIUM,
// driven by playwright-core; no browser is downloaded).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.DEVISE_SERVER_BIN || join(here, "..", "..", "target", "debug", "devise_server");

let passed = 0, failed = 0;
export function check(name, ok, detail) {
  if (ok) { passed++; console.log("ok   " + name); }
  else { failed++; console.log("FAIL " + name + (detail ? ": " + detail : "")); }
}

// Every server started, so that none outlives the test whatever fails.
const servers = [];

// A devise_server on 127.0.0.1:0 with a private in-memory database, cheap hashing and a
// test key, configured by `args`: `{ child, url }` once it listens.
export function startServer(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ["--addr", "127.0.0.1:0", "--db", ":memory:", "--quiet", "--insecure-fast-hashing", ...args],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ROTAUTH_KEY: "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0" } });
    servers.push(child);
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

// Runs `body(browser)` in a fresh headless Chromium profile within `timeoutMs`; a throw
// or the timeout is a failed check named `name`. Then stops every server, prints the
// tally and exits non-zero on any failure.
export async function runInChromium(name, timeoutMs, body) {
  const profile = mkdtempSync(join(tmpdir(), "rotauth-chromium-"));
  const deadline = setTimeout(() => {
    console.log("FAIL timed out");
    for (const child of servers) child.kill("SIGKILL");
    process.exit(1);
  }, timeoutMs);
  let browser;
  try {
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    await body(browser);
  } catch (e) {
    check(name, false, String(e && e.stack || e));
  } finally {
    clearTimeout(deadline);
    if (browser) await browser.close().catch(() => {});
    for (const child of servers) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}
