import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import { LoraError } from "./errors.js";

/**
 * Size-bounded reads of regular files only. A path in an adapter directory can name anything the file system
 * holds: /dev/zero (endless), a FIFO (blocks until a writer appears), a directory, a file of terabytes. Each of
 * those once wedged the registry's poller, so every read of adapter bytes goes through here:
 *
 * - open with O_NONBLOCK, so opening a FIFO returns at once instead of waiting for a writer;
 * - optionally O_NOFOLLOW, so a symlink as the last path component is refused by the kernel (ELOOP) and
 *   never followed, whatever it points to;
 * - fstat the open descriptor (not the path, which could be swapped meanwhile) and refuse non-regular files
 *   and files over `maxBytes` before reading anything;
 * - read exactly the size fstat reported; a file that grows meanwhile is refused rather than read on.
 *
 * Messages name the file by its base name only and never quote its content.
 */

export interface RegularFileOptions {
  /** Refuse files larger than this (before reading a byte). */
  readonly maxBytes: number;
  /** Follow a symlink as the last path component (default false: refuse it). */
  readonly followSymlinks?: boolean;
}

function refuse(path: string, detail: string, code: ConstructorParameters<typeof LoraError>[0] = "ADAPTER_BAD_FILE"): never {
  throw new LoraError(code, `${basename(path)}: ${detail}`);
}

/** Opens `path` for reading as a regular file (see module comment); the caller closes the handle. */
export async function openRegularFile(path: string, options: RegularFileOptions): Promise<{ handle: FileHandle; size: number }> {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.followSymlinks ? 0 : constants.O_NOFOLLOW);
  let handle: FileHandle;
  try {
    handle = await open(path, flags);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP" || code === "EMLINK")
      refuse(path, "is a symbolic link; adapter files must be regular files inside the adapter directory");
    if (code === "ENOENT") refuse(path, "does not exist", "ADAPTER_MISSING_FILE");
    if (code === "EISDIR") refuse(path, "is a directory, not a regular file");
    if (code === "EACCES" || code === "EPERM") refuse(path, "is not readable");
    throw error;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) refuse(path, `is not a regular file (${describeType(stats)})`);
    if (stats.size > options.maxBytes) refuse(path, `is ${stats.size} bytes, over the ${options.maxBytes}-byte limit`, "ADAPTER_TOO_LARGE");
    return { handle, size: stats.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** The whole content of a regular file of at most `maxBytes`, read through one descriptor. */
export async function readRegularFile(path: string, options: RegularFileOptions): Promise<Buffer> {
  const { handle, size } = await openRegularFile(path, options);
  try {
    const bytes = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(bytes, done, size - done, done);
      if (bytesRead === 0) refuse(path, "shrank while being read");
      done += bytesRead;
    }
    // One probe byte past the end: a file still being written is refused, not half-read.
    const { bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, size);
    if (bytesRead !== 0) refuse(path, "grew while being read");
    return bytes;
  } finally {
    await handle.close();
  }
}

function describeType(stats: {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
}): string {
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isSocket()) return "a socket";
  return "not a plain file";
}
