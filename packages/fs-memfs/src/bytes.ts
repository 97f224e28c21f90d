// Byte buffers handed to callers, and names kept as strings.

const SLAB_SIZE = 128 * 1024;
/** Results up to this size come from a slab; larger ones get their own buffer. */
const SLAB_MAX = 16 * 1024;

/**
 * Hands out new byte arrays that the caller owns and must fill completely.
 *
 * Allocating a small Uint8Array costs far more than copying into it (each
 * has its own ArrayBuffer), so small ones are carved from a shared slab, as
 * Node's Buffer pool does: each range is handed out once, and a slab lives as
 * long as any range of it. A range's `.buffer` shows the whole slab, so each
 * filesystem has its own and slabs start zeroed: nothing but zeros and that
 * filesystem's own earlier results is ever behind a range. Large arrays get
 * their own buffer, not zeroed first, since the caller fills it anyway.
 */
export class ByteSlab {
  #slab: Uint8Array | undefined;
  #used = SLAB_SIZE;

  take(length: number): Uint8Array {
    if (length > SLAB_MAX) {
      const buffer = Buffer.allocUnsafeSlow(length);
      // A plain Uint8Array view: callers get Uint8Array semantics (slice copies), not Buffer's.
      return new Uint8Array(buffer.buffer, buffer.byteOffset, length);
    }
    if (this.#used + length > SLAB_SIZE) {
      this.#slab = new Uint8Array(SLAB_SIZE);
      this.#used = 0;
    }
    const bytes = this.#slab!.subarray(this.#used, this.#used + length);
    this.#used += (length + 7) & ~7;
    return bytes;
  }

  /** The bytes of a key made by {@link bytesKey}, in a new array the caller owns. */
  keyBytes(key: string): Uint8Array {
    const bytes = this.take(key.length);
    for (let i = 0; i < key.length; i++) bytes[i] = key.charCodeAt(i);
    return bytes;
  }
}

/** Longest run of bytes passed to `String.fromCharCode` at once (its argument count is limited). */
const CHUNK = 8192;

/**
 * A string with one char (0–255) per byte: any bytes, valid UTF-8 or not,
 * give a distinct key, and the string is the compact way V8 keeps a name.
 */
export function bytesKey(bytes: Uint8Array): string {
  if (bytes.length <= CHUNK) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  let key = "";
  for (let at = 0; at < bytes.length; at += CHUNK) {
    key += String.fromCharCode.apply(null, bytes.subarray(at, at + CHUNK) as unknown as number[]);
  }
  return key;
}
