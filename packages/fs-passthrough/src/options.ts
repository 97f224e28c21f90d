import { parseBytes, type CachePolicy } from "@msb/fs";

/** Options of {@link PassthroughFs}. */
export interface PassthroughFsOptions {
  /**
   * The host directory served as the root. It must exist and be a directory;
   * a relative path is taken from the current directory, and symlinks in it
   * are followed once, here (never again inside it).
   */
  readonly rootDir: string;
  /**
   * Bytes of allocated space (host `st_blocks` × 512) the tree under `rootDir`
   * may use, as a number or a string such as `"10GiB"` (units are binary);
   * writes, `fallocate` and new names beyond it answer `ENOSPC` (see the
   * README for the accounting). Default: no limit but the host's.
   */
  readonly quota?: number | string;
  /** Serve the tree read-only: every modifying call answers `EROFS`. Default `false`. */
  readonly readOnly?: boolean;
  /** How much the kernel may cache. Default `auto`: other host processes may change the tree. */
  readonly cache?: CachePolicy;
  /** Receives one line per anomaly worth knowing (a corrupt override xattr, ...). Default: discard. */
  readonly logger?: (message: string) => void;
}

/** {@link PassthroughFsOptions} checked, with defaults filled in. */
export interface ResolvedOptions {
  readonly rootDir: string;
  readonly quota: number;
  readonly readOnly: boolean;
  readonly cache: CachePolicy;
  readonly logger: (message: string) => void;
}

const KNOWN = new Set(["rootDir", "quota", "readOnly", "cache", "logger"]);

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : typeof value === "function" ? "a function" : String(value);
}

function fail(name: string, value: unknown, expected: string): never {
  throw new TypeError(`PassthroughFs: option ${name} must be ${expected}, got ${describe(value)}`);
}

/** Checks `options` and fills in the defaults; a bad option is a `TypeError` naming it. */
export function resolveOptions(options: PassthroughFsOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) throw new TypeError(`PassthroughFs: options must be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new TypeError(`PassthroughFs: unknown option ${JSON.stringify(key)} (known: ${[...KNOWN].join(", ")})`);
  }
  const { rootDir, readOnly = false, cache = "auto", logger = () => {} } = options;
  if (typeof rootDir !== "string" || rootDir.length === 0 || rootDir.includes("\0")) fail("rootDir", rootDir, "a non-empty path without NUL bytes");
  const expected = 'a byte count such as 1073741824 or "1GiB"';
  const quota = typeof options.quota === "string" ? (parseBytes(options.quota) ?? fail("quota", options.quota, expected)) : (options.quota ?? Infinity);
  if (quota !== Infinity && !(Number.isSafeInteger(quota) && quota >= 0)) fail("quota", quota, expected);
  if (typeof readOnly !== "boolean") fail("readOnly", readOnly, "a boolean");
  if (cache !== "never" && cache !== "auto" && cache !== "always") fail("cache", cache, `"never", "auto" or "always"`);
  if (typeof logger !== "function") fail("logger", logger, "a function");
  return { rootDir, quota, readOnly, cache, logger };
}
