import { parseTrainingJsonl, TrainingDataError, type TrainingRecord } from "../train/training-data.js";

/** One bad line of an uploaded training file. */
export interface LineProblem {
  readonly line: number;
  readonly problem: string;
}

export interface JsonlCheck {
  readonly records: number;
  /** At most `maxProblems`, in line order. */
  readonly problems: LineProblem[];
  /** More bad lines than reported. */
  readonly moreProblems: boolean;
}

/**
 * Checks every line of a training file with the trainer's own parser (chat `{"messages"}` with assistant-only
 * loss and `weight: 0`, `{"prompt","completion"}`, `{"instruction","output"}`, `{"text"}`), so a file that passes
 * here is one the trainer reads. Unlike the trainer it does not stop at the first bad line: users fix all at once.
 */
export function checkTrainingJsonl(text: string, maxProblems = 20): JsonlCheck {
  const problems: LineProblem[] = [];
  let records = 0;
  let bad = 0;
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    if (raw.trim() === "") continue;
    const line = index + 1;
    try {
      records += parseTrainingJsonl(raw, SOURCE).length;
    } catch (error) {
      if (!(error instanceof TrainingDataError)) throw error;
      bad++;
      if (problems.length < maxProblems) problems.push({ line, problem: error.message.replace(LINE_PREFIX, "") });
    }
  }
  return { records, problems, moreProblems: bad > problems.length };
}

/** The parser names its source and (here always) line 1; the real line number is ours. */
const SOURCE = "upload";
const LINE_PREFIX = /^upload line 1: /;

/** One line of text for an error message: "line 3: invalid JSON (...); line 7: ...". */
export function describeProblems(check: JsonlCheck): string {
  const listed = check.problems.map((p) => `line ${p.line}: ${p.problem}`).join("; ");
  return check.moreProblems ? `${listed}; and more` : listed;
}

export type { TrainingRecord };
