import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

/**
 * Real headless Chromium for the playground tests: the Debian package at /usr/bin/chromium (CI installs it,
 * see .ci/run), driven by playwright-core, which never downloads a browser of its own.
 */
export const CHROMIUM_PATH = "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM_PATH);
if (!hasChromium)
  console.warn(`[tests] ${CHROMIUM_PATH} not found: browser tests of the playground are skipped (apt-get install chromium)`);

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A browser with a fresh profile (its own --user-data-dir), removed on close. */
export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "lori-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 860 },
    timeout: 60_000,
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Everything that went wrong in a page: console errors, uncaught exceptions, failed requests and HTTP error
 * responses. Tests end with `expect(problems.list).toEqual([])`; one that provokes an error on purpose says
 * which with `allow`.
 */
export class PageProblems {
  readonly list: string[] = [];
  private readonly allowed: RegExp[] = [];

  constructor(page: Page) {
    page.on("console", (message) => {
      if (message.type() === "error") this.add(`console: ${message.text()}`);
    });
    page.on("pageerror", (error) => this.add(`page error: ${error.message}`));
    page.on("requestfailed", (request) =>
      this.add(`request failed: ${request.method()} ${request.url()} ${request.failure()?.errorText ?? ""}`),
    );
    page.on("response", (response) => {
      if (response.status() >= 400) this.add(`HTTP ${response.status()}: ${response.request().method()} ${response.url()}`);
    });
  }

  allow(pattern: RegExp): void {
    this.allowed.push(pattern);
  }

  private add(problem: string): void {
    if (!this.allowed.some((pattern) => pattern.test(problem))) this.list.push(problem);
  }
}

/** The demo adapters copied into a fresh store, so merges and deletes never touch the repository's. */
export function copyDemoAdapters(from: string): string {
  const dir = mkdtempSync(join(tmpdir(), "lori-ui-adapters-"));
  for (const name of ["math", "code", "nlu", "safety"]) cpSync(join(from, name), join(dir, name), { recursive: true });
  return dir;
}

export const SCREENSHOT_DIR = "docs/ui";

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}
