import { generateBaseCorpus } from "../../src/tasks/base-corpus.js";
import { TASKS } from "../../src/tasks/tasks.js";
import { isChatExample, type CompletionExample, type Example, type Task, type TaskId } from "../../src/tasks/task.js";

/**
 * The task example a doc's prompt is, so the task's own scorer can judge the answer: looked up in everything the
 * task's generator produces for code and safety (a few hundred items each), and for math and nlu, whose item spaces
 * are too large to enumerate in a test, solved from the text (straightforward references for the generators'
 * word-problem templates and question kinds).
 */

/** Every item of a task's split for seed 0: the generator stops when 20,000 draws in a row bring nothing new. */
function wholeSplit(task: Task, split: "train" | "test"): Example[] {
  const sizes = (n: number) => (split === "train" ? { train: n, test: 0 } : { train: 0, test: n });
  try {
    task.generate(0, sizes(1_000_000));
  } catch (error) {
    const found = /only (\d+) distinct/.exec((error as Error).message);
    if (!found) throw error;
    return task.generate(0, sizes(Number(found[1])))[split];
  }
  throw new Error(`task ${task.id}: more than a million ${split} items; look its examples up another way`);
}

const itemSpaces = new Map<TaskId, Map<string, Example>>();

function itemSpace(id: TaskId): Map<string, Example> {
  let space = itemSpaces.get(id);
  if (!space) {
    space = new Map();
    for (const split of ["train", "test"] as const) {
      for (const e of wholeSplit(TASKS[id], split)) space.set(isChatExample(e) ? e.messages[0]!.content : e.prompt, e);
    }
    itemSpaces.set(id, space);
  }
  return space;
}

/** math: the five word-problem templates, solved from their numbers. */
export function solveMath(prompt: string): CompletionExample | undefined {
  const forms: readonly [RegExp, (a: number, b: number) => number][] = [
    [/^Q: (\w+) has (\d+) (\w+) and buys (\d+) more\. How many \3 does \1 have\?\nA:$/, (a, b) => a + b],
    [/^Q: (\w+) has (\d+) (\w+) and \w+ has (\d+) \3\. How many \3 do they have together\?\nA:$/, (a, b) => a + b],
    [/^Q: (\w+) has (\d+) (\w+) and gives (\d+) to \w+\. How many \3 does \1 have now\?\nA:$/, (a, b) => a - b],
    [/^Q: (\w+) had (\d+) (\w+) and lost (\d+) of them\. How many \3 are left\?\nA:$/, (a, b) => a - b],
    [/^Q: (\w+) has (\d+) boxes with (\d+) (\w+) in each box\. How many \4 does \1 have\?\nA:$/, (a, b) => a * b],
  ];
  for (const [pattern, solve] of forms) {
    const m = pattern.exec(prompt);
    if (!m) continue;
    // The boxes template has its two numbers in groups 2 and 3; the others in groups 2 and 4.
    const [a, b] = pattern.source.includes("boxes") ? [Number(m[2]), Number(m[3])] : [Number(m[2]), Number(m[4])];
    const answer = solve(a, b);
    return { id: "doc", task: "math", prompt, completion: ` ${answer}`, meta: { answer } };
  }
  return undefined;
}

/** nlu: `Passage: X has a C T. ...\nQuestion: ...\nA:` answered from the passage. */
export function solveNlu(prompt: string): CompletionExample | undefined {
  const m = /^Passage: (.*)\nQuestion: (.*)\nA:$/.exec(prompt);
  if (!m) return undefined;
  const facts = [...m[1]!.matchAll(/(\w+) has a (\w+) (\w+)\./g)].map(([, name, colour, thing]) => ({ name, colour, thing }));
  const question = m[2]!;
  let answer: string | undefined;
  const yesNo = /^Does (\w+) have a (\w+) (\w+)\? Answer yes or no\.$/.exec(question);
  const options = [...question.matchAll(/\(([abc])\) (\w+)/g)].map(([, letter, value]) => ({ letter: letter!, value: value! }));
  const colourOf = /^What colour is (\w+)'s (\w+)\?/.exec(question);
  const whoHas = /^Who has the (\w+) (\w+)\?/.exec(question);
  if (yesNo) {
    answer = facts.some((f) => f.name === yesNo[1] && f.colour === yesNo[2] && f.thing === yesNo[3]) ? "yes" : "no";
  } else if (colourOf) {
    const fact = facts.find((f) => f.name === colourOf[1] && f.thing === colourOf[2]);
    answer = options.find((o) => o.value === fact?.colour)?.letter;
  } else if (whoHas) {
    const fact = facts.find((f) => f.colour === whoHas[1] && f.thing === whoHas[2]);
    answer = options.find((o) => o.value === fact?.name)?.letter;
  }
  if (answer === undefined) return undefined;
  return { id: "doc", task: "nlu", prompt, completion: ` ${answer}`, meta: { answer } };
}

/**
 * The task example whose prompt is `text`: a completion prompt, or (asked as a chat) a completion prompt's chat
 * form (the question without `Q: ` and `\nA:`), or a safety request.
 */
export function taskExample(id: TaskId, text: string, asChat: boolean): Example | undefined {
  const prompts = asChat && TASKS[id].format === "completion" ? [`Q: ${text}\nA:`, `${text}\nA:`] : [text];
  for (const prompt of prompts) {
    const found = id === "nlu" ? solveNlu(prompt) : id === "math" ? solveMath(prompt) : itemSpace(id).get(prompt);
    if (found) return found;
  }
  return undefined;
}

/** The base corpus's small talk: each user line with the replies the base model was pretrained on. */
export function smallTalkReplies(seed: number, records: number): Map<string, Set<string>> {
  const replies = new Map<string, Set<string>>();
  for (const { text } of generateBaseCorpus(seed, records)) {
    const m = /^<\|im_start\|>user\n(.*)<\|im_end\|>\n<\|im_start\|>assistant\n(.*)<\|im_end\|>\n$/.exec(text);
    if (!m) continue;
    if (!replies.has(m[1]!)) replies.set(m[1]!, new Set());
    replies.get(m[1]!)!.add(m[2]!);
  }
  return replies;
}
