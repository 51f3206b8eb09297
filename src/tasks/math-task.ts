import type { SeededRandom } from "../model/seeded-random.js";
import { pick, pickDistinct, randInt, sampleSplits, type Candidate } from "./split-sampler.js";
import { isChatExample, type Example, type Task } from "./task.js";
import { NAMES, OBJECTS } from "./vocabulary.js";

/**
 * Word problems with one or two small numbers, like GSM8K in miniature:
 * `Q: Tom has 3 apples and buys 4 more. How many apples does Tom have?\nA:` -> ` 3 + 4 = 7`.
 * The answer line shows the arithmetic, then the result; the scorer reads the final integer.
 */
interface Problem {
  readonly text: string;
  readonly a: number;
  readonly b: number;
  readonly op: "+" | "-" | "*";
}

type Template = (rng: SeededRandom) => Problem;

const TEMPLATES: readonly Template[] = [
  (rng) => {
    const [n] = pickDistinct(rng, NAMES, 1) as [string];
    const o = pick(rng, OBJECTS);
    const a = randInt(rng, 1, 9);
    const b = randInt(rng, 1, 9);
    return { text: `${n} has ${a} ${o} and buys ${b} more. How many ${o} does ${n} have?`, a, b, op: "+" };
  },
  (rng) => {
    const [n, m] = pickDistinct(rng, NAMES, 2) as [string, string];
    const o = pick(rng, OBJECTS);
    const a = randInt(rng, 1, 9);
    const b = randInt(rng, 1, 9);
    return { text: `${n} has ${a} ${o} and ${m} has ${b} ${o}. How many ${o} do they have together?`, a, b, op: "+" };
  },
  (rng) => {
    const [n, m] = pickDistinct(rng, NAMES, 2) as [string, string];
    const o = pick(rng, OBJECTS);
    const a = randInt(rng, 2, 9);
    const b = randInt(rng, 1, a - 1);
    return { text: `${n} has ${a} ${o} and gives ${b} to ${m}. How many ${o} does ${n} have now?`, a, b, op: "-" };
  },
  (rng) => {
    const [n] = pickDistinct(rng, NAMES, 1) as [string];
    const o = pick(rng, OBJECTS);
    const a = randInt(rng, 2, 9);
    const b = randInt(rng, 1, a - 1);
    return { text: `${n} had ${a} ${o} and lost ${b} of them. How many ${o} are left?`, a, b, op: "-" };
  },
  (rng) => {
    const [n] = pickDistinct(rng, NAMES, 1) as [string];
    const o = pick(rng, OBJECTS);
    const a = randInt(rng, 2, 5);
    const b = randInt(rng, 2, 5);
    return { text: `${n} has ${a} boxes with ${b} ${o} in each box. How many ${o} does ${n} have?`, a, b, op: "*" };
  },
];

function solve(p: Problem): number {
  return p.op === "+" ? p.a + p.b : p.op === "-" ? p.a - p.b : p.a * p.b;
}

function draw(rng: SeededRandom, _slot: number): Candidate {
  const problem = pick(rng, TEMPLATES)(rng);
  const answer = solve(problem);
  const prompt = `Q: ${problem.text}\nA:`;
  return {
    key: prompt,
    build: (id) => ({ id, task: "math", prompt, completion: ` ${problem.a} ${problem.op} ${problem.b} = ${answer}`, meta: { answer } }),
  };
}

/** The last integer on the first non-empty line of `output`, or null when there is none. */
export function finalInteger(output: string): number | null {
  const line = output.split("\n").find((l) => l.trim() !== "") ?? "";
  const matches = line.match(/-?\d+/g);
  if (!matches) return null;
  const value = Number(matches.at(-1));
  return Number.isSafeInteger(value) ? value : null;
}

export const mathTask: Task = {
  id: "math",
  format: "completion",
  summary: "one-step word problems with small numbers; exact final integer",
  maxTokens: 16,
  stop: ["\n"],
  defaultTestSize: 300,
  maxSizes: { test: 2000, dev: 1000 },
  generate: (seed, sizes) => sampleSplits("math", seed, sizes, draw),
  score(example: Example, output: string): boolean {
    if (isChatExample(example)) return false;
    const expected = example.meta?.answer;
    return typeof expected === "number" && finalInteger(output) === expected;
  },
};
