import { spawn } from "node:child_process";
import { once } from "node:events";
import { rm, symlink } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import { useTempDir } from "../support/temp-dir.js";
import { tinyBase, writeGoodAdapter } from "./store-fixtures.js";

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/**
 * Issue 10, defect 2, last symptom: with `adapter_model.safetensors -> /dev/zero` in the adapters dir, the
 * process logged "stopped" after SIGTERM and kept running (the poller was still hashing). Needs `npm run build`.
 */
describe("lori-server serve with /dev/zero in the adapters dir", () => {
  const tmp = useTempDir("lori-store-sigterm-");

  it("starts, lists the good adapter, and exits 0 on SIGTERM", async () => {
    const base = await tinyBase(tmp.path);
    const adaptersDir = path.join(tmp.path, "adapters");
    await writeGoodAdapter(path.join(adaptersDir, "math"), base, { seed: 1 });
    await writeGoodAdapter(path.join(adaptersDir, "zero"), base, { seed: 2 });
    await rm(path.join(adaptersDir, "zero", WEIGHTS_FILE));
    await symlink("/dev/zero", path.join(adaptersDir, "zero", WEIGHTS_FILE));

    const child = spawn(
      process.execPath,
      [
        cli,
        "serve",
        "--port",
        "0",
        "--model",
        `tiny=${base.path}`,
        "--adapters-dir",
        adaptersDir,
        "--adapters-poll-ms",
        "20",
        "--threads",
        "1",
        "--gpu",
        "off",
      ],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    const exited = once(child, "exit");
    try {
      await listsAndExits();
    } finally {
      child.kill("SIGKILL"); // only if it is still running (a failed run must not leave a spinning server)
    }

    async function listsAndExits(): Promise<void> {
      let log = "";
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr!.on("data", (chunk: Buffer) => {
          log += String(chunk);
          const match = /listening on (http:\/\/\S+)/.exec(log);
          if (match) resolve(match[1]!);
        });
        child.once("exit", () => reject(new Error(`server exited before listening:\n${log}`)));
        setTimeout(() => reject(new Error(`not listening after 20 s (wedged?):\n${log.slice(-2000)}`)), 20_000).unref();
      });
      const list = (await (await fetch(`${url}/adapters`)).json()) as { data: Array<{ id: string }> };
      expect(list.data.map((a) => a.id)).toEqual(["math"]);
      await new Promise((r) => setTimeout(r, 200)); // the poller runs several times
      child.kill("SIGTERM");
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`still running 10 s after SIGTERM:\n${log.slice(-2000)}`)), 10_000).unref(),
      );
      const [code] = await Promise.race([exited, timeout]);
      expect(code).toBe(0);
    }
  }, 60_000);
});
