// Watches a camera's annotated stream in Debian's chromium (headless): a page with
// <img src=".../stream.mjpeg"> beside the camera's /v1/cameras entry, waits until the image
// has shown several frames, and screenshots it. Usage: node camview.mjs BASE_URL CAMERA
// OUT.png ; prints one JSON line (ok, width, height, frames seen, state).
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [base, cam, out] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "fg-chromium-"));
const result = { ok: false };
let browser;
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1100, height: 700 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const page = browser.pages()[0] || await browser.newPage();
  // Served by the gateway's origin (its /healthz), so the page may read /v1/cameras.
  await page.goto(`${base}/healthz`);
  await page.setContent(`<!doctype html><html><head><style>
      body { font: 14px system-ui, sans-serif; margin: 16px; display: flex; gap: 16px; }
      img { width: 640px; border: 1px solid #888; background: #222; }
      pre { font-size: 12px; margin: 0; white-space: pre-wrap; width: 400px; }
    </style></head><body>
    <div><h3>camera ${cam}: /v1/cameras/${cam}/stream.mjpeg</h3>
    <img id="live" src="${base}/v1/cameras/${cam}/stream.mjpeg"></div>
    <div><h3>/v1/cameras (${cam})</h3><pre id="info"></pre></div>
    <script>
      window.frames_seen = 0;
      async function info() {
        const r = await fetch("${base}/v1/cameras");
        const c = (await r.json()).cameras.find((x) => x.id === "${cam}");
        const { id, source, state, fps, frames, age_ms, pull } = c;
        document.getElementById("info").textContent =
          JSON.stringify({ id, source, state, fps, frames, age_ms, pull }, null, 1);
        window.cam_state = state;
        window.frames_seen = frames.served;
      }
      setInterval(info, 500); info();
    </script></body></html>`);
  await page.waitForFunction(() => document.getElementById("live").naturalWidth > 0, null,
                             { timeout: 30000 });
  const first = await page.evaluate(() => window.frames_seen);
  await page.waitForFunction((n) => window.frames_seen >= n + 5, first, { timeout: 30000 });
  await page.waitForTimeout(700);
  result.width = await page.evaluate(() => document.getElementById("live").naturalWidth);
  result.height = await page.evaluate(() => document.getElementById("live").naturalHeight);
  result.frames = await page.evaluate(() => window.frames_seen) - first;
  result.state = await page.evaluate(() => window.cam_state);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  await page.screenshot({ path: out });
  result.ok = true;
} catch (e) {
  result.error = String(e);
} finally {
  if (browser) await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
