// End-to-end test of the console's settings page in headless Chromium:
// an invalid retention shows its error next to the field; retention, a
// per-profile override and a disk budget are saved and kept after a
// reload, with the disk meter; the page at phone width and in dark mode.
// See lib.mjs for the environment.

import { BASE, step, check, watch, axe, shot, noHorizontalScroll, login, run } from "./lib.mjs";

async function save(page) {
  await Promise.all([page.waitForNavigation(), page.click("text=Save retention and disk")]);
}

async function retention(page) {
  step("the settings page from the nav");
  await page.goto(`${BASE}/`);
  await Promise.all([page.waitForNavigation(), page.click("nav >> text=Settings")]);
  check(new URL(page.url()).pathname === "/settings", `at ${page.url()}`);
  await axe(page, "settings");

  step("an invalid retention: the error next to the field, what was typed kept");
  await page.fill("#retention-days", "0");
  await save(page);
  check((await page.getAttribute("#retention-days", "aria-invalid")) === "true", "retention not marked invalid");
  check((await page.textContent("#retention-days-error")).includes("between 1 and 36500"), "retention error");
  check((await page.inputValue("#retention-days")) === "0", "what was typed is kept");
  await axe(page, "settings with an error");

  step("retention, a profile override, a budget and a ceiling saved");
  await page.fill("#retention-days", "30");
  await page.fill("#new-profile", "sensor");
  await page.fill("#new-profile-days", "7");
  await page.fill("#disk-budget", "50");
  await page.fill("#ceiling", "100");
  await save(page);
  check((await page.textContent("#settings-saved")).includes("saved"), "no saved notice");

  step("kept after a reload");
  await page.reload();
  check((await page.inputValue("#retention-days")) === "30", "retention kept");
  check((await page.inputValue('input[name="profile:sensor"]')) === "7", "override kept");
  check((await page.inputValue("#disk-budget")) === "50", "budget kept");
  check((await page.inputValue("#ceiling")) === "100", "ceiling kept");
  check((await page.getAttribute("#disk-meter", "max")) === String(50 * 1024 * 1024), "meter against the budget");
  check((await page.textContent("#disk-text")).includes("of 50.0 MiB"), "disk use in words");
  await axe(page, "settings saved");
}

async function acl(page) {
  step("an MQTT access rule with a bad topic: the API's error next to the field");
  await page.selectOption("#acl-effect", "deny");
  await page.fill("#acl-topic", "alerts/#/more");
  await page.fill("#acl-priority", "5");
  await Promise.all([page.waitForNavigation(), page.click("text=Add rule")]);
  check((await page.getAttribute("#acl-topic", "aria-invalid")) === "true", "topic not marked invalid");
  check((await page.textContent("#acl-topic-error")).length > 0, "no topic error");
  await axe(page, "settings with an access rule error");

  step("fixed, the rule is added and kept after a reload");
  await page.fill("#acl-topic", "alerts/#");
  await Promise.all([page.waitForNavigation(), page.click("text=Add rule")]);
  await page.reload();
  const row = await page.textContent("#acl-list tbody tr");
  check(row.includes("alerts/#") && row.includes("deny") && row.includes("5"), `rule row: ${row}`);
  await shot(page, "settings-desktop");

  step("the rule edited on its own page");
  await Promise.all([page.waitForNavigation(), page.click("#acl-list >> text=Edit")]);
  await axe(page, "access rule editor");
  await page.selectOption("#acl-edit-action", "all");
  await Promise.all([page.waitForNavigation(), page.click("text=Save rule")]);
  check((await page.textContent("#acl-list tbody tr")).includes("all"), "the edit was not kept");
}

async function phone(browser, problems) {
  step("the settings page at phone width");
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  watch(page, problems);
  await login(page);
  await page.goto(`${BASE}/settings`);
  await noHorizontalScroll(page, "settings (phone)");
  await axe(page, "settings (phone)");
  await shot(page, "settings-phone");
  await context.close();
}

async function dark(browser, problems) {
  step("the settings page in dark mode");
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "dark" });
  const page = await context.newPage();
  watch(page, problems);
  await login(page);
  await page.goto(`${BASE}/settings`);
  await axe(page, "settings (dark)");
  await context.close();
}

run("console settings e2e", async (browser, problems) => {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await desktop.newPage();
  watch(page, problems);
  step("log in");
  await login(page);
  await retention(page);
  await acl(page);
  await phone(browser, problems);
  await dark(browser, problems);
});
