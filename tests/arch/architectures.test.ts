import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { moduleScale } from "../../src/lora/adapter.js";
import { writeAdapterDir } from "../../src/lora/adapter-io.js";
import { exportPeftDir, peftTensorsOf } from "../../src/lora/export-peft.js";
import { ARCHITECTURES, architectureLayout, baseTensorName } from "../../src/lora/architectures.js";
import { baseFingerprintOfGguf } from "../../src/lora/base-fingerprint.js";
import { planGgufLora } from "../../src/lora/gguf-lora.js";
import { importAdapterDir } from "../../src/lora/peft-import.js";
import type { TargetModule } from "../../src/lora/target-modules.js";
import { MODEL_ARCHITECTURES, type ModelArchitecture } from "../../src/model/arch-config.js";
import { archTinyModelConfig, createArchModel } from "../../src/model/arch-tiny-model.js";
import { hfArchTensorSpecs } from "../../src/model/hf-arch-weights.js";
import { hfLlamaTensorSpecs } from "../../src/model/hf-llama-weights.js";
import { unpermuteRowsForRope } from "../../src/model/llama-permute.js";
import { randomPeftTensors, writePeftDir } from "../lora/peft-fixtures.js";
import { useTempDir } from "../support/temp-dir.js";
import { adaptableShapesOfGguf } from "./helpers.js";

const headDimFor = (arch: ModelArchitecture) => (arch === "qwen3" || arch === "gemma3" ? { headDim: 32 } : {});

describe("the per-architecture layout table", () => {
  const dir = useTempDir();
  const bases = new Map<ModelArchitecture, { path: string; header: GgufFile }>();

  beforeAll(async () => {
    for (const arch of MODEL_ARCHITECTURES) {
      const path = join(dir.path, `${arch}.gguf`);
      await createArchModel({ out: path, architecture: arch, seed: 5, ...headDimFor(arch) });
      bases.set(arch, { path, header: await readGgufFile(path) });
    }
  });

  it("covers exactly the architectures `model create` writes", () => {
    expect([...ARCHITECTURES.keys()].sort()).toEqual([...MODEL_ARCHITECTURES].sort());
  });

  it("maps each adaptable HF module to the GGUF tensor our writer stores its weight in, shape for shape", () => {
    for (const arch of MODEL_ARCHITECTURES) {
      const layout = architectureLayout(arch);
      const config = archTinyModelConfig(arch, headDimFor(arch));
      const hfSpecs = arch === "llama" ? hfLlamaTensorSpecs(config) : hfArchTensorSpecs(config);
      const hfDims = new Map(hfSpecs.map((s) => [s.name, s.dims]));
      const ggufShapes = new Map(bases.get(arch)!.header.tensors.map((t) => [t.name, t.shape]));
      for (let layer = 0; layer < config.nLayer; layer++) {
        for (const [module, parent] of Object.entries({
          q_proj: "self_attn",
          k_proj: "self_attn",
          v_proj: "self_attn",
          qkv_proj: "self_attn",
          o_proj: "self_attn",
          gate_proj: "mlp",
          up_proj: "mlp",
          gate_up_proj: "mlp",
          down_proj: "mlp",
        })) {
          const dims = hfDims.get(`model.layers.${layer}.${parent}.${module}.weight`);
          const adaptable = layout.modules[module as TargetModule] !== undefined;
          // The HF model has the module exactly when the table lets adapters target it.
          expect(dims !== undefined, `${arch} ${module}`).toBe(adaptable);
          if (!dims) continue;
          const name = baseTensorName(layout, layer, module as TargetModule);
          expect(ggufShapes.get(name), `${arch} ${module} -> ${name}`).toEqual([dims[1], dims[0]]);
        }
      }
    }
  });

  it("imports a PEFT adapter on every adaptable module of every architecture; only llama's q/k B rows get rope-permuted", async () => {
    for (const arch of MODEL_ARCHITECTURES) {
      const { header } = bases.get(arch)!;
      const source = join(dir.path, `peft-${arch}`);
      await writePeftDir(source, { rank: 4, alpha: 8, tensors: randomPeftTensors(adaptableShapesOfGguf(header), { rank: 4, seed: 1 }) });
      const { adapter } = await importAdapterDir(source, header);
      expect(adapter.config.lori?.base_fingerprint?.architecture).toBe(arch);
      expect(adapter.modules.length).toBe(2 * Object.keys(architectureLayout(arch).modules).length);
      const plan = planGgufLora(adapter, header);
      for (const m of adapter.modules) {
        const name = baseTensorName(architectureLayout(arch), m.layer, m.module);
        const b = plan.tensors.find((t) => t.name === `${name}.lora_b`)!.data;
        const expected = Float32Array.from(m.b, (x) => (x * moduleScale(m, false) * m.rank) / 8);
        const permuted = arch === "llama" && (m.module === "q_proj" || m.module === "k_proj");
        const heads = m.module === "q_proj" ? 4 : 2;
        expect(permuted ? unpermuteRowsForRope(b, m.outFeatures, m.rank, heads) : b, `${arch} ${m.module}`).toEqual(expected);
        if (permuted) expect(b).not.toEqual(expected);
      }
    }
  });

  it("maps Phi-3's fused qkv_proj / gate_up_proj 1:1 onto attn_qkv / ffn_up", async () => {
    const { header } = bases.get("phi3")!;
    const source = join(dir.path, "peft-phi3-fused");
    await writePeftDir(source, {
      rank: 2,
      alpha: 2,
      tensors: randomPeftTensors(
        adaptableShapesOfGguf(header, (m) => m === "qkv_proj" || m === "gate_up_proj"),
        { rank: 2, seed: 2 },
      ),
    });
    const { adapter } = await importAdapterDir(source, header);
    const qkv = adapter.modules.find((m) => m.module === "qkv_proj" && m.layer === 0)!;
    expect([qkv.inFeatures, qkv.outFeatures]).toEqual([64, 64 + 2 * 32]);
    const names = planGgufLora(adapter, header).tensors.map((t) => t.name);
    expect(names).toEqual([
      "blk.0.attn_qkv.weight.lora_a",
      "blk.0.attn_qkv.weight.lora_b",
      "blk.0.ffn_up.weight.lora_a",
      "blk.0.ffn_up.weight.lora_b",
      "blk.1.attn_qkv.weight.lora_a",
      "blk.1.attn_qkv.weight.lora_b",
      "blk.1.ffn_up.weight.lora_a",
      "blk.1.ffn_up.weight.lora_b",
    ]);
  });

  it("exports a Phi-3 adapter as PEFT under Phi3ForCausalLM's module names, and re-imports it unchanged", async () => {
    const { header } = bases.get("phi3")!;
    const source = join(dir.path, "peft-phi3-export");
    await writePeftDir(source, { rank: 2, alpha: 4, tensors: randomPeftTensors(adaptableShapesOfGguf(header), { rank: 2, seed: 8 }) });
    const { adapter } = await importAdapterDir(source, header);
    const out = join(dir.path, "phi3-exported");
    await exportPeftDir(out, adapter);
    const names = peftTensorsOf(adapter).map((t) => t.name);
    expect(names).toContain("base_model.model.model.layers.1.self_attn.qkv_proj.lora_A.weight");
    expect(names).toContain("base_model.model.model.layers.0.mlp.gate_up_proj.lora_B.weight");
    const again = (await importAdapterDir(out, header)).adapter;
    expect(again.modules.map((m) => [m.layer, m.module, m.rank, m.alpha, [...m.b]])).toEqual(
      adapter.modules.map((m) => [m.layer, m.module, m.rank, m.alpha, [...m.b]]),
    );
  });

  it("refuses unfused q/k/v (and gate/up) modules against a Phi-3 base with one message saying what to target", async () => {
    const { header } = bases.get("phi3")!;
    const source = join(dir.path, "peft-phi3-unfused");
    const shapes = [
      { layer: 0, module: "q_proj" as const, inFeatures: 64, outFeatures: 64 },
      { layer: 0, module: "k_proj" as const, inFeatures: 64, outFeatures: 32 },
      { layer: 0, module: "v_proj" as const, inFeatures: 64, outFeatures: 32 },
      { layer: 0, module: "gate_proj" as const, inFeatures: 64, outFeatures: 128 },
    ];
    await writePeftDir(source, { rank: 2, alpha: 2, tensors: randomPeftTensors(shapes, { rank: 2, seed: 3 }) });
    const error = await importAdapterDir(source, header).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toContain(
      "target module 'q_proj' is not supported: Phi-3 stores q/k/v as one fused tensor (attn_qkv): target qkv_proj instead",
    );
    expect(error?.message).toContain(
      "target module 'gate_proj' is not supported: Phi-3 stores gate/up as one fused tensor (ffn_up, gate half first): target gate_up_proj instead",
    );
    expect(error?.message).not.toContain("\n");
  });

  it("refuses a fused module against an unfused base, and embedding / lm_head adapters everywhere", async () => {
    const { header } = bases.get("qwen2")!;
    const source = join(dir.path, "peft-qwen2-fused");
    await writePeftDir(source, {
      rank: 2,
      alpha: 2,
      tensors: randomPeftTensors([{ layer: 0, module: "qkv_proj", inFeatures: 64, outFeatures: 128 }], { rank: 2, seed: 4 }),
      config: { target_modules: ["qkv_proj", "lm_head"] },
    });
    await expect(importAdapterDir(source, header)).rejects.toThrow(
      /target module 'qkv_proj' is not supported: Qwen2\/2.5 has separate q_proj\/k_proj\/v_proj, not a fused qkv_proj; target module 'lm_head' is not supported: adapters on the output head/,
    );
  });

  it("refuses a qwen2 adapter on a llama base: ours by the recorded architecture, a plain PEFT one by its shapes", async () => {
    const qwen2 = bases.get("qwen2")!.header;
    const llama = bases.get("llama")!.header;
    const source = join(dir.path, "peft-qwen2");
    await writePeftDir(source, { rank: 4, alpha: 4, tensors: randomPeftTensors(adaptableShapesOfGguf(qwen2), { rank: 4, seed: 6 }) });
    const { adapter } = await importAdapterDir(source, qwen2);
    const ours = join(dir.path, "ours-qwen2");
    await writeAdapterDir(ours, adapter);
    await expect(importAdapterDir(ours, llama)).rejects.toThrow("the adapter was made for architecture 'qwen2', the base is 'llama'");

    // Same tiny dims, so a plain PEFT adapter fits by shape: an HF-layout adapter is base-agnostic by design.
    // A real Qwen2.5-7B adapter (n_embd 3584) against a Llama-3-8B base (4096) fails the shape check:
    const wide = join(dir.path, "peft-wide");
    await writePeftDir(wide, {
      rank: 2,
      alpha: 2,
      tensors: randomPeftTensors([{ layer: 0, module: "q_proj", inFeatures: 96, outFeatures: 96 }], { rank: 2, seed: 7 }),
    });
    await expect(importAdapterDir(wide, llama)).rejects.toThrow(
      /layer 0 q_proj: adapter is \[out 96, in 96\] but base blk\.0\.attn_q\.weight is ne \[64,64\]/,
    );
  });
});

describe("the base fingerprint", () => {
  const dir = useTempDir();

  it("is the same for F32, F16 and quantized files of one model, and differs across architectures", async () => {
    const f32 = join(dir.path, "q-f32.gguf");
    const f16 = join(dir.path, "q-f16.gguf");
    await createArchModel({ out: f32, architecture: "qwen2", seed: 1, dtype: "f32" });
    await createArchModel({ out: f16, architecture: "qwen2", seed: 1, dtype: "f16" });
    const a = await readGgufFile(f32);
    const b = await readGgufFile(f16);
    expect(b.tensors.find((t) => t.name === "blk.0.attn_q.weight")?.type).toBe("F16");
    expect(baseFingerprintOfGguf(b).sha256).toBe(baseFingerprintOfGguf(a).sha256);
    // A quantized variant (Q8_0 / Q4_K): the same names and shapes, other types and byte lengths.
    const quantized = {
      ...a,
      tensors: a.tensors.map((t) =>
        t.shape.length === 2 ? { ...t, type: t.name.includes("ffn") ? "Q4_K" : "Q8_0", typeId: 8, byteLength: 1 } : t,
      ),
    };
    expect(baseFingerprintOfGguf(quantized).sha256).toBe(baseFingerprintOfGguf(a).sha256);
    // The architecture is part of it: the same tensors under another architecture are another base.
    const renamed = { ...a, metadata: new Map([...a.metadata, ["general.architecture", { type: "string" as const, value: "llama" }]]) };
    expect(baseFingerprintOfGguf(renamed).sha256).not.toBe(baseFingerprintOfGguf(a).sha256);
  });
});
