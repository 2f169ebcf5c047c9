// The suite in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core;
// no browser is downloaded): serves the repository on 127.0.0.1, opens test/browser.html,
// prints what the page logs and the closing count. Exits non-zero on a failure. Another
// suite page may be named, from the repository root: `node test/run-browser.mjs <path>`.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const suitePage = process.argv[2] ?? 'wasm/js/test/browser.html';
const allowed = ['wasm/js/lib/', 'wasm/js/test/', 'wasm/js/example/', 'wasm/js/node_modules/hono/', 'tests/vectors/'];
const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.html': 'text/html', '.txt': 'text/plain', '.wasm': 'application/wasm' };

const server = createServer((request, response) => {
  const path = normalize(decodeURIComponent(new URL(request.url, 'http://x').pathname)).replace(/^[/\\]+/, '');
  const file = join(root, path);
  const ok = allowed.some((prefix) => path.split(sep).join('/').startsWith(prefix)) && statSync(file, { throwIfNoEntry: false })?.isFile();
  if (!ok) {
    response.writeHead(path === 'favicon.ico' ? 204 : 404).end();
    return;
  }
  response.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
  response.end(readFileSync(file));
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();

const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const profile = mkdtempSync(join(tmpdir(), 'rotauth-chromium-'));
// A fresh profile directory per run (Playwright passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
let result;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const version = execFileSync(executablePath, ['--version'], { encoding: 'utf8' }).trim();
  page.on('console', (message) => {
    const text = message.text();
    console.log(/^\d+ passed, \d+ failed(, \d+ skipped)?$/.test(text) ? `chromium: ${text}` : text);
  });
  page.on('pageerror', (error) => console.log(`page error: ${error}`));
  console.log(`# ${version}`);
  await page.goto(`http://127.0.0.1:${port}/${suitePage}`);
  await page.waitForFunction(() => window.rotauthSuite !== undefined, null, { timeout: 120_000 });
  result = await page.evaluate(() => window.rotauthSuite);
} finally {
  await context.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exitCode = result?.failed === 0 && result?.passed > 0 ? 0 : 1;
