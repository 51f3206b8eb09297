// `train --method dora` end to end on a tiny generated llama: the stored adapter is DoRA as PEFT writes it
// (use_dora, a dense A, a magnitude per output row), it cannot be exported as a GGUF LoRA, and it exports as a
// merged model whose weights differ from the base's (log-prob parity of such a model in node-llama-cpp with the
// trainer is tests/native/dora-merged-parity.test.ts, through the same conversion code, adapterModulesOf).
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { exportCommand } from "../../src/cli/commands/export.js";
import { trainCommand } from "../../src/cli/commands/train.js";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { runCli } from "../lora/peft-fixtures.js";
import { runCommand } from "../support/run-command.js";
import { useTempDir } from "../support/temp-dir.js";
import { ensureTrainerBuilt, tinyTrainWorkspace } from "./helpers.js";

describe("lori-server train --method dora", () => {
  const tmp = useTempDir("lori-train-dora-");
  const p = { model: "", data: "", adapters: "" };

  beforeAll(async () => {
    ensureTrainerBuilt();
    const records = Array.from({ length: 8 }, (_, i) => ({ prompt: `count ${i}:`, completion: " 1 2 3" }));
    Object.assign(p, await tinyTrainWorkspace(tmp.path, records));
  });

  it("stores a DoRA adapter that exports only as a merged model", async () => {
    const common = ["--adapters-dir", p.adapters, "--rank", "4", "--steps", "4", "--lr", "0.01", "--seed", "7"];
    const { code, stdout } = await runCommand(trainCommand, [
      ...["--base", p.model, "--data", p.data, "--out", "d", "--method", "dora", ...common],
      ...["--threads", "1", "--gpu", "off", "--json"],
    ]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout.trim().split("\n").at(-1)!)).toMatchObject({ event: "adapter", adapter: "d", method: "dora" });
    const adapter = await readAdapterDir(join(p.adapters, "d"));
    expect(adapter.config.use_dora).toBe(true);
    expect(adapter.config.lori?.variant).toBe("dora");
    expect(adapter.modules).toHaveLength(7);
    for (const m of adapter.modules) {
      expect(m.a.kind).toBe("dense");
      expect(m.magnitude?.length).toBe(m.outFeatures);
    }

    const exportTo = (args: string[]) => runCli(exportCommand, ["d", "--adapters-dir", p.adapters, "--base", p.model, ...args]);
    const asLora = await exportTo(["--format", "gguf", "--out", join(tmp.path, "d-lora.gguf")]);
    expect(asLora.error?.message).toMatch(/'d' is a DoRA adapter: .*export d --format merged-gguf/);
    const out = join(tmp.path, "d-merged.gguf");
    const merged = await exportTo(["--format", "merged-gguf", "--out", out]);
    expect(merged.error).toBeNull();
    const header = await readGgufFile(out);
    const base = await readGgufFile(p.model);
    const name = "blk.0.ffn_down.weight";
    const before = await readTensorAsFloat32(p.model, base.tensors.find((t) => t.name === name)!);
    const after = await readTensorAsFloat32(out, header.tensors.find((t) => t.name === name)!);
    expect(after.some((x, i) => x !== before[i])).toBe(true);
  });
});
