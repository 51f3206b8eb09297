import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { secretWordTask } from "../finetune/helpers.js";
import { ensureTrainerBuilt } from "../native/helpers.js";
import { demoAdaptersDir, demoModelPath } from "../support/in-process.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { type Browser, copyDemoAdapters, hasChromium, launchBrowser, PageProblems, screenshot } from "./browser.js";

/**
 * The playground in real headless Chromium against a real server on the demo model, with API keys set (an
 * admin key and a user key): each view's main flow end to end, checked against the HTTP API itself.
 */

const execFileAsync = promisify(execFile);
const ADMIN_KEY = "admin-key-0123";
const USER_KEY = "user-key-4567";
const MATH_PROMPT = "What is 7 - 3?";

describe.skipIf(!hasChromium)("playground in Chromium", () => {
  let test: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    const keysFile = join(mkdtempSync(join(tmpdir(), "lori-ui-keys-")), "keys.json");
    writeFileSync(
      keysFile,
      JSON.stringify({
        keys: [
          { key: ADMIN_KEY, role: "admin" },
          { key: USER_KEY, role: "user" },
        ],
      }),
    );
    ensureTrainerBuilt();
    test = await startTestServer({
      models: [`lori-demo=${demoModelPath}`],
      adaptersDir: copyDemoAdapters(demoAdaptersDir),
      dataDir: mkdtempSync(join(tmpdir(), "lori-ui-data-")),
      trainingThreads: 1,
      keysFile,
      contextSize: 2048,
    });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await test?.server.close();
  });

  const api = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(`${test.baseUrl}${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${ADMIN_KEY}`, "Content-Type": "application/json", ...(init.headers as Record<string, string>) },
    });
    expect(response.status, path).toBe(200);
    return response;
  };
  const metric = async (name: string) => {
    const text = await (await api("/metrics")).text();
    return text
      .split("\n")
      .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
  };
  const greedy = async (body: Record<string, unknown>) => {
    const response = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify({ ...body, stream: false }) });
    return ((await response.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
  };

  /** A page on `view` with `key` entered in the key field (kept in localStorage, as a user would). */
  async function open(view: string, key: string): Promise<{ page: Page; problems: PageProblems }> {
    const page = await browser.context.newPage();
    const problems = new PageProblems(page);
    // A returning user: the key is already in localStorage when the page loads (the field's own test is below).
    await page.goto(`${test.baseUrl}/ui/favicon.svg`);
    await page.evaluate(
      (k) => (globalThis as unknown as { localStorage: { setItem(a: string, b: string): void } }).localStorage.setItem("lori.apiKey", k),
      key,
    );
    await page.goto(`${test.baseUrl}/#/${view}`);
    await page.getByTestId("role").waitFor();
    expect(await page.getByTestId("api-key").inputValue()).toBe(key);
    return { page, problems };
  }

  const setNumber = async (page: Page, scope: string, name: string, value: string) => {
    const field = page.locator(`${scope} input[name="${name}"]`);
    await field.fill(value);
    await field.blur();
  };

  it("Chat streams the API's greedy answer for the same request; Enter sends, Shift+Enter adds a line", async () => {
    const { page, problems } = await open("chat", ADMIN_KEY);
    const chat = '[data-view="chat"]';
    await setNumber(page, chat, "temperature", "0");
    await setNumber(page, chat, "max_tokens", "40");
    const prompt = page.getByTestId("prompt");
    await prompt.click();
    await page.keyboard.type("Tell me a story");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("about a cat.");
    expect(await prompt.inputValue()).toBe("Tell me a story\nabout a cat.");
    expect(await page.locator(`${chat} article`).count()).toBe(0);
    await page.keyboard.press("Enter");
    await page.locator(`${chat} article[data-state="done"]`).waitFor({ timeout: 30_000 });
    await page.getByTestId("toggle-raw").click();
    const streamed = await page.getByTestId("answer-raw").textContent();
    const expected = await greedy({
      model: "lori-demo",
      messages: [{ role: "user", content: "Tell me a story\nabout a cat." }],
      temperature: 0,
      top_p: 0.95,
      top_k: 40,
      max_tokens: 40,
    });
    expect(expected.length).toBeGreaterThan(0);
    expect(streamed).toBe(expected);
    // "copy as curl" copies the exact request: run it and get the same answer.
    await browser.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: test.baseUrl });
    await page.getByRole("button", { name: "copy as curl" }).click();
    await page.getByRole("button", { name: "Copied" }).waitFor();
    const curl = await page.evaluate(() =>
      (globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }).navigator.clipboard.readText(),
    );
    expect(curl).toContain("Authorization: Bearer $LORI_API_KEY");
    // Asynchronously: the server under test runs in this very process.
    const { stdout: events } = await execFileAsync("bash", ["-c", curl], {
      env: { ...process.env, LORI_API_KEY: ADMIN_KEY },
      timeout: 30_000,
    });
    const curlAnswer = events
      .split("\n")
      .filter((line) => line.startsWith("data: {"))
      .map((line) => (JSON.parse(line.slice(6)) as { choices: Array<{ delta?: { content?: string } }> }).choices[0]?.delta?.content ?? "")
      .join("");
    expect(curlAnswer).toBe(expected);
    const meta = await page.getByTestId("answer-meta").textContent();
    expect(meta).toMatch(/base model/);
    expect(meta).toMatch(/TTFT \d+ ms/);
    expect(meta).toMatch(/\d+ tokens/);
    expect(meta).toMatch(/tok\/s/);
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it("Stop aborts the request and the server frees the sequence", async () => {
    const { page, problems } = await open("chat", ADMIN_KEY);
    // The browser cancels the fetch on purpose: that one aborted request is expected.
    problems.allow(/request failed: POST .*\/v1\/chat\/completions net::ERR_ABORTED/);
    const chat = '[data-view="chat"]';
    await setNumber(page, chat, "max_tokens", "2000");
    await page.locator(`${chat} input[name="ignore_eos"]`).check();
    const tokensBefore = await metric("lori_generation_tokens_total");
    await page.getByTestId("prompt").fill("Tell me a long story.");
    await page.getByTestId("send").click();
    await page.locator(`${chat} [data-testid="answer"] .markdown p`).first().waitFor();
    expect(await metric("lori_sequences_busy")).toBe(1);
    await page.getByTestId("stop").click();
    await page.locator(`${chat} article[data-state="stopped"]`).waitFor();
    const deadline = Date.now() + 10_000;
    while ((await metric("lori_sequences_busy")) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await metric("lori_sequences_busy")).toBe(0);
    // Freed early, not run to max_tokens: fewer than the 2000 tokens asked for were generated.
    expect((await metric("lori_generation_tokens_total")) - tokensBefore).toBeLessThan(2000);
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it('Compare streams ["math"] and no adapter side by side: different answers, differences marked', async () => {
    const { page, problems } = await open("compare", ADMIN_KEY);
    const first = page.getByTestId("compare-column").nth(0);
    await first.getByTestId("adapter-choice").selectOption("math");
    await first.getByTestId("adapter-add").click();
    await page.getByTestId("compare-prompt").fill(MATH_PROMPT);
    await page.getByTestId("compare-run").click();
    await page.locator('[data-testid="compare-column"][data-state="done"]').nth(1).waitFor({ timeout: 30_000 });
    const answers = await page.getByTestId("compare-answer").allTextContents();
    expect(answers).toHaveLength(2);
    const body = {
      model: "lori-demo",
      messages: [{ role: "user", content: MATH_PROMPT }],
      temperature: 0,
      top_p: 0.95,
      top_k: 40,
      max_tokens: 128,
    };
    expect(answers[0]).toBe(await greedy({ ...body, adapter: [{ name: "math", weight: 1 }] }));
    expect(answers[1]).toBe(await greedy(body));
    expect(answers[0]).not.toBe(answers[1]);
    expect(await page.locator('[data-testid="compare-answer"] mark').count()).toBeGreaterThan(0);
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it("Adapters: table from the API, heatmaps of the right size, merge creates an adapter seen in the table and in Chat", async () => {
    const { page, problems } = await open("adapters", ADMIN_KEY);
    const table = page.getByTestId("adapters-table");
    await table.locator("tbody tr").nth(3).waitFor();
    const listed = (await (await api("/adapters")).json()) as { data: Array<{ id: string; hash: string }> };
    expect(await table.locator("tbody tr").count()).toBe(listed.data.length);
    for (const adapter of listed.data) {
      expect(await table.locator(`tr[data-adapter="${adapter.id}"] code`).getAttribute("title")).toBe(adapter.hash);
    }
    const mathRow = table.locator('tr[data-adapter="math"]');
    expect(await mathRow.textContent()).toContain("LoRI-S");
    await expect.poll(() => page.getByTestId("adapters-table").textContent()).not.toContain("…");

    // Per-module heatmap: one row per layer, one column per target module, as the API reports them.
    const modules = (await (await api("/adapters/math/modules")).json()) as { perModule: Array<{ layer: number; module: string }> };
    await mathRow.getByRole("button", { name: "math" }).click();
    const heatmap = page.getByTestId("module-heatmap");
    await heatmap.waitFor();
    const layers = new Set(modules.perModule.map((m) => m.layer)).size;
    const kinds = new Set(modules.perModule.map((m) => m.module)).size;
    expect(layers * kinds).toBe(modules.perModule.length);
    expect(await heatmap.getAttribute("data-rows")).toBe(String(layers));
    expect(await heatmap.getAttribute("data-columns")).toBe(String(kinds));
    expect(await heatmap.locator("tbody td.cell").count()).toBe(layers * kinds);
    const interference = page.getByTestId("interference-heatmap");
    expect(await interference.getAttribute("data-rows")).toBe("4");
    await expect.poll(() => interference.locator("td.cell:not([data-empty])").count()).toBe(12);

    const merge = page.getByTestId("merge-form");
    for (const name of ["math", "code"]) {
      await merge.getByTestId("adapter-choice").selectOption(name);
      await merge.getByTestId("adapter-add").click();
    }
    await merge.getByLabel("math weight value").fill("0.5");
    await merge.getByLabel("math weight value").blur();
    await merge.locator('input[name="merge-name"]').fill("math-code");
    await merge.getByRole("button", { name: "Merge" }).click();
    await merge.getByText("Created math-code.").waitFor();
    await table.locator('tr[data-adapter="math-code"]').waitFor();
    const created = (await (await api("/adapters/math-code")).json()) as {
      lori: { lineage: Array<{ inputs: Array<{ name: string; weight: number }> }> };
    };
    expect(created.lori.lineage[0]!.inputs.map((i) => [i.name, i.weight])).toEqual([
      ["math", 0.5],
      ["code", 1],
    ]);
    expect(await table.locator('tr[data-adapter="math-code"]').textContent()).toContain("linear(math×0.5, code×1)");
    await page.locator('[data-testid="interference-heatmap"][data-rows="5"][data-columns="5"]').waitFor();

    // A pruning method shows its density field, and the value reaches the server.
    await merge.locator('select[name="method"]').selectOption("ties");
    for (const name of ["math", "nlu"]) {
      await merge.getByTestId("adapter-choice").selectOption(name);
      await merge.getByTestId("adapter-add").click();
    }
    await merge.locator('input[name="density"]').fill("0.3");
    await merge.locator('input[name="merge-name"]').fill("math-nlu-ties");
    await merge.getByRole("button", { name: "Merge" }).click();
    await merge.getByText("Created math-nlu-ties.").waitFor();
    const ties = (await (await api("/adapters/math-nlu-ties")).json()) as { lori: { lineage: Array<Record<string, unknown>> } };
    expect(ties.lori.lineage[0]).toMatchObject({ method: "ties", density: 0.3 });
    await merge.locator('select[name="method"]').selectOption("linear");
    expect(await merge.locator('input[name="density"]').count()).toBe(0);

    await page.goto(`${test.baseUrl}/#/chat`);
    const options = await page.locator('[data-view="chat"] [data-testid="adapter-choice"] option').allTextContents();
    expect(options).toContain("math-code");
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it("hides admin actions from a user key", async () => {
    const { page, problems } = await open("adapters", USER_KEY);
    expect(await page.getByTestId("role").textContent()).toBe("user");
    await page.getByTestId("adapters-table").locator("tbody tr").first().waitFor();
    expect(await page.getByTestId("merge-form").count()).toBe(0);
    expect(await page.getByTestId("upload-form").count()).toBe(0);
    expect(await page.getByRole("button", { name: "delete" }).count()).toBe(0);
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it("Server view charts /metrics", async () => {
    const { page, problems } = await open("server", ADMIN_KEY);
    const charts = page.getByTestId("charts");
    await charts.locator("figure").first().waitFor();
    expect(await charts.locator("figure").count()).toBe(7);
    await expect.poll(() => page.locator('[data-testid="charts"] path.line').count(), { timeout: 10_000 }).toBe(7);
    expect(await page.getByTestId("sequences-busy").locator(".chart-value").textContent()).toBe("0");
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it("a wrong API key shows the server's 401 message", async () => {
    const { page, problems } = await open("chat", ADMIN_KEY);
    // The rejected call itself is what this test provokes.
    problems.allow(/HTTP 401: GET .*\/ui\/session$|status of 401/);
    await page.getByTestId("api-key").fill("wrong-key-000");
    await page.getByRole("button", { name: "Use key" }).click();
    const message = page.getByTestId("session-error").getByRole("alert");
    await message.waitFor();
    expect(await message.textContent()).toBe("401: Missing or invalid API key (send 'Authorization: Bearer <key>').");
    expect(await page.getByTestId("role").count()).toBe(0);
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it("Fine-tune: per-line file errors, a tiny job to succeeded with its loss curve, try it in Chat, cancel", async () => {
    const { page, problems } = await open("finetune", ADMIN_KEY);
    // The rejected upload is what the first step provokes.
    problems.allow(/HTTP 400: POST .*\/v1\/files$|status of 400/);
    const fileInput = page.locator('[data-testid="training-file-form"] input[name="file"]');
    const upload = async (name: string, lines: string[]) => {
      await fileInput.setInputFiles({ name, mimeType: "application/jsonl", buffer: Buffer.from(`${lines.join("\n")}\n`) });
      await page.locator('[data-testid="training-file-form"] button[type="submit"]').click();
    };
    const task = secretWordTask();
    await upload("bad.jsonl", [task.lines[0]!, "{not json", '{"messages": []}']);
    const listed = page.getByTestId("file-problems").locator("li");
    await listed.first().waitFor();
    const items = await listed.allTextContents();
    expect(items.some((item) => item.startsWith("line 2:"))).toBe(true);
    expect(items.some((item) => item.startsWith("line 3:"))).toBe(true);

    await upload("train.jsonl", task.lines);
    const uploaded = page.getByText(/^Uploaded train\.jsonl as /);
    await uploaded.waitFor();
    const fileId = /as (\S+)\.$/.exec((await uploaded.textContent()) ?? "")![1]!;

    const form = page.getByTestId("new-job-form");
    await form.locator('select[name="training_file"]').selectOption(fileId);
    await form.locator('input[name="n_epochs"]').fill("1");
    await form.locator('input[name="batch_size"]').fill("4");
    await form.locator('input[name="suffix"]').fill("secret");
    await form.getByRole("button", { name: "Start" }).click();
    const row = page.locator('[data-testid="jobs-table"] tr[data-job]').first();
    await row.waitFor();
    const jobId = (await row.getAttribute("data-job"))!;
    await page.locator(`[data-testid="jobs-table"] tr[data-job="${jobId}"][data-status="succeeded"]`).waitFor({ timeout: 150_000 });

    // The curve has one point per metrics event with a training loss, as the API lists them.
    const events: Array<{ id: string; type: string; data: { train_loss?: number } | null }> = [];
    for (let after = ""; ; ) {
      const page = (await (await api(`/v1/fine_tuning/jobs/${jobId}/events?limit=100${after}`)).json()) as {
        data: typeof events;
        has_more: boolean;
      };
      events.push(...page.data);
      if (!page.has_more) break;
      after = `&after=${page.data.at(-1)!.id}`;
    }
    const points = events.filter((e) => e.type === "metrics" && typeof e.data?.train_loss === "number").length;
    expect(points).toBe(10); // 40 examples, batch 4, 1 epoch
    await expect.poll(() => page.getByTestId("loss-chart").getAttribute("data-points")).toBe(String(points));

    const job = (await (await api(`/v1/fine_tuning/jobs/${jobId}`)).json()) as { fine_tuned_model: string };
    await page.getByRole("button", { name: "Try it in Chat" }).click();
    await page.locator('[data-view="chat"]:not([hidden])').waitFor();
    await page.locator('[data-view="chat"] .adapter-name', { hasText: job.fine_tuned_model }).waitFor();

    // A long job, cancelled from the page.
    await page.goto(`${test.baseUrl}/#/finetune`);
    await form.locator('select[name="training_file"]').selectOption(fileId);
    await form.locator('input[name="n_epochs"]').fill("25");
    await form.getByRole("button", { name: "Start" }).click();
    await page.getByRole("button", { name: "Cancel job" }).click();
    const cancelledId = (await page.locator('[data-testid="jobs-table"] tr.selected').getAttribute("data-job"))!;
    expect(cancelledId).not.toBe(jobId);
    await page.locator(`[data-testid="jobs-table"] tr[data-job="${cancelledId}"][data-status="cancelled"]`).waitFor({ timeout: 30_000 });
    expect(((await (await api(`/v1/fine_tuning/jobs/${cancelledId}`)).json()) as { status: string }).status).toBe("cancelled");
    expect(problems.list).toEqual([]);
    await page.close();
  });

  it("screenshots of every view, light and dark", async () => {
    const { page, problems } = await open("chat", ADMIN_KEY);
    const chat = '[data-view="chat"]';
    await page.locator(`${chat} [data-testid="adapter-choice"]`).selectOption("math");
    await page.locator(`${chat} [data-testid="adapter-add"]`).click();
    await setNumber(page, chat, "temperature", "0");
    await setNumber(page, chat, "max_tokens", "48");
    await page.getByTestId("prompt").fill(MATH_PROMPT);
    await page.keyboard.press("Enter");
    await page.locator(`${chat} article[data-state="done"]`).waitFor({ timeout: 30_000 });

    await page.goto(`${test.baseUrl}/#/compare`);
    const columns = page.getByTestId("compare-column");
    await columns.nth(0).getByTestId("adapter-choice").selectOption("math");
    await columns.nth(0).getByTestId("adapter-add").click();
    await page.getByTestId("compare-add-set").click();
    await columns.nth(2).getByTestId("adapter-choice").selectOption("code");
    await columns.nth(2).getByTestId("adapter-add").click();
    await page.getByTestId("compare-prompt").fill(MATH_PROMPT);
    await page.getByTestId("compare-run").click();
    await page.locator('[data-testid="compare-column"][data-state="done"]').nth(2).waitFor({ timeout: 30_000 });

    await page.goto(`${test.baseUrl}/#/adapters`);
    await page.locator('tr[data-adapter="math"]').getByRole("button", { name: "math" }).click();
    await page.getByTestId("module-heatmap").waitFor();
    await expect.poll(() => page.getByTestId("adapters-table").textContent()).not.toContain("…");

    await page.goto(`${test.baseUrl}/#/finetune`);
    await page.locator('[data-testid="jobs-table"] tr[data-status="succeeded"] button').first().click();
    await expect.poll(async () => Number(await page.getByTestId("loss-chart").getAttribute("data-points"))).toBeGreaterThan(1);

    for (const scheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const view of ["chat", "compare", "adapters", "finetune"]) {
        await page.goto(`${test.baseUrl}/#/${view}`);
        await screenshot(page, `${view}-${scheme}`);
      }
      // Traffic on three adapter sets while the charts poll, so they have something to show.
      await page.goto(`${test.baseUrl}/#/server`);
      const traffic = ["math", "code", "nlu"].map((name) =>
        greedy({
          model: "lori-demo",
          adapter: [name],
          messages: [{ role: "user", content: "Tell me a story." }],
          max_tokens: 1200,
          ignore_eos: true,
        }),
      );
      await expect
        .poll(async () => Number(await page.getByTestId("charts").getAttribute("data-samples")), { timeout: 20_000 })
        .toBeGreaterThanOrEqual(5);
      await screenshot(page, `server-${scheme}`);
      await Promise.all(traffic);
    }
    expect(problems.list).toEqual([]);
    await page.close();
  });
});
