import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { buildContextFiles, isExcluded, parseDockerignore } from "../support/dockerignore.js";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const DEMO_ADAPTERS = ["math", "code", "nlu", "safety"];

/**
 * No Docker engine runs here, so the image is checked through its inputs: the build context that .dockerignore
 * lets through must hold the demo model and adapters (else the image serves the random fallback model), must
 * leave out what the image builds itself, and must hold every path the Dockerfile COPYs from the context.
 */
describe("docker build context", () => {
  let files: string[] = [];
  let contains: (path: string) => boolean;
  beforeAll(async () => {
    files = await buildContextFiles(repoRoot);
    const set = new Set(files);
    contains = (path) => set.has(path) || files.some((f) => f.startsWith(`${path}/`));
  });

  it("holds the demo model and the four demo adapters", () => {
    expect(files).toContain("models/lori-demo.gguf");
    for (const name of DEMO_ADAPTERS) {
      expect(files).toContain(`adapters/${name}/adapter_config.json`);
      expect(files).toContain(`adapters/${name}/adapter_model.safetensors`);
    }
  });

  it("leaves out node_modules, dist, compiled adapter caches and generated random models", async () => {
    expect(files.filter((f) => /^(node_modules|dist|\.git|native\/build|adapters\/\.compiled)(\/|$)/.test(f))).toEqual([]);
    // The same rules applied to paths a working checkout may or may not have at this moment.
    const patterns = parseDockerignore(await readFile(`${repoRoot}/.dockerignore`, "utf8"));
    for (const path of [
      "node_modules/zod/package.json",
      "dist/cli/main.js",
      "adapters/.compiled/0123abcd.gguf",
      "models/lori-tiny.gguf",
      "native/build/train.o",
    ]) {
      expect(isExcluded(path, patterns), path).toBe(true);
    }
    expect(isExcluded("models/lori-demo.gguf", patterns)).toBe(false);
  });

  it("holds every source the Dockerfile copies from the context", async () => {
    const dockerfile = await readFile(`${repoRoot}/Dockerfile`, "utf8");
    const sources = dockerfile
      .split("\n")
      .filter((line) => /^COPY\s/.test(line) && !/--from=/.test(line))
      .flatMap((line) => line.trim().split(/\s+/).slice(1, -1));
    expect(sources).toEqual(expect.arrayContaining(["models", "adapters", "src", "package-lock.json"]));
    for (const source of sources) expect(contains(source), source).toBe(true);
  });

  it("compose.yaml builds this context and keeps adapters on a volume at the image's adapters dir", async () => {
    const compose = parseYaml(await readFile(`${repoRoot}/compose.yaml`, "utf8")) as {
      services: Record<string, { build?: unknown; volumes?: string[]; ports?: string[] }>;
      volumes?: Record<string, unknown>;
    };
    const dockerfile = await readFile(`${repoRoot}/Dockerfile`, "utf8");
    const workdir = /^WORKDIR\s+(\S+)\s*$/m.exec(dockerfile.split(/^FROM \$\{RUNTIME_IMAGE\}/m)[1] ?? "")?.[1];
    expect(workdir).toBe("/app");
    const services = Object.values(compose.services);
    expect(services.length).toBeGreaterThan(0);
    for (const service of services) {
      expect(service.build).toBeDefined();
      const adapterVolume = (service.volumes ?? []).find((v) => v.split(":")[1] === `${workdir}/adapters`);
      expect(adapterVolume, JSON.stringify(service.volumes)).toBeDefined();
      expect(Object.keys(compose.volumes ?? {})).toContain(adapterVolume!.split(":")[0]);
      expect(service.ports?.some((p) => p.endsWith(":8080"))).toBe(true);
    }
  });
});
