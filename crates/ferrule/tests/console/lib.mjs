// What every end-to-end script of the console shares: the environment the
// Rust test `console_e2e` (crates/ferrule/tests/integration) passes, and
// helpers to step, check, watch the browser, run axe-core, take
// screenshots, publish over MQTT and log in. The environment:
//   FERRULE_URL             http://127.0.0.1:PORT
//   FERRULE_MQTT_HOST/PORT  the server's MQTT listener
//   FERRULE_ADMIN_EMAIL / FERRULE_ADMIN_PASSWORD
//   FERRULE_SCREENSHOTS     where screenshots go (default: the workspace's
//                           target/console-screenshots; never the repository)
//   FERRULE_CHROMIUM        optional, default /usr/bin/chromium

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
export const BASE = env("FERRULE_URL");
export const MQTT_HOST = env("FERRULE_MQTT_HOST");
export const MQTT_PORT = env("FERRULE_MQTT_PORT");
export const EMAIL = env("FERRULE_ADMIN_EMAIL");
export const PASSWORD = env("FERRULE_ADMIN_PASSWORD");
// The workspace's target/ (ignored by git), wherever this is run from.
export const SHOTS = env(
  "FERRULE_SCREENSHOTS",
  resolve(dirname(fileURLToPath(import.meta.url)), "../../../../target/console-screenshots"),
);
export const CHROMIUM = env("FERRULE_CHROMIUM", "/usr/bin/chromium");

mkdirSync(SHOTS, { recursive: true });

export function step(what) {
  console.log(`- ${what}`);
}

export function check(ok, message) {
  if (!ok) throw new Error(message);
}

/** Problems the browser reports: CSP violations, script errors. */
export function watch(page, problems) {
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
export async function axe(page, name) {
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

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Publishes `payload` as `device`'s telemetry with its token (QoS 1). */
export function publish(token, device, payload) {
  return new Promise((resolve, reject) => {
    const p = spawn("mosquitto_pub", [
      "-h", MQTT_HOST, "-p", MQTT_PORT, "-u", token, "-i", `${device}-e2e`,
      "-t", `devices/${device}/telemetry`, "-m", JSON.stringify(payload), "-q", "1",
    ]);
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}: ${err}`))));
  });
}

/**
 * Fails when the page is wider than the viewport it was given. Judged
 * against the viewport's own width: on a mobile viewport the browser
 * widens `innerWidth` to fit content that overflows, hiding the fault.
 */
export async function noHorizontalScroll(page, name) {
  const width = page.viewportSize().width;
  const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
  check(scroll <= width + 1, `${name} scrolls sideways at ${width} px (content ${scroll} px)`);
}

/** Logs `page` in as the admin, through the form. */
export async function login(page) {
  await page.goto(`${BASE}/login`);
  await page.fill("#email", EMAIL);
  await page.fill("#password", PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(new URL(page.url()).pathname !== "/login", "the admin could not log in");
}

/**
 * Runs `scenario(browser, problems)` in headless Chromium; any problem the
 * browser reported (console errors, CSP violations, failed subresources)
 * fails it too. Exits non-zero with the reason on the first failure.
 */
export function run(name, scenario) {
  (async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const problems = [];
    try {
      await scenario(browser, problems);
      check(problems.length === 0, `the browser reported problems:\n  ${problems.join("\n  ")}`);
      console.log(`${name} passed; screenshots in ${SHOTS}`);
    } finally {
      await browser.close();
    }
  })().catch((e) => {
    console.error(`${name} FAILED: ${e.stack || e}`);
    process.exit(1);
  });
}
