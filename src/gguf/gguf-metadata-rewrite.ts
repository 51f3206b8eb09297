import { open, stat } from "node:fs/promises";
import { writeFileAtomically } from "../util/atomic-file.js";
import { GgufHeaderEncoder } from "./gguf-header-encoder.js";
import { readGgufFile } from "./gguf-reader.js";
import { GGUF_ALIGNMENT_KEY, GGUF_MAGIC, GGUF_VERSION, GgufError, type GgufMetadataValue } from "./gguf-types.js";

/** Bytes copied per read/write when moving the tensor data section. */
const COPY_CHUNK = 1 << 20;

/**
 * Writes `out` as `source` with its metadata replaced by `edit(metadata)`, and the tensor infos and the whole
 * tensor data section copied byte for byte (tensor offsets are relative to the data section, so a longer or
 * shorter header only moves the section, re-padded to the same alignment). For fixing a shipped model's
 * metadata without touching its weights. The alignment itself may not change. Atomic, like every GGUF write.
 */
export async function rewriteGgufMetadata(
  source: string,
  out: string,
  edit: (metadata: Array<[string, GgufMetadataValue]>) => Array<[string, GgufMetadataValue]>,
): Promise<void> {
  const file = await readGgufFile(source);
  const metadata = edit([...file.metadata.entries()]);
  const keys = new Set(metadata.map(([key]) => key));
  if (keys.size !== metadata.length) throw new GgufError("rewritten metadata has duplicate keys");
  const alignmentEntry = metadata.find(([key]) => key === GGUF_ALIGNMENT_KEY)?.[1];
  if ((alignmentEntry?.value ?? 32) !== file.alignment) throw new GgufError("rewriting metadata may not change general.alignment");

  const encoder = new GgufHeaderEncoder();
  encoder.u32(GGUF_MAGIC);
  encoder.u32(GGUF_VERSION);
  encoder.u64(file.tensors.length);
  encoder.u64(metadata.length);
  for (const [key, value] of metadata) {
    encoder.string(key);
    encoder.metadataValue(key, value);
  }
  for (const tensor of file.tensors) {
    encoder.string(tensor.name);
    encoder.u32(tensor.shape.length);
    for (const dim of tensor.shape) encoder.u64(dim);
    encoder.u32(tensor.typeId);
    encoder.u64(tensor.offset - file.dataOffset);
  }
  encoder.zeros((file.alignment - (encoder.byteLength % file.alignment)) % file.alignment);
  const header = encoder.toBuffer();

  const { size } = await stat(source);
  const input = await open(source, "r");
  try {
    await writeFileAtomically(out, async (output) => {
      await output.write(header, 0, header.length, 0);
      const buffer = Buffer.alloc(COPY_CHUNK);
      for (let from = file.dataOffset; from < size; ) {
        const { bytesRead } = await input.read(buffer, 0, Math.min(COPY_CHUNK, size - from), from);
        if (bytesRead === 0) throw new GgufError(`${source} shrank while it was copied`);
        let written = 0;
        while (written < bytesRead) {
          written += (await output.write(buffer, written, bytesRead - written, header.length + from - file.dataOffset + written))
            .bytesWritten;
        }
        from += bytesRead;
      }
    });
  } finally {
    await input.close();
  }
}
