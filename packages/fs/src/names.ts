import { NAME_MAX } from "./constants.js";
import { FsError, type ErrnoName } from "./errno.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** The UTF-8 bytes of a name or path given as a string; bytes are returned as is. */
export function toBytes(name: string | Uint8Array): Uint8Array {
  return typeof name === "string" ? encoder.encode(name) : name;
}

/**
 * A name's bytes as text for display; invalid UTF-8 becomes U+FFFD, so use
 * the bytes, not this string, to address the entry again.
 */
export function bytesToString(name: Uint8Array): string {
  return decoder.decode(name);
}

/** True when two byte strings are equal. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when `bytes` starts with `prefix`. */
export function bytesStartWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

const DOT = 0x2e;
const SLASH = 0x2f;

/** True for the names `.` and `..`. */
export function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === DOT) || (name.length === 2 && name[0] === DOT && name[1] === DOT);
}

/**
 * Checks that `name` can be one directory entry, as the kernel would before
 * asking a filesystem: not empty, no `/` or NUL, at most {@link NAME_MAX} bytes
 * (`ENAMETOOLONG`), not `.` or `..` (`EINVAL` unless `allowDots`).
 * Throws {@link FsError}; returns the name for chaining.
 */
export function validateName(name: Uint8Array, op: string, allowDots = false): Uint8Array {
  if (name.length === 0) throw new FsError("ENOENT", { op, path: "", detail: "empty name" });
  if (name.length > NAME_MAX) {
    throw new FsError("ENAMETOOLONG", { op, path: bytesToString(name.subarray(0, 32)) + "…" });
  }
  for (const byte of name) {
    if (byte === SLASH || byte === 0) {
      throw new FsError("EINVAL", { op, path: bytesToString(name), detail: "a name holds no '/' or NUL byte" });
    }
  }
  if (!allowDots && isDotOrDotDot(name)) {
    throw new FsError("EINVAL", { op, path: bytesToString(name), detail: "'.' and '..' are not entry names" });
  }
  return name;
}

/** The components of a path, split on `/`, without empty ones (`"/a//b/"` → `a`, `b`). */
export function splitPath(path: string | Uint8Array): Uint8Array[] {
  const bytes = toBytes(path);
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === SLASH) {
      if (i > start) parts.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}

/** Joins path components with `/` (bytes in, bytes out). */
export function joinPath(...parts: readonly Uint8Array[]): Uint8Array {
  let length = Math.max(parts.length - 1, 0);
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  parts.forEach((p, i) => {
    if (i > 0) out[at++] = SLASH;
    out.set(p, at);
    at += p.length;
  });
  return out;
}

/**
 * Checks a name a caller gives for an entry to create or remove: bytes
 * (`EINVAL` otherwise), valid as {@link validateName} says, and not `.` or
 * `..`, which answer `dotErrno` (Linux's answer differs per operation:
 * `EEXIST` for mkdir, `EINVAL` or `ENOTEMPTY` for rmdir, `EISDIR` for unlink, ...).
 */
export function validateEntryName(name: unknown, op: string, dotErrno: ErrnoName, ino?: number): asserts name is Uint8Array {
  if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name is not bytes" });
  validateName(name, op, true);
  if (isDotOrDotDot(name)) throw new FsError(dotErrno, { op, ino, path: bytesToString(name) });
}
