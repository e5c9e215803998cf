// End-to-end test of the device page's twin and commands and of the alarms
// page in headless Chromium: create a device through the page, change its
// desired state and see the device (a real MQTT client, tests/peers/device.py)
// receive it, send it a command and see its reply in the outbox, raise an
// alarm through the API and acknowledge then clear it on the alarms page,
// create an API key (its secret shown once) and a user on the access page.
// axe on every page, screenshots at desktop and phone width. See lib.mjs.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BASE, MQTT_HOST, MQTT_PORT, EMAIL, PASSWORD, step, check, watch, axe, shot, login, noHorizontalScroll, run } from "./lib.mjs";

const DEVICE = "e2e-valve";
const PEER = join(dirname(fileURLToPath(import.meta.url)), "../peers/device.py");

/**
 * The device as a real MQTT client: subscribed to its commands and desired
 * state, answering `echo` with its parameters. `next(pred)` waits for a
 * line (a JSON object) it printed that `pred` accepts.
 */
function startDevice(token) {
  const p = spawn("python3", [PEER], {
    env: { ...process.env, MQTT_HOST, MQTT_PORT, PROTO: "5", DEVICE, TOKEN: token, CLIENT_ID: `${DEVICE}-peer`, CLEAN: "1" },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const seen = [];
  const waiting = [];
  createInterface({ input: p.stdout }).on("line", (line) => {
    const msg = JSON.parse(line);
    seen.push(msg);
    for (const w of [...waiting]) if (w.pred(msg)) { waiting.splice(waiting.indexOf(w), 1); w.resolve(msg); }
  });
  return {
    next(pred, what, ms = 10000) {
      const found = seen.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiting.push(w);
        setTimeout(() => { if (waiting.includes(w)) reject(new Error(`the device did not get ${what} within ${ms} ms`)); }, ms);
      });
    },
    stop() { p.stdin.end("quit\n"); setTimeout(() => p.kill(), 2000).unref(); },
  };
}

/** An API call as the admin (a Bearer session of its own). */
async function api(method, path, body) {
  if (!api.token) {
    const r = await fetch(`${BASE}/api/v1/auth/login`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    api.token = (await r.json()).token;
  }
  const r = await fetch(`${BASE}${path}`, {
    method, headers: { authorization: `Bearer ${api.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json().catch(() => null) };
}

run("console device e2e", async (browser, problems) => {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await desktop.newPage();
  watch(page, problems);
  await login(page);

  step("create a device through the page");
  await page.goto(`${BASE}/devices`);
  await page.fill("#device-id", DEVICE);
  await Promise.all([page.waitForNavigation(), page.click("text=Add device")]);
  const token = await page.inputValue("#device-token");
  check(token.startsWith("fd_"), `no device token shown (${token})`);
  const device = startDevice(token);
  try {
    await device.next((m) => m.event === "ready", "subscribed");

    step("the device page shows the twin; an invalid patch is refused next to the field");
    await page.goto(`${BASE}/devices/${DEVICE}`);
    check((await page.textContent("#twin-version")) === "0", "desired version 0 at first");
    // The connection is recorded as the device connects, not before the
    // page loads: look again for a while.
    for (let i = 0; i < 20 && !(await page.$("#connectivity-list")); i++) {
      await new Promise((r) => setTimeout(r, 250));
      await page.reload();
    }
    check((await page.textContent("#connectivity-list")).includes("connected"), "the device's connection in its history");
    await axe(page, "device");
    await page.fill("#twin-patch", "{interval: 30");
    await Promise.all([page.waitForNavigation(), page.click("text=Apply to desired state")]);
    check((await page.getAttribute("#twin-patch", "aria-invalid")) === "true", "invalid patch not marked");
    check((await page.textContent("#twin-patch-error")).includes("not valid JSON"), "no JSON error shown");
    await axe(page, "device with a twin error");

    step("change desired state: the device receives it");
    await page.fill("#twin-patch", '{"interval": 30, "mode": "eco"}');
    await Promise.all([page.waitForNavigation(), page.click("text=Apply to desired state")]);
    check((await page.textContent("#twin-version")) === "1", "desired version 1 after the change");
    check((await page.textContent("#twin-desired")).includes('"mode": "eco"'), "desired shown");
    const got = await device.next(
      (m) => m.event === "message" && m.topic === `devices/${DEVICE}/state/desired` && m.payload?.mode === "eco",
      "the desired state",
    );
    check(got.payload.interval === 30, `desired state received: ${JSON.stringify(got.payload)}`);

    step("a change based on an old version says to reload");
    await api("PATCH", `/api/v1/devices/${DEVICE}/state`, { mode: "boost" });
    await page.fill("#twin-patch", '{"mode": "off"}');
    await Promise.all([page.waitForNavigation(), page.click("text=Apply to desired state")]);
    check((await page.textContent("#twin-patch-error")).includes("changed meanwhile"), "no 412 message");

    step("send a command: the device answers and the outbox shows the reply");
    await page.goto(`${BASE}/devices/${DEVICE}`);
    await page.fill("#command-name", "echo");
    await page.fill("#command-params", '{"level": 7}');
    await Promise.all([page.waitForNavigation(), page.click("text=Send command")]);
    const cmd = await device.next((m) => m.event === "command" && m.name === "echo", "the command");
    check(cmd.params?.level === 7, `command params: ${JSON.stringify(cmd.params)}`);
    await page.waitForFunction(
      () => [...document.querySelectorAll("#command-list tbody tr")].some(
        (tr) => tr.textContent.includes("succeeded") && tr.querySelector(".reply")?.textContent.includes('"level":7')),
      null,
      { timeout: 10000 },
    );
    await axe(page, "device with a command");
    await shot(page, "device-twin-desktop");
  } finally {
    device.stop();
  }

  step("an alarm raised through the API is acknowledged then cleared on the alarms page");
  const raised = await api("POST", "/api/v1/alarms", { device: DEVICE, type: "overpressure", severity: "critical" });
  check(raised.status === 201, `raise: ${raised.status}`);
  const id = raised.json.alarm.id;
  await page.click("nav >> text=Alarms");
  await page.waitForURL(`${BASE}/alarms`);
  const row = `tr[data-alarm="${id}"]`;
  check((await page.textContent(`${row} .alarm-state`)).includes("active"), "alarm listed as active");
  await axe(page, "alarms");
  await page.selectOption("#alarm-severity", "critical");
  await Promise.all([page.waitForNavigation(), page.click("text=Filter")]);
  await Promise.all([page.waitForNavigation(), page.click(`${row} >> text=Acknowledge`)]);
  check((await page.textContent(`${row} .alarm-state`)).includes("acknowledged"), "alarm acknowledged");
  check(new URL(page.url()).searchParams.get("severity") === "critical", "the filters are kept");
  await shot(page, "alarms-desktop");
  await Promise.all([page.waitForNavigation(), page.click(`${row} >> text=Clear`)]);
  check((await page.textContent(`${row} .alarm-state`)).includes("cleared"), "alarm cleared");
  await page.goto(`${BASE}/alarms?state=cleared`);
  check(await page.$(row), "the cleared alarm is in the history");
  await axe(page, "alarm history");

  step("users and API keys: a key's secret is shown once");
  await page.click("nav >> text=Access");
  await page.waitForURL(`${BASE}/access`);
  await axe(page, "access");
  await page.fill("#key-name", "e2e-grafana");
  await Promise.all([page.waitForNavigation(), page.click("text=Create key")]);
  const secret = await page.inputValue("#key-secret");
  check(secret.length > 20, `no key secret shown (${secret})`);
  const asKey = await fetch(`${BASE}/api/v1/devices`, { headers: { authorization: `Bearer ${secret}` } });
  check(asKey.status === 200, `the new key works (${asKey.status})`);
  await axe(page, "key created");
  await page.goto(`${BASE}/access`);
  check(!(await page.content()).includes(secret), "the secret is shown once only");
  await page.fill("#user-email", "ops@example.com");
  await page.fill("#user-password", "short");
  await Promise.all([page.waitForNavigation(), page.click("text=Add user")]);
  check((await page.getAttribute("#user-password", "aria-invalid")) === "true", "short password not marked");
  await axe(page, "access with an error");
  await page.fill("#user-password", "ops-password-1");
  await Promise.all([page.waitForNavigation(), page.click("text=Add user")]);
  check(await page.$('tr[data-user="ops@example.com"]'), "the new user is listed");
  await shot(page, "access-desktop");

  step("phone width: the device and alarms pages fit and pass axe");
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
    storageState: await desktop.storageState(),
  });
  const mobile = await phone.newPage();
  watch(mobile, problems);
  for (const [path, name] of [[`/devices/${DEVICE}`, "device-twin"], ["/alarms", "alarms"], ["/access", "access"]]) {
    await mobile.goto(`${BASE}${path}`);
    await noHorizontalScroll(mobile, name);
    await axe(mobile, `${name} (phone)`);
    await shot(mobile, `${name}-phone`);
  }
  await phone.close();

  step("dark theme passes axe");
  const dark = await browser.newContext({
    viewport: { width: 1280, height: 800 }, colorScheme: "dark", storageState: await desktop.storageState(),
  });
  const night = await dark.newPage();
  watch(night, problems);
  for (const [path, name] of [[`/devices/${DEVICE}`, "device-twin"], ["/alarms?state=cleared", "alarms"], ["/access", "access"]]) {
    await night.goto(`${BASE}${path}`);
    await axe(night, `${name} (dark)`);
  }
  await dark.close();
});
