// loggate's web page in headless Chromium against a real gateway: what a
// person sees when records are logged with the CLI.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";

import { test as base, expect } from "@playwright/test";

import { createVhost, freePort, startGateway } from "./gateway.mjs";

const TOKEN = "browser-test-token-0123456789";
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
/** The one service the auth file's principal may read. */
const SCOPED = "oncall-scoped";

/** Each test: a vhost, a gateway in it with its page, and the page opened. */
const test = base.extend({
  vhost: async ({}, use) => {
    const vhost = await createVhost();
    await use(vhost);
    await vhost.delete();
  },
  webPort: async ({}, use) => use(await freePort()),
  /** Serve with an --auth-file naming one principal (TOKEN, reading SCOPED only). */
  withAuth: [false, { option: true }],
  gateway: async ({ vhost, webPort, withAuth }, use, testInfo) => {
    const extra = [];
    if (withAuth) {
      const path = testInfo.outputPath("auth.toml");
      writeFileSync(
        path,
        `[[principal]]\nname = "on-call"\ntoken_sha256 = "${sha256(TOKEN)}"\n` +
          `log = ["*"]\ntail = ["${SCOPED}"]\n`,
      );
      extra.push("--auth-file", path);
    }
    const gateway = await startGateway({ amqpUrl: vhost.url, webPort, extra });
    await use(gateway);
    await gateway.stop();
  },
  dialogs: async ({ page }, use) => {
    // Any alert() the page runs is a failure: recorded and dismissed.
    const dialogs = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss().catch(() => {});
    });
    await use(dialogs);
  },
});

/** A service name of this test's own. */
const service = (what) => `${what}${Math.floor(Math.random() * 1e9)}`;

/**
 * The rows in the DOM, top to bottom on screen (the page reuses row
 * elements, so their order in the DOM is not the order shown): each as
 * { message, level, levelClass }.
 */
async function shownRows(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll(".row:not([hidden])")]
      .sort((a, b) => Number(a.dataset.index) - Number(b.dataset.index))
      .map((row) => ({
        message: row.querySelector(".message").textContent,
        level: row.querySelector(".level").textContent,
        levelClass: row.querySelector(".level").className,
      })),
  );
}

async function shownMessages(page) {
  return (await shownRows(page)).map((row) => row.message);
}

/** Waits until the rows shown are exactly `messages`, in order. */
async function expectShown(page, messages, options) {
  await expect.poll(() => shownMessages(page), options).toEqual(messages);
}

/** Waits until the page's tail is open. */
async function live(page) {
  await expect(page.locator("#conn")).toHaveAttribute("data-state", "live");
}

async function screenshot(page, testInfo, name = "page.png") {
  await page.screenshot({ path: testInfo.outputPath(name) });
}

test("a filter shows exactly the matching records, in order", async ({
  page,
  gateway,
}, testInfo) => {
  const [billing, checkout] = [service("billing"), service("checkout")];
  await page.goto(gateway.web);
  await live(page);
  await page.keyboard.press("/");
  await expect(page.locator("#f-service")).toBeFocused();
  await page.keyboard.type(`${billing}, ${checkout}`);
  await page.locator("#f-level").selectOption("warn");
  await page.locator("#f-service").press("Enter");
  await live(page);
  await gateway.log(billing, "card declined", {
    level: "error",
    node: "pod-3",
    attrs: { order: "42" },
  });
  await gateway.log(billing, "too quiet: info", { level: "info" });
  await gateway.log(service("other"), "other service", { level: "error" });
  await gateway.log(checkout, "slow payment", { level: "warn", node: "pod-7" });
  await gateway.log(checkout, "too quiet: debug", { level: "debug" });
  await gateway.log(billing, "last one", { level: "fatal" });
  // Records arrive in stream order: once the last is shown, all are.
  await expect.poll(async () => (await shownMessages(page)).at(-1)).toBe("last one");
  expect(await shownMessages(page)).toEqual(["card declined", "slow payment", "last one"]);
  await expect(page.locator("#count")).toHaveText("3 records");
  const rows = await shownRows(page);
  expect(rows.map((row) => row.level)).toEqual(["error", "warn", "fatal"]);
  expect(rows.map((row) => row.levelClass)).toEqual([
    "level lv-error",
    "level lv-warn",
    "level lv-fatal",
  ]);
  // A click shows every field and attribute.
  await page.locator(".row", { hasText: "card declined" }).click();
  await expect(page.locator("#fields")).toContainText("pod-3");
  await expect(page.locator("#attributes")).toContainText("order");
  await expect(page.locator("#attributes")).toContainText("42");
  await screenshot(page, testInfo);
});

test("paused, records are counted and shown on resume", async ({ page, gateway }, testInfo) => {
  const name = service("pause");
  await page.goto(gateway.web);
  await page.locator("#f-service").fill(name);
  await page.locator("#f-service").press("Enter");
  await live(page);
  await gateway.log(name, "before");
  await expectShown(page, ["before"]);
  // Space pauses (not while typing in a field).
  await page.locator("#list").focus();
  await page.keyboard.press(" ");
  await expect(page.locator("#pause")).toHaveText("Resume");
  for (const i of [1, 2, 3]) await gateway.log(name, `while paused ${i}`);
  await expect(page.locator("#pending")).toHaveText("paused: 3 new, shown on resume");
  expect(await shownMessages(page)).toEqual(["before"]);
  await screenshot(page, testInfo, "paused.png");
  await page.keyboard.press(" ");
  await expectShown(page, ["before", "while paused 1", "while paused 2", "while paused 3"]);
  await expect(page.locator("#pending")).toBeHidden();
  await screenshot(page, testInfo);
});

test("a message that looks like markup is shown as its characters", async ({
  page,
  gateway,
  dialogs,
}, testInfo) => {
  const name = service("xss");
  const xss = "<img src=x onerror=alert(1)>";
  await page.goto(gateway.web);
  await page.locator("#f-service").fill(name);
  await page.locator("#f-service").press("Enter");
  await live(page);
  await gateway.log(name, xss, { attrs: { "<b>key</b>": "<script>alert(2)</script>" } });
  await gateway.log(name, "after");
  await expectShown(page, [xss, "after"]);
  await page.locator(".row", { hasText: "onerror" }).click();
  await expect(page.locator("#fields")).toContainText(xss);
  await expect(page.locator("#attributes")).toContainText("<script>alert(2)</script>");
  await expect(page.locator("#attributes")).toContainText("<b>key</b>");
  // Nothing became markup: no image, no script, no dialog.
  expect(await page.locator("main img, main script, main b").count()).toBe(0);
  await page.waitForTimeout(300);
  expect(dialogs).toEqual([]);
  await screenshot(page, testInfo);
});

test("a trace id filters by that trace", async ({ page, gateway }, testInfo) => {
  const name = service("trace");
  const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  await page.goto(gateway.web);
  await page.locator("#f-service").fill(name);
  await page.locator("#f-service").press("Enter");
  await live(page);
  await gateway.log(name, "in the trace", { traceId: trace });
  await gateway.log(name, "elsewhere");
  await expectShown(page, ["in the trace", "elsewhere"]);
  await page.locator(".row .trace", { hasText: trace.slice(0, 8) }).click();
  await expect(page.locator("#f-trace")).toHaveValue(trace);
  await live(page);
  await gateway.log(name, "elsewhere again");
  await gateway.log(name, "in the trace again", { traceId: trace });
  await expectShown(page, ["in the trace again"]);
  await screenshot(page, testInfo);
});

test("after a gateway restart the page resumes with no gap and no duplicate", async ({
  page,
  vhost,
  webPort,
  gateway,
}, testInfo) => {
  const name = service("restart");
  await page.goto(gateway.web);
  await page.locator("#f-service").fill(name);
  await page.locator("#f-service").press("Enter");
  await live(page);
  for (const i of [1, 2, 3]) await gateway.log(name, `r${i}`);
  await expectShown(page, ["r1", "r2", "r3"]);
  await gateway.stop();
  await expect(page.locator("#conn")).toHaveAttribute("data-state", "reconnecting");
  await screenshot(page, testInfo, "reconnecting.png");
  // The same page address and the same history; records logged before the
  // page has reconnected come from the history, after r3.
  const again = await startGateway({ amqpUrl: vhost.url, webPort });
  try {
    for (const i of [4, 5, 6]) await again.log(name, `r${i}`);
    await expectShown(page, ["r1", "r2", "r3", "r4", "r5", "r6"], { timeout: 20_000 });
    await live(page);
    await again.log(name, "r7");
    await expect.poll(async () => (await shownMessages(page)).at(-1)).toBe("r7");
    expect(await shownMessages(page)).toEqual(["r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
    await screenshot(page, testInfo);
  } finally {
    await again.stop();
  }
});

test("a live page that has received nothing yet misses nothing across a gateway restart", async ({
  page,
  vhost,
  webPort,
  gateway,
}, testInfo) => {
  const name = service("quiet");
  await page.goto(gateway.web);
  await page.locator("#f-service").fill(name);
  await page.locator("#f-service").press("Enter");
  await live(page);
  await gateway.stop();
  await expect(page.locator("#conn")).toHaveAttribute("data-state", "reconnecting");
  // Logged through another gateway while the page cannot reach its own, so
  // they are certainly in the history before the page reconnects.
  const other = await startGateway({ amqpUrl: vhost.url, webPort: await freePort() });
  let again = null;
  try {
    for (const i of [1, 2, 3]) await other.log(name, `q${i}`);
    again = await startGateway({ amqpUrl: vhost.url, webPort });
    await expectShown(page, ["q1", "q2", "q3"], { timeout: 20_000 });
    await live(page);
    await screenshot(page, testInfo);
  } finally {
    if (again) await again.stop();
    await other.stop();
  }
});

test.describe("with an auth file", () => {
  test.use({ withAuth: true });

  test("the page asks for a token and shows only what it may read", async ({
    page,
    gateway,
  }, testInfo) => {
    await page.goto(gateway.web);
    await expect(page.locator("#login")).toBeVisible();
    await page.locator("#token").fill("wrong");
    await page.locator("#token").press("Enter");
    await expect(page.locator("#login-error")).toHaveText("unknown token");
    await page.locator("#token").fill(TOKEN);
    await page.locator("#token").press("Enter");
    await expect(page.locator("#who")).toHaveText("as on-call");
    await live(page);
    await gateway.log(service("secret"), "not for on-call", { token: TOKEN });
    await gateway.log(SCOPED, "for on-call", { token: TOKEN });
    await expectShown(page, ["for on-call"]);
    // A service outside the scope is refused, with the gateway's reason.
    await page.locator("#f-service").fill("secret");
    await page.locator("#f-service").press("Enter");
    await expect(page.locator("#notice")).toContainText('may not read service "secret"');
    await screenshot(page, testInfo);
  });
});

test("the chart draws records/s by level from /api/stats", async ({ page, gateway }, testInfo) => {
  const [api, worker] = [service("api"), service("worker")];
  await page.goto(gateway.web);
  await live(page);
  const levels = ["info", "info", "info", "warn", "error", "debug", "info", "warn"];
  const nodes = ["pod-1", "pod-2", "pod-3"];
  const messages = [
    "GET /orders/42 200 in 12 ms",
    "payment provider slow: retrying",
    "card declined for order 42",
    "cache refreshed",
    "GET /health 200",
    "queue depth 12",
  ];
  // Over a few seconds, so that the chart has whole seconds to draw.
  for (let i = 0; i < 24; i += 1) {
    const level = levels[i % levels.length];
    await gateway.log(i % 3 ? api : worker, messages[i % messages.length], {
      level,
      node: nodes[i % nodes.length],
      attrs: { order: String(40 + (i % 5)), region: i % 2 ? "eu" : "us" },
      traceId: i % 4 === 0 ? "4bf92f3577b34da6a3ce929d0e0e4736" : undefined,
    });
    if (i % 6 === 5) await page.waitForTimeout(1000);
  }
  await expect(page.locator("#count")).toHaveText("24 records");
  // One line per level that logged, coloured as the level.
  for (const level of ["info", "warn", "error", "debug"]) {
    await expect(page.locator(`#chart path.st-${level}`)).toHaveCount(1);
  }
  await expect(page.locator("#chart path.st-fatal")).toHaveCount(0);
  await expect(page.locator("#legend")).toContainText("info");
  await page.locator(".row", { hasText: "payment provider slow" }).first().click();
  await expect(page.locator("#details")).toBeVisible();
  await screenshot(page, testInfo);
});

test.describe("in dark mode", () => {
  test.use({ colorScheme: "dark" });

  test("the page follows the system and every level stays readable", async ({
    page,
    gateway,
  }, testInfo) => {
    const name = service("dark");
    await page.goto(gateway.web);
    await page.locator("#f-service").fill(name);
    await page.locator("#f-service").press("Enter");
    await live(page);
    const levels = ["trace", "debug", "info", "warn", "error", "fatal"];
    for (const level of levels) await gateway.log(name, `a ${level} record`, { level });
    await expectShown(
      page,
      levels.map((level) => `a ${level} record`),
    );
    // WCAG contrast of each level's colour, and the text's, on the list.
    const contrasts = await page.evaluate(() => {
      const rgb = (css) =>
        css
          .match(/\d+(\.\d+)?/g)
          .slice(0, 3)
          .map(Number);
      const luminance = ([r, g, b]) => {
        const lin = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
        return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
      };
      const ratio = (a, b) => {
        const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
        return (hi + 0.05) / (lo + 0.05);
      };
      const background = rgb(getComputedStyle(document.body).backgroundColor);
      const cells = [...document.querySelectorAll(".row:not([hidden]) .level")];
      const message = document.querySelector(".row:not([hidden]) .message");
      return {
        background: luminance(background),
        text: ratio(rgb(getComputedStyle(message).color), background),
        levels: cells.map((cell) => ratio(rgb(getComputedStyle(cell).color), background)),
      };
    });
    expect(contrasts.background).toBeLessThan(0.05);
    expect(contrasts.text).toBeGreaterThan(7);
    for (const ratio of contrasts.levels) expect(ratio).toBeGreaterThan(4.5);
    await screenshot(page, testInfo);
  });
});
