import { access, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { PaperResults } from "./results-schema.js";
import { writeJsonAtomic } from "./work-dir.js";

/** Writes <outDir>/results.json, and <outDir>/results.md with its charts in <outDir>/results/ (the report renderer). */
export async function writeOutputs(results: PaperResults, outDir: string): Promise<{ json: string; markdown: string }> {
  const json = join(outDir, "results.json");
  const markdown = join(outDir, "results.md");
  await writeJsonAtomic(json, results);
  const { renderResultsMarkdown } = await import("./report/results-md.js");
  let text = await renderResultsMarkdown(results, { chartDir: join(outDir, "results"), chartLinkPrefix: "results" });
  // The measured numbers are generated; why a claim does (not) reproduce is written by hand beside them.
  const discussion = join(outDir, "results-discussion.md");
  if (
    await access(discussion).then(
      () => true,
      () => false,
    )
  ) {
    text += `\n## Discussion\n\nWhy each claim does or does not reproduce at this scale: [results-discussion.md](results-discussion.md) (written by hand from the numbers above).\n`;
  }
  await writeFile(markdown, text);
  return { json, markdown };
}
