import { execFile } from "node:child_process";
import { cp, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { readAdapterDir, WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import { demoAdaptersDir } from "../support/in-process.js";
import { useTempDir } from "../support/temp-dir.js";

/**
 * `lori-server merge` with the methods of issue 16 item 5, as a user runs it: the built CLI (dist/cli/main.js;
 * `npm run build` first) on a store holding copies of the demo LoRI-S adapters (rank 16).
 */
const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const run = promisify(execFile);

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function merge(args: string[], adaptersDir: string): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, "merge", ...args, "--adapters-dir", adaptersDir]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Every path under `dir` (hidden temp entries included) with its size: what "nothing written" compares. */
async function snapshot(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return Promise.all(entries.sort().map(async (entry) => `${entry} ${(await stat(join(dir, entry))).size}`));
}

describe("lori-server merge --method ties|dare_linear|dare_ties|magnitude_prune|svd", () => {
  const tmp = useTempDir();
  const store = () => join(tmp.path, "adapters");

  beforeAll(async () => {
    for (const name of ["math", "code", "safety"]) await cp(join(demoAdaptersDir, name), join(store(), name), { recursive: true });
  });

  it("--help names every method and parameter", async () => {
    const { stdout } = await run(process.execPath, [cli, "merge", "--help"]);
    for (const word of ["ties", "dare_linear", "dare_ties", "magnitude_prune", "svd", "--density", "--majority-sign", "--seed", "--rank"]) {
      expect(stdout).toContain(word);
    }
  });

  it("ties with a density, a majority sign and a negative weight: one summary line, lineage recorded", async () => {
    const result = await merge(
      ["--method", "ties", "--density", "0.3", "--majority-sign", "frequency", "--out", "t", "math:0.5", "code:-0.3"],
      store(),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      /^merged math:0\.5 code:-0\.3 \(ties, density 0\.3, majority sign frequency\) -> t: \d+ modules, rank 16, /,
    );
    const merged = await readAdapterDir(join(store(), "t"));
    expect(merged.config.lori?.lineage[0]).toMatchObject({ op: "merge", method: "ties", density: 0.3, majority_sign_method: "frequency" });
    expect(merged.modules.every((m) => m.rank === 16 && m.alpha === 16 && m.a.kind === "dense")).toBe(true);
  });

  it("dare_linear with --seed writes the same bytes twice, other bytes with another seed", async () => {
    for (const [out, seed] of [
      ["d1", "7"],
      ["d2", "7"],
      ["d3", "8"],
    ]) {
      const result = await merge(["--method", "dare_linear", "--seed", seed!, "--out", out!, "math", "code:0.5"], store());
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`(dare_linear, density 0.5, seed ${seed})`);
    }
    const bytes = (name: string) => readFile(join(store(), name, WEIGHTS_FILE));
    expect((await bytes("d2")).equals(await bytes("d1"))).toBe(true);
    expect((await bytes("d3")).equals(await bytes("d1"))).toBe(false);
  });

  it("svd --rank 8 writes a rank-8 adapter", async () => {
    const result = await merge(["--method", "svd", "--rank", "8", "--out", "safety-r8", "safety"], store());
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/rank 8, /);
  });

  it("refuses bad input in one line with a non-zero exit and writes nothing", async () => {
    if (!(await stat(join(store(), "safety-r8")).catch(() => null))) {
      expect((await merge(["--method", "svd", "--rank", "8", "--out", "safety-r8", "safety"], store())).code).toBe(0);
    }
    const before = await snapshot(store());
    const cases: ReadonlyArray<readonly [string[], RegExp]> = [
      [["--method", "cat", "--density", "0.5"], /--density applies only to ties, dare_linear, dare_ties and magnitude_prune, not to cat/],
      [["--method", "linear", "--density", "0.5"], /--density applies only to .* not to linear/],
      [["--method", "svd", "--density", "0.5"], /not to svd/],
      [["--method", "ties", "--density", "0"], /--density must be a number with 0 < D <= 1, got 0/],
      [["--method", "magnitude_prune", "--density", "1.5"], /0 < D <= 1, got 1\.5/],
      [["--method", "ties", "--density", "abc"], /--density must be a number, got 'abc'/],
      [["--method", "linear", "--majority-sign", "total"], /--majority-sign applies only to ties and dare_ties, not to linear/],
      [["--method", "ties", "--majority-sign", "median"], /--majority-sign must be total or frequency, got median/],
      [["--method", "ties", "--seed", "1"], /--seed applies only to dare_linear and dare_ties, not to ties/],
      [["--method", "dare_ties", "--seed=-1"], /--seed must be an integer/],
      [["--method", "magnitude_prune", "--rank", "4"], /--rank applies only to svd/],
      [["--method", "svd", "--rank", "100000"], /rank 100000 exceeds layer 0/],
      [["--method", "ties_svd"], /--method must be one of cat\|linear\|ties\|dare_linear\|dare_ties\|magnitude_prune\|svd/],
    ];
    for (const [args, message] of cases) {
      const result = await merge([...args, "--out", "refused", "math", "code:-0.5"], store());
      expect(result.code, args.join(" ")).not.toBe(0);
      expect(result.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(result.stderr, args.join(" ")).toMatch(message);
    }
    for (const method of ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"]) {
      const result = await merge(["--method", method, "--out", "refused", "math", "safety-r8"], store());
      expect(result.code, method).not.toBe(0);
      expect(result.stderr.trim().split("\n"), method).toHaveLength(1);
      expect(result.stderr, method).toMatch(new RegExp(`${method} merge needs equal ranks .*ranks 16, 8`));
    }
    expect(await snapshot(store())).toEqual(before);
    // 18 CLI processes of ~1 s each here; 10x slack for a slower CI machine.
  }, 180_000);
});
