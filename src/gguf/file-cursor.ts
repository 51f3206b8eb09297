import type { FileHandle } from "node:fs/promises";
import { GgufError } from "./gguf-types.js";

const READ_AHEAD_BYTES = 1 << 20;

/**
 * Sequential little-endian reads over a file through a read-ahead buffer, so parsing a header with
 * hundreds of thousands of small values does not cost a syscall each. Every read is checked against
 * the file size first: a corrupt length fails as "truncated" instead of allocating gigabytes.
 */
export class FileCursor {
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;
  position = 0;

  constructor(
    private readonly file: FileHandle,
    readonly fileSize: number,
    readonly source: string,
  ) {}

  get remaining(): number {
    return this.fileSize - this.position;
  }

  // Callers must read `this.buffer` only after awaiting take(): take() may replace the buffer.

  /** Makes [position, position + bytes) available in the buffer; returns its offset there. */
  private async take(bytes: number, what: string): Promise<number> {
    if (bytes > this.remaining) {
      throw new GgufError(
        `${this.source}: truncated file: ${what} needs ${bytes} bytes at offset ${this.position}, ` + `only ${this.remaining} left`,
      );
    }
    const bufferEnd = this.bufferStart + this.buffer.length;
    if (this.position < this.bufferStart || this.position + bytes > bufferEnd) {
      const size = Math.min(Math.max(bytes, READ_AHEAD_BYTES), this.remaining);
      const next = Buffer.alloc(size);
      let filled = 0;
      while (filled < size) {
        const { bytesRead } = await this.file.read(next, filled, size - filled, this.position + filled);
        if (bytesRead === 0) throw new GgufError(`${this.source}: file shrank while being read`);
        filled += bytesRead;
      }
      this.buffer = next;
      this.bufferStart = this.position;
    }
    const at = this.position - this.bufferStart;
    this.position += bytes;
    return at;
  }

  async u8(what: string): Promise<number> {
    const at = await this.take(1, what);
    return this.buffer.readUInt8(at);
  }
  async i8(what: string): Promise<number> {
    const at = await this.take(1, what);
    return this.buffer.readInt8(at);
  }
  async u16(what: string): Promise<number> {
    const at = await this.take(2, what);
    return this.buffer.readUInt16LE(at);
  }
  async i16(what: string): Promise<number> {
    const at = await this.take(2, what);
    return this.buffer.readInt16LE(at);
  }
  async u32(what: string): Promise<number> {
    const at = await this.take(4, what);
    return this.buffer.readUInt32LE(at);
  }
  async i32(what: string): Promise<number> {
    const at = await this.take(4, what);
    return this.buffer.readInt32LE(at);
  }
  async u64(what: string): Promise<bigint> {
    const at = await this.take(8, what);
    return this.buffer.readBigUInt64LE(at);
  }
  async i64(what: string): Promise<bigint> {
    const at = await this.take(8, what);
    return this.buffer.readBigInt64LE(at);
  }
  async f32(what: string): Promise<number> {
    const at = await this.take(4, what);
    return this.buffer.readFloatLE(at);
  }
  async f64(what: string): Promise<number> {
    const at = await this.take(8, what);
    return this.buffer.readDoubleLE(at);
  }

  /** A u64 that must fit in a JS number and not exceed `limit` (callers derive limits from the bytes left). */
  async count(what: string, limit: number): Promise<number> {
    const value = await this.u64(what);
    if (value > BigInt(limit)) {
      throw new GgufError(`${this.source}: implausible ${what} ${value} at offset ${this.position - 8} (limit ${limit})`);
    }
    return Number(value);
  }

  async bytes(length: number, what: string): Promise<Buffer> {
    const at = await this.take(length, what);
    return this.buffer.subarray(at, at + length);
  }
}
