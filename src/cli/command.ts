/** One CLI subcommand. `run` returns the process exit code; it throws `CliError` for user errors. */
export interface CliCommand {
  readonly name: string;
  /** One line shown in `lori-server --help`. */
  readonly summary: string;
  /** Full text shown by `lori-server <name> --help`. */
  readonly help: string;
  run(argv: string[]): Promise<number>;
}

/** A user-facing failure: printed as one line, exit code non-zero, no stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "CliError";
  }
}
