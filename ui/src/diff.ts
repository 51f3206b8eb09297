/**
 * Word-level diff of an answer against a reference answer: the longest common subsequence of words stays plain,
 * the rest is marked. Answers are a few hundred words, so the O(n·m) table is small.
 */
export interface DiffPart {
  text: string;
  changed: boolean;
}

export function diffWords(reference: string, answer: string): DiffPart[] {
  const a = reference.split(/(\s+)/).filter(Boolean);
  const b = answer.split(/(\s+)/).filter(Boolean);
  const n = a.length;
  const m = b.length;
  const table = new Uint32Array((n + 1) * (m + 1));
  const at = (i: number, j: number) => table[i * (m + 1) + j]!;
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      table[i * (m + 1) + j] = a[i] === b[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1));
    }
  }
  const parts: DiffPart[] = [];
  const push = (text: string, changed: boolean) => {
    const last = parts[parts.length - 1];
    if (last && last.changed === changed) last.text += text;
    else parts.push({ text, changed });
  };
  let i = 0;
  let j = 0;
  while (j < m) {
    if (i < n && a[i] === b[j]) {
      push(b[j]!, false);
      i++;
      j++;
    } else if (i < n && at(i + 1, j) >= at(i, j + 1)) i++;
    else {
      // Whitespace between changed words is not itself a change worth marking.
      push(b[j]!, !/^\s+$/.test(b[j]!));
      j++;
    }
  }
  // A lone unchanged space between two changes reads as part of one changed run.
  for (let k = parts.length - 2; k > 0; k--) {
    if (!parts[k]!.changed && /^\s+$/.test(parts[k]!.text) && parts[k - 1]!.changed && parts[k + 1]!.changed) {
      parts.splice(k - 1, 3, { text: parts[k - 1]!.text + parts[k]!.text + parts[k + 1]!.text, changed: true });
      k--;
    }
  }
  return parts;
}
