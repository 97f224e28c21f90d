// Checks of the numbers a caller hands a backend. The guest is hostile and a
// FUSE request can carry anything, so every backend checks the same way.
import { FsError } from "./errno.js";
import type { Timespec } from "./types.js";

/** True for a byte offset or count: a safe integer, not negative. */
export const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/** True for a uid, gid or device number: an integer that fits in 32 bits unsigned. */
export const isU32 = (value: unknown): value is number =>
  Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff_ffff;

/** True for a well-formed {@link Timespec}: safe integer seconds, nanoseconds in [0, 1e9). */
export const isTimespec = (t: unknown): t is Timespec =>
  typeof t === "object" &&
  t !== null &&
  Number.isSafeInteger((t as Timespec).sec) &&
  Number.isInteger((t as Timespec).nsec) &&
  (t as Timespec).nsec >= 0 &&
  (t as Timespec).nsec < 1e9;

/** Throws `EINVAL` naming `what` unless `value` {@link isCount | is a count}. */
export function checkCount(value: unknown, what: string, op: string, ino?: number): asserts value is number {
  if (!isCount(value)) throw new FsError("EINVAL", { op, ino, detail: `${what} ${String(value)}` });
}
