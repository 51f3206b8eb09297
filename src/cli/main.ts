#!/usr/bin/env node
import { ERROR_KINDS, errorKindOf } from "../errors/error-kinds.js";
import { CliError, type CliCommand } from "./command.js";
import { commandLoaders, loadAllCommands } from "./commands/index.js";

function printTopLevelHelp(all: readonly CliCommand[]): void {
  const width = Math.max(...all.map((c) => c.name.length));
  const lines = all.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  process.stdout.write(
    `lori-server: OpenAI-compatible GGUF server with per-request LoRI adapters\n\n` +
      `Usage: lori-server <command> [options]\n\nCommands:\n${lines.join("\n")}\n\n` +
      `Run 'lori-server <command> --help' for a command's options.\n`,
  );
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    printTopLevelHelp(await loadAllCommands());
    return name === undefined ? 2 : 0;
  }
  const load = commandLoaders.find(([commandName]) => commandName === name)?.[1];
  if (!load) throw new CliError(`unknown command '${name}' (see 'lori-server --help')`);
  return (await load()).run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`lori-server: ${message.split("\n")[0]}\n`);
    if (process.env.LORI_DEBUG) console.error(error);
    // A CliError states its exit code; anything else exits by its kind (the one error table).
    process.exitCode = error instanceof CliError ? error.exitCode : ERROR_KINDS[errorKindOf(error)].exitCode;
  },
);
