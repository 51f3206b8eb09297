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
  | "MERGE_INVALID"
  | "GGUF_LORA_INVALID";

/** A malformed adapter, file or merge request; `code` is stable, `message` is for humans. */
export class LoraError extends Error {
  constructor(
    readonly code: LoraErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "LoraError";
  }
}
