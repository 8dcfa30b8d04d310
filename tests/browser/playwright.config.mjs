// Playwright for loggate's web page: Debian's Chromium (the registries'
// browser downloads do not work here), one worker (each test starts its own
// gateway and vhost; the machine is shared), a screenshot from every test.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.mjs",
  outputDir: "test-results",
  timeout: 90_000,
  expect: { timeout: 10_000 },
  workers: 1,
  reporter: [["list"]],
  use: {
    viewport: { width: 1366, height: 768 },
    launchOptions: { executablePath: process.env.CHROMIUM || "/usr/bin/chromium" },
    trace: "retain-on-failure",
  },
});
