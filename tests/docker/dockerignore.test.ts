import { describe, expect, it } from "vitest";
import { isExcluded, parseDockerignore } from "../support/dockerignore.js";

/** Expected outcomes are Docker's documented .dockerignore behaviour, not read off our implementation. */
const excluded = (rules: string, path: string) => isExcluded(path, parseDockerignore(rules));

describe("dockerignore matching (Docker's rules)", () => {
  it("a plain name excludes the directory and everything below it", () => {
    expect(excluded("node_modules", "node_modules")).toBe(true);
    expect(excluded("node_modules", "node_modules/zod/package.json")).toBe(true);
    expect(excluded("node_modules", "src/node_modules_helper.ts")).toBe(false);
    expect(excluded("node_modules", "src/node_modules/x.js")).toBe(false); // anchored at the context root
  });

  it("leading and trailing slashes do not change a pattern", () => {
    expect(excluded("/dist", "dist/cli/main.js")).toBe(true);
    expect(excluded("dist/", "dist/cli/main.js")).toBe(true);
    expect(excluded("./dist", "dist/cli/main.js")).toBe(true);
  });

  it("* stays within one segment, ** spans any number (zero included)", () => {
    expect(excluded("*.md", "README.md")).toBe(true);
    expect(excluded("*.md", "docs/errors.md")).toBe(false);
    expect(excluded("**/*.md", "docs/errors.md")).toBe(true);
    expect(excluded("**/*.md", "README.md")).toBe(true);
    expect(excluded("docs/**", "docs/a/b/c.md")).toBe(true);
    expect(excluded("a/**/z", "a/z")).toBe(true);
    expect(excluded("a/**/z", "a/b/c/z")).toBe(true);
    expect(excluded("models/*.gguf", "models/sub/x.gguf")).toBe(false);
  });

  it("? is one character and [...] a class", () => {
    expect(excluded("a?c", "abc")).toBe(true);
    expect(excluded("a?c", "abbc")).toBe(false);
    expect(excluded("a?c", "a/c")).toBe(false);
    expect(excluded("[ab].txt", "b.txt")).toBe(true);
    expect(excluded("[ab].txt", "c.txt")).toBe(false);
    expect(excluded("x.gguf", "xxgguf")).toBe(false); // the dot is literal
  });

  it("! re-includes, and the last matching line decides", () => {
    const rules = "models/*.gguf\n!models/lori-demo.gguf\n";
    expect(excluded(rules, "models/lori-demo.gguf")).toBe(false);
    expect(excluded(rules, "models/lori-tiny.gguf")).toBe(true);
    expect(excluded("!keep\nkeep", "keep")).toBe(true);
    expect(excluded("*.log\n!important.log\n*.log", "important.log")).toBe(true);
  });

  it("ignores comments and blank lines", () => {
    const rules = "# dist\n\n   \nsrc\n";
    expect(excluded(rules, "dist/x")).toBe(false);
    expect(excluded(rules, "src/x")).toBe(true);
    expect(parseDockerignore(rules)).toHaveLength(1);
  });
});
