import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { makeAdapter, materializeA, type LoraModule } from "../../src/lora/adapter.js";
import { CONFIG_FILE, readAdapterDir, validateAdapterName, WEIGHTS_FILE, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { parseAdapterConfig, resolvePattern } from "../../src/lora/adapter-config.js";
import { canonicalFingerprintJson, computeBaseFingerprint, fingerprintIsSelfConsistent } from "../../src/lora/base-fingerprint.js";
import { LoraError } from "../../src/lora/errors.js";
import { SafetensorsFile, writeSafetensors } from "../../src/lora/safetensors.js";
import { TARGET_MODULES } from "../../src/lora/target-modules.js";
import { randomModule, rng, withTempDir } from "./helpers.js";

function sameModules(actual: readonly LoraModule[], expected: readonly LoraModule[]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((m, i) => {
    const e = expected[i]!;
    expect({ ...m, a: undefined, b: undefined, mask: undefined }).toEqual({ ...e, a: undefined, b: undefined, mask: undefined });
    expect(m.a).toEqual(e.a);
    expect(m.b).toEqual(e.b);
    expect(m.mask).toEqual(e.mask);
  });
}

const peftConfig = (extra: Record<string, unknown> = {}) => ({
  peft_type: "LORA",
  r: 4,
  lora_alpha: 8,
  target_modules: ["q_proj", "v_proj"],
  base_model_name_or_path: "meta-llama/Meta-Llama-3-8B",
  rank_pattern: {},
  alpha_pattern: {},
  use_rslora: false,
  use_dora: false,
  task_type: "CAUSAL_LM",
  bias: "none",
  fan_in_fan_out: false,
  modules_to_save: null,
  lora_dropout: 0.05,
  ...extra,
});

describe("adapter directories", () => {
  it("round-trips a dense LoRA exactly in F32", async () => {
    const random = rng(7);
    const modules = TARGET_MODULES.map((module, i) => randomModule({ layer: i % 2, module, random }));
    const adapter = makeAdapter(modules, { baseModel: "tiny" });
    await withTempDir(async (dir) => {
      await writeAdapterDir(join(dir, "a"), adapter);
      const back = await readAdapterDir(join(dir, "a"));
      sameModules(back.modules, adapter.modules);
      expect(back.config).toEqual(adapter.config);
    });
  });

  it("stores a LoRI-S adapter as seed + mask + values: no lora_A, no dense lora_B", async () => {
    const random = rng(8);
    const modules = [0, 1].flatMap((layer) =>
      TARGET_MODULES.map((module) =>
        randomModule({ layer, module, random, seed: 99, sparsity: 0.9, rank: 8, inFeatures: 32, outFeatures: 24 }),
      ),
    );
    const adapter = makeAdapter(modules);
    expect(adapter.config.lori?.variant).toBe("lori-s");
    expect(adapter.config.lori?.a_init).toEqual({ prng: "philox4x32-10", seed: 99, distribution: "kaiming-uniform" });
    await withTempDir(async (dir) => {
      await writeAdapterDir(join(dir, "s"), adapter);
      const file = await SafetensorsFile.open(join(dir, "s", WEIGHTS_FILE));
      const names = [...file.tensors.keys()];
      expect(names.some((n) => n.endsWith("lora_A.weight") || n.endsWith("lora_B.weight"))).toBe(false);
      expect(names).toContain("base_model.model.model.layers.1.mlp.down_proj.lora_B.mask");
      expect(file.metadata["base_model.model.model.layers.0.self_attn.q_proj.lora_B.shape"]).toBe("[24,8]");
      expect(file.metadata["base_model.model.model.layers.0.self_attn.q_proj.lora_A.shape"]).toBe("[8,32]");
      expect(file.info("base_model.model.model.layers.0.self_attn.q_proj.lora_B.mask").shape).toEqual([24]);
      await file.close();
      const back = await readAdapterDir(join(dir, "s"));
      sameModules(back.modules, adapter.modules);
      expect(back.config.lori?.sparsity).toBeGreaterThan(0.8);
    });
  });

  it("F16 storage rounds each value to half precision", async () => {
    const adapter = makeAdapter([randomModule({ sparsity: 0.5 })]);
    await withTempDir(async (dir) => {
      await writeAdapterDir(join(dir, "h"), adapter, { dtype: "F16" });
      const back = await readAdapterDir(join(dir, "h"));
      const [m] = back.modules;
      const [e] = adapter.modules;
      m!.b.forEach((v, i) => expect(Math.abs(v - e!.b[i]!)).toBeLessThanOrEqual(Math.abs(e!.b[i]!) * 2 ** -11 + 1e-7));
      expect(m!.mask).toEqual(e!.mask);
    });
  });

  it("records per-module ranks and alphas in rank_pattern / alpha_pattern", async () => {
    const modules = [
      randomModule({ layer: 0, module: "q_proj", rank: 4 }),
      randomModule({ layer: 0, module: "k_proj", rank: 4 }),
      randomModule({ layer: 1, module: "q_proj", rank: 12, alpha: 5 }),
    ];
    const adapter = makeAdapter(modules);
    expect(adapter.config.r).toBe(4);
    expect(adapter.config.rank_pattern).toEqual({ "model.layers.1.self_attn.q_proj": 12 });
    expect(adapter.config.alpha_pattern).toEqual({ "model.layers.1.self_attn.q_proj": 5 });
    await withTempDir(async (dir) => {
      await writeAdapterDir(join(dir, "p"), adapter);
      sameModules((await readAdapterDir(join(dir, "p"))).modules, adapter.modules);
    });
  });

  it("stores A densely for modules whose seed differs from the config's", async () => {
    const adapter = makeAdapter([randomModule({ module: "q_proj", seed: 1 })]);
    const stray = randomModule({ module: "k_proj", seed: 2 });
    await withTempDir(async (dir) => {
      await writeAdapterDir(join(dir, "m"), { ...adapter, modules: [...adapter.modules, stray] });
      const back = await readAdapterDir(join(dir, "m"));
      expect(back.modules[0]!.a).toEqual({ kind: "seeded", seed: 1 });
      expect(back.modules[1]!.a).toEqual({ kind: "dense", data: materializeA(stray) });
    });
  });

  it("reads a plain PEFT adapter (BF16 A and B, extra PEFT fields, no lori block)", async () => {
    await withTempDir(async (dir) => {
      const bf16 = (values: number[]) => new Uint16Array(new Uint32Array(new Float32Array(values).buffer).map((x) => x >>> 16));
      const p = "base_model.model.model.layers.3.self_attn.v_proj";
      await writeFile(join(dir, CONFIG_FILE), JSON.stringify(peftConfig({ r: 1, lora_alpha: 2 })));
      await writeSafetensors(join(dir, WEIGHTS_FILE), [
        { name: `${p}.lora_A.weight`, dtype: "BF16", shape: [1, 2], data: bf16([0.5, -0.25]) },
        { name: `${p}.lora_B.weight`, dtype: "BF16", shape: [3, 1], data: bf16([1, 2, -4]) },
      ]);
      const adapter = await readAdapterDir(dir);
      expect(adapter.config.lori).toBeUndefined();
      expect(adapter.config.lora_dropout).toBe(0.05);
      const [m] = adapter.modules;
      expect(m).toMatchObject({ layer: 3, module: "v_proj", rank: 1, alpha: 2, inFeatures: 2, outFeatures: 3 });
      expect(m!.a).toEqual({ kind: "dense", data: new Float32Array([0.5, -0.25]) });
      expect(m!.b).toEqual(new Float32Array([1, 2, -4]));
    });
  });

  it("never leaves a half-written adapter and refuses to overwrite unless asked", async () => {
    const adapter = makeAdapter([randomModule()]);
    await withTempDir(async (dir) => {
      await writeAdapterDir(join(dir, "x"), adapter);
      await expect(writeAdapterDir(join(dir, "x"), adapter)).rejects.toMatchObject({ code: "ADAPTER_EXISTS" });
      const other = makeAdapter([randomModule({ module: "o_proj" })]);
      await writeAdapterDir(join(dir, "x"), other, { overwrite: true });
      expect((await readAdapterDir(join(dir, "x"))).modules[0]!.module).toBe("o_proj");
      // A module that fails validation aborts before anything reaches the directory.
      const broken = { ...adapter, modules: [{ ...adapter.modules[0]!, b: new Float32Array(1) }] };
      await expect(writeAdapterDir(join(dir, "y"), broken)).rejects.toThrow(/B has 1 values/);
      expect((await readdir(dir)).sort()).toEqual(["x"]);
    });
  });
});

describe("adapter directories reject inconsistent content", () => {
  async function expectReadError(setup: (dir: string) => Promise<void>, code: string, message: RegExp): Promise<void> {
    await withTempDir(async (dir) => {
      await setup(dir);
      const error = await readAdapterDir(dir).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LoraError);
      expect(error).toMatchObject({ code });
      expect((error as Error).message).toMatch(message);
    });
  }
  const p = "base_model.model.model.layers.0.self_attn.q_proj";
  const f32 = (n: number) => new Float32Array(n).fill(0.5);

  it("a rank in the tensors that the config does not declare", async () => {
    await expectReadError(
      async (dir) => {
        await writeFile(join(dir, CONFIG_FILE), JSON.stringify(peftConfig({ r: 8 })));
        await writeSafetensors(join(dir, WEIGHTS_FILE), [
          { name: `${p}.lora_A.weight`, dtype: "F32", shape: [4, 2], data: f32(8) },
          { name: `${p}.lora_B.weight`, dtype: "F32", shape: [2, 4], data: f32(8) },
        ]);
      },
      "ADAPTER_BAD_TENSORS",
      /rank 4 but the config says 8/,
    );
  });

  it("a missing lora_A without a seed", async () => {
    await expectReadError(
      async (dir) => {
        await writeFile(join(dir, CONFIG_FILE), JSON.stringify(peftConfig()));
        await writeSafetensors(join(dir, WEIGHTS_FILE), [{ name: `${p}.lora_B.weight`, dtype: "F32", shape: [2, 4], data: f32(8) }]);
      },
      "ADAPTER_BAD_TENSORS",
      /no lora_A.weight and the config has no lori.a_init seed/,
    );
  });

  it("tensors this server does not understand", async () => {
    await expectReadError(
      async (dir) => {
        await writeFile(join(dir, CONFIG_FILE), JSON.stringify(peftConfig()));
        await writeSafetensors(join(dir, WEIGHTS_FILE), [
          { name: "base_model.model.lm_head.lora_A.weight", dtype: "F32", shape: [1], data: f32(1) },
        ]);
      },
      "ADAPTER_UNSUPPORTED",
      /unsupported tensor 'base_model.model.lm_head.lora_A.weight'/,
    );
  });

  it("sparse values whose count disagrees with the mask", async () => {
    const adapter = makeAdapter([randomModule({ seed: 5, sparsity: 0.5 })]);
    await expectReadError(
      async (dir) => {
        await writeAdapterDir(join(dir, "a"), adapter);
        const file = await SafetensorsFile.open(join(dir, "a", WEIGHTS_FILE));
        const mask = await file.readBytes(`${p}.lora_B.mask`);
        const metadata = file.metadata;
        await file.close();
        await writeFile(join(dir, CONFIG_FILE), await readFile(join(dir, "a", CONFIG_FILE)));
        await writeSafetensors(
          join(dir, WEIGHTS_FILE),
          [
            { name: `${p}.lora_B.mask`, dtype: "U8", shape: [mask.length], data: mask },
            { name: `${p}.lora_B.values`, dtype: "F32", shape: [1], data: f32(1) },
          ],
          metadata,
        );
      },
      "ADAPTER_BAD_TENSORS",
      /lora_B.values has 1 entries but the mask keeps/,
    );
  });

  // DoRA configs are accepted now (tests/lora/dora-adapter.test.ts); their tensors must carry the magnitudes.
  it("configs for trained biases or a non-LoRA PEFT type, listing each problem", async () => {
    expect(() => parseAdapterConfig(peftConfig({ bias: "all" }), "c.json")).toThrow(/trained biases/);
    expect(() => parseAdapterConfig(peftConfig({ peft_type: "IA3", r: 0 }), "c.json")).toThrow(/peft_type.*; r:/);
    await expectReadError(async (dir) => writeFile(join(dir, CONFIG_FILE), "{"), "ADAPTER_BAD_CONFIG", /adapter_config.json/);
  });
});

describe("adapter names", () => {
  it("accepts plain names", () => {
    for (const name of ["math", "LoRI-S_code.v2", "a", "x".repeat(64), "safety_2024-01"])
      expect(() => validateAdapterName(name)).not.toThrow();
  });
  it.each([
    ["", /is empty/],
    ["../etc", /starts with a dot|'\.\.'/],
    ["a..b", /contains '\.\.'/],
    ["a/b", /may only contain/],
    ["a\\b", /may only contain/],
    [".hidden", /starts with a dot/],
    ["x".repeat(65), /longer than 64/],
    ["spa ce", /may only contain/],
    ["naïve", /may only contain/],
  ])("rejects %j", (name, message) => {
    expect(() => validateAdapterName(name)).toThrow(message);
  });
});

describe("config details", () => {
  it("resolves rank_pattern keys the way PEFT does (first key matching as a dotted suffix)", () => {
    const pattern = { "model.layers.1.self_attn.q_proj": 16, down_proj: 8 };
    expect(resolvePattern(pattern, "model.layers.1.self_attn.q_proj")).toBe(16);
    expect(resolvePattern(pattern, "model.layers.11.self_attn.q_proj")).toBeUndefined();
    expect(resolvePattern(pattern, "model.layers.21.mlp.down_proj")).toBe(8);
    expect(resolvePattern(pattern, "model.layers.2.mlp.xdown_proj")).toBeUndefined();
  });

  it("fingerprints names and shapes canonically, independent of order and dtype", () => {
    const tensors = [
      { name: "output.weight", shape: [64, 100] },
      { name: "blk.0.attn_q.weight", shape: [64, 64] },
    ];
    expect(canonicalFingerprintJson("llama", tensors)).toBe(
      '{"architecture":"llama","tensors":{"blk.0.attn_q.weight":[64,64],"output.weight":[64,100]}}',
    );
    const fp = computeBaseFingerprint("llama", tensors);
    expect(fp.sha256).toBe(computeBaseFingerprint("llama", [...tensors].reverse()).sha256);
    expect(fp.sha256).not.toBe(computeBaseFingerprint("mistral", tensors).sha256);
    expect(fingerprintIsSelfConsistent(fp)).toBe(true);
    expect(fingerprintIsSelfConsistent({ ...fp, tensors: { ...fp.tensors, "output.weight": [64, 101] } })).toBe(false);
  });

  it("keeps the base fingerprint and lineage through a write", async () => {
    const fp = computeBaseFingerprint("llama", [{ name: "blk.0.attn_q.weight", shape: [12, 10] }]);
    const adapter = makeAdapter([randomModule()], { baseFingerprint: fp, lineage: [{ op: "train", dataset: "gsm8k" }] });
    await withTempDir(async (dir) => {
      await mkdir(join(dir, "nested"));
      await writeAdapterDir(join(dir, "nested", "a"), adapter);
      const back = await readAdapterDir(join(dir, "nested", "a"));
      expect(back.config.lori?.base_fingerprint).toEqual(fp);
      expect(back.config.lori?.lineage).toEqual([{ op: "train", dataset: "gsm8k" }]);
    });
  });
});
