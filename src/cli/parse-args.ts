import { parseArgs, type ParseArgsConfig } from "node:util";
import { CliError } from "./command.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * node:util parseArgs with errors turned into one-line CliErrors and `--help` handled uniformly.
 * Returns null when help was requested (the caller prints its help and exits 0).
 */
export function parseCommandArgs<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
    if ((parsed.values as { help?: boolean }).help) return null;
    return parsed;
  } catch (error) {
    throw new CliError((error as Error).message.split("\n")[0] ?? "invalid arguments");
  }
}
