import type { ErrorKind } from "../errors/error-kinds.js";

/**
 * Every way an adapter file, directory or merge request can be wrong, as a stable code. Callers (HTTP layer,
 * CLI) map codes to statuses/exit codes in one place; messages name the file/tensor so users can fix it.
 */
export type LoraErrorCode =
  | "SAFETENSORS_TRUNCATED"
  | "SAFETENSORS_HEADER_TOO_LARGE"
  | "SAFETENSORS_HEADER_NOT_JSON"
  | "SAFETENSORS_BAD_ENTRY"
  | "SAFETENSORS_UNKNOWN_DTYPE"
  | "SAFETENSORS_OFFSETS_OUT_OF_RANGE"
  | "SAFETENSORS_OVERLAP"
  | "SAFETENSORS_GAP"
  | "SAFETENSORS_SIZE_MISMATCH"
  | "SAFETENSORS_NO_SUCH_TENSOR"
  | "SAFETENSORS_BAD_WRITE"
  | "ADAPTER_BAD_NAME"
  | "ADAPTER_BAD_CONFIG"
  | "ADAPTER_BAD_TENSORS"
  | "ADAPTER_EXISTS"
  | "ADAPTER_UNSUPPORTED"
  | "ADAPTER_BAD_FILE"
  | "ADAPTER_MISSING_FILE"
  | "ADAPTER_TOO_LARGE"
  | "ADAPTER_NO_BASE"
  | "MERGE_INVALID"
  | "GGUF_LORA_INVALID";

/** What a code means for whoever sent the input: most are a malformed file the user can fix. */
function defaultKind(code: LoraErrorCode): ErrorKind {
  if (code === "ADAPTER_EXISTS") return "conflict";
  if (code === "SAFETENSORS_BAD_WRITE") return "internal";
  if (code === "MERGE_INVALID") return "invalid_request";
  return "invalid_input";
}

/**
 * A malformed adapter, file or merge request; `code` is stable, `message` is for humans. `kind` (the error
 * table's) defaults from the code; a caller that knows better, such as the server failing on an adapter it
 * had already validated, passes its own.
 */
export class LoraError extends Error {
  readonly kind: ErrorKind;

  constructor(
    readonly code: LoraErrorCode,
    message: string,
    kind?: ErrorKind,
  ) {
    super(message);
    this.name = "LoraError";
    this.kind = kind ?? defaultKind(code);
  }
}
