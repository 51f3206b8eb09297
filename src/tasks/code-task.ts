import type { SeededRandom } from "../model/seeded-random.js";
import { runInSandbox, type HiddenTest, type JsonValue, type SandboxOptions } from "./code-sandbox.js";
import { pick, randInt, sampleSplits, type Candidate } from "./split-sampler.js";
import { isChatExample, type Example, type Task } from "./task.js";
import { WORDS } from "./vocabulary.js";

/**
 * Tiny JavaScript functions from a one-line description, like HumanEval in miniature:
 * `Q: Write a function add(a, b) that returns a + b.\nA:` -> ` function add(a, b) { return a + b; }`.
 * The scorer runs the answer against 4 hidden tests in the sandbox (code-sandbox.ts); all must pass.
 */
interface Spec {
  readonly names: readonly string[];
  /** Parameter lists the description may use; the body template uses $0, $1 for them. */
  readonly params: readonly (readonly string[])[];
  /** "returns $0 + $1"; K is the constant, when the spec has one. */
  readonly does: string;
  readonly body: string;
  readonly withConstant?: boolean;
  readonly args: (rng: SeededRandom) => JsonValue[];
  readonly reference: (args: JsonValue[], k: number) => JsonValue;
}

const num = (rng: SeededRandom) => randInt(rng, -9, 20);
const two = (rng: SeededRandom) => [num(rng), num(rng)];
const one = (rng: SeededRandom) => [num(rng)];
const list = (rng: SeededRandom) => [Array.from({ length: randInt(rng, 1, 4) }, () => num(rng))];
const word = (rng: SeededRandom) => [pick(rng, WORDS)];
// Four names and eight parameter spellings per function: enough distinct prompts for a test split of more than 100.
const PAIRS = [
  ["a", "b"],
  ["x", "y"],
  ["m", "n"],
  ["p", "q"],
  ["u", "v"],
  ["i", "j"],
  ["c", "d"],
  ["r", "s"],
] as const;
const SINGLES = [["x"], ["n"], ["v"], ["a"], ["y"], ["z"], ["t"], ["w"]] as const;
const LISTS = [["arr"], ["xs"], ["list"], ["nums"], ["items"], ["vals"], ["data"], ["values"]] as const;
const STRINGS = [["s"], ["str"], ["text"], ["word"], ["name"], ["txt"], ["label"], ["title"]] as const;

const SPECS: readonly Spec[] = [
  {
    names: ["add", "plus", "sum2", "addTwo"],
    params: PAIRS,
    does: "returns $0 + $1",
    body: "return $0 + $1;",
    args: two,
    reference: ([a, b]) => (a as number) + (b as number),
  },
  {
    names: ["sub", "minus", "diff", "subtract"],
    params: PAIRS,
    does: "returns $0 - $1",
    body: "return $0 - $1;",
    args: two,
    reference: ([a, b]) => (a as number) - (b as number),
  },
  {
    names: ["mul", "times", "product", "multiply"],
    params: PAIRS,
    does: "returns $0 * $1",
    body: "return $0 * $1;",
    args: two,
    reference: ([a, b]) => (a as number) * (b as number),
  },
  {
    names: ["max2", "bigger", "larger", "maxOf"],
    params: PAIRS,
    does: "returns the larger of $0 and $1",
    body: "return $0 > $1 ? $0 : $1;",
    args: two,
    reference: ([a, b]) => Math.max(a as number, b as number),
  },
  {
    names: ["min2", "smaller", "lower", "minOf"],
    params: PAIRS,
    does: "returns the smaller of $0 and $1",
    body: "return $0 < $1 ? $0 : $1;",
    args: two,
    reference: ([a, b]) => Math.min(a as number, b as number),
  },
  {
    names: ["addK", "plusK", "bump", "raise"],
    params: SINGLES,
    does: "returns $0 + K",
    body: "return $0 + K;",
    withConstant: true,
    args: one,
    reference: ([a], k) => (a as number) + k,
  },
  {
    names: ["mulK", "timesK", "scale", "grow"],
    params: SINGLES,
    does: "returns $0 * K",
    body: "return $0 * K;",
    withConstant: true,
    args: one,
    reference: ([a], k) => (a as number) * k,
  },
  {
    names: ["square", "sq", "pow2", "squared"],
    params: SINGLES,
    does: "returns $0 * $0",
    body: "return $0 * $0;",
    args: one,
    reference: ([a]) => (a as number) * (a as number),
  },
  {
    names: ["negate", "neg", "flip", "opposite"],
    params: SINGLES,
    does: "returns -$0",
    body: "return -$0;",
    args: one,
    reference: ([a]) => -(a as number),
  },
  {
    names: ["isEven", "even", "isPair", "evenQ"],
    params: SINGLES,
    does: "returns true if $0 is even",
    body: "return $0 % 2 === 0;",
    args: one,
    reference: ([a]) => (a as number) % 2 === 0,
  },
  {
    names: ["first", "head", "front", "firstOf"],
    params: LISTS,
    does: "returns the first element of $0",
    body: "return $0[0];",
    args: list,
    reference: ([a]) => (a as number[])[0]!,
  },
  {
    names: ["last", "tail", "back", "lastOf"],
    params: LISTS,
    does: "returns the last element of $0",
    body: "return $0[$0.length - 1];",
    args: list,
    reference: ([a]) => (a as number[]).at(-1)!,
  },
  {
    names: ["sum", "total", "addAll", "sumAll"],
    params: LISTS,
    does: "returns the sum of the numbers in $0",
    body: "let s = 0; for (const v of $0) s += v; return s;",
    args: list,
    reference: ([a]) => (a as number[]).reduce((s, v) => s + v, 0),
  },
  {
    names: ["len", "size", "count", "length"],
    params: STRINGS,
    does: "returns the length of the string $0",
    body: "return $0.length;",
    args: word,
    reference: ([a]) => (a as string).length,
  },
  {
    names: ["greet", "hello", "hi", "welcome"],
    params: STRINGS,
    does: 'returns "Hi, " + $0',
    body: 'return "Hi, " + $0;',
    args: word,
    reference: ([a]) => `Hi, ${a as string}`,
  },
];

const fill = (template: string, params: readonly string[], k: number) =>
  template.replace(/\$(\d)/g, (_, i: string) => params[Number(i)]!).replace(/\bK\b/g, String(k));

function draw(rng: SeededRandom): Candidate {
  const spec = pick(rng, SPECS);
  const params = pick(rng, spec.params);
  const k = spec.withConstant ? randInt(rng, 2, 9) : 0;
  const name = spec.withConstant ? pick(rng, spec.names).replace(/K$/, String(k)) : pick(rng, spec.names);
  const signature = `${name}(${params.join(", ")})`;
  const prompt = `Q: Write a function ${signature} that ${fill(spec.does, params, k)}.\nA:`;
  return {
    key: prompt,
    build: (id) => {
      const tests: HiddenTest[] = Array.from({ length: 4 }, () => {
        const args = spec.args(rng);
        return { args, expected: spec.reference(args, k) };
      });
      return {
        id,
        task: "code",
        prompt,
        completion: ` function ${signature} { ${fill(spec.body, params, k)} }`,
        meta: { function: name, tests },
      };
    },
  };
}

/** The code task with its sandbox settings (tests use a shorter timeout). */
export function createCodeTask(sandbox: SandboxOptions = {}): Task {
  return {
    id: "code",
    format: "completion",
    summary: "a one-line JavaScript function from a description; 4 hidden tests run in a sandboxed node process",
    maxTokens: 64,
    stop: ["\n"],
    // the item space holds 108 test prompts (and 72 dev): all but a margin
    defaultTestSize: 100,
    maxSizes: { test: 100, dev: 60 },
    generate: (seed, sizes) => sampleSplits("code", seed, sizes, draw),
    async score(example: Example, output: string): Promise<boolean> {
      if (isChatExample(example)) return false;
      const name = example.meta?.function;
      const tests = example.meta?.tests as HiddenTest[] | undefined;
      if (typeof name !== "string" || !Array.isArray(tests) || tests.length === 0) return false;
      return (await runInSandbox(output, name, tests, sandbox)).status === "passed";
    },
  };
}

export const codeTask: Task = createCodeTask();
