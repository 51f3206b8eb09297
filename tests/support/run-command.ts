import { vi } from "vitest";
import type { CliCommand } from "../../src/cli/command.js";

/** Runs a CLI command in-process with stdout captured; errors propagate (assert them with `.rejects`). */
export async function runCommand(command: CliCommand, argv: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  try {
    return { code: await command.run(argv), stdout };
  } finally {
    spy.mockRestore();
  }
}
