// Content digests: only sha256, the one every registry speaks.
import { createHash } from "node:crypto";
import { OciError } from "./errors.js";

/** A content descriptor: what a manifest says a blob is. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

const SHA256 = /^sha256:([a-f0-9]{64})$/;

/** The hex part of a `sha256:` digest. @throws {@link OciError} `ERR_OCI_DIGEST` for any other form. */
export function digestHex(digest: string): string {
  const match = SHA256.exec(digest);
  if (match === null) throw new OciError("ERR_OCI_DIGEST", digest, "unsupported digest (only sha256:<64 lowercase hex>)");
  return match[1]!;
}

/** `sha256:<hex>` of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Checks `bytes` against a descriptor's size and digest. @throws {@link OciError} `ERR_OCI_DIGEST`. */
export function verifyBytes(bytes: Uint8Array, desc: Pick<Descriptor, "digest" | "size">): void {
  if (bytes.length !== desc.size) throw new OciError("ERR_OCI_DIGEST", desc.digest, `size ${bytes.length}, descriptor says ${desc.size}`);
  const actual = sha256Digest(bytes);
  if (actual !== desc.digest) throw new OciError("ERR_OCI_DIGEST", desc.digest, `content hashes to ${actual}`);
}

/**
 * Passes chunks through while hashing and counting them; throws
 * `ERR_OCI_DIGEST` as soon as the size is exceeded and at the end when the
 * size or digest differ, so a consumer never sees a successful end of a bad blob.
 */
export async function* verifyingChunks(source: AsyncIterable<Buffer>, desc: Pick<Descriptor, "digest" | "size">): AsyncGenerator<Buffer> {
  digestHex(desc.digest);
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > desc.size) throw new OciError("ERR_OCI_DIGEST", desc.digest, `more than the ${desc.size} bytes the descriptor says`);
    hash.update(chunk);
    yield chunk;
  }
  if (size !== desc.size) throw new OciError("ERR_OCI_DIGEST", desc.digest, `size ${size}, descriptor says ${desc.size}`);
  const actual = `sha256:${hash.digest("hex")}`;
  if (actual !== desc.digest) throw new OciError("ERR_OCI_DIGEST", desc.digest, `content hashes to ${actual}`);
}
