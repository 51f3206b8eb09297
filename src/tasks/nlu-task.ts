import type { SeededRandom } from "../model/seeded-random.js";
import { pick, pickDistinct, sampleSplits, type Candidate } from "./split-sampler.js";
import { isChatExample, type Example, type Task } from "./task.js";
import { COLOURS, NAMES, THINGS } from "./vocabulary.js";

/**
 * Reading comprehension in miniature (the paper's commonsense/NLU mix as yes/no and multiple-choice questions):
 * a three-fact passage, then one question answerable from it alone.
 * `Passage: Tom has a red cat. Sue has a blue box. Ben has a green dog.\nQuestion: Does Sue have a blue box?
 * Answer yes or no.\nA:` -> ` yes`; multiple choice answers with the option's letter (` b`).
 */
interface Fact {
  readonly name: string;
  readonly colour: string;
  readonly thing: string;
}

const LETTERS = ["a", "b", "c"] as const;

function draw(rng: SeededRandom, _slot: number): Candidate {
  const names = pickDistinct(rng, NAMES, 3);
  const colours = pickDistinct(rng, COLOURS, 3);
  const things = pickDistinct(rng, THINGS, 3);
  const facts: Fact[] = names.map((name, i) => ({ name, colour: colours[i]!, thing: things[i]! }));
  const passage = facts.map((f) => `${f.name} has a ${f.colour} ${f.thing}.`).join(" ");
  const target = pick(rng, facts);
  const kind = pick(rng, ["yesno", "colour", "who"] as const);
  let question: string;
  let answer: string;
  if (kind === "yesno") {
    const truthful = rng.nextFloat() < 0.5;
    // A false statement swaps in another fact's colour, so both answers need the passage.
    const colour = truthful
      ? target.colour
      : pick(
          rng,
          facts.filter((f) => f !== target),
        ).colour;
    question = `Does ${target.name} have a ${colour} ${target.thing}? Answer yes or no.`;
    answer = truthful ? "yes" : "no";
  } else {
    const options: string[] = pickDistinct<string>(rng, kind === "colour" ? colours : names, 3);
    const correct = kind === "colour" ? target.colour : target.name;
    const listed = options.map((o, i) => `(${LETTERS[i]}) ${o}`).join(" ");
    question =
      kind === "colour"
        ? `What colour is ${target.name}'s ${target.thing}? ${listed}`
        : `Who has the ${target.colour} ${target.thing}? ${listed}`;
    answer = LETTERS[options.indexOf(correct)]!;
  }
  const prompt = `Passage: ${passage}\nQuestion: ${question}\nA:`;
  return { key: prompt, build: (id) => ({ id, task: "nlu", prompt, completion: ` ${answer}`, meta: { answer, kind } }) };
}

/** First non-empty line, lower case, punctuation removed, spaces collapsed: `" (B)."` -> `"b"`. */
export function normaliseAnswer(output: string): string {
  const line = output.split("\n").find((l) => l.trim() !== "") ?? "";
  return line
    .toLowerCase()
    .replace(/[^a-z0-9 ]+/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

export const nluTask: Task = {
  id: "nlu",
  format: "completion",
  summary: "yes/no and multiple-choice questions about a three-sentence passage; exact match",
  maxTokens: 8,
  stop: ["\n"],
  defaultTestSize: 300,
  maxSizes: { test: 2000, dev: 1000 },
  generate: (seed, sizes) => sampleSplits("nlu", seed, sizes, draw),
  score(example: Example, output: string): boolean {
    if (isChatExample(example)) return false;
    return normaliseAnswer(output) === example.meta?.answer;
  },
};
