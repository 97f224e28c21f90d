// A strict codec for the CBOR subset of PROTOCOL.md §2. The guest is hostile,
// so decoding accepts exactly the subset: shortest-form integers and lengths,
// definite lengths, text-keyed maps without duplicate keys, no tags, no floats,
// bounded nesting. General CBOR libraries accept (and materialise) far more,
// which we would then have to police after the fact.

/** A value the protocol's CBOR subset can carry. */
export type CborValue = number | bigint | string | Uint8Array | boolean | null | readonly CborValue[] | CborMap;
/** A CBOR map with text keys, in the order they were encoded. */
export interface CborMap {
  readonly [key: string]: CborValue | undefined;
}

/** The nesting limit of PROTOCOL.md §4. */
export const MAX_CBOR_DEPTH = 16;

/** A body that is not in the protocol's CBOR subset. */
export class CborError extends Error {
  /** Always `EPROTO`, the protocol's code for a malformed body. */
  readonly code = "EPROTO";
  /** Byte offset in the body where decoding stopped. */
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} at byte ${String(offset)}`);
    this.name = "CborError";
    this.offset = offset;
  }
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  head(major: number, value: number | bigint): void {
    const m = major << 5;
    this.reserve(9);
    if (typeof value === "bigint" && value > 0xffffffffn) {
      this.buf[this.length] = m | 27;
      this.view.setBigUint64(this.length + 1, value);
      this.length += 9;
      return;
    }
    const n = Number(value);
    if (n < 24) {
      this.buf[this.length++] = m | n;
    } else if (n < 0x100) {
      this.buf[this.length] = m | 24;
      this.buf[this.length + 1] = n;
      this.length += 2;
    } else if (n < 0x10000) {
      this.buf[this.length] = m | 25;
      this.view.setUint16(this.length + 1, n);
      this.length += 3;
    } else if (n < 0x100000000) {
      this.buf[this.length] = m | 26;
      this.view.setUint32(this.length + 1, n);
      this.length += 5;
    } else {
      this.buf[this.length] = m | 27;
      this.view.setBigUint64(this.length + 1, BigInt(n));
      this.length += 9;
    }
  }

  bytes(data: Uint8Array): void {
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
  }

  simple(byte: number): void {
    this.reserve(1);
    this.buf[this.length++] = byte;
  }

  /** A text string; short ASCII ones byte by byte (a TextEncoder call and its array cost more). */
  text(value: string): void {
    const n = value.length;
    if (n <= SHORT_TEXT) {
      this.reserve(2 + n);
      const start = this.length;
      this.head(3, n);
      let i = 0;
      for (; i < n; i++) {
        const unit = value.charCodeAt(i);
        if (unit >= 0x80) break;
        this.buf[this.length + i] = unit;
      }
      if (i === n) {
        this.length += n;
        return;
      }
      this.length = start;
    }
    const utf8 = textEncoder.encode(value);
    this.head(3, utf8.length);
    this.bytes(utf8);
  }

  /** Starts over, leaving room for `prefix` bytes in front, which the caller fills. */
  reset(prefix: number): void {
    this.length = 0;
    this.reserve(prefix);
    this.length = prefix;
  }

  /** A copy of what was written; a buffer grown past `KEEP_BYTES` (a large chunk) is let go. */
  result(): Uint8Array {
    const out = this.buf.slice(0, this.length);
    if (this.buf.length > KEEP_BYTES) {
      this.buf = new Uint8Array(256);
      this.view = new DataView(this.buf.buffer);
    }
    return out;
  }
}

/** The shared writer keeps a buffer up to this size between encodings. */
const KEEP_BYTES = 64 * 1024;
/** Strings up to this many UTF-16 units take the ASCII paths of the codec. */
const SHORT_TEXT = 64;
/** One writer for every encoding: encoding runs no caller code, so calls never overlap. */
const writer = new Writer();

const MAX_U64 = 0xffffffffffffffffn;
const MIN_I64 = -0x8000000000000000n;

function encodeInto(w: Writer, value: CborValue, depth: number): void {
  if (depth > MAX_CBOR_DEPTH) throw new RangeError(`CBOR value nests deeper than ${String(MAX_CBOR_DEPTH)}`);
  if (value === null) return w.simple(0xf6);
  if (value === false) return w.simple(0xf4);
  if (value === true) return w.simple(0xf5);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new RangeError(`CBOR subset carries integers only, got ${String(value)}`);
    return value >= 0 ? w.head(0, value) : w.head(1, -1 - value);
  }
  if (typeof value === "bigint") {
    if (value > MAX_U64 || value < MIN_I64) throw new RangeError(`integer ${String(value)} is out of the 64-bit range`);
    return value >= 0n ? w.head(0, value) : w.head(1, -1n - value);
  }
  if (typeof value === "string") return w.text(value);
  if (value instanceof Uint8Array) {
    w.head(2, value.length);
    return w.bytes(value);
  }
  if (Array.isArray(value)) {
    const items = value as readonly CborValue[];
    w.head(4, items.length);
    for (const item of items) encodeInto(w, item, depth + 1);
    return;
  }
  const entries = Object.entries(value as CborMap).filter((entry): entry is [string, CborValue] => entry[1] !== undefined);
  w.head(5, entries.length);
  for (const [key, item] of entries) {
    w.text(key);
    encodeInto(w, item, depth + 1);
  }
}

/**
 * Encodes a value in the protocol's CBOR subset: shortest forms, map keys in
 * insertion order, `undefined` map values left out. With `prefix`, the
 * result starts with that many bytes for the caller to fill (a frame header).
 */
export function encodeCbor(value: CborValue, prefix = 0): Uint8Array {
  writer.reset(prefix);
  encodeInto(writer, value, 0);
  return writer.result();
}

class Reader {
  pos = 0;
  private readonly view: DataView;
  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(message: string, at = this.pos): never {
    throw new CborError(message, at);
  }

  need(n: number): void {
    if (this.pos + n > this.buf.length) this.fail("truncated CBOR");
  }

  /** Reads an item head: the major type and its argument, checked shortest. */
  head(): { major: number; info: number; arg: bigint | number; at: number } {
    const at = this.pos;
    this.need(1);
    const initial = this.buf[this.pos++] ?? 0;
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (major === 7) return { major, info, arg: info, at };
    let arg: number | bigint;
    if (info < 24) arg = info;
    else if (info === 24) {
      this.need(1);
      arg = this.buf[this.pos++] ?? 0;
      if (arg < 24) this.fail("integer not in shortest form", at);
    } else if (info === 25) {
      this.need(2);
      arg = this.view.getUint16(this.pos);
      this.pos += 2;
      if (arg < 0x100) this.fail("integer not in shortest form", at);
    } else if (info === 26) {
      this.need(4);
      arg = this.view.getUint32(this.pos);
      this.pos += 4;
      if (arg < 0x10000) this.fail("integer not in shortest form", at);
    } else if (info === 27) {
      this.need(8);
      arg = this.view.getBigUint64(this.pos);
      this.pos += 8;
      if (arg < 0x100000000n) this.fail("integer not in shortest form", at);
    } else {
      this.fail(info === 31 ? "indefinite length is not allowed" : "reserved additional information", at);
    }
    return { major, info, arg, at };
  }

  length(arg: number | bigint, at: number): number {
    if (typeof arg === "bigint" || arg > this.buf.length - this.pos) this.fail("length exceeds the body", at);
    return arg;
  }

  take(n: number): Uint8Array {
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  text(arg: number | bigint, at: number): string {
    const n = this.length(arg, at);
    if (n <= SHORT_TEXT) {
      // ASCII is valid UTF-8 as it is: no decoder call for the usual short keys and tags.
      let text = "";
      let i = 0;
      for (; i < n; i++) {
        const byte = this.buf[this.pos + i]!;
        if (byte >= 0x80) break;
        text += String.fromCharCode(byte);
      }
      if (i === n) {
        this.pos += n;
        return text;
      }
    }
    try {
      return textDecoder.decode(this.take(n));
    } catch (cause) {
      throw Object.assign(new CborError("text string is not valid UTF-8", at), { cause });
    }
  }

  value(depth: number): CborValue {
    if (depth > MAX_CBOR_DEPTH) this.fail(`nesting deeper than ${String(MAX_CBOR_DEPTH)}`);
    const { major, arg, at } = this.head();
    switch (major) {
      case 0:
        return typeof arg === "bigint" && arg > BigInt(Number.MAX_SAFE_INTEGER) ? arg : Number(arg);
      case 1: {
        const negative = -1n - BigInt(arg);
        if (negative < MIN_I64) this.fail("negative integer below -2^63", at);
        return negative < BigInt(Number.MIN_SAFE_INTEGER) ? negative : Number(negative);
      }
      case 2:
        // A copy: Buffer#slice would alias the chunk, and callers keep data.
        return new Uint8Array(this.take(this.length(arg, at)));
      case 3:
        return this.text(arg, at);
      case 4: {
        // Each item takes at least one byte, which bounds the allocation.
        const n = this.length(arg, at);
        const items: CborValue[] = [];
        for (let i = 0; i < n; i++) items.push(this.value(depth + 1));
        return items;
      }
      case 5: {
        const n = this.length(arg, at);
        // A null prototype: a hostile "__proto__" key stays a plain key.
        const map = Object.create(null) as Record<string, CborValue>;
        for (let i = 0; i < n; i++) {
          const key = this.head();
          if (key.major !== 3) this.fail("map key is not a text string", key.at);
          const name = this.text(key.arg, key.at);
          if (Object.hasOwn(map, name)) this.fail(`duplicate map key ${JSON.stringify(name)}`, key.at);
          map[name] = this.value(depth + 1);
        }
        return map;
      }
      case 6:
        return this.fail("tags are not allowed", at);
      default:
        if (arg === 20) return false;
        if (arg === 21) return true;
        if (arg === 22) return null;
        return this.fail("only false, true and null are allowed among simple values and floats", at);
    }
  }
}

/** Decodes exactly one value of the protocol's CBOR subset; trailing bytes are an error. */
export function decodeCbor(body: Uint8Array): CborValue {
  const reader = new Reader(body);
  const value = reader.value(0);
  if (reader.pos !== body.length) reader.fail("trailing bytes after the CBOR item");
  return value;
}

/** True for a decoded (or encodable) CBOR map. */
export function isCborMap(value: CborValue | undefined): value is CborMap {
  return typeof value === "object" && value !== null && !(value instanceof Uint8Array) && !Array.isArray(value);
}

function diagText(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * RFC 8949 diagnostic notation of a value, in the exact spelling the golden
 * vectors use (`{"t": "ok"}`, `h'00ff'`), so TS and Rust compare one string.
 */
export function cborDiagnostic(value: CborValue): string {
  if (value === null) return "null";
  if (typeof value === "boolean" || typeof value === "number" || typeof value === "bigint") return String(value);
  if (typeof value === "string") return diagText(value);
  if (value instanceof Uint8Array) return `h'${Buffer.from(value).toString("hex")}'`;
  if (Array.isArray(value)) return `[${(value as readonly CborValue[]).map(cborDiagnostic).join(", ")}]`;
  const entries = Object.entries(value as CborMap).filter((entry): entry is [string, CborValue] => entry[1] !== undefined);
  return `{${entries.map(([k, v]) => `${diagText(k)}: ${cborDiagnostic(v)}`).join(", ")}}`;
}
