// `POST /adapters` with a GGUF LoRA file part (`adapter.gguf`) instead of adapter_config.json + safetensors:
// converted as `import FILE.gguf` converts it, checked against the served base it fits, and refused with a 400
// envelope that writes nothing when it is a model, fits no served base, or is not a GGUF at all.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { type Adapter, materializeA } from "../../src/lora/adapter.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { importAdapterDir } from "../../src/lora/peft-import.js";
import { createArchModel } from "../../src/model/arch-tiny-model.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { randomPeftTensors, writePeftDir } from "../lora/peft-fixtures.js";
import { createInProcessServer, demoModelPath, postJson } from "../support/in-process.js";
import { useTempDir } from "../support/temp-dir.js";
import { adaptableShapesOfGguf } from "./helpers.js";

/** A random adapter for `header` (every adaptable module) and its GGUF LoRA as our `export --format gguf` writes it. */
async function ggufLoraFor(dir: string, label: string, header: GgufFile, seed: number): Promise<{ adapter: Adapter; file: string }> {
  const source = join(dir, `peft-${label}`);
  await writePeftDir(source, {
    rank: 4,
    alpha: 8,
    tensors: randomPeftTensors(adaptableShapesOfGguf(header), { rank: 4, seed, bScale: 0.5 }),
  });
  const { adapter } = await importAdapterDir(source, header);
  const file = join(dir, `${label}.gguf`);
  await compileGgufLora(adapter, header, file);
  return { adapter, file };
}

const bits = (values: Float32Array) => Buffer.from(values.buffer, values.byteOffset, values.byteLength);

describe("uploading a GGUF LoRA to POST /adapters (in-process server)", () => {
  const dir = useTempDir("lori-gguf-upload-");
  const paths = { qwen: "", wideQwen: "", otherQwen: "" };
  let core: ServerCore;

  const upload = async (fields: Record<string, string>, file: { bytes: Buffer; filename: string } | null) => {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) form.set(key, value);
    if (file) form.set("adapter.gguf", new Blob([file.bytes]), file.filename);
    const response = await core.app.request("/adapters", { method: "POST", body: form });
    const text = await response.text();
    return { status: response.status, json: JSON.parse(text) as Record<string, any>, text };
  };
  /** What the store holds on disk, dot-entries (staging, uploads) included. */
  const storeEntries = async () => (await readdir(core.adapters.dir)).filter((n) => n !== ".compiled").sort();

  beforeAll(async () => {
    paths.qwen = join(dir.path, "qwen2.gguf");
    paths.wideQwen = join(dir.path, "qwen2-wide.gguf");
    paths.otherQwen = join(dir.path, "qwen2-other.gguf"); // not served
    await createArchModel({ out: paths.qwen, architecture: "qwen2", seed: 4 });
    await createArchModel({ out: paths.wideQwen, architecture: "qwen2", seed: 4, ff: 192 });
    await createArchModel({ out: paths.otherQwen, architecture: "qwen2", seed: 4, ff: 96 });
    // Served bases of two architectures: an upload without `model` must find the one it fits.
    core = await createInProcessServer(
      { models: [`lori-demo=${demoModelPath}`, `qwen=${paths.qwen}`, `qwen-wide=${paths.wideQwen}`] },
      { withDemoAdapters: false },
    );
  }, 120_000);

  afterAll(async () => {
    await core?.dispose();
  });

  it("imports a GGUF LoRA for the base it fits, bit for bit (F32), and serves it", async () => {
    for (const [label, model, base] of [
      ["qwen-lora", "qwen", paths.qwen],
      ["demo-lora", "lori-demo", demoModelPath], // llama: q/k B rows are un-permuted on the way in
    ] as const) {
      const { adapter, file } = await ggufLoraFor(dir.path, label, await readGgufFile(base), 11);
      const res = await upload({ name: label }, { bytes: await readFile(file), filename: `${label}.gguf` });
      expect(res.status, res.text).toBe(201);
      expect(res.json.id).toBe(label);
      const stored = await readAdapterDir(join(core.adapters.dir, label));
      expect(stored.modules.length).toBe(adapter.modules.length);
      for (const [i, m] of stored.modules.entries()) {
        const source = adapter.modules[i]!;
        expect([m.layer, m.module, m.rank, m.alpha]).toEqual([source.layer, source.module, source.rank, source.alpha]);
        expect(bits(m.b).equals(bits(source.b)), `${label} layer ${m.layer} ${m.module} B`).toBe(true);
        expect(bits(materializeA(m)).equals(bits(materializeA(source))), `${label} layer ${m.layer} ${m.module} A`).toBe(true);
      }
      const request = { model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 };
      const adapted = await postJson(core, "/v1/completions", { ...request, adapter: [label] });
      expect(adapted.status, adapted.text).toBe(200);
      const plain = await postJson(core, "/v1/completions", request);
      expect(adapted.json.choices[0].text).not.toBe(plain.json.choices[0].text);
    }
    // The other base refuses it: adapters are validated against the served bases.
    const wrongBase = await postJson(core, "/v1/completions", { model: "lori-demo", prompt: "x", max_tokens: 2, adapter: ["qwen-lora"] });
    expect(wrongBase.status).toBe(400);
  });

  it("refuses bad uploads with a 400 envelope naming the field, and writes nothing", async () => {
    const before = await storeEntries();
    const wideLora = await ggufLoraFor(dir.path, "wide", await readGgufFile(paths.otherQwen), 12);
    const cases: Array<{ what: string; fields: Record<string, string>; bytes: Buffer; param: string; message: RegExp }> = [
      {
        what: "a GGUF model, not an adapter",
        fields: { name: "model-file" },
        bytes: await readFile(paths.qwen),
        param: "adapter.gguf",
        message: /^The adapter was refused: adapter\.gguf: cannot import: it is a model \(general\.type 'model'\), not a LoRA adapter$/,
      },
      {
        what: "tensors that fit no served base",
        fields: { name: "wide" },
        bytes: await readFile(wideLora.file),
        param: "adapter.gguf",
        message:
          /for model 'lori-demo': .*architecture 'qwen2', the base is 'llama'; for model 'qwen': adapter\.gguf: cannot import: .*blk\.0\.ffn_(gate|up|down).*; for model 'qwen-wide': /,
      },
      {
        what: "tensors that do not fit the named base",
        fields: { name: "wide", model: "qwen" },
        bytes: await readFile(wideLora.file),
        param: "adapter.gguf",
        message: /^The adapter was refused: adapter\.gguf: cannot import: .*blk\.0\.ffn_(gate|up|down)/,
      },
      {
        what: "not a GGUF file",
        fields: { name: "garbage" },
        bytes: Buffer.from("definitely not a gguf file, just text"),
        param: "adapter.gguf",
        message: /^The adapter was refused: adapter\.gguf: cannot import: not a GGUF file/,
      },
      {
        what: "a model field naming no served model",
        fields: { name: "nobase", model: "missing" },
        bytes: await readFile(wideLora.file),
        param: "model",
        message: /No served model 'missing'/,
      },
    ];
    for (const c of cases) {
      const res = await upload(c.fields, { bytes: c.bytes, filename: "x.gguf" });
      expect(res.status, `${c.what}: ${res.text}`).toBe(400);
      expect(res.json.error.param, c.what).toBe(c.param);
      expect(res.json.error.message, c.what).toMatch(c.message);
      // never the server's paths
      expect(res.text, c.what).not.toContain(core.adapters.dir);
      expect(res.text, c.what).not.toContain(dir.path);
    }
    expect(await storeEntries()).toEqual(before);
    expect(core.adapters.get("wide")).toBeUndefined();
  });

  it("asks for `model` when the file fits several different served bases, and then uses that one", async () => {
    // q_proj only: the same shape on qwen and qwen-wide (they differ in the MLP), so it fits both
    const header = await readGgufFile(paths.qwen);
    const source = join(dir.path, "peft-q-only");
    const shapes = adaptableShapesOfGguf(header, (m) => m === "q_proj");
    await writePeftDir(source, { rank: 2, alpha: 4, tensors: randomPeftTensors(shapes, { rank: 2, seed: 5 }) });
    const file = join(dir.path, "q-only.gguf");
    await compileGgufLora((await importAdapterDir(source, header)).adapter, header, file);
    const bytes = await readFile(file);
    const before = await storeEntries();
    const ambiguous = await upload({ name: "q-only" }, { bytes, filename: "q-only.gguf" });
    expect(ambiguous.status, ambiguous.text).toBe(400);
    expect(ambiguous.json.error.param).toBe("model");
    expect(ambiguous.json.error.message).toBe(
      "The GGUF LoRA fits several served models ('qwen', 'qwen-wide'): name its base in the 'model' field.",
    );
    expect(await storeEntries()).toEqual(before);
    const named = await upload({ name: "q-only", model: "qwen-wide" }, { bytes, filename: "q-only.gguf" });
    expect(named.status, named.text).toBe(201);
    const stored = await readAdapterDir(join(core.adapters.dir, "q-only"));
    expect(stored.config.lori!.base_fingerprint!.sha256).toBe(core.models.get("qwen-wide")!.fingerprint.sha256);
  });

  it("says which fields an upload needs when it has neither form", async () => {
    const res = await upload({ name: "empty" }, null);
    expect(res.status).toBe(400);
    expect(res.json.error.message).toContain("'adapter.gguf'");
  });
});
