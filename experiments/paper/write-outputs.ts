import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { PaperResults } from "./results-schema.js";
import { writeJsonAtomic } from "./work-dir.js";

/** Writes <outDir>/results.json, and <outDir>/results.md with its charts in <outDir>/results/ (the report renderer). */
export async function writeOutputs(results: PaperResults, outDir: string): Promise<{ json: string; markdown: string }> {
  const json = join(outDir, "results.json");
  const markdown = join(outDir, "results.md");
  await writeJsonAtomic(json, results);
  const { renderResultsMarkdown } = await import("./report/results-md.js");
  await writeFile(markdown, await renderResultsMarkdown(results, { chartDir: join(outDir, "results"), chartLinkPrefix: "results" }));
  return { json, markdown };
}
