import { SeededRandom } from "../model/seeded-random.js";
import { checkSeed, pick, pickDistinct, randInt, streamOf } from "./split-sampler.js";
import type { ChatMessage } from "./task.js";
import { COLOURS, NAMES, OBJECTS, THINGS } from "./vocabulary.js";

/**
 * A general base corpus for pretraining a demo model: `{"text": ...}` records of simple language (short
 * stories over the tasks' vocabulary, counting sentences), general knowledge a base model brings to its tasks
 * (arithmetic facts in symbols, small JavaScript functions) and chat-formatted small talk rendered in ChatML
 * (the embedded model's template). It never contains a task's prompt format ("Q: ... A:", passages with
 * lettered options, refusals), so the base knows the words, the facts and the turn format but not the tasks:
 * that is what the adapters add.
 */
export interface TextRecord {
  readonly text: string;
}

const FEELINGS = ["happy", "sad", "tired", "glad"];
const PLACES = ["park", "shop", "school", "garden"];

const STORIES: readonly ((rng: SeededRandom) => string)[] = [
  (rng) => {
    const [a, b] = pickDistinct(rng, NAMES, 2) as [string, string];
    const c = pick(rng, COLOURS);
    const t = pick(rng, THINGS);
    return `${a} has a ${c} ${t}. ${a} shows the ${t} to ${b}. ${b} is ${pick(rng, FEELINGS)}.`;
  },
  (rng) => {
    const a = pick(rng, NAMES);
    const n = randInt(rng, 1, 9);
    const o = pick(rng, OBJECTS);
    return `${a} goes to the ${pick(rng, PLACES)}. ${a} sees ${n} ${o}. One, two, three. ${a} counts ${n} ${o}.`;
  },
  (rng) => {
    const a = randInt(rng, 1, 9);
    const b = randInt(rng, 1, 9);
    return `${a} and ${b} make ${a + b}. ${Math.max(a, b)} take away ${Math.min(a, b)} is ${Math.abs(a - b)}.`;
  },
  // listed twice: arithmetic is the slowest of these to learn
  (rng) => arithmeticFacts(rng),
  (rng) => arithmeticFacts(rng),
  (rng) => javascriptSnippet(rng),
  (rng) => {
    const a = pick(rng, NAMES);
    const t = pick(rng, THINGS);
    return `Once upon a time ${a} lost a ${t}. ${a} looked in the ${pick(rng, PLACES)}. The ${t} was there. ${a} was ${pick(rng, FEELINGS)}.`;
  },
];

/** Three to five sums, differences and small products, e.g. `3 + 4 = 7. 9 - 2 = 7. 2 * 5 = 10.` */
function arithmeticFacts(rng: SeededRandom): string {
  return Array.from({ length: randInt(rng, 3, 5) }, () => {
    const op = pick(rng, ["+", "-", "*"] as const);
    if (op === "*") {
      const a = randInt(rng, 1, 6);
      const b = randInt(rng, 1, 6);
      return `${a} * ${b} = ${a * b}.`;
    }
    const a = randInt(rng, 1, 9);
    const b = randInt(rng, 1, 9);
    return op === "+" ? `${a} + ${b} = ${a + b}.` : `${Math.max(a, b)} - ${Math.min(a, b)} = ${Math.abs(a - b)}.`;
  }).join(" ");
}

const JS_BODIES = [
  "return x + 1;",
  "return x * 2;",
  "return x - y;",
  "return x + y;",
  "return x > y ? x : y;",
  "return x.length;",
  "return -x;",
];

/** A one-line JavaScript function, e.g. `function f(x, y) { return x + y; }` */
function javascriptSnippet(rng: SeededRandom): string {
  const body = pick(rng, JS_BODIES);
  const params = body.includes("y") ? "x, y" : "x";
  return `function ${pick(rng, ["f", "g", "h", "calc", "work"])}(${params}) { ${body} }`;
}

const SMALL_TALK: readonly ((rng: SeededRandom) => [string, string])[] = [
  () => ["Hello!", "Hello! How can I help you?"],
  (rng) => [`What colour is a ${pick(rng, COLOURS)} ${pick(rng, THINGS)}?`, "It is the colour in its name."],
  (rng) => {
    const n = pick(rng, NAMES);
    return [`Who is ${n}?`, `${n} is a child in a story.`];
  },
  (rng) => {
    const p = pick(rng, PLACES);
    return [`Where can I play?`, `You can play in the ${p}.`];
  },
  () => ["Thank you!", "You are welcome."],
];

/** ChatML, as the embedded model's template renders a finished conversation. */
export function renderChatML(messages: readonly ChatMessage[]): string {
  return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("");
}

/** `count` records; deterministic in `seed`. About one in four is a chat. */
export function generateBaseCorpus(seed: number, count: number): TextRecord[] {
  checkSeed(seed);
  const rng = new SeededRandom(seed, streamOf("base"));
  return Array.from({ length: count }, () => {
    if (rng.nextFloat() < 0.25) {
      const [user, assistant] = pick(rng, SMALL_TALK)(rng);
      return {
        text: renderChatML([
          { role: "user", content: user },
          { role: "assistant", content: assistant },
        ]),
      };
    }
    return { text: pick(rng, STORIES)(rng) };
  });
}
