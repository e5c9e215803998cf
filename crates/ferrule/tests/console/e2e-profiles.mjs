// End-to-end test of the console's device profiles page in headless
// Chromium: JSON that does not parse shows its error next to the field
// with the caret where parsing stopped; a profile is created, edited and
// deleted after a confirmation; the pages (and the admin's overview with
// the server's load) at phone width without sideways scrolling, axe-core
// on each. See lib.mjs for the environment.

import { BASE, step, check, watch, axe, shot, noHorizontalScroll, login, run } from "./lib.mjs";

const SCHEMA = '{\n  "type": "object",\n  "properties": {"temp": {"type": "number"}}\n}';

async function submit(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

async function profiles(page) {
  step("the profiles page from the nav");
  await page.goto(`${BASE}/`);
  await submit(page, "nav >> text=Profiles");
  check(new URL(page.url()).pathname === "/profiles", `at ${page.url()}`);
  check((await page.textContent("#profile-list")).includes("default"), "default is listed");
  await axe(page, "profiles");

  step("a schema that is not JSON: the error next to it, the caret where it stops");
  await submit(page, "#new-profile");
  await axe(page, "new profile");
  await page.fill("#profile-name", "thermo");
  await page.fill("#profile-telemetry-schema", '{\n  "type": "object",\n  oops\n}');
  await submit(page, "#profile-save");
  check((await page.getAttribute("#profile-telemetry-schema", "aria-invalid")) === "true", "schema not marked invalid");
  const error = await page.textContent("#profile-telemetry-schema-error");
  check(error.includes("Line 3, column 3"), `schema error: ${error}`);
  const caret = await page.evaluate(() => {
    const a = document.activeElement;
    return a && a.id === "profile-telemetry-schema" ? a.selectionStart : -1;
  });
  check(caret === '{\n  "type": "object",\n  '.length, `caret at ${caret}`);
  check((await page.inputValue("#profile-name")) === "thermo", "the name is kept");
  await axe(page, "new profile with an error");

  step("fixed: created, the saved notice on its page");
  await page.fill("#profile-telemetry-schema", SCHEMA);
  await page.fill("#profile-defaults", '{"max_temp": 30}');
  await page.fill("#profile-retention", "30");
  await submit(page, "#profile-save");
  check(new URL(page.url()).pathname === "/profiles/thermo", `at ${page.url()}`);
  check((await page.textContent("#profile-saved")).includes("saved"), "no saved notice");
  await axe(page, "profile");
  await shot(page, "profile-desktop");

  step("an invalid schema from the API: the reason next to the field");
  await page.fill("#profile-state-schema", '{"type": "nope"}');
  await submit(page, "#profile-save");
  check((await page.getAttribute("#profile-state-schema", "aria-invalid")) === "true", "state schema not marked invalid");
  check((await page.textContent("#profile-state-schema-error")).length > 0, "no state schema error");
  await axe(page, "profile with an API error");

  step("edited and kept after a reload");
  await page.fill("#profile-state-schema", "");
  await page.fill("#profile-description", "Room sensors");
  await submit(page, "#profile-save");
  await page.reload();
  check((await page.inputValue("#profile-description")) === "Room sensors", "description kept");
  check((await page.inputValue("#profile-defaults")).includes('"max_temp": 30'), "defaults kept");
  check((await page.inputValue("#profile-retention")) === "30", "retention kept");

  step("deleted after a confirmation");
  await submit(page, "#profile-delete");
  await axe(page, "profile delete confirmation");
  await submit(page, "#profile-delete-confirm");
  check(new URL(page.url()).pathname === "/profiles", `at ${page.url()}`);
  check(!(await page.textContent("#profile-list")).includes("thermo"), "thermo still listed");
}

async function phone(browser, problems) {
  step("profiles and the overview at phone width");
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  watch(page, problems);
  await login(page);
  for (const [path, name] of [["/profiles", "profiles"], ["/profiles/default", "profile"], ["/profiles/new", "new profile"], ["/", "overview"]]) {
    await page.goto(`${BASE}${path}`);
    await noHorizontalScroll(page, `${name} (phone)`);
    await axe(page, `${name} (phone)`);
  }
  check((await page.textContent("#system")).includes("points/s"), "the admin's overview shows the server");
  await shot(page, "overview-system-phone");
  await page.goto(`${BASE}/profiles/default`);
  await shot(page, "profile-phone");
  await context.close();
}

run("console profiles e2e", async (browser, problems) => {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await desktop.newPage();
  watch(page, problems);
  step("log in");
  await login(page);
  await profiles(page);
  await phone(browser, problems);
});
