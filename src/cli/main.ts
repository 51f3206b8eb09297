#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { ERROR_KINDS, errorKindOf } from "../errors/error-kinds.js";
import { CliError, type CliCommand } from "./command.js";
import { commandLoaders, loadAllCommands } from "./commands/index.js";

function printTopLevelHelp(all: readonly CliCommand[]): void {
  const width = Math.max(...all.map((c) => c.name.length));
  const lines = all.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  process.stdout.write(
    `lori-server: OpenAI-compatible GGUF server with per-request LoRI adapters\n\n` +
      `Usage: lori-server <command> [options]\n\nCommands:\n${lines.join("\n")}\n\n` +
      `Run 'lori-server <command> --help' (or 'lori-server help <command>') for a command's options;\n` +
      `'lori-server --version' prints the version.\n`,
  );
}

/** The package's version, read from the package.json two levels above both src/cli and dist/cli. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

function loaderOf(name: string): (() => Promise<CliCommand>) | undefined {
  return commandLoaders.find(([commandName]) => commandName === name)?.[1];
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--version" || name === "-V" || name === "version") {
    process.stdout.write(`lori-server ${packageVersion()}\n`);
    return 0;
  }
  // `help COMMAND` is `COMMAND --help`; bare `help` (or no command) is the command list.
  if (name === "help" && rest.length > 0) {
    const load = loaderOf(rest[0]!);
    if (!load) throw new CliError(`unknown command '${rest[0]}' (see 'lori-server --help')`);
    process.stdout.write((await load()).help);
    return 0;
  }
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    printTopLevelHelp(await loadAllCommands());
    return name === undefined ? 2 : 0;
  }
  const load = loaderOf(name);
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
