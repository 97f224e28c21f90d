// Framing of PROTOCOL.md §1: [u32 len][u32 id][u8 flags] + CBOR body.
import { decodeCbor, encodeCbor, type CborValue } from "./cbor.js";

/** The largest body a frame may carry (PROTOCOL.md §4). */
export const MAX_BODY = 4 * 1024 * 1024;
/** The largest data chunk in one `data`, `stdout`, `stderr` or `stdin` message. */
export const MAX_CHUNK = 3 * 1024 * 1024;
/** Bytes of `len` + `id` + `flags`. */
export const FRAME_HEADER = 9;

/** Frame flag: the sender sends nothing more on this stream id. */
export const FLAG_END = 0x01;
/** Frame flag (host → guest): abandon the stream. */
export const FLAG_CANCEL = 0x02;
const KNOWN_FLAGS = FLAG_END | FLAG_CANCEL;

/** One frame: a stream id, flags and its decoded body (`undefined` for an empty body). */
export interface Frame {
  readonly id: number;
  readonly flags: number;
  readonly body: CborValue | undefined;
}

/** A violation of the framing: the connection cannot be trusted past it. */
export class FrameError extends Error {
  /** Always `EPROTO`. */
  readonly code = "EPROTO";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FrameError";
  }
}

/** Encodes one frame; an `undefined` body makes an empty body (CANCEL only). */
export function encodeFrame(id: number, flags: number, body: CborValue | undefined): Uint8Array {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw new RangeError(`stream id ${String(id)} is not a u32`);
  // The body is encoded behind room for the header: one array per frame.
  const out = body === undefined ? new Uint8Array(FRAME_HEADER) : encodeCbor(body, FRAME_HEADER);
  const bodyLength = out.length - FRAME_HEADER;
  if (bodyLength > MAX_BODY) throw new RangeError(`frame body of ${String(bodyLength)} bytes exceeds ${String(MAX_BODY)}`);
  const view = new DataView(out.buffer, out.byteOffset, FRAME_HEADER);
  view.setUint32(0, 5 + bodyLength, true);
  view.setUint32(4, id, true);
  out[8] = flags;
  return out;
}

/**
 * Reassembles frames from a byte stream. `push` returns every frame completed
 * by the chunk; a length beyond the limit or reserved flags throw FrameError.
 */
export class FrameReader {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  push(chunk: Uint8Array): Frame[] {
    if (chunk.length === 0) return [];
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const frames: Frame[] = [];
    while (this.pendingBytes >= 4) {
      const len = this.peekLength();
      if (len < 5 || len > 5 + MAX_BODY) throw new FrameError(`frame length ${String(len)} is outside 5..${String(5 + MAX_BODY)}`);
      if (this.pendingBytes < 4 + len) break;
      const bytes = this.take(4 + len);
      frames.push(decodeFrame(bytes));
    }
    return frames;
  }

  /** Bytes received that do not complete a frame yet. */
  get buffered(): number {
    return this.pendingBytes;
  }

  private peekLength(): number {
    const first = this.pending[0];
    if (first !== undefined && first.length >= 4) return new DataView(first.buffer, first.byteOffset, 4).getUint32(0, true);
    const head = this.take(4, false);
    return new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
  }

  /** The first `n` buffered bytes, removed unless `consume` is false. */
  private take(n: number, consume = true): Uint8Array {
    const first = this.pending[0];
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (consume) {
        if (first.length === n) this.pending.shift();
        else this.pending[0] = first.subarray(n);
        this.pendingBytes -= n;
      }
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    let index = 0;
    while (filled < n) {
      const part = this.pending[index] ?? new Uint8Array(0);
      const used = Math.min(part.length, n - filled);
      out.set(part.subarray(0, used), filled);
      filled += used;
      if (!consume) {
        index++;
        continue;
      }
      if (used === part.length) this.pending.shift();
      else this.pending[0] = part.subarray(used);
    }
    if (consume) this.pendingBytes -= n;
    return out;
  }
}

/** Decodes one complete frame (header and body). */
export function decodeFrame(bytes: Uint8Array): Frame {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = view.getUint32(0, true);
  if (len + 4 !== bytes.length) throw new FrameError(`frame length ${String(len)} does not match ${String(bytes.length - 4)} bytes`);
  const id = view.getUint32(4, true);
  const flags = bytes[8] ?? 0;
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new FrameError(`frame on stream ${String(id)} has reserved flags 0x${flags.toString(16)}`);
  const payload = bytes.subarray(FRAME_HEADER);
  return { id, flags, body: payload.length === 0 ? undefined : decodeCbor(payload) };
}
