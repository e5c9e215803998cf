// End-to-end test of Ferrule's web console in headless Chromium: log in,
// the overview, create a device, its live and history charts, phone width,
// dark theme, search, delete, log out. See lib.mjs for the environment.

import { BASE, MQTT_PORT, EMAIL, PASSWORD, step, check, watch, axe, shot, publish, noHorizontalScroll, run } from "./lib.mjs";

const DEVICE = "e2e-pump";

/**
 * Bytes the browser took from the network (headers and bodies as sent,
 * compressed or not; nothing for what its cache served) while `load` ran
 * and the page settled, and how many requests did so.
 */
async function transferred(page, load) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const seen = { bytes: 0, requests: 0 };
  cdp.on("Network.loadingFinished", (e) => {
    seen.bytes += e.encodedDataLength;
    if (e.encodedDataLength > 0) seen.requests += 1;
  });
  await load();
  await page.waitForLoadState("networkidle").catch(() => {});
  await cdp.detach();
  return seen;
}
/** How soon a published value must show on the device page. */
const LIVE_WITHIN_MS = 1000;

run("console e2e", async (browser, problems) => {
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
  // The small charts start with the first sample and grow with each refresh.
  await page.waitForSelector("#spark-rate canvas", { timeout: 5000 });
  await page.waitForSelector("#spark-online canvas", { timeout: 5000 });
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
  await publish(token, DEVICE, { temp: 21.5 });
  await page.waitForFunction(
    () => document.querySelector('#live-values dd[data-key="temp"]')?.textContent === "21.5",
    null,
    { timeout: LIVE_WITHIN_MS },
  );
  const took = Date.now() - started;
  console.log(`  live value shown ${took} ms after publishing`);
  check(took <= LIVE_WITHIN_MS, `the live value took ${took} ms`);
  for (const t of [22, 22.5, 23]) await publish(token, DEVICE, { temp: t });
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

  step("page weight: the device page cold (empty cache) and warm");
  const fresh = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    storageState: await desktop.storageState(),
  });
  const weighed = await fresh.newPage();
  watch(weighed, problems);
  const cold = await transferred(weighed, () => weighed.goto(`${BASE}/devices/${DEVICE}`));
  const warm = await transferred(weighed, () => weighed.reload());
  console.log(
    `  device page: cold ${cold.bytes} bytes in ${cold.requests} requests, ` +
      `warm ${warm.bytes} bytes in ${warm.requests} requests`,
  );
  check(warm.bytes < cold.bytes, `a warm load (${warm.bytes} B) should reuse the cached assets`);
  await fresh.close();

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

});
