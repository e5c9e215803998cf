// End-to-end test of the console's rules and dashboards pages in headless
// Chromium: a rule with an SQL error (its line and column, the caret
// there), fixed, dry-run, saved, disabled and enabled; a dashboard with a
// line chart and a latest value, live, a widget moved and the layout kept
// after a reload; shared, opened logged out, revoked. See lib.mjs for the
// environment.

import { BASE, step, check, watch, axe, shot, publish, noHorizontalScroll, login, run } from "./lib.mjs";

const DEVICE = "e2e-boiler";

/** Creates a device through the console; returns its token. */
async function createDevice(page, id) {
  await page.goto(`${BASE}/devices`);
  await page.fill("#device-id", id);
  await Promise.all([page.waitForNavigation(), page.click("text=Add device")]);
  const token = await page.inputValue("#device-token");
  check(token.startsWith("fd_"), `no device token shown (${token})`);
  return token;
}

async function rules(page, token) {
  step("a rule with an SQL error: the place is shown and the caret put there");
  await page.goto(`${BASE}/rules`);
  await axe(page, "rules (empty)");
  await Promise.all([page.waitForNavigation(), page.click("text=New rule")]);
  await axe(page, "new rule");
  await page.fill("#rule-id", "too-hot");
  await page.fill("#rule-name", "Boiler too hot");
  const broken = "SELECT temperature AS t, topic(2) AS device\nFROM 'devices/+/telemetry'\nWHERE temperature >";
  await page.fill("#rule-sql", broken);
  await page.fill(
    "#rule-actions",
    '[{"type": "republish", "topic": "alerts/${device}", "payload": "hot: ${t}"}]',
  );
  await Promise.all([page.waitForNavigation(), page.click("text=Create rule")]);
  const error = await page.textContent("#rule-sql-error");
  check(/^line 3, column \d+: /.test(error), `SQL error: ${error}`);
  check((await page.getAttribute("#rule-sql", "aria-invalid")) === "true", "SQL field not marked invalid");
  const column = +error.match(/column (\d+)/)[1];
  const caret = await page.evaluate(() => {
    const a = document.getElementById("rule-sql");
    return { focused: document.activeElement === a, at: a.selectionStart, value: a.value };
  });
  const lines = caret.value.split("\n");
  const expected = Math.min(lines[0].length + 1 + lines[1].length + 1 + column - 1, caret.value.length);
  check(caret.focused && caret.at === expected, `caret at ${caret.at} (focused ${caret.focused}), expected ${expected}`);
  await axe(page, "rule with an SQL error");

  step("fixed, a dry run on a sample payload shows the planned republish");
  await page.fill("#rule-sql", broken.replace(/>$/, "> 30"));
  await page.fill("#sample-topic", `devices/${DEVICE}/telemetry`);
  await page.fill("#sample-payload", '{"temperature": 35}');
  await page.click("#dry-run");
  await page.waitForSelector("#dry-run-results");
  const planned = await page.textContent("#dry-run-out");
  check(planned.includes(`alerts/${DEVICE}`) && planned.includes("hot: 35"), `dry run: ${planned}`);
  check((await page.$("#rule-sql-error")) === null, "the fixed SQL still shows the old error");
  check((await page.getAttribute("#rule-sql", "aria-invalid")) === null, "the fixed SQL is still marked invalid");
  await axe(page, "dry run");
  await shot(page, "rule-editor-desktop");

  step("a dry run on the device's recent messages");
  await publish(token, DEVICE, { temperature: 42 });
  await page.check("input[name=source][value=recent]");
  await page.fill("#recent-topic", `devices/${DEVICE}/telemetry`);
  let recent = "";
  for (let i = 0; i < 20 && !recent.includes("hot: 42"); i++) {
    await page.click("#dry-run");
    await page.waitForSelector("#dry-run-results");
    recent = await page.textContent("#dry-run-out");
    if (!recent.includes("hot: 42")) await page.waitForTimeout(200);
  }
  check(recent.includes("hot: 42"), `recent dry run: ${recent}`);

  step("save, then disable and enable");
  await Promise.all([page.waitForURL(`${BASE}/rules/too-hot`), page.click("text=Create rule")]);
  check((await page.textContent("#state-title + p")).includes("enabled"), "the new rule is enabled");
  await axe(page, "rule page");
  await Promise.all([page.waitForNavigation(), page.click("button:text-is('Disable')")]);
  check((await page.textContent("#state-title + p")).includes("disabled"), "disabled");
  await Promise.all([page.waitForNavigation(), page.click("button:text-is('Enable')")]);
  check((await page.textContent("#state-title + p")).includes("enabled"), "enabled again");

  step("the list shows it with its counters");
  await page.goto(`${BASE}/rules`);
  check((await page.textContent("table.list")).includes("too-hot"), "the rule is listed");
  await axe(page, "rules");
  await shot(page, "rules-desktop");
}

async function rulesPhone(browser, problems) {
  step("the rule editor at phone width");
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await phone.newPage();
  watch(page, problems);
  await login(page);
  await page.goto(`${BASE}/rules/too-hot`);
  await noHorizontalScroll(page, "rule editor (phone)");
  await axe(page, "rule editor (phone)");
  await shot(page, "rule-editor-phone");
  await phone.close();
}

/** Waits until the grid has drawn its data. */
async function drawn(page) {
  await page.waitForSelector("#grid[data-loaded]", { timeout: 10000 });
}

async function addWidget(page, fields) {
  await page.selectOption("#widget-type", fields.type);
  await page.fill("#widget-device", fields.device || "");
  await page.fill("#widget-keys", fields.keys || "");
  await page.fill("#widget-title", fields.title || "");
  await Promise.all([page.waitForNavigation(), page.click("text=Add widget")]);
}

async function dashboards(page, token) {
  step("create a dashboard");
  await page.goto(`${BASE}/dashboards`);
  await axe(page, "dashboards (empty)");
  await page.fill("#dashboard-name", "Boiler room");
  await page.fill("#dashboard-id", "boiler-room");
  await Promise.all([page.waitForNavigation(), page.click("text=Create dashboard")]);
  check(new URL(page.url()).pathname === "/dashboards/boiler-room", `at ${page.url()}`);

  step("a widget without keys: the error next to the field");
  await addWidget(page, { type: "line_chart", device: DEVICE, keys: "" });
  check((await page.getAttribute("#widget-keys", "aria-invalid")) === "true", "keys not marked invalid");
  check((await page.textContent("#widget-keys-error")).includes("key"), "keys error");
  await axe(page, "dashboard with a widget error");

  step("add a line chart and a latest value of the device");
  await addWidget(page, { type: "line_chart", device: DEVICE, keys: "temperature", title: "Temperature" });
  await addWidget(page, { type: "latest_value", device: DEVICE, keys: "temperature", title: "Now" });
  await drawn(page);
  await page.waitForFunction(
    () => document.querySelector('#widget-latest-value-1 dd[data-key="temperature"]')?.textContent === "42",
    null, { timeout: 5000 });
  check((await page.$("#widget-line-chart-1 .uplot")) !== null, "no chart drawn");

  step("a new value arrives live");
  // The live stream opens after the data loads; give it a moment.
  await page.waitForTimeout(500);
  await publish(token, DEVICE, { temperature: 55 });
  await page.waitForFunction(
    () => document.querySelector('#widget-latest-value-1 dd[data-key="temperature"]')?.textContent === "55",
    null, { timeout: 5000 });

  step("move the latest value with the pointer and the keyboard, save");
  const head = await page.$("#widget-latest-value-1 .widget-head");
  const box = await head.boundingBox();
  const grid = await (await page.$("#grid")).boundingBox();
  const col = grid.width / 12;
  await page.mouse.move(box.x + 10, box.y + 5);
  await page.mouse.down();
  await page.mouse.move(box.x + 10 + col * 3, box.y + 5, { steps: 5 });
  await page.mouse.move(box.x + 10 + col * 6, box.y + 5, { steps: 5 });
  await page.mouse.up();
  check((await page.getAttribute("#widget-latest-value-1", "data-x")) === "6", "the drag did not move it 6 columns");
  await page.focus("#widget-latest-value-1");
  for (let i = 0; i < 4; i++) await page.keyboard.press("ArrowUp");
  await page.keyboard.press("Shift+ArrowDown");
  check((await page.getAttribute("#widget-latest-value-1", "data-y")) === "0", "the keyboard did not move it up");
  check((await page.getAttribute("#widget-latest-value-1", "data-h")) === "3", "Shift+Down did not make it taller");
  await axe(page, "dashboard in edit mode");
  await page.click("#save-layout");
  await page.waitForFunction(() => /^(Layout saved|Not saved)/.test(document.getElementById("layout-status").textContent), null, { timeout: 5000 });
  const saved = await page.textContent("#layout-status");
  check(saved === "Layout saved.", `saving the layout: ${saved}`);

  step("reload: the layout is kept");
  await page.goto(`${BASE}/dashboards/boiler-room`);
  await drawn(page);
  const kept = await page.evaluate(() => {
    const a = document.getElementById("widget-latest-value-1");
    return [a.dataset.x, a.dataset.y, a.dataset.h, getComputedStyle(a).gridColumnStart];
  });
  check(kept.join() === "6,0,3,7", `layout after reload: ${kept}`);
  await axe(page, "dashboard");
  await shot(page, "dashboard-desktop");
}

async function sharing(browser, page, problems) {
  step("share the dashboard: the full link is shown once");
  await Promise.all([page.waitForNavigation(), page.click("button:text-is('Share…')")]);
  const url = await page.inputValue("#share-url");
  check(url.startsWith(`${BASE}/share/`), `share link: ${url}`);
  await axe(page, "share link");

  step("the link opens in a fresh, logged-out browser");
  for (const [name, viewport] of [["desktop", { width: 1280, height: 800 }], ["phone", { width: 390, height: 844 }]]) {
    const fresh = await browser.newContext({ viewport });
    const anon = await fresh.newPage();
    watch(anon, problems);
    await anon.goto(url);
    await drawn(anon);
    await anon.waitForFunction(
      () => document.querySelector('#widget-latest-value-1 dd[data-key="temperature"]')?.textContent === "55",
      null, { timeout: 5000 });
    check((await anon.$("nav[aria-label=Main]")) === null, "the shared page shows the console's navigation");
    check((await anon.$("input[name=csrf]")) === null, "the shared page has a form");
    if (name === "phone") await noHorizontalScroll(anon, "shared dashboard (phone)");
    await axe(anon, `shared dashboard (${name})`);
    await shot(anon, `shared-dashboard-${name}`);
    await fresh.close();
  }

  step("revoke: the link shows nothing");
  await page.goto(`${BASE}/dashboards/boiler-room`);
  await Promise.all([page.waitForNavigation(), page.click("text=Revoke share link")]);
  const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const anon = await fresh.newPage();
  watch(anon, problems);
  const r = await anon.goto(url);
  check(r.status() === 404, `a revoked link answered ${r.status()}`);
  check((await anon.textContent("h1")).includes("revoked or never existed"), "revoked page heading");
  check(!(await anon.content()).includes("Boiler room"), "the revoked page names the dashboard");
  await axe(anon, "revoked link");
  await fresh.close();
}

async function exportImport(page) {
  step("export downloads the JSON; importing the file makes a copy");
  await page.goto(`${BASE}/dashboards/boiler-room`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("text=Export")]);
  const file = await download.path();
  await page.goto(`${BASE}/dashboards`);
  await page.setInputFiles("#import-file", file);
  await page.waitForFunction(() => document.getElementById("import-document").value.includes("ferrule.dashboard/1"));
  await page.fill("#import-id", "boiler-copy");
  await Promise.all([page.waitForNavigation(), page.click("button:text-is('Import')")]);
  check(new URL(page.url()).pathname === "/dashboards/boiler-copy", `after import: ${page.url()}`);
  await drawn(page);
  check((await page.textContent("h1")) === "Boiler room", "the copy's name");
  await page.goto(`${BASE}/dashboards`);
  await axe(page, "dashboards");
}

async function dashboardPhone(browser, problems) {
  step("the dashboard at phone width");
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await phone.newPage();
  watch(page, problems);
  await login(page);
  await page.goto(`${BASE}/dashboards/boiler-room`);
  await drawn(page);
  await noHorizontalScroll(page, "dashboard (phone)");
  await axe(page, "dashboard (phone)");
  await shot(page, "dashboard-phone");
  await phone.close();
}

async function dark(browser, problems) {
  step("dark theme (from the system): the rule editor and the dashboard pass axe");
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "dark" });
  const page = await context.newPage();
  watch(page, problems);
  await login(page);
  await page.goto(`${BASE}/rules/too-hot`);
  await axe(page, "rule editor (dark)");
  await page.goto(`${BASE}/dashboards/boiler-room?edit=1`);
  await drawn(page);
  await axe(page, "dashboard in edit mode (dark)");
  await context.close();
}

run("console rules and dashboards e2e", async (browser, problems) => {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await desktop.newPage();
  watch(page, problems);
  step("log in");
  await login(page);
  const token = await createDevice(page, DEVICE);
  await publish(token, DEVICE, { temperature: 21.5 });
  await rules(page, token);
  await rulesPhone(browser, problems);
  await dashboards(page, token);
  await dashboardPhone(browser, problems);
  await dark(browser, problems);
  await sharing(browser, page, problems);
  await exportImport(page);
});
