import { ERRNO_TABLE } from "./errno-table.js";

export { ERRNO_TABLE };

/** The name of a Linux errno, such as `"ENOENT"`. The kernel's names are canonical. */
export type ErrnoName = keyof typeof ERRNO_TABLE;

/**
 * Userland spellings that share a number with a canonical name
 * (`ENOTSUP` is what Node and libuv call 95; the kernel calls it `EOPNOTSUPP`).
 */
export const ERRNO_ALIASES = Object.freeze({
  EWOULDBLOCK: "EAGAIN",
  EDEADLOCK: "EDEADLK",
  ENOTSUP: "EOPNOTSUPP",
} as const satisfies Record<string, ErrnoName>);

const nameByNumber = new Map<number, ErrnoName>();
for (const [name, [num]] of Object.entries(ERRNO_TABLE) as [ErrnoName, readonly [number, string]][]) {
  nameByNumber.set(num, name);
}

/**
 * Linux x86_64 errno numbers by name, e.g. `Errno.ENOENT === 2`.
 * Aliases (`ENOTSUP`, `EWOULDBLOCK`, `EDEADLOCK`) are included.
 */
export const Errno: Readonly<Record<ErrnoName | keyof typeof ERRNO_ALIASES, number>> = Object.freeze(
  Object.fromEntries([
    ...Object.entries(ERRNO_TABLE).map(([name, [num]]) => [name, num]),
    ...Object.entries(ERRNO_ALIASES).map(([alias, name]) => [alias, ERRNO_TABLE[name][0]]),
  ]) as Record<ErrnoName | keyof typeof ERRNO_ALIASES, number>,
);

/** The canonical name of an errno number, or `undefined` when Linux defines none. */
export function errnoName(errno: number): ErrnoName | undefined {
  return nameByNumber.get(Math.abs(errno));
}

/**
 * The canonical errno name for a name or alias (`"ENOTSUP"` → `"EOPNOTSUPP"`),
 * or `undefined` when the string is no errno name.
 */
export function canonicalErrnoName(name: string): ErrnoName | undefined {
  if (Object.hasOwn(ERRNO_TABLE, name)) return name as ErrnoName;
  return Object.hasOwn(ERRNO_ALIASES, name) ? ERRNO_ALIASES[name as keyof typeof ERRNO_ALIASES] : undefined;
}

/** The C library's message for an errno (`"No such file or directory"`). */
export function errnoMessage(name: ErrnoName): string {
  return ERRNO_TABLE[name][1];
}

const FS_ERROR_BRAND = Symbol.for("msb.FsError");

/** Where an {@link FsError} happened, all optional: whatever helps a reader find the cause. */
export interface FsErrorDetails {
  /** The operation, e.g. `"lookup"`, `"rename"`, `"openat2"`. */
  readonly op?: string;
  /** The path or name the operation was given (decoded for display). */
  readonly path?: string;
  /** The second path of a two-path operation (rename, link). */
  readonly dest?: string;
  /** The inode the operation was given. */
  readonly ino?: number;
  /** Extra words for the message, appended after the errno text. */
  readonly detail?: string;
  /** The underlying error. */
  readonly cause?: unknown;
}

/**
 * The only error a filesystem backend throws: a Linux errno with context.
 *
 * `code` is the stable errno name (`"ENOENT"`), `errno` the positive Linux
 * x86_64 number (`2`), so the FUSE layer can put `-errno` on the wire directly.
 *
 * @example
 * ```ts
 * throw new FsError("ENOENT", { op: "lookup", path: "etc/passwd" });
 * ```
 */
export class FsError extends Error {
  /** The errno name, e.g. `"ENOENT"`. */
  readonly code: ErrnoName;
  /** The positive Linux x86_64 errno number, e.g. `2`. */
  readonly errno: number;
  /** The operation that failed, if known. */
  readonly op: string | undefined;
  /** The path or name involved, if known. */
  readonly path: string | undefined;
  /** The second path of a two-path operation, if any. */
  readonly dest: string | undefined;
  /** The inode involved, if known. */
  readonly ino: number | undefined;

  /**
   * Whether new FsErrors capture a stack trace: off by default (errors are
   * part of normal filesystem traffic and a stack costs ~10x the rest), on
   * when `MSB_FS_ERROR_STACKS=1` is in the environment; settable at run time
   * to debug where an errno comes from.
   */
  static captureStacks: boolean = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.MSB_FS_ERROR_STACKS === "1";

  constructor(code: ErrnoName | number, details: FsErrorDetails = {}) {
    const name = typeof code === "number" ? errnoName(code) : canonicalErrnoName(code);
    if (name === undefined) {
      throw new TypeError(`FsError: ${String(code)} is not a Linux errno`);
    }
    // An errno is an answer (a lookup of a missing name is routine), not a
    // crash: capturing a stack is about 90% of what constructing one costs,
    // so FsErrors carry none unless FsError.captureStacks asks for them.
    const stackTraceLimit = Error.stackTraceLimit;
    if (!FsError.captureStacks) Error.stackTraceLimit = 0;
    try {
      super(formatMessage(name, details), details.cause === undefined ? undefined : { cause: details.cause });
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    this.name = "FsError";
    this.code = name;
    this.errno = ERRNO_TABLE[name][0];
    this.op = details.op;
    this.path = details.path;
    this.dest = details.dest;
    this.ino = details.ino;
  }

  /** True for any FsError, also one made by another copy of this package. */
  static isInstance(value: unknown): value is FsError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[FS_ERROR_BRAND] === true;
  }

  /**
   * Turns any thrown value into an FsError: an FsError is returned as is; a Node
   * `fs` or `@msb/native` error keeps its errno; anything else becomes `EIO`
   * with the original attached as `cause`.
   */
  static from(error: unknown, details: FsErrorDetails = {}): FsError {
    if (FsError.isInstance(error)) return error;
    const name = errnoNameOf(error);
    return new FsError(name ?? "EIO", {
      ...details,
      path: details.path ?? stringProp(error, "path"),
      dest: details.dest ?? stringProp(error, "dest"),
      op: details.op ?? stringProp(error, "syscall"),
      detail: name === undefined ? (error instanceof Error ? error.message : String(error)) : details.detail,
      cause: error,
    });
  }
}

Object.defineProperty(FsError.prototype, FS_ERROR_BRAND, { value: true });

/** Shorthand for `new FsError(code, details)`, for `throw fsError("ENOENT", ...)`. */
export function fsError(code: ErrnoName, details?: FsErrorDetails): FsError {
  return new FsError(code, details);
}

function formatMessage(name: ErrnoName, d: FsErrorDetails): string {
  let message = `${name}: ${ERRNO_TABLE[name][1]}`;
  if (d.op !== undefined) message += `, ${d.op}`;
  if (d.path !== undefined) message += ` '${d.path}'`;
  if (d.dest !== undefined) message += ` -> '${d.dest}'`;
  if (d.ino !== undefined) message += ` (inode ${d.ino})`;
  if (d.detail !== undefined) message += `: ${d.detail}`;
  return message;
}

/** The errno name of a Node-style system error (`code` string or negative `errno`). */
function errnoNameOf(error: unknown): ErrnoName | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, errno } = error as { code?: unknown; errno?: unknown };
  if (typeof code === "string") {
    const name = canonicalErrnoName(code);
    if (name !== undefined) return name;
  }
  return typeof errno === "number" ? errnoName(errno) : undefined;
}

function stringProp(value: unknown, key: string): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = (value as Record<string, unknown>)[key];
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return undefined;
}
