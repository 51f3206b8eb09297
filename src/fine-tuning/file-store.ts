import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { KindedError } from "../errors/error-kinds.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { byCreation, creationStamp, isFileId, newFileId } from "./ids.js";
import { checkTrainingJsonl, describeProblems } from "./validate-jsonl.js";

/** OpenAI's file purposes; only `fine-tune` files are checked as training data and usable by jobs. */
export const FILE_PURPOSES = ["fine-tune", "assistants", "batch", "user_data", "vision", "evals"] as const;
export type FilePurpose = (typeof FILE_PURPOSES)[number];

/** What is kept about one uploaded file (the `<id>.json` beside its content). */
export interface StoredFile {
  readonly id: string;
  readonly bytes: number;
  readonly created_at: number;
  /** Orders files created within one second. */
  readonly created_ms?: number;
  readonly filename: string;
  readonly purpose: FilePurpose;
  /** Principal id of the uploader: only it and admins see the file. */
  readonly owner: string;
}

/**
 * Uploaded files under `<data-dir>/files/`: the content as `<id>.data`, then its record as `<id>.json`, each
 * written through a temp file and a rename; a file exists once its record does, so a crash mid-upload leaves
 * at most an orphaned content file that no listing shows (and the next start removes).
 */
export class FileStore {
  private readonly files = new Map<string, StoredFile>();

  private constructor(private readonly dir: string) {}

  static async open(dataDir: string): Promise<FileStore> {
    const store = new FileStore(join(dataDir, "files"));
    await mkdir(store.dir, { recursive: true });
    const names = await readdir(store.dir);
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      try {
        const record = JSON.parse(await readFile(join(store.dir, name), "utf8")) as StoredFile;
        if (isFileId(record.id)) store.files.set(record.id, record);
      } catch {
        // A record we cannot read is skipped, not fatal: the other files stay usable.
      }
    }
    for (const name of names) {
      const id = name.replace(/\.data$/, "");
      if (name.endsWith(".data") && !store.files.has(id)) await rm(join(store.dir, name), { force: true });
    }
    return store;
  }

  /** Validates (fine-tune files: every JSONL line) and stores; throws a 400/413 KindedError and stores nothing. */
  async create(content: Uint8Array, filename: string, purpose: FilePurpose, owner: string, maxBytes: number): Promise<StoredFile> {
    if (content.byteLength > maxBytes) {
      throw new KindedError(
        "payload_too_large",
        `The file is ${content.byteLength} bytes; the limit is ${maxBytes} bytes (--max-file-mb).`,
        "file_too_large",
        "file",
      );
    }
    if (purpose === "fine-tune") checkFineTuneFile(content);
    const created = creationStamp();
    const record: StoredFile = {
      id: newFileId(),
      bytes: content.byteLength,
      created_at: Math.floor(created / 1000),
      created_ms: created,
      filename,
      purpose,
      owner,
    };
    await writeFileAtomically(this.contentPath(record.id), (file) => file.writeFile(content).then(() => undefined));
    await writeFileAtomically(join(this.dir, `${record.id}.json`), (file) => file.writeFile(`${JSON.stringify(record)}\n`));
    this.files.set(record.id, record);
    return record;
  }

  get(id: string): StoredFile | undefined {
    return this.files.get(id);
  }

  /** Oldest first. */
  list(): StoredFile[] {
    return [...this.files.values()].sort(byCreation);
  }

  contentPath(id: string): string {
    if (!isFileId(id)) throw new Error(`not a file id: ${id}`);
    return join(this.dir, `${id}.data`);
  }

  async read(id: string): Promise<Buffer> {
    return readFile(this.contentPath(id));
  }

  /** The record goes first, so the file is gone even if removing its content fails. */
  async delete(id: string): Promise<boolean> {
    if (!this.files.has(id)) return false;
    await rm(join(this.dir, `${id}.json`), { force: true });
    this.files.delete(id);
    await rm(this.contentPath(id), { force: true });
    return true;
  }
}

/** A fine-tune file must be UTF-8 JSONL whose every line the trainer accepts. */
function checkFineTuneFile(content: Uint8Array): void {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(content);
  } catch {
    throw new KindedError("invalid_input", "The file is not valid UTF-8 text.", "invalid_file", "file");
  }
  const check = checkTrainingJsonl(text);
  if (check.problems.length > 0) {
    throw new KindedError("invalid_input", `Invalid training file: ${describeProblems(check)}`, "invalid_file", "file");
  }
  if (check.records === 0)
    throw new KindedError("invalid_input", "Invalid training file: it has no training records.", "invalid_file", "file");
}
