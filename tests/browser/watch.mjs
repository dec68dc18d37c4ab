// Drives the watch page in the system's headless Chromium for tests/test_browser.py.
//
// Line protocol: this script prints one JSON object per line on stdout ({"step": ...}) and,
// between steps, waits for one line on stdin from the test, which acts on the server in the
// meantime (a Python watcher joins, the admin takes the stream offline).
//
// env: DROPTV_BASE (server URL), DROPTV_TOKEN_A / DROPTV_TOKEN_B (bearers of two users),
// DROPTV_SHOTS (directory for the screenshots), CHROMIUM (default /usr/bin/chromium).
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const base = process.env.DROPTV_BASE;
const shots = process.env.DROPTV_SHOTS;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const waitTest = async () => (await lines.next()).value;

const count = (page) => page.locator("#viewers-count").getAttribute("data-count");
async function countIs(page, n, timeout) {
  const started = Date.now();
  await page.waitForFunction((want) => document.getElementById("viewers-count").dataset.count === String(want), n, { timeout });
  return Date.now() - started;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const errors = [];
try {
  const desktop = await browser.newContext({ viewport: { width: 1366, height: 860 }, deviceScaleFactor: 1 });
  const page = await desktop.newPage();
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("console", (msg) => msg.type() === "error" && !/media|MEDIA|ERR_NAME|net::/.test(msg.text()) && errors.push(msg.text()));
  await page.goto(`${base}/watch/creator_001?token=${process.env.DROPTV_TOKEN_A}`);
  await page.waitForFunction(() => document.getElementById("live-badge").textContent === "LIVE", null, { timeout: 10000 });
  await page.waitForFunction(() => document.getElementById("token-expiry").textContent.includes(":"), null, { timeout: 10000 });
  say({
    step: "loaded",
    count: await count(page),
    badge: await page.textContent("#live-badge"),
    now: await page.textContent("#epg-now-title"),
    next: await page.textContent("#epg-next-title"),
    countdown: await page.textContent("#epg-countdown"),
    expiry: await page.textContent("#token-expiry"),
    url: await page.textContent("#stream-url"),
    health: await page.textContent("#health"),
    refreshes: await page.locator("#token-log li").count(),
  });

  await waitTest(); // a watcher joined from Python
  say({ step: "raised", ms: await countIs(page, 2, 3000), count: await count(page) });

  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const mobile = await phone.newPage();
  mobile.on("pageerror", (err) => errors.push(String(err)));
  await mobile.goto(`${base}/watch/creator_001?token=${process.env.DROPTV_TOKEN_B}`);
  await countIs(mobile, 3, 10000);
  await countIs(page, 3, 3000);
  await page.waitForTimeout(1100); // let the count's bump animation settle
  await page.screenshot({ path: `${shots}/watch-desktop.png` });
  await mobile.screenshot({ path: `${shots}/watch-phone.png`, fullPage: true });
  say({ step: "screenshots", desktop: `${shots}/watch-desktop.png`, phone: `${shots}/watch-phone.png` });

  await waitTest(); // the admin took the stream offline
  const started = Date.now();
  for (const p of [page, mobile]) {
    await p.waitForFunction(() => document.getElementById("live-badge").textContent === "OFFLINE", null, { timeout: 5000 });
  }
  say({
    step: "offline",
    ms: Date.now() - started,
    overlay: await page.textContent("#overlay-title"),
    conn: await page.textContent("#conn-text"),
    errors,
  });
} catch (err) {
  say({ step: "error", message: String(err && err.stack ? err.stack : err), errors });
  process.exitCode = 1;
} finally {
  await browser.close();
  process.stdin.destroy(); // the line reader would keep node running
}
