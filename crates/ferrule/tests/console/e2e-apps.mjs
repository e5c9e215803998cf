// End-to-end test of custom apps in headless Chromium: a device made, a
// wrong file refused next to the field, the fixture app (tests/fixtures/app,
// zipped here) uploaded with its progress, opened — sandboxed under a pass,
// its script reads its settings and shows the tenant's device count through
// the API with the app's key, and cannot read the console with the viewer's
// session — and deleted. See lib.mjs for the environment.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BASE, step, check, watch, axe, shot, noHorizontalScroll, login, run } from "./lib.mjs";

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), "../fixtures/app");

// ---- a zip of stored (uncompressed) entries: enough for a test bundle

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function zip(files) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, body] of files) {
    const n = Buffer.from(name, "utf8");
    const crc = crc32(body);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(body.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(body.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, body);
    centrals.push(central, n);
    offset += 30 + n.length + body.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

const bundle = zip(["index.html", "app.js", "app.css"].map((f) => [f, readFileSync(join(FIXTURE, f))]));

run("e2e-apps", async (browser, problems) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page, problems);
  page.on("dialog", (d) => d.accept());
  await login(page);

  step("a device, for the app to count");
  await page.goto(`${BASE}/devices`);
  await page.fill("#device-id", "e2e-counted");
  await Promise.all([page.waitForNavigation(), page.click("text=Add device")]);

  step("the apps page, empty");
  await page.goto(`${BASE}/apps`);
  check((await page.textContent("main")).includes("No apps yet"), "the empty list is not said");
  await axe(page, "apps (empty)");

  step("a file that is no zip: refused next to the field");
  await page.setInputFiles("#app-bundle", { name: "notes.zip", mimeType: "application/zip", buffer: Buffer.from("not a zip") });
  check((await page.textContent("#app-bundle-status")).includes("9 bytes"), "the file's size is not shown");
  await page.click("text=Upload app");
  await page.waitForSelector("#app-bundle[aria-invalid=true]");
  const why = await page.textContent("#app-bundle-status");
  check(why.includes("zip"), `the refusal does not say why: ${why}`);
  await axe(page, "apps (refused bundle)");
  // That 400 was the point.
  for (let i = problems.length - 1; i >= 0; i--) {
    if (problems[i].startsWith("400 ") && problems[i].includes("/apps/-/upload")) problems.splice(i, 1);
  }

  step("the fixture app uploaded");
  await page.fill("#app-id", "counter");
  await page.fill("#app-name", "Device count");
  await page.setInputFiles("#app-bundle", { name: "counter.zip", mimeType: "application/zip", buffer: bundle });
  await Promise.all([page.waitForNavigation(), page.click("text=Upload app")]);
  check(new URL(page.url()).pathname === "/apps", `after the upload: ${page.url()}`);
  const link = page.locator("a", { hasText: "Device count" });
  const href = await link.getAttribute("href");
  check(href.endsWith("/counter/"), `the app's link is wrong: ${href}`);
  await axe(page, "apps (one app)");
  await shot(page, "apps-desktop");
  await page.setViewportSize({ width: 390, height: 844 });
  await noHorizontalScroll(page, "apps");
  await shot(page, "apps-phone");
  await page.setViewportSize({ width: 1280, height: 800 });

  step("opened: it counts the tenant's devices with its own key");
  await Promise.all([page.waitForNavigation(), link.click()]);
  await page.waitForFunction(() => document.getElementById("count").textContent !== "…");
  const count = await page.textContent("#count");
  check(count === "1", `the app shows ${count}`);
  await axe(page, "the custom app");

  step("sandboxed: the app's script cannot use the viewer's console session");
  check(/\/apps\/default\/counter\/~[^/]+\/$/.test(new URL(page.url()).pathname), `no pass in ${page.url()}`);
  const reach = await page.evaluate(async () => {
    let cookies;
    try {
      cookies = `read: ${document.cookie}`;
    } catch {
      cookies = "refused";
    }
    let console;
    try {
      const r = await fetch("/devices");
      console = `read ${r.status}`;
    } catch {
      console = "refused";
    }
    return { origin: window.origin, cookies, console };
  });
  check(reach.origin === "null", `the app runs in origin ${reach.origin}`);
  check(reach.cookies === "refused", `the app reads cookies: ${reach.cookies}`);
  check(reach.console === "refused", `the app reads a console page: ${reach.console}`);
  // The console page it tried is a CORS refusal in the console, as it should.
  for (let i = problems.length - 1; i >= 0; i--) {
    if (/CORS|Failed to fetch|net::ERR_FAILED/.test(problems[i])) problems.splice(i, 1);
  }
  await shot(page, "apps-custom-app");

  step("deleted: the list is empty again and the app is gone");
  await page.goto(`${BASE}/apps`);
  await Promise.all([page.waitForNavigation(), page.click("text=Delete Device count")]);
  check((await page.textContent("main")).includes("No apps yet"), "the app is still listed");
  const gone = await page.goto(`${BASE}${href}`);
  check(gone.status() === 404, `the deleted app answers ${gone.status()}`);
  await context.close();
});
