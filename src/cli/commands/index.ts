import type { CliCommand } from "../command.js";
import { modelCreateCommand } from "./model-create.js";
import { openapiCommand } from "./openapi.js";
import { serveCommand } from "./serve.js";

/** Every subcommand, in the order `--help` lists them. Each lives in its own file. */
export const commands: readonly CliCommand[] = [serveCommand, modelCreateCommand, openapiCommand];
