/**
 * bench/ui: the playground's size and speed. Prints one JSON object:
 * - the built files of dist/ui (what the server serves), raw and gzipped (level 9, as a proxy would send them);
 * - time to first paint and first contentful paint of GET / on a real server on the demo model, in headless
 *   Chromium (/usr/bin/chromium; skipped with a note when it is absent), median of BENCH_LOADS page loads
 *   (default 7), each in a fresh page with the browser cache disabled.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import { resolveServeConfig } from "../src/config/serve-config.js";
import { UI_BUILD_DIR } from "../src/routes/ui.js";
import { startServer } from "../src/server/start-server.js";
import { copyDemoAdapters, hasChromium, launchBrowser } from "../tests/ui/browser.js";
import { demoAdaptersDir, demoModelPath } from "../tests/support/in-process.js";

const LOADS = Number(process.env.BENCH_LOADS ?? 7);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

function sizes() {
  const perFile = files(UI_BUILD_DIR).map((path) => {
    const body = readFileSync(path);
    return { file: relative(UI_BUILD_DIR, path), bytes: body.length, gzipBytes: gzipSync(body, { level: 9 }).length };
  });
  const sum = (pick: (f: (typeof perFile)[number]) => number, filter: (f: string) => boolean = () => true) =>
    perFile.filter((f) => filter(f.file)).reduce((n, f) => n + pick(f), 0);
  return {
    files: perFile,
    totalBytes: sum((f) => f.bytes),
    totalGzipBytes: sum((f) => f.gzipBytes),
    jsGzipBytes: sum(
      (f) => f.gzipBytes,
      (f) => f.endsWith(".js"),
    ),
    cssGzipBytes: sum(
      (f) => f.gzipBytes,
      (f) => f.endsWith(".css"),
    ),
  };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? null;
};

async function paintTimes() {
  if (!hasChromium) return { skipped: "/usr/bin/chromium not found (apt-get install chromium)" };
  const config = resolveServeConfig(
    {
      models: [`lori-demo=${demoModelPath}`],
      adaptersDir: copyDemoAdapters(demoAdaptersDir),
      // Its own data dir: files and jobs must not land in the checkout.
      dataDir: mkdtempSync(join(tmpdir(), "lori-bench-ui-data-")),
      host: "127.0.0.1",
      port: 0,
      gpu: "off",
      threads: 1,
      logRequests: false,
    },
    {},
  );
  const server = await startServer(config);
  const browser = await launchBrowser();
  try {
    const firstPaint: number[] = [];
    const firstContentfulPaint: number[] = [];
    for (let i = 0; i < LOADS; i++) {
      const page = await browser.context.newPage();
      const cdp = await browser.context.newCDPSession(page);
      await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
      await page.goto(`${server.url}/`, { waitUntil: "load" });
      await page.getByTestId("role").waitFor();
      // Runs in the page (a browser global; node's types do not list the "paint" entry type).
      const paints = await page.evaluate(() => performance.getEntriesByType("paint" as "mark").map((e) => [e.name, e.startTime] as const));
      const byName = new Map(paints);
      firstPaint.push(byName.get("first-paint") ?? Number.NaN);
      firstContentfulPaint.push(byName.get("first-contentful-paint") ?? Number.NaN);
      await page.close();
    }
    return {
      loads: LOADS,
      firstPaintMs: median(firstPaint),
      firstContentfulPaintMs: median(firstContentfulPaint),
      firstPaintAllMs: firstPaint.map(Math.round),
    };
  } finally {
    await browser.close();
    await server.close();
  }
}

const result = { bundle: sizes(), paint: await paintTimes() };
console.log(JSON.stringify(result, null, 2));
