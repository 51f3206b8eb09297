import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { KindedError } from "../errors/error-kinds.js";
import { FILE_PURPOSES, type FilePurpose } from "../fine-tuning/file-store.js";
import type { FineTuningService } from "../fine-tuning/fine-tuning-service.js";
import { fileObject } from "../fine-tuning/views.js";
import { apiErrors } from "../errors/api-error.js";
import { mayTrain } from "../serving/principal.js";

/** Multipart framing (boundaries, part headers, the purpose field) on top of the file itself. */
const MULTIPART_OVERHEAD_BYTES = 64 * 1024;

export const uploadFileSchema = z.object({
  file: z.string().describe("The file (multipart). For purpose fine-tune: JSONL, one training example per line."),
  purpose: z.enum(FILE_PURPOSES),
});

/**
 * OpenAI's Files API over the file store. Uploading needs an admin key or a key with the `train` grant; a
 * file is visible only to the key that uploaded it and to admins (others get 404, as if it did not exist).
 */
export function filesRoutes(service: FineTuningService): Hono {
  const app = new Hono();
  const visible = (c: Context, id: string) => {
    const file = service.files.get(id);
    if (!file || !service.sees(c.get("principal"), file.owner)) throw fileNotFound(id);
    return file;
  };

  app.post(
    "/v1/files",
    bodyLimit({
      maxSize: service.maxFileBytes + MULTIPART_OVERHEAD_BYTES,
      onError: () => {
        throw tooLarge(service.maxFileBytes);
      },
    }),
    async (c) => {
      const principal = c.get("principal");
      if (!mayTrain(principal)) throw trainRequired();
      if (!(c.req.header("content-type") ?? "").toLowerCase().startsWith("multipart/form-data")) {
        throw apiErrors.invalidBody("Upload the file as multipart/form-data with the fields 'file' and 'purpose'.");
      }
      const body = await c.req.parseBody();
      const file = body.file;
      if (!(file instanceof File)) throw apiErrors.invalidField("file", "The field 'file' must be a file.");
      const purpose = body.purpose;
      if (typeof purpose !== "string" || !(FILE_PURPOSES as readonly string[]).includes(purpose)) {
        throw apiErrors.invalidField("purpose", `Invalid 'purpose': expected one of ${FILE_PURPOSES.join(", ")}.`);
      }
      if (file.size > service.maxFileBytes) throw tooLarge(service.maxFileBytes);
      const content = new Uint8Array(await file.arrayBuffer());
      const stored = await service.files.create(
        content,
        safeFilename(file.name),
        purpose as FilePurpose,
        principal.id ?? "admin",
        service.maxFileBytes,
      );
      return c.json(fileObject(stored));
    },
  );

  app.get("/v1/files", (c) => {
    const principal = c.get("principal");
    const purpose = c.req.query("purpose");
    const data = service.files
      .list()
      .filter((f) => service.sees(principal, f.owner) && (purpose === undefined || f.purpose === purpose))
      .reverse()
      .map(fileObject);
    return c.json({ object: "list", data, has_more: false });
  });

  app.get("/v1/files/:id", (c) => c.json(fileObject(visible(c, c.req.param("id")))));

  app.get("/v1/files/:id/content", async (c) => {
    const file = visible(c, c.req.param("id"));
    const bytes = await service.files.read(file.id);
    return c.body(new Uint8Array(bytes), 200, { "Content-Type": "application/octet-stream" });
  });

  app.delete("/v1/files/:id", async (c) => {
    const file = visible(c, c.req.param("id"));
    await service.files.delete(file.id);
    return c.json({ id: file.id, object: "file", deleted: true });
  });

  return app;
}

export function trainRequired(): KindedError {
  return new KindedError(
    "forbidden",
    "Uploading files and fine-tuning need an admin key or a key with the 'train' grant.",
    "train_grant_required",
  );
}

function fileNotFound(id: string): KindedError {
  return new KindedError("not_found", `No such file: '${id}'.`, "file_not_found", "file_id");
}

function tooLarge(limit: number): KindedError {
  return new KindedError(
    "payload_too_large",
    `The file exceeds the upload limit of ${limit} bytes (--max-file-mb).`,
    "file_too_large",
    "file",
  );
}

/** The client's file name, as a name only (no directories) and of printable characters. */
function safeFilename(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  const clean = base.replace(/[^\x20-\x7e]/g, "_").slice(0, 255);
  return clean || "upload.jsonl";
}
