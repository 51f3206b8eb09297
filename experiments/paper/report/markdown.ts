/** GitHub-flavoured markdown tables. */

export type Align = "left" | "right" | "center";

/** A cell's text with pipes escaped and line breaks turned into <br>, so it cannot break the table. */
export function escapeCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, "<br>");
}

const RULE: Readonly<Record<Align, string>> = { left: ":---", right: "---:", center: ":---:" };

/**
 * A markdown table. Rows shorter than the header are padded with empty cells; `align` defaults to left for the
 * first column and right for the others (numbers).
 */
export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[], align?: readonly Align[]): string {
  if (headers.length === 0) throw new Error("markdownTable: no columns");
  const width = headers.length;
  const line = (cells: readonly string[]) => `| ${Array.from({ length: width }, (_, i) => escapeCell(cells[i] ?? "")).join(" | ")} |`;
  const rule = `|${headers.map((_, i) => ` ${RULE[align?.[i] ?? (i === 0 ? "left" : "right")]} `).join("|")}|`;
  return [line(headers), rule, ...rows.map(line)].join("\n");
}
