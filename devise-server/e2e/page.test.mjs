// The demo page at GET / in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core; no browser is downloaded): sign up, let the batch window run out, fire
// a burst and read the timeline (one rotation, the rest batch members), an unbatched
// burst (its forced request rotates, the rest batch), and a replay (refused).
//
//   node devise-server/e2e/page.test.mjs        # DEVISE_SERVER_BIN=path/to/devise_server
//
// Prints "N passed, N failed" and exits non-zero on any failure.
import { check, runInChromium, startServer } from "./harness.mjs";

const WINDOW_MS = 1500;
const N = 5;

const { url } = await startServer(["--batch-window-ms", String(WINDOW_MS)]);
await runInChromium("page test ran to the end", 120000, async (browser) => {
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
});
