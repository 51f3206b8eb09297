import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveCommand } from "../../src/cli/commands/serve.js";
import { resolveServeConfig } from "../../src/config/serve-config.js";
import { UI_BUILD_DIR, uiStaticRoutes } from "../../src/routes/ui.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, demoAdaptersDir } from "../support/in-process.js";

type ErrorBody = { error: { message: string; param: string | null } };

/** The server side of the playground: static files, headers, auth, --no-ui, and the inspect routes. */

function ensureUiBuilt(): void {
  if (existsSync(join(UI_BUILD_DIR, "index.html"))) return;
  execFileSync("npm", ["run", "--silent", "build:ui"], { stdio: "inherit" });
}

function assetPaths(html: string): string[] {
  return [...html.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)].map((m) => m[1]!);
}

describe("playground static files", () => {
  let core: ServerCore;
  beforeAll(async () => {
    ensureUiBuilt();
    core = await createInProcessServer({ apiKeys: ["sekrit"] });
  });
  afterAll(() => core?.dispose());

  it("serves the page at / and /ui/ without a key, with a CSP that allows only our own scripts", async () => {
    for (const route of ["/", "/ui/"]) {
      const response = await core.app.request(route);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(response.headers.get("cache-control")).toBe("no-cache");
      const csp = response.headers.get("content-security-policy") ?? "";
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("connect-src 'self'");
      expect(csp).not.toContain("unsafe-inline");
      expect(csp).not.toMatch(/https?:|\*/);
      const html = await response.text();
      expect(html).toContain('<div id="app">');
      // No inline script: every <script> names a file of our own.
      for (const tag of html.match(/<script[^>]*>[\s\S]*?<\/script>/g) ?? [])
        expect(tag).toMatch(/^<script[^>]* src="\/ui\/[^"]+"[^>]*><\/script>$/);
    }
  });

  it("serves every asset the page names with its content type, hashed ones as immutable", async () => {
    const html = await (await core.app.request("/")).text();
    const paths = assetPaths(html);
    expect(paths.some((p) => p.endsWith(".js"))).toBe(true);
    expect(paths.some((p) => p.endsWith(".css"))).toBe(true);
    for (const path of paths) {
      const response = await core.app.request(path);
      expect(response.status, path).toBe(200);
      const type = response.headers.get("content-type");
      if (path.endsWith(".js")) expect(type).toBe("text/javascript; charset=utf-8");
      if (path.endsWith(".css")) expect(type).toBe("text/css; charset=utf-8");
      if (path.endsWith(".svg")) expect(type).toBe("image/svg+xml");
      const immutable = path.startsWith("/ui/assets/");
      expect(response.headers.get("cache-control")).toBe(immutable ? "public, max-age=31536000, immutable" : "no-cache");
      const body = Buffer.from(await response.arrayBuffer());
      expect(body.equals(readFileSync(join(UI_BUILD_DIR, path.slice("/ui/".length))))).toBe(true);
    }
  });

  it("answers 304 to a matching If-None-Match", async () => {
    const first = await core.app.request("/");
    const etag = first.headers.get("etag")!;
    expect(etag).toMatch(/^".+"$/);
    const again = await core.app.request("/", { headers: { "If-None-Match": etag } });
    expect(again.status).toBe(304);
  });

  it("keeps the API behind the key; /ui/session tells the key's role", async () => {
    expect((await core.app.request("/v1/models")).status).toBe(401);
    const anonymous = await core.app.request("/ui/session");
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { message: string } }).error.message).toMatch(/API key/);
    const session = await core.app.request("/ui/session", { headers: { Authorization: "Bearer sekrit" } });
    expect(session.status).toBe(200);
    expect(await session.json()).toEqual({ role: "admin", train: true, adapters: null });
  });

  it("serves nothing outside the build, and unknown /ui paths fall through to auth", async () => {
    for (const path of ["/ui/../package.json", "/ui/%2e%2e/package.json", "/ui/index.html.map", "/ui/nope.js"]) {
      const response = await core.app.request(path);
      expect(response.status, path).toBe(401);
    }
  });
});

describe("--no-ui", () => {
  it("is read from the flag and from LORI_NO_UI, and rejects other values", () => {
    expect(resolveServeConfig({}, {}).noUi).toBe(false);
    expect(resolveServeConfig({ noUi: true }, {}).noUi).toBe(true);
    expect(resolveServeConfig({}, { LORI_NO_UI: "1" }).noUi).toBe(true);
    expect(resolveServeConfig({}, { LORI_NO_UI: "false" }).noUi).toBe(false);
    expect(() => resolveServeConfig({}, { LORI_NO_UI: "maybe" })).toThrow(/--no-ui \/ LORI_NO_UI/);
    expect(serveCommand.help).toMatch(/--no-ui .*\[LORI_NO_UI\]/);
  });

  it("turns the playground off: / and /ui/ are 404 and /ui/session is gone", async () => {
    const core = await createInProcessServer({ noUi: true }, { withDemoAdapters: false });
    try {
      for (const path of ["/", "/ui/", "/ui/session", "/ui/favicon.svg"]) {
        const response = await core.app.request(path);
        expect(response.status, path).toBe(404);
        expect(response.headers.get("content-security-policy")).toBeNull();
      }
    } finally {
      await core.dispose();
    }
  });
});

describe("an unbuilt playground", () => {
  it("says how to build it instead of serving nothing", async () => {
    const app = uiStaticRoutes(mkdtempSync(join(tmpdir(), "lori-ui-empty-")));
    const response = await app.request("/");
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/npm run build/);
  });

  it("serves only known file types from the build folder", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lori-ui-build-"));
    mkdirSync(join(dir, "assets"));
    writeFileSync(join(dir, "index.html"), "<!doctype html>");
    writeFileSync(join(dir, "assets", "a-1.js"), "export {}");
    writeFileSync(join(dir, "assets", "a-1.js.map"), "{}");
    const app = uiStaticRoutes(dir);
    expect((await app.request("/ui/assets/a-1.js")).status).toBe(200);
    expect((await app.request("/ui/assets/a-1.js.map")).status).toBe(404);
  });
});

describe("inspect routes", () => {
  let core: ServerCore;
  beforeAll(async () => {
    core = await createInProcessServer();
  });
  afterAll(() => core?.dispose());

  it("GET /adapters/{name}/modules gives one entry per layer x target module", async () => {
    const config = JSON.parse(readFileSync(join(demoAdaptersDir, "math", "adapter_config.json"), "utf8"));
    // Layers counted from the base fingerprint's tensor names, independently of the adapter's tensors.
    const layers = new Set(
      Object.keys(config.lori.base_fingerprint.tensors)
        .map((name) => /^blk\.(\d+)\./.exec(name)?.[1])
        .filter(Boolean),
    );
    const response = await core.app.request("/adapters/math/modules");
    expect(response.status).toBe(200);
    const report = (await response.json()) as {
      perModule: Array<{ module: string; sparsity: number }>;
      bytesOnDisk: number;
      denseFp16PeftBytes: number;
      ratioToDenseFp16: number;
    };
    expect(report.perModule).toHaveLength(layers.size * config.target_modules.length);
    expect(new Set(report.perModule.map((m) => m.module))).toEqual(new Set(config.target_modules));
    const mean = report.perModule.reduce((n, m) => n + m.sparsity, 0) / report.perModule.length;
    expect(mean).toBeCloseTo(config.lori.sparsity, 2);
    expect(report.bytesOnDisk).toBe(statSync(join(demoAdaptersDir, "math", "adapter_model.safetensors")).size);
    expect(report.ratioToDenseFp16).toBeCloseTo(report.bytesOnDisk / report.denseFp16PeftBytes, 12);
    expect(report.ratioToDenseFp16).toBeLessThan(1);
    expect(JSON.stringify(report)).not.toContain(demoAdaptersDir);
  });

  it("GET /adapters/{a}/interference?with=b reports the pair; a missing or unknown partner is a clear error", async () => {
    const response = await core.app.request("/adapters/math/interference?with=code");
    expect(response.status).toBe(200);
    const report = (await response.json()) as {
      adapters: string[];
      sharedModules: number;
      principalAnglesDeg: { mean: number; max: number };
    };
    expect(report.adapters).toEqual(["math", "code"]);
    expect(report.sharedModules).toBeGreaterThan(0);
    expect(report.principalAnglesDeg.mean).toBeGreaterThan(0);
    expect(report.principalAnglesDeg.max).toBeLessThanOrEqual(90 + 1e-9);
    const missing = await core.app.request("/adapters/math/interference");
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as ErrorBody).error.param).toBe("with");
    const unknown = await core.app.request("/adapters/math/interference?with=nope");
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as ErrorBody).error.message).toContain("nope");
  });
});
