// Layer unpacking without root and without ever writing outside the layer directory.
//
// The bytes are decompressed here (gzip by node's zlib, zstd by libzstd
// through @msb/native, both on the threadpool) and go, as they come, to
// @msb/native's layer unpacker: libarchive parses the tar on a thread of its
// own, which makes every entry below the layer root. It refuses absolute and
// `..` names before any system call and resolves every directory from the
// root fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
// RESOLVE_NO_SYMLINKS): a symlink unpacked earlier can never be walked
// through, and the final component is created with O_EXCL | O_NOFOLLOW
// (symlinkat / linkat never follow it either).
import { pipeline, Readable, type TransformOptions } from "node:stream";
import { createGunzip, type ZlibOptions } from "node:zlib";
import { OVERRIDE_STAT_XATTR } from "@msb/fs";
import { constants as c, close, layerUnpacker, layerUnpackerEnd, layerUnpackerWrite, openat, zstdDecompressAsync, zstdDecompressor } from "@msb/native";
import { OciError } from "./errors.js";

/** How a layer blob is compressed. */
export type Compression = "gzip" | "zstd" | "none";

// libzstd output per call: bounded, so a tiny hostile frame cannot balloon one allocation.
const ZSTD_OUTPUT = 4 << 20;

/**
 * Compressed bytes handed to the threadpool per decompression call: every
 * hand-off costs two context switches (dear in a VM), and the network gives
 * 64 KiB at a time.
 */
export const HANDOFF = 1 << 20;

/** `source`'s bytes in chunks of at least `size` bytes (the last may be shorter). */
export async function* coalesce(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of source) {
    pending.push(chunk);
    bytes += chunk.length;
    if (bytes >= size) {
      yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, bytes);
      pending = [];
      bytes = 0;
    }
  }
  if (bytes > 0) yield Buffer.concat(pending, bytes);
}

/**
 * zstd decompression on the threadpool (libzstd through @msb/native), one call
 * at a time. A generator: each output waits for the consumer, so a small
 * hostile frame that expands without end is never buffered whole.
 */
async function* zstdChunks(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const handle = zstdDecompressor();
  let done = false;
  async function* decode(input: Buffer): AsyncGenerator<Buffer> {
    let rest = input;
    for (;;) {
      const result = await zstdDecompressAsync(handle, rest, ZSTD_OUTPUT);
      if (result.output.length > 0) yield result.output;
      // A call that made no progress says nothing about the frame that ended before it.
      if (result.consumed > 0 || result.output.length > 0) done = result.done;
      rest = rest.subarray(result.consumed);
      if (rest.length === 0 && result.output.length < ZSTD_OUTPUT) return;
    }
  }
  for await (const input of source) yield* decode(input);
  yield* decode(Buffer.alloc(0));
  if (!done) throw new Error("zstd stream ends inside a frame");
}

// zlib inflates on the thread pool: big output chunks and a deep buffer let it run ahead of the
// unpacker instead of waiting for it every 16 KiB (Node passes stream options through).
const GUNZIP: ZlibOptions & TransformOptions = { chunkSize: 1 << 20, highWaterMark: 8 << 20 };

/** The decompressed bytes of `source`, read ahead a little on the threadpool. */
function decompressed(source: AsyncIterable<Buffer>, compression: Compression): Readable {
  const pieces = Readable.from(coalesce(source, HANDOFF));
  if (compression === "gzip") return pipeline(pieces, createGunzip(GUNZIP), () => undefined);
  // Two outputs of up to ZSTD_OUTPUT ahead of the untar.
  if (compression === "zstd") return Readable.from(zstdChunks(pieces), { highWaterMark: 2 });
  return pieces;
}

/** Options of {@link unpackLayer}. */
export interface UnpackOptions {
  /** Shown in errors: the layer digest. */
  readonly name?: string;
}

/** What {@link layerUnpackerEnd} rejects with: a system error or one of its own codes, with the entry it is about. */
interface UnpackerFailure {
  readonly code?: string;
  readonly message?: string;
  readonly entry?: string;
  readonly linkTarget?: boolean;
}

/**
 * Unpacks a (compressed) tar stream into the existing empty directory `dir`,
 * in one pass. Guest owners, modes and device numbers go into
 * `user.msb.override_stat`; device nodes, FIFOs and sockets become empty
 * regular files; host modes keep the permission bits plus owner read/write
 * (owner rwx for directories), never set-id bits. Whiteouts (`.wh.*`) and
 * opaque markers are kept as the empty files they are in the tar. The tar is
 * read by libarchive (ustar, PAX, GNU).
 *
 * The source is read to its end even after the tar's end-of-archive blocks,
 * so a source error there (a digest mismatch thrown at the end) fails the
 * unpack.
 *
 * @throws {@link OciError} `ERR_OCI_UNSAFE_ENTRY` for an entry that would land
 *   outside `dir`; `ERR_OCI_LAYER` for a malformed layer.
 */
export async function unpackLayer(source: AsyncIterable<Buffer>, compression: Compression, dir: string, options: UnpackOptions = {}): Promise<void> {
  const layer = options.name ?? dir;
  const root = openat(c.AT_FDCWD, dir, c.O_RDONLY | c.O_DIRECTORY | c.O_NOFOLLOW);
  try {
    // Made first: once the unpacker's thread runs, nothing may throw before the try that ends it.
    const data = decompressed(source, compression)[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const unpacker = layerUnpacker(root, OVERRIDE_STAT_XATTR);
    let ended = false;
    try {
      let next = await data.next();
      while (next.done !== true && (await layerUnpackerWrite(unpacker, next.value))) next = await data.next();
      ended = true;
      await layerUnpackerEnd(unpacker, false).catch((error: unknown) => {
        throw unpackerError(error, layer);
      });
      // The tar has ended: the rest is read only for the source's own checks at its end.
      while (next.done !== true) next = await data.next();
    } catch (error) {
      // Aborted: the unpacker's own failure says only that it was stopped.
      if (!ended) await layerUnpackerEnd(unpacker, true).catch(() => undefined);
      await data.return?.();
      if (OciError.is(error)) throw error;
      throw new OciError("ERR_OCI_LAYER", layer, `cannot unpack layer: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  } finally {
    close(root);
  }
}

/** The {@link OciError} for an unpacker failure, named after its entry (else the layer). */
function unpackerError(error: unknown, layer: string): OciError {
  const failure = error as UnpackerFailure;
  const entry = failure.entry ?? layer;
  const message = failure.message ?? String(error);
  switch (failure.code) {
    case "ERR_MSB_LAYER_UNSAFE":
      return new OciError("ERR_OCI_UNSAFE_ENTRY", entry, `layer entry ${message}`, { cause: error });
    case "ERR_MSB_LAYER_REPLACES_DIR":
      return new OciError("ERR_OCI_LAYER", entry, "a non-directory entry replaces a directory of the same layer", { cause: error });
    case "ERR_MSB_LAYER_TAR":
      // The layer is malformed, not one entry: the error names the layer, the message the entry.
      return new OciError("ERR_OCI_LAYER", layer, `cannot unpack layer: ${message}${failure.entry === undefined ? "" : ` in entry '${failure.entry}'`}`, { cause: error });
    case "EXDEV":
    case "ELOOP":
      return new OciError("ERR_OCI_UNSAFE_ENTRY", entry, "layer entry goes through a symlink or outside the layer", { cause: error });
  }
  if (failure.linkTarget === true) return new OciError("ERR_OCI_LAYER", entry, "hard link target is not in the layer", { cause: error });
  return new OciError("ERR_OCI_LAYER", entry, `cannot unpack entry: ${message}`, { cause: error });
}
