// End-to-end test of the console's rules and dashboards pages in headless
// Chromium: a rule with an SQL error (its line and column, the caret
// there), fixed, dry-run, saved, disabled and enabled. See lib.mjs for
// the environment.

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
});
