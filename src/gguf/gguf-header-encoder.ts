import {
  GGUF_SCALAR_BYTE_SIZES,
  GGUF_VALUE_TYPE_CODES,
  GgufError,
  type GgufMetadataValue,
  type GgufScalarType,
  type GgufScalarValue,
} from "./gguf-types.js";

/** Little-endian byte builder for the GGUF header (metadata + tensor infos), which is small. */
export class GgufHeaderEncoder {
  private buffer = Buffer.alloc(4096);
  private length = 0;

  get byteLength(): number {
    return this.length;
  }

  toBuffer(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /** Grows the buffer (replacing `this.buffer`) and returns where the next `bytes` go. Call before touching the buffer. */
  private reserve(bytes: number): number {
    const needed = this.length + bytes;
    if (needed > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(needed, this.buffer.length * 2));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    const at = this.length;
    this.length = needed;
    return at;
  }

  u32(value: number): void {
    const at = this.reserve(4);
    this.buffer.writeUInt32LE(value, at);
  }

  u64(value: number | bigint): void {
    const at = this.reserve(8);
    this.buffer.writeBigUInt64LE(BigInt(value), at);
  }

  string(value: string): void {
    const bytes = Buffer.from(value, "utf8");
    this.u64(bytes.length);
    const at = this.reserve(bytes.length);
    bytes.copy(this.buffer, at);
  }

  zeros(count: number): void {
    const at = this.reserve(count);
    this.buffer.fill(0, at, this.length);
  }

  metadataValue(key: string, entry: GgufMetadataValue): void {
    if (entry.type === "array") {
      if (!Array.isArray(entry.value)) throw new GgufError(`metadata '${key}': array value must be an array`);
      if (!(entry.itemType in GGUF_VALUE_TYPE_CODES) || (entry.itemType as string) === "array") {
        throw new GgufError(`metadata '${key}': unsupported array item type '${String(entry.itemType)}'`);
      }
      this.u32(GGUF_VALUE_TYPE_CODES.array);
      this.u32(GGUF_VALUE_TYPE_CODES[entry.itemType]);
      this.u64(entry.value.length);
      for (const item of entry.value) this.scalar(key, entry.itemType, item);
      return;
    }
    if (!(entry.type in GGUF_VALUE_TYPE_CODES)) {
      throw new GgufError(`metadata '${key}': unknown value type '${String(entry.type)}'`);
    }
    this.u32(GGUF_VALUE_TYPE_CODES[entry.type]);
    this.scalar(key, entry.type, entry.value);
  }

  private scalar(key: string, type: GgufScalarType, value: GgufScalarValue): void {
    if (type === "string") {
      if (typeof value !== "string") throw new GgufError(`metadata '${key}': expected a string, got ${typeof value}`);
      this.string(value);
      return;
    }
    if (type === "bool") {
      if (typeof value !== "boolean") throw new GgufError(`metadata '${key}': expected a boolean, got ${typeof value}`);
      const at = this.reserve(1);
      this.buffer.writeUInt8(value ? 1 : 0, at);
      return;
    }
    if (type === "float32" || type === "float64") {
      if (typeof value !== "number") throw new GgufError(`metadata '${key}': expected a number, got ${typeof value}`);
      const at = this.reserve(type === "float32" ? 4 : 8);
      if (type === "float32") this.buffer.writeFloatLE(value, at);
      else this.buffer.writeDoubleLE(value, at);
      return;
    }
    this.integer(key, type, value);
  }

  private integer(key: string, type: GgufScalarType, value: GgufScalarValue): void {
    const isInteger = typeof value === "bigint" || (typeof value === "number" && Number.isSafeInteger(value));
    if (!isInteger) throw new GgufError(`metadata '${key}': ${type} needs an integer, got ${String(value)}`);
    const size = GGUF_SCALAR_BYTE_SIZES[type as keyof typeof GGUF_SCALAR_BYTE_SIZES];
    const signed = type.startsWith("int");
    const bits = BigInt(size * 8);
    const big = BigInt(value);
    const min = signed ? -(1n << (bits - 1n)) : 0n;
    const max = signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
    if (big < min || big > max) throw new GgufError(`metadata '${key}': ${String(value)} is out of range for ${type}`);
    const at = this.reserve(size);
    if (size === 8) {
      if (signed) this.buffer.writeBigInt64LE(big, at);
      else this.buffer.writeBigUInt64LE(big, at);
    } else if (signed) {
      this.buffer.writeIntLE(Number(big), at, size);
    } else {
      this.buffer.writeUIntLE(Number(big), at, size);
    }
  }
}
