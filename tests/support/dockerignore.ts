import { readdir, readFile } from "node:fs/promises";
import { join, posix } from "node:path";

/**
 * What `docker build` would send as its build context, computed without a Docker engine. The rules restate
 * Docker's own (its `patternmatcher` package): one pattern a line, `#` lines and blank lines ignored, a leading
 * `!` re-includes, patterns are cleaned paths relative to the context root (a leading `/` is dropped),
 * `*` matches within one path segment, `?` one character, `[...]` a class, `**` any number of segments
 * (zero included); a pattern also excludes everything below a directory it matches; the LAST matching pattern
 * decides.
 */
export interface DockerignorePattern {
  readonly source: string;
  readonly negated: boolean;
  readonly segments: number;
  readonly regexp: RegExp;
}

export function parseDockerignore(text: string): DockerignorePattern[] {
  const patterns: DockerignorePattern[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    let line = rawLine.trim();
    if (line === "" || line.startsWith("#")) continue;
    const negated = line.startsWith("!");
    if (negated) line = line.slice(1).trim();
    let cleaned = posix.normalize(line);
    while (cleaned.startsWith("/")) cleaned = cleaned.slice(1);
    if (cleaned.endsWith("/") && cleaned.length > 1) cleaned = cleaned.slice(0, -1);
    if (cleaned === "" || cleaned === ".") continue;
    patterns.push({ source: cleaned, negated, segments: cleaned.split("/").length, regexp: patternToRegExp(cleaned) });
  }
  return patterns;
}

/** Docker's translation of one pattern into an anchored regular expression. */
export function patternToRegExp(pattern: string): RegExp {
  let out = "^";
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === "*") {
      if (pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") i++; // "**/" is treated as "**"
        out += i + 1 >= pattern.length ? ".*" : "(.*/)?";
      } else {
        out += "[^/]*";
      }
    } else if (ch === "?") {
      out += "[^/]";
    } else if (ch === "\\") {
      const next = pattern[i + 1];
      if (next !== undefined) {
        out += escapeRegExp(next);
        i++;
      }
    } else if (ch === "[") {
      const close = pattern.indexOf("]", i + 1);
      if (close < 0) {
        out += "\\[";
      } else {
        out += `[${pattern.slice(i + 1, close).replace(/^!/, "^")}]`;
        i = close;
      }
    } else {
      out += escapeRegExp(ch);
    }
  }
  return new RegExp(`${out}$`);
}

function escapeRegExp(ch: string): string {
  return /[.+^${}()|[\]\\/-]/.test(ch) ? `\\${ch}` : ch;
}

/** Whether `path` (relative, `/`-separated) is left out of the context: the last pattern that matches it or one of its parents decides. */
export function isExcluded(path: string, patterns: readonly DockerignorePattern[]): boolean {
  const parts = path.split("/");
  let excluded = false;
  for (const pattern of patterns) {
    let matched = pattern.regexp.test(path);
    // A pattern of N segments also matches the path's first N segments: excluding a directory excludes its contents.
    if (!matched && parts.length > pattern.segments) {
      matched = pattern.regexp.test(parts.slice(0, pattern.segments).join("/"));
    }
    if (matched) excluded = !pattern.negated;
  }
  return excluded;
}

/**
 * Every file (and symlink) the build context holds, as sorted relative paths. Like Docker, an excluded directory
 * is only entered when some `!` pattern could re-include something below it; symlinks are sent as links, never
 * followed.
 */
export async function buildContextFiles(root: string): Promise<string[]> {
  const text = await readFile(join(root, ".dockerignore"), "utf8").catch(() => "");
  const patterns = parseDockerignore(text);
  const exceptions = patterns.filter((p) => p.negated).map((p) => p.source);
  const files: string[] = [];
  const walk = async (relDir: string): Promise<void> => {
    for (const entry of await readdir(join(root, relDir), { withFileTypes: true })) {
      const rel = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      const excluded = isExcluded(rel, patterns);
      if (entry.isDirectory()) {
        const mayReinclude = exceptions.some((e) => e.startsWith(`${rel}/`) || /^[*?[]/.test(e));
        if (!excluded || mayReinclude) await walk(rel);
      } else if (!excluded) {
        files.push(rel);
      }
    }
  };
  await walk("");
  return files.sort();
}
