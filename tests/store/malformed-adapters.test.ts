import { cp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import type { AdapterBase } from "../../src/engine/adapters/adapter-validation.js";
import { CONFIG_FILE, WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import type { Logger } from "../../src/util/logger.js";
import { useTempDir } from "../support/temp-dir.js";
import {
  allModules,
  directory,
  editConfig,
  fifo,
  moduleFor,
  rawSafetensors,
  replaceWith,
  sizedModule,
  symlinkTo,
  tinyBase,
  writeGoodAdapter,
  writeModules,
} from "./store-fixtures.js";

/**
 * Issue 10, defects 2, 3 and 6: "Of 61 malformed adapters dropped into the dir, 45 are listed." Each variant
 * below is a good adapter with one thing broken; after the change none may be listed, each gets exactly one
 * warning, no message quotes bytes of a file outside the adapter, and no variant can stall a scan.
 */

const SECRET = "TOP-SECRET-BYTES-7f3a";

function recordingLogger() {
  const warnings: Array<{ adapter: unknown; message: string }> = [];
  const logger: Logger = {
    info() {},
    error() {},
    warn: (_event, fields = {}) => warnings.push({ adapter: fields.adapter, message: String(fields.message) }),
  };
  return { logger, warnings };
}

type Variant = (dir: string) => Promise<void>;

describe("the registry lists only valid adapters (generated tiny base)", () => {
  const tmp = useTempDir("lori-store-malformed-");
  let base: AdapterBase & { path: string };
  let other: AdapterBase & { path: string };
  let adaptersDir: string;
  let goodDir: string;
  let secretFile: string;

  const config =
    (edit: (c: Record<string, any>) => void): Variant =>
    (dir) =>
      editConfig(dir, edit);
  const weights =
    (bytes: () => Buffer): Variant =>
    (dir) =>
      writeFile(path.join(dir, WEIGHTS_FILE), bytes());
  const configText =
    (text: string): Variant =>
    (dir) =>
      writeFile(path.join(dir, CONFIG_FILE), text);
  const modules =
    (make: () => ReturnType<typeof allModules>, fingerprint: "base" | "none" = "none"): Variant =>
    async (dir) => {
      await writeModules(dir, make(), fingerprint === "base" ? base.fingerprint : null, true);
    };
  /** The good adapter with one tensor's raw bytes overwritten (F32 values at the start of that tensor's data). */
  const patchTensor =
    (tensorSuffix: string, value: number): Variant =>
    async (dir) => {
      const file = path.join(dir, WEIGHTS_FILE);
      const bytes = await readFile(file);
      const headerLength = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<string, { data_offsets: [number, number] }>;
      const name = Object.keys(header).find((k) => k.endsWith(tensorSuffix))!;
      bytes.writeFloatLE(value, 8 + headerLength + header[name]!.data_offsets[0] + 4);
      await writeFile(file, bytes);
    };

  const variants: Record<string, Variant> = {};
  beforeAll(async () => {
    base = await tinyBase(tmp.path);
    other = await tinyBase(tmp.path, "other.gguf", { embd: 32, heads: 4, kvHeads: 2, ff: 96 });
    adaptersDir = path.join(tmp.path, "adapters");
    goodDir = path.join(tmp.path, "good-source");
    await writeGoodAdapter(goodDir, base);
    secretFile = path.join(tmp.path, "secret.txt");
    await writeFile(secretFile, `${SECRET}\nroot:x:0:0:root:/root:/bin/bash\n`);
    const outsideGood = path.join(tmp.path, "outside-good");
    await writeGoodAdapter(outsideGood, base, { seed: 5 });
    const denseSource = path.join(tmp.path, "dense-source");
    await writeModules(denseSource, allModules(base, { denseA: true }), base.fingerprint);

    Object.assign(variants, {
      // adapter_config.json
      "cfg-r-zero": config((c) => (c.r = 0)),
      "cfg-r-negative": config((c) => (c.r = -1)),
      "cfg-r-fraction": config((c) => (c.r = 2.5)),
      "cfg-r-mismatch": config((c) => (c.r = 9)),
      "cfg-alpha-1e308": config((c) => (c.lora_alpha = 1e308)),
      "cfg-alpha-neg-1e308": config((c) => (c.lora_alpha = -1e308)),
      "cfg-alpha-too-large": config((c) => (c.lora_alpha = 1e5)),
      "cfg-alpha-string": config((c) => (c.lora_alpha = "8")),
      "cfg-alpha-pattern-huge": config((c) => (c.alpha_pattern = { q_proj: 1e300 })),
      "cfg-rank-pattern-mismatch": config((c) => (c.rank_pattern = { q_proj: 3 })),
      "cfg-peft-type": config((c) => (c.peft_type = "IA3")),
      "cfg-dora": config((c) => (c.use_dora = true)),
      "cfg-bias": config((c) => (c.bias = "all")),
      "cfg-modules-to-save": config((c) => (c.modules_to_save = ["lm_head"])),
      "cfg-fingerprint-other-base": config((c) => (c.lori.base_fingerprint = { ...other.fingerprint })),
      "cfg-fingerprint-other-arch": config((c) => (c.lori.base_fingerprint.architecture = "gpt2")),
      "cfg-fingerprint-bad-sha": config((c) => (c.lori.base_fingerprint.sha256 = "0".repeat(64))),
      "cfg-no-seed": config((c) => (c.lori.a_init = null)),
      "cfg-not-json": configText("{"),
      "cfg-secret-not-json": configText(`{"peft_type": "LORA", ${SECRET}`),
      "cfg-array": configText("[]"),
      "cfg-null": configText("null"),
      "cfg-empty": configText(""),
      // file types and symlinks
      "cfg-symlink-passwd": (dir) => replaceWith(dir, CONFIG_FILE, symlinkTo("/etc/passwd")),
      "cfg-symlink-secret": (dir) => replaceWith(dir, CONFIG_FILE, symlinkTo(secretFile)),
      "cfg-symlink-valid-outside": (dir) => replaceWith(dir, CONFIG_FILE, symlinkTo(path.join(outsideGood, CONFIG_FILE))),
      "cfg-fifo": (dir) => replaceWith(dir, CONFIG_FILE, fifo()),
      "cfg-directory": (dir) => replaceWith(dir, CONFIG_FILE, directory()),
      "cfg-missing": (dir) => replaceWith(dir, CONFIG_FILE, async () => undefined),
      "w-symlink-dev-zero": (dir) => replaceWith(dir, WEIGHTS_FILE, symlinkTo("/dev/zero")),
      "w-symlink-valid-outside": (dir) => replaceWith(dir, WEIGHTS_FILE, symlinkTo(path.join(outsideGood, WEIGHTS_FILE))),
      "w-fifo": (dir) => replaceWith(dir, WEIGHTS_FILE, fifo()),
      "w-directory": (dir) => replaceWith(dir, WEIGHTS_FILE, directory()),
      "w-missing": (dir) => replaceWith(dir, WEIGHTS_FILE, async () => undefined),
      // adapter_model.safetensors structure
      "w-empty": weights(() => Buffer.alloc(0)),
      "w-short": weights(() => Buffer.alloc(5)),
      "w-header-huge": weights(() => rawSafetensors({}, new Uint8Array(0), 1n << 40n)),
      "w-header-not-json": weights(() => rawSafetensors(`{${SECRET}`)),
      "w-header-array": weights(() => rawSafetensors([])),
      "w-no-tensors": weights(() => rawSafetensors({})),
      "w-unknown-dtype": weights(() =>
        rawSafetensors(
          { "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": { dtype: "F8", shape: [1], data_offsets: [0, 1] } },
          new Uint8Array(1),
        ),
      ),
      "w-offsets-out-of-range": weights(() =>
        rawSafetensors(
          { "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": { dtype: "F32", shape: [64, 4], data_offsets: [0, 1024] } },
          new Uint8Array(16),
        ),
      ),
      "w-unsupported-tensor": weights(() =>
        rawSafetensors({ "model.embed_tokens.weight": { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      ),
      "w-truncated": async (dir) => {
        const file = path.join(dir, WEIGHTS_FILE);
        const bytes = await readFile(file);
        await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
      },
      "w-trailing-bytes": async (dir) => {
        const file = path.join(dir, WEIGHTS_FILE);
        await writeFile(file, Buffer.concat([await readFile(file), Buffer.alloc(12)]));
      },
      // values
      "val-nan-b": patchTensor("layers.1.mlp.down_proj.lora_B.weight", Number.NaN),
      "val-inf-b": patchTensor("layers.0.self_attn.q_proj.lora_B.weight", Number.POSITIVE_INFINITY),
      "val-neg-inf-b": patchTensor("layers.0.mlp.up_proj.lora_B.weight", Number.NEGATIVE_INFINITY),
      "val-nan-dense-a": async (dir) => {
        await cp(denseSource, dir, { recursive: true, force: true });
        await patchTensor("layers.0.self_attn.v_proj.lora_A.weight", Number.NaN)(dir);
      },
      "val-b-overflows-when-scaled": modules(() => allModules(base).map((m) => ({ ...m, alpha: 1e4, b: m.b.map(() => 3e38) })), "base"),
      // shapes against the served base
      "shape-other-base-no-fingerprint": modules(() => allModules(other)),
      "shape-other-base-fingerprint": modules(() => allModules(other).map((m) => m), "none"),
      "shape-layer-beyond-base": modules(() => [...allModules(base), sizedModule(5, "q_proj", 64, 64)], "base"),
      "shape-wrong-in-features": modules(() => [sizedModule(0, "q_proj", 32, 64)]),
      "shape-wrong-out-features": modules(() => [sizedModule(0, "k_proj", 64, 64)]),
      "shape-rank-above-min-dims": modules(() => [moduleFor(base.header, 0, "k_proj", { rank: 40 })], "base"),
      "shape-transposed": modules(() => [sizedModule(0, "gate_proj", 128, 64)]),
    } satisfies Record<string, Variant>);

    for (const [name, make] of Object.entries(variants)) {
      const dir = path.join(adaptersDir, name);
      await cp(goodDir, dir, { recursive: true });
      await make(dir);
    }
    await cp(goodDir, path.join(adaptersDir, "good"), { recursive: true });
  }, 60_000);

  it("lists the one good adapter and none of the malformed ones, one warning each, quoting nothing from outside", async () => {
    expect(Object.keys(variants).length).toBeGreaterThanOrEqual(55);
    const { logger, warnings } = recordingLogger();
    const registry = new AdapterRegistry(adaptersDir, logger, { bases: [base] });
    const started = Date.now();
    await registry.start(0);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(registry.list().map((e) => e.name)).toEqual(["good"]);
    const warned = warnings.map((w) => w.adapter);
    expect(new Set(warned).size).toBe(warned.length);
    expect([...warned].sort()).toEqual(Object.keys(variants).sort());
    for (const { message } of warnings) {
      expect(message).not.toContain(SECRET);
      expect(message).not.toContain("root:x:0");
      expect(message).not.toContain(tmp.path);
    }
    // Unchanged files: no new warnings on the next scans.
    await registry.refresh();
    await registry.refresh();
    expect(warnings.length).toBe(warned.length);
    registry.close();
  }, 60_000);

  it("refuses each variant through the same path an upload or merge uses, with a message naming the problem", async () => {
    const registry = new AdapterRegistry(adaptersDir, recordingLogger().logger, { bases: [base] });
    for (const name of Object.keys(variants)) {
      const error = await registry.validate(path.join(adaptersDir, name), name).then(
        () => null,
        (e: unknown) => e as Error,
      );
      expect(error, name).not.toBeNull();
      expect(error!.message.length, name).toBeGreaterThan(10);
      expect(error!.message, name).not.toContain(SECRET);
    }
    expect((await registry.validate(path.join(adaptersDir, "good"), "good")).bases).toEqual([base.fingerprint.sha256]);
  }, 60_000);

  it("names why a symlinked config is refused without following it", async () => {
    const registry = new AdapterRegistry(adaptersDir, recordingLogger().logger, { bases: [base] });
    const error = (await registry.validate(path.join(adaptersDir, "cfg-symlink-passwd"), "x").catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(/symbolic link/);
    expect(error.message).not.toMatch(/root:/);
  });
});
