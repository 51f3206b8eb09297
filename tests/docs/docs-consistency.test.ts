// The docs must stand on their own and say what the code does: no citations of notes outside the repository,
// links that resolve, adapter names in examples that the CLI accepts, no repeated headings, every bench script
// documented.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { validateAdapterName } from "../../src/lora/adapter-io.js";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const tracked = execFileSync("git", ["ls-files"], { cwd: repoRoot, encoding: "utf8" }).split("\n").filter(Boolean);
const markdown = tracked.filter((f) => f.endsWith(".md") && !f.startsWith("tests/"));
const read = (file: string) => readFileSync(join(repoRoot, file), "utf8");

/** Lines inside ``` fences. */
function codeLines(text: string): string[] {
  const out: string[] = [];
  let inside = false;
  for (const line of text.split("\n")) {
    if (line.trimStart().startsWith("```")) inside = !inside;
    else if (inside) out.push(line);
  }
  return out;
}

describe("docs", () => {
  it("never cite a design-notes file that is not in the repository", () => {
    const notes = ["DESIGN", "md"].join(".");
    const citing = tracked.filter(
      (f) => /\.(ts|mts|mjs|js|md|h|cpp|py|sh|json|yaml)$/.test(f) && existsSync(join(repoRoot, f)) && read(f).includes(notes),
    );
    expect(citing).toEqual([]);
  });

  it("link only to files that exist", () => {
    const broken: string[] = [];
    for (const file of markdown) {
      for (const [, target] of read(file).matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        if (!existsSync(join(repoRoot, dirname(file), target!))) broken.push(`${file}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("use adapter names the CLI accepts in their command examples", () => {
    const names: string[] = [];
    for (const file of markdown) {
      for (const line of codeLines(read(file))) {
        const command = /lori-server (train|import|merge)\b/.exec(line)?.[1];
        if (!command) continue;
        const flag = command === "import" ? "--name" : "--out";
        const value = new RegExp(`${flag} (\\S+)`).exec(line)?.[1];
        if (!value || value.endsWith(".gguf") || /^[A-Z_|[\]]+$/.test(value) || value.includes("|")) continue;
        names.push(value);
      }
    }
    expect(names.length).toBeGreaterThan(3);
    for (const name of names) expect(() => validateAdapterName(name), name).not.toThrow();
  });

  it("repeat no heading within a file", () => {
    const repeated: string[] = [];
    for (const file of markdown) {
      const seen = new Set<string>();
      for (const line of read(file).split("\n")) {
        if (!/^#{1,6} /.test(line)) continue;
        if (seen.has(line)) repeated.push(`${file}: ${line}`);
        seen.add(line);
      }
    }
    expect(repeated).toEqual([]);
  });

  it("document every bench script in docs/benchmarks.md", () => {
    const scripts = Object.keys((JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts).filter((s) =>
      s.startsWith("bench:"),
    );
    expect(scripts).toContain("bench:threads");
    const text = read("docs/benchmarks.md");
    expect(scripts.filter((s) => !text.includes(`npm run ${s}`))).toEqual([]);
  });
});
