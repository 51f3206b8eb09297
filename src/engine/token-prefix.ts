import type { Token } from "node-llama-cpp";

/** How many leading tokens two sequences share (the KV cells one can reuse for the other). */
export function sharedPrefixLength(a: readonly Token[], b: readonly Token[]): number {
  const max = Math.min(a.length, b.length);
  let i = 0;
  while (i < max && a[i] === b[i]) i++;
  return i;
}
