const FUSE_ERROR_BRAND = Symbol.for("msb.FuseError");

/** The stable codes of a {@link FuseError}. */
export type FuseErrorCode =
  /** `/dev/fuse` is missing or cannot be opened. */
  | "ERR_FUSE_DEVICE"
  /** The mountpoint is missing, not responding, or cannot be mounted on. */
  | "ERR_FUSE_MOUNT"
  /** The kernel and the server did not agree in INIT. */
  | "ERR_FUSE_INIT";

/**
 * An error of the FUSE transports (mounting, INIT). Requests never raise
 * one: they are answered with an errno.
 */
export class FuseError extends Error {
  /** A stable code to test against. */
  readonly code: FuseErrorCode;
  /** The mountpoint or device concerned, when there is one. */
  readonly path: string | undefined;

  constructor(code: FuseErrorCode, message: string, options: { path?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FuseError";
    this.code = code;
    this.path = options.path;
  }

  /** True for any FuseError, also one made by another copy of this package. */
  static isInstance(value: unknown): value is FuseError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[FUSE_ERROR_BRAND] === true;
  }
}

Object.defineProperty(FuseError.prototype, FUSE_ERROR_BRAND, { value: true });
