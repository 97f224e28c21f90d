/**
 * Stable codes of {@link OciError}. Callers switch on `code`, never on the message.
 *
 * - `ERR_OCI_REFERENCE`: an image reference that does not parse.
 * - `ERR_OCI_INSECURE`: plain HTTP to a registry not opted in with `insecure`.
 * - `ERR_OCI_UNAUTHORIZED`: the registry refused the credentials (or there were none).
 * - `ERR_OCI_NOT_FOUND`: no such repository, tag, manifest or blob.
 * - `ERR_OCI_HTTP`: any other HTTP or network failure, after retries.
 * - `ERR_OCI_DIGEST`: content whose digest or size differs from its descriptor.
 * - `ERR_OCI_MANIFEST`: a manifest or config that is malformed or unsupported.
 * - `ERR_OCI_PLATFORM`: an index with no manifest for the requested platform.
 * - `ERR_OCI_UNSAFE_ENTRY`: a layer entry that would land outside its layer directory.
 * - `ERR_OCI_LAYER`: any other malformed layer (bad tar, unsupported compression).
 * - `ERR_OCI_LOCK`: a store lock not obtained in time.
 * - `ERR_OCI_IMAGE_NOT_FOUND`: no such image in the local store.
 * - `ERR_OCI_DOCKER_CONFIG`: Docker's `config.json` cannot be updated (not a JSON object, unwritable).
 */
export type OciErrorCode =
  | "ERR_OCI_REFERENCE"
  | "ERR_OCI_INSECURE"
  | "ERR_OCI_UNAUTHORIZED"
  | "ERR_OCI_NOT_FOUND"
  | "ERR_OCI_HTTP"
  | "ERR_OCI_DIGEST"
  | "ERR_OCI_MANIFEST"
  | "ERR_OCI_PLATFORM"
  | "ERR_OCI_UNSAFE_ENTRY"
  | "ERR_OCI_LAYER"
  | "ERR_OCI_LOCK"
  | "ERR_OCI_IMAGE_NOT_FOUND"
  | "ERR_OCI_DOCKER_CONFIG";

/** Brand shared by every copy of this package, so `OciError.is` works across bundles. */
const BRAND = Symbol.for("@msb/oci.OciError");

/**
 * The one error type of `@msb/oci`: a stable `code`, the offending `input`
 * (reference, URL, digest or entry name) and the underlying `cause`.
 */
export class OciError extends Error {
  readonly code: OciErrorCode;
  /** The input the error is about: a reference, URL, digest or layer entry name. */
  readonly input: string;
  /** HTTP status, when the error comes from a registry reply. */
  readonly status: number | undefined;
  readonly [BRAND] = true;

  constructor(code: OciErrorCode, input: string, message: string, options: { cause?: unknown; status?: number } = {}) {
    super(`${message} (${input})`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "OciError";
    this.code = code;
    this.input = input;
    this.status = options.status;
  }

  /** True for any `OciError`, including one from another copy of this package. */
  static is(value: unknown): value is OciError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}
