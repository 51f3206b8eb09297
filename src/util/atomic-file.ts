import { randomBytes } from "node:crypto";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * Writes `path` through a temp file in the same directory, synced then renamed over the target, so a reader
 * (or a crash) never sees half a file and concurrent writers each install a complete one.
 */
export async function writeFileAtomically(path: string, write: (file: FileHandle) => Promise<void>): Promise<void> {
  const tempPath = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const file = await open(tempPath, "wx");
  try {
    await write(file);
    await file.datasync();
    await file.close();
    await rename(tempPath, path);
  } catch (error) {
    await file.close().catch(() => undefined);
    await unlink(tempPath).catch(() => undefined);
    throw error;
  }
}
