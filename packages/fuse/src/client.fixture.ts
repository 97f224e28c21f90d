// Test-side FUSE client: builds request bytes the way the kernel lays them
// out and parses reply bytes, written independently of decode.ts/encode.ts
// so the tests check the codec against a second reading of fuse.h.
import { Op } from "./protocol.js";

/** A little-endian byte builder. */
export class Bytes {
  private readonly parts: number[] = [];

  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }

  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }

  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }

  u64(v: number | bigint): this {
    const big = BigInt.asUintN(64, BigInt(v));
    return this.u32(Number(big & 0xffffffffn)).u32(Number(big >> 32n));
  }

  raw(bytes: Uint8Array | readonly number[]): this {
    for (const b of bytes) this.parts.push(b);
    return this;
  }

  /** A string's UTF-8 bytes and a NUL. */
  cstr(s: string | Uint8Array): this {
    return this.raw(typeof s === "string" ? new TextEncoder().encode(s) : s).u8(0);
  }

  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.parts.push(0);
    return this;
  }

  get length(): number {
    return this.parts.length;
  }

  build(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Header fields of a request; defaults: nodeid 1, root credentials, pid 100. */
export interface RequestFields {
  readonly unique: number | bigint;
  readonly nodeid?: number | bigint;
  readonly uid?: number;
  readonly gid?: number;
  readonly pid?: number;
  /** Extension bytes (a multiple of 8) appended after the arguments. */
  readonly ext?: Uint8Array;
}

/** A complete request message: fuse_in_header, `args`, extensions. */
export function request(opcode: number, args: Bytes | Uint8Array, f: RequestFields): Uint8Array {
  const body = args instanceof Bytes ? args.build() : args;
  const ext = f.ext ?? new Uint8Array(0);
  return new Bytes()
    .u32(40 + body.length + ext.length)
    .u32(opcode)
    .u64(f.unique)
    .u64(f.nodeid ?? 1)
    .u32(f.uid ?? 0)
    .u32(f.gid ?? 0)
    .u32(f.pid ?? 100)
    .u16(ext.length / 8)
    .u16(0)
    .raw(body)
    .raw(ext)
    .build();
}

/** The kernel's INIT request as Linux 6.18 sends it (7.45, flags2 with INIT_EXT). */
export function initRequest(unique = 2, minor = 45, flags = 0x73fffffb, flags2 = 0x5fd): Uint8Array {
  return request(Op.INIT, new Bytes().u32(7).u32(minor).u32(131072).u32(flags).u32(flags2).zeros(44), { unique });
}

/** A parsed reply. */
export interface Reply {
  readonly length: number;
  readonly error: number;
  readonly unique: bigint;
  readonly body: Uint8Array;
  readonly view: DataView;
}

export function parseReply(bytes: Uint8Array): Reply {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const body = bytes.subarray(16);
  return {
    length: view.getUint32(0, true),
    error: view.getInt32(4, true),
    unique: view.getBigUint64(8, true),
    body,
    view: new DataView(body.buffer, body.byteOffset, body.byteLength),
  };
}

/** Joins a reply sink's head and data into one message, as a transport would. */
export function joinReply(head: Uint8Array, data?: Uint8Array): Uint8Array {
  if (data === undefined) return head.slice();
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
export const fromHex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ""), "hex"));
