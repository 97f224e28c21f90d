/**
 * Stable codes of {@link VmmError}. Callers switch on `code`, never on the message.
 *
 * - `ERR_VMM_ASSETS_MISSING`: guest kernel/initramfs not built or unreadable.
 * - `ERR_VMM_QEMU`: QEMU is missing, refused its arguments or exited early.
 * - `ERR_VMM_BOOT`: the guest did not come up (no agent within the boot timeout).
 * - `ERR_VMM_PROTOCOL`: the guest broke the agent protocol; the connection is closed.
 * - `ERR_VMM_AGENT`: the agent answered a request with an error (see `errno`, `kind`).
 * - `ERR_VMM_GONE`: the VM or its agent connection went away with the call pending.
 * - `ERR_VMM_TIMEOUT`: a step did not finish in time.
 * - `ERR_VMM_INVALID`: a bad argument from the caller.
 */
export type VmmErrorCode =
  | "ERR_VMM_ASSETS_MISSING"
  | "ERR_VMM_QEMU"
  | "ERR_VMM_BOOT"
  | "ERR_VMM_PROTOCOL"
  | "ERR_VMM_AGENT"
  | "ERR_VMM_GONE"
  | "ERR_VMM_TIMEOUT"
  | "ERR_VMM_INVALID";

/** Brand shared by every copy of this package, so `VmmError.is` works across bundles. */
const BRAND = Symbol.for("@msb/vmm.VmmError");

/** How an exec failed to start (PROTOCOL.md, exec). */
export type SpawnFailureKind = "not_found" | "permission_denied" | "bad_cwd" | "bad_user" | "invalid";

/**
 * The one error type of `@msb/vmm`: a stable `code`, the `input` it is about
 * (a path, a command, a stream), and for agent errors the guest's errno name
 * (`agentCode`, e.g. `ENOENT`), number and spawn-failure `kind`.
 */
export class VmmError extends Error {
  readonly code: VmmErrorCode;
  /** What the error is about: a path, a command, an asset, a QEMU binary. */
  readonly input: string;
  /** For `ERR_VMM_AGENT`: the agent's error code, an errno name such as `ENOENT`. */
  readonly agentCode: string | undefined;
  /** For `ERR_VMM_AGENT`: the Linux errno number, 0 when none applies. */
  readonly errno: number | undefined;
  /** For a failed exec: why it did not start. */
  readonly kind: SpawnFailureKind | undefined;
  readonly [BRAND] = true;

  constructor(
    code: VmmErrorCode,
    input: string,
    message: string,
    options: { cause?: unknown; agentCode?: string; errno?: number; kind?: SpawnFailureKind } = {},
  ) {
    super(input === "" ? message : `${message} (${input})`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "VmmError";
    this.code = code;
    this.input = input;
    this.agentCode = options.agentCode;
    this.errno = options.errno;
    this.kind = options.kind;
  }

  /** True for any `VmmError`, including one from another copy of this package. */
  static is(value: unknown): value is VmmError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}
