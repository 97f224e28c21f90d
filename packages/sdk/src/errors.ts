/**
 * Stable codes of {@link SandboxError}. Callers switch on `code`, never on the message.
 *
 * - `ERR_MSB_SANDBOX_NOT_FOUND`: no sandbox of that name.
 * - `ERR_MSB_SANDBOX_EXISTS`: a sandbox of that name exists (and `replace` was not set).
 * - `ERR_MSB_EXEC_TIMEOUT`: an exec ran past its `timeoutMs` (it was killed).
 * - `ERR_MSB_EXEC_ABORTED`: an exec's AbortSignal fired (it was killed).
 * - `ERR_MSB_EXEC_FAILED`: the command could not start (not found, not executable, bad cwd or user); `errno` says why.
 * - `ERR_MSB_IMAGE_NOT_FOUND`: the image is neither local nor pullable.
 * - `ERR_MSB_INVALID_CONFIG`: a bad option; `input` names it.
 * - `ERR_MSB_FS_OP`: a sandbox fs operation failed in the guest; see `errno`.
 * - `ERR_MSB_PATCH_FAILED`: a patch could not be applied; `input` is its path.
 * - `ERR_MSB_VOLUME`: a volume could not be created, found or attached.
 * - `ERR_MSB_STATE`: the state database or a supervisor is unreachable or inconsistent.
 */
export type SandboxErrorCode =
  | "ERR_MSB_SANDBOX_NOT_FOUND"
  | "ERR_MSB_SANDBOX_EXISTS"
  | "ERR_MSB_EXEC_TIMEOUT"
  | "ERR_MSB_EXEC_ABORTED"
  | "ERR_MSB_EXEC_FAILED"
  | "ERR_MSB_IMAGE_NOT_FOUND"
  | "ERR_MSB_INVALID_CONFIG"
  | "ERR_MSB_FS_OP"
  | "ERR_MSB_PATCH_FAILED"
  | "ERR_MSB_VOLUME"
  | "ERR_MSB_STATE";

const BRAND = Symbol.for("@msb/sdk.SandboxError");

/**
 * The SDK's error: a stable `code`, the `input` it is about (a sandbox name,
 * a path, an option) and, for guest file operations, the errno name and number.
 *
 * @example
 * ```ts
 * try {
 *   await sandbox.fs.read("/nope");
 * } catch (error) {
 *   if (SandboxError.isInstance(error) && error.errno === "ENOENT") console.log("no such file");
 * }
 * ```
 */
export class SandboxError extends Error {
  readonly code: SandboxErrorCode;
  /** What the error is about: a sandbox name, a guest path, an option name. */
  readonly input: string;
  /** For `ERR_MSB_FS_OP`: the errno name from the guest (`ENOENT`, `EISDIR`, …). */
  readonly errno: string | undefined;
  readonly [BRAND] = true;

  constructor(code: SandboxErrorCode, input: string, message: string, options: { cause?: unknown; errno?: string } = {}) {
    super(input === "" ? message : `${message} (${input})`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SandboxError";
    this.code = code;
    this.input = input;
    this.errno = options.errno;
  }

  /** True for any SandboxError, also one made by another copy of this package. */
  static isInstance(value: unknown): value is SandboxError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}
