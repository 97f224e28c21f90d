import { FOPEN, type CachePolicy } from "@msb/fs";
import type { Timeouts } from "./encode.js";

/** What a {@link CachePolicy} means on the wire. */
export interface CacheSettings {
  readonly timeouts: Timeouts;
  /** Seconds the kernel may remember that a name does not exist; 0 answers ENOENT plainly. */
  readonly negativeTimeout: number;
  /** FOPEN_* flags for files and directories when the backend gives none. */
  readonly fileFlags: number;
  readonly dirFlags: number;
}

const DAY = 86_400;

const SETTINGS: Readonly<Record<CachePolicy, CacheSettings>> = {
  // Every read and write goes to the backend; nothing is remembered.
  never: { timeouts: { entry: 0, attr: 0 }, negativeTimeout: 0, fileFlags: FOPEN.DIRECT_IO, dirFlags: 0 },
  // The page cache is used but revalidated on open; names and attributes for a second.
  auto: { timeouts: { entry: 1, attr: 1 }, negativeTimeout: 1, fileFlags: 0, dirFlags: 0 },
  // Only this mount changes the files: keep data and listings across opens, for a day.
  always: {
    timeouts: { entry: DAY, attr: DAY },
    negativeTimeout: DAY,
    fileFlags: FOPEN.KEEP_CACHE,
    dirFlags: FOPEN.KEEP_CACHE | FOPEN.CACHE_DIR,
  },
};

/** The wire settings of a cache policy (`auto` when absent or unknown). */
export function cacheSettings(policy: CachePolicy | undefined): CacheSettings {
  return SETTINGS[policy === "never" || policy === "always" ? policy : "auto"];
}
