import { parseBytes, type CachePolicy } from "@msb/fs";

/** Options of {@link MemFs}. Every limit is optional; without one MemFs is bounded only by the host's memory. */
export interface MemFsOptions {
  /**
   * Bytes the filesystem may hold, as a number or a string such as `"64MiB"`,
   * `"512k"` or `"1G"` (units are binary: k = 1024). Counted: allocated file
   * data, names, symlink targets, xattrs and a fixed cost per inode (see the
   * README). Exceeding it answers `ENOSPC`. Default: unlimited.
   */
  readonly capacity?: number | string;
  /** Inodes that may exist at once, the root included; more answer `ENOSPC`. Default: unlimited. */
  readonly maxInodes?: number;
  /** Largest file size in bytes; writing, truncating or allocating past it answers `EFBIG`. Default: `Number.MAX_SAFE_INTEGER`. */
  readonly maxFileSize?: number;
  /** How much the kernel may cache. Default `always`: nothing but this filesystem object changes its files. */
  readonly cache?: CachePolicy;
  /** Permission bits of the root directory. Default `0o755`. */
  readonly rootMode?: number;
  /** Owner of the root directory. Default `0`. */
  readonly rootUid?: number;
  /** Group of the root directory. Default `0`. */
  readonly rootGid?: number;
}

/** {@link MemFsOptions} checked and with every default filled in. */
export interface MemFsLimits {
  readonly capacity: number;
  readonly maxInodes: number;
  readonly maxFileSize: number;
  readonly cache: CachePolicy;
  readonly rootMode: number;
  readonly rootUid: number;
  readonly rootGid: number;
}

const KNOWN = new Set(["capacity", "maxInodes", "maxFileSize", "cache", "rootMode", "rootUid", "rootGid"]);
const ID_MAX = 0xffff_ffff;

function fail(name: string, value: unknown, expected: string): never {
  throw new TypeError(`MemFs: option ${name} must be ${expected}, got ${typeof value === "string" ? JSON.stringify(value) : String(value)}`);
}

/** A count that may be `Infinity` (unlimited) or an integer of at least `min`. */
function limit(name: string, value: unknown, min: number): number {
  if (value === undefined) return Infinity;
  if (value === Infinity || (Number.isSafeInteger(value) && (value as number) >= min)) return value as number;
  return fail(name, value, `an integer >= ${min} or Infinity`);
}

function integer(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= max) return value as number;
  return fail(name, value, `an integer from 0 to ${max}`);
}

/** Checks `options` and fills in the defaults; a bad option is a `TypeError` naming it. */
export function resolveOptions(options: MemFsOptions | undefined): MemFsLimits {
  if (options === undefined) options = {};
  if (typeof options !== "object" || options === null) throw new TypeError(`MemFs: options must be an object, got ${String(options)}`);
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new TypeError(`MemFs: unknown option ${JSON.stringify(key)} (known: ${[...KNOWN].join(", ")})`);
  }
  const { capacity, cache = "always" } = options;
  if (cache !== "never" && cache !== "auto" && cache !== "always") fail("cache", cache, `"never", "auto" or "always"`);
  const bytes = typeof capacity === "string" ? (parseBytes(capacity) ?? fail("capacity", capacity, "a byte count such as 65536 or \"64MiB\"")) : capacity;
  return {
    capacity: limit("capacity", bytes, 0),
    maxInodes: limit("maxInodes", options.maxInodes, 1),
    maxFileSize: integer("maxFileSize", options.maxFileSize, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
    cache,
    rootMode: integer("rootMode", options.rootMode, 0o755, 0o7777),
    rootUid: integer("rootUid", options.rootUid, 0, ID_MAX),
    rootGid: integer("rootGid", options.rootGid, 0, ID_MAX),
  };
}
