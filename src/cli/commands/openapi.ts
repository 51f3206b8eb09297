import { writeFile } from "node:fs/promises";
import { openApiYaml } from "../../protocol/openapi-document.js";
import type { CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server openapi [--out FILE]

Prints (or writes) the OpenAPI document generated from the request/response schemas.
`;

export const openapiCommand: CliCommand = {
  name: "openapi",
  summary: "Print the OpenAPI document generated from the zod schemas",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(argv, { out: { type: "string" } });
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    if (parsed.values.out) await writeFile(parsed.values.out, openApiYaml());
    else process.stdout.write(openApiYaml());
    return 0;
  },
};
