import type { CliCommand } from "../command.js";
import { evalCommand } from "./eval.js";
import { exportCommand } from "./export.js";
import { importCommand } from "./import.js";
import { inspectCommand } from "./inspect.js";
import { mergeCommand } from "./merge.js";
import { modelCreateCommand } from "./model-create.js";
import { openapiCommand } from "./openapi.js";
import { serveCommand } from "./serve.js";
import { trainCommand } from "./train.js";

/** Every subcommand, in the order `--help` lists them. Each lives in its own file. */
export const commands: readonly CliCommand[] = [
  serveCommand,
  trainCommand,
  evalCommand,
  importCommand,
  exportCommand,
  mergeCommand,
  inspectCommand,
  modelCreateCommand,
  openapiCommand,
];
