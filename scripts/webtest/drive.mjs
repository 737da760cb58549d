// Drives the page in Debian's chromium (headless): upload N images, wait for N thumbnails
// and the count N, check the live chart shows a backend, screenshot, Reset (confirmed) and
// see the list empty. Usage: node drive.mjs URL OUTDIR IMAGE... ; prints one JSON line.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, outDir, ...images] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "fg-chromium-"));
const result = { ok: false, steps: [] };
const step = (s) => result.steps.push(s);
let browser;
try {
  // A fresh profile each run (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const page = browser.pages()[0] || await browser.newPage();
  page.on("dialog", (d) => d.accept());
  await page.goto(url);
  await page.setInputFiles("#files", images);
  await page.click("#upload");
  step("uploaded");
  await page.waitForFunction((n) => document.querySelectorAll("#grid .thumb").length === n,
                             images.length, { timeout: 60000 });
  await page.waitForFunction(() => [...document.querySelectorAll("#grid img")].every((i) => i.complete),
                             null, { timeout: 20000 });
  result.thumbs = await page.locator("#grid .thumb").count();
  result.count = (await page.textContent("#count")).trim();
  result.lines = (await page.textContent("#list")).trim().split("\n").length;
  await page.waitForFunction(() => Number(document.getElementById("c-backends").dataset.ready) > 0,
                             null, { timeout: 20000 });
  result.ready = Number(await page.getAttribute("#c-backends", "data-ready"));
  await page.waitForTimeout(2500); // a few seconds of chart
  fs.mkdirSync(outDir, { recursive: true });
  await page.screenshot({ path: path.join(outDir, "page-1280x800.png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(outDir, "page-phone.png") });
  await page.setViewportSize({ width: 1280, height: 800 });
  step("screenshots");
  await page.click("#reset");
  await page.waitForFunction(() => document.querySelectorAll("#grid .thumb").length === 0 &&
                             document.getElementById("list").textContent === "", null, { timeout: 10000 });
  result.after_reset = { thumbs: await page.locator("#grid .thumb").count(),
                         count: (await page.textContent("#count")).trim() };
  result.ok = true;
} catch (e) {
  result.error = String(e);
} finally {
  if (browser) await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
