// End-to-end test of Ferrule's web console in headless Chromium.
//
// Run by the Rust test `console_e2e` (crates/ferrule/tests/integration),
// which starts a real server and passes, in the environment:
//   FERRULE_URL             http://127.0.0.1:PORT
//   FERRULE_MQTT_HOST/PORT  the server's MQTT listener
//   FERRULE_ADMIN_EMAIL / FERRULE_ADMIN_PASSWORD
//   FERRULE_SCREENSHOTS     where screenshots go (default: the workspace's
//                           target/console-screenshots; never the repository)
//   FERRULE_CHROMIUM        optional, default /usr/bin/chromium
// Exits non-zero with the reason on the first failure.

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("FERRULE_URL");
const MQTT_HOST = env("FERRULE_MQTT_HOST");
const MQTT_PORT = env("FERRULE_MQTT_PORT");
const EMAIL = env("FERRULE_ADMIN_EMAIL");
const PASSWORD = env("FERRULE_ADMIN_PASSWORD");
// The workspace's target/ (ignored by git), wherever this is run from.
const SHOTS = env(
  "FERRULE_SCREENSHOTS",
  resolve(dirname(fileURLToPath(import.meta.url)), "../../../../target/console-screenshots"),
);
const CHROMIUM = env("FERRULE_CHROMIUM", "/usr/bin/chromium");
const DEVICE = "e2e-pump";
/** How soon a published value must show on the device page. */
const LIVE_WITHIN_MS = 1000;

mkdirSync(SHOTS, { recursive: true });

function step(what) {
  console.log(`- ${what}`);
}

function check(ok, message) {
  if (!ok) throw new Error(message);
}

/** Problems the browser reports: CSP violations, script errors. */
function watch(page, problems) {
  page.on("console", (msg) => {
    const text = msg.text();
    // Failed loads are judged below, by what was loaded: pages answered
    // 4xx on purpose (a wrong password, an invalid form) are fine.
    if (msg.type() === "error" && !text.startsWith("Failed to load resource")) problems.push(`console: ${text}`);
  });
  page.on("response", (r) => {
    if (r.request().resourceType() !== "document" && r.status() >= 400) {
      problems.push(`${r.status()} for ${r.request().resourceType()} ${r.url()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
}

/** axe-core on the page as it is; serious or critical violations fail. */
async function axe(page, name) {
  // Evaluated over the DevTools protocol, which the page's CSP does not
  // govern; the page itself still runs under its policy.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    await axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(
    bad.length === 0,
    `accessibility (${name}): ` +
      bad.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`).join("; "),
  );
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

function publish(token, payload) {
  return new Promise((resolve, reject) => {
    const p = spawn("mosquitto_pub", [
      "-h", MQTT_HOST, "-p", MQTT_PORT, "-u", token, "-i", `${DEVICE}-e2e`,
      "-t", `devices/${DEVICE}/telemetry`, "-m", JSON.stringify(payload), "-q", "1",
    ]);
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}: ${err}`))));
  });
}

async function noHorizontalScroll(page, name) {
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  check(scroll <= width + 1, `${name} scrolls sideways at ${width} px (content ${scroll} px)`);
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const problems = [];
  try {
    const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await desktop.newPage();
    watch(page, problems);

    step("a page without a session goes to the login form");
    await page.goto(`${BASE}/devices`);
    check(new URL(page.url()).pathname === "/login", `expected the login page, got ${page.url()}`);
    await axe(page, "login");
    await shot(page, "login-desktop");

    step("a wrong password is refused with a message");
    await page.fill("#email", EMAIL);
    await page.fill("#password", "wrong-password");
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    const error = await page.textContent("#login-error");
    check(error.includes("Wrong email or password"), `login error: ${error}`);
    await axe(page, "login with error");

    step("log in with the keyboard and come back to the devices page");
    await page.focus("#email");
    await page.fill("#email", EMAIL);
    await page.keyboard.press("Tab");
    await page.keyboard.type(PASSWORD);
    await Promise.all([page.waitForURL(`${BASE}/devices`), page.keyboard.press("Enter")]);
    await axe(page, "devices");

    step("overview");
    await page.goto(`${BASE}/`);
    check((await page.textContent("h1")) === "Overview", "overview heading");
    await axe(page, "overview");
    await shot(page, "overview-desktop");

    step("an invalid id is shown next to the field");
    await page.goto(`${BASE}/devices`);
    await page.fill("#device-id", "not valid!");
    await page.click("text=Add device");
    await page.waitForSelector("#device-id-error");
    check((await page.getAttribute("#device-id", "aria-invalid")) === "true", "invalid id not marked");
    await axe(page, "devices with an error");

    step("create a device; its token is shown once");
    await page.fill("#device-id", DEVICE);
    await page.fill("#device-name", "E2E pump");
    await Promise.all([page.waitForNavigation(), page.click("text=Add device")]);
    const token = await page.inputValue("#device-token");
    check(token.startsWith("fd_"), `no device token shown (${token})`);
    const snippet = await page.textContent("#snippet-mosquitto");
    check(snippet.includes(`-p ${MQTT_PORT}`) && snippet.includes(token), `mosquitto line: ${snippet}`);
    await axe(page, "token");
    await shot(page, "device-created-desktop");

    step("the device page opens its live stream");
    await page.goto(`${BASE}/devices/${DEVICE}`);
    await page.waitForFunction(
      () => document.getElementById("live-status").textContent.startsWith("Live: waiting"),
      null,
      { timeout: 10000 },
    );
    await axe(page, "device");

    step(`a value published over MQTT appears within ${LIVE_WITHIN_MS} ms`);
    const started = Date.now();
    await publish(token, { temp: 21.5 });
    await page.waitForFunction(
      () => document.querySelector('#live-values dd[data-key="temp"]')?.textContent === "21.5",
      null,
      { timeout: LIVE_WITHIN_MS },
    );
    const took = Date.now() - started;
    console.log(`  live value shown ${took} ms after publishing`);
    check(took <= LIVE_WITHIN_MS, `the live value took ${took} ms`);
    for (const t of [22, 22.5, 23]) await publish(token, { temp: t });
    await page.waitForFunction(
      () => document.querySelector('#live-values dd[data-key="temp"]')?.textContent === "23",
      null,
      { timeout: 5000 },
    );
    check(await page.$("#live-chart canvas"), "no live chart drawn");

    step("history shows the stored points");
    let status = "";
    for (let i = 0; i < 20; i++) {
      await page.goto(`${BASE}/devices/${DEVICE}`);
      await page.waitForFunction(() => !/Loading|^$/.test(document.getElementById("history-status").textContent), null, { timeout: 5000 });
      status = await page.textContent("#history-status");
      if (/^[1-9]\d* points? of temp/.test(status)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    check(/^[1-9]\d* points? of temp/.test(status), `history: ${status}`);
    check(await page.$("#history-chart canvas"), "no history chart drawn");
    const kept = await page.textContent('#live-values dd[data-key="temp"]');
    check(kept === "23", `after a reload the live values start from the latest stored (${kept})`);
    await page.selectOption("#history-range", "24h");
    await page.waitForFunction(() => /averaged per 5m/.test(document.getElementById("history-status").textContent));
    await axe(page, "device with data");
    await shot(page, "device-desktop");

    step("phone width: the same pages fit and pass axe");
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
      storageState: await desktop.storageState(),
    });
    const mobile = await phone.newPage();
    watch(mobile, problems);
    for (const [path, name] of [["/", "overview"], ["/devices", "devices"], [`/devices/${DEVICE}`, "device"]]) {
      await mobile.goto(`${BASE}${path}`);
      await mobile.waitForLoadState("networkidle").catch(() => {});
      await noHorizontalScroll(mobile, name);
      await axe(mobile, `${name} (phone)`);
      await shot(mobile, `${name}-phone`);
    }
    await phone.close();

    step("dark theme (from the system): readable and passes axe");
    const dark = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      colorScheme: "dark",
      storageState: await desktop.storageState(),
    });
    const night = await dark.newPage();
    watch(night, problems);
    for (const [path, name] of [["/", "overview"], ["/devices", "devices"], [`/devices/${DEVICE}`, "device"]]) {
      await night.goto(`${BASE}${path}`);
      await night.waitForLoadState("networkidle").catch(() => {});
      await axe(night, `${name} (dark)`);
      await shot(night, `${name}-dark`);
    }
    await dark.close();

    step("search finds the device; delete asks first");
    await page.goto(`${BASE}/devices`);
    await page.fill("#q", "e2e");
    await page.waitForFunction((d) => document.querySelector("#device-list")?.textContent.includes(d), DEVICE);
    await page.goto(`${BASE}/devices/${DEVICE}/delete`);
    await axe(page, "delete confirmation");
    await Promise.all([page.waitForURL(`${BASE}/devices`), page.click("main form button.danger")]);
    check(!(await page.textContent("#device-list")).includes(DEVICE), "device still listed after delete");

    step("log out");
    await Promise.all([page.waitForURL(/\/login/), page.click("text=Log out")]);
    await page.goto(`${BASE}/`);
    check(new URL(page.url()).pathname === "/login", "still logged in after logout");

    check(problems.length === 0, `the browser reported problems:\n  ${problems.join("\n  ")}`);
    console.log(`console e2e passed; screenshots in ${SHOTS}`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`console e2e FAILED: ${e.stack || e}`);
  process.exit(1);
});
