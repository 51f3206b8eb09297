import type { CliCommand } from "../command.js";

/**
 * Every subcommand, in the order `--help` lists them, each loaded only when it runs: most commands never touch
 * node-llama-cpp, and importing it (through serve, train or eval) costs about half a second per process.
 */
export const commandLoaders: readonly (readonly [name: string, load: () => Promise<CliCommand>])[] = [
  ["serve", async () => (await import("./serve.js")).serveCommand],
  ["train", async () => (await import("./train.js")).trainCommand],
  ["eval", async () => (await import("./eval.js")).evalCommand],
  ["import", async () => (await import("./import.js")).importCommand],
  ["export", async () => (await import("./export.js")).exportCommand],
  ["merge", async () => (await import("./merge.js")).mergeCommand],
  ["inspect", async () => (await import("./inspect.js")).inspectCommand],
  ["model", async () => (await import("./model-create.js")).modelCreateCommand],
  ["openapi", async () => (await import("./openapi.js")).openapiCommand],
];

export function loadAllCommands(): Promise<CliCommand[]> {
  return Promise.all(commandLoaders.map(([, load]) => load()));
}
