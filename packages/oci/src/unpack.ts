// Layer unpacking without root and without ever writing outside the layer directory.
//
// `..` and absolute names are refused here before any system call; the
// entries then go in batches to @msb/native's layer writer, which makes the
// system calls on the threadpool (this thread meanwhile decompresses and
// parses on) through directory fds opened from the layer root with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS): a
// symlink unpacked earlier can never be walked through, and the final
// component is created with O_EXCL | O_NOFOLLOW (symlinkat / linkat never
// follow it either).
import { fchmodSync } from "node:fs";
import { once } from "node:events";
import { pipeline, Readable, type TransformOptions } from "node:stream";
import { createGunzip, type ZlibOptions } from "node:zlib";
import { encodeOverrideStat, makedev, OVERRIDE_STAT_XATTR } from "@msb/fs";
import {
  constants as c,
  close,
  fsetxattr,
  LAYER_OPS,
  layerWriter,
  layerWriterApply,
  layerWriterClose,
  openat,
  zstdDecompressAsync,
  zstdDecompressor,
  type LayerWriter as NativeLayerWriter,
} from "@msb/native";
import { extract as tarExtract, type Header } from "tar-stream";
import { OciError } from "./errors.js";

/** How a layer blob is compressed. */
export type Compression = "gzip" | "zstd" | "none";

/** The raw value bytes of a PAX header's `SCHILY.xattr.*` records, by xattr name. */
const PAX_XATTRS = Symbol("msb.paxXattrs");

/** PAX records as tar-stream decodes them (values as UTF-8), with the raw xattr values beside them. */
type PaxRecords = Record<string, string> & { [PAX_XATTRS]?: ReadonlyMap<string, Buffer> };

/** A tar header as tar-stream decodes it, PAX records included. */
type TarHeader = Header & { readonly pax?: PaxRecords | null };

/** An entry's data: read it fully, or resume() to skip it. */
type EntryBody = AsyncIterable<Buffer> & { resume(): unknown };

const SLASH = 0x2f;
const DOT = 0x2e;
const SLASH_BYTE = Buffer.from("/");

const TYPE_BITS: Readonly<Record<string, number>> = {
  file: c.S_IFREG,
  "contiguous-file": c.S_IFREG,
  directory: c.S_IFDIR,
  "character-device": c.S_IFCHR,
  "block-device": c.S_IFBLK,
  fifo: c.S_IFIFO,
};

const SPACE = 0x20;
const EQUALS = 0x3d;

/**
 * The `SCHILY.xattr.*` records of a PAX header block, values as raw bytes
 * ("LEN key=value\n" records; parsing stops at the first malformed one, as
 * tar-stream's does).
 */
export function paxXattrs(records: Buffer): Map<string, Buffer> {
  const xattrs = new Map<string, Buffer>();
  for (let off = 0; off < records.length; ) {
    const space = records.indexOf(SPACE, off);
    const length = space === -1 ? NaN : Number(records.toString("latin1", off, space));
    if (!Number.isSafeInteger(length) || length <= space - off + 1 || off + length > records.length) break;
    const record = records.subarray(space + 1, off + length - 1);
    const equals = record.indexOf(EQUALS);
    if (equals === -1) break;
    const key = record.toString("utf8", 0, equals);
    if (key.startsWith(XATTR_PREFIX)) xattrs.set(key.slice(XATTR_PREFIX.length), Buffer.from(record.subarray(equals + 1)));
    off += length;
  }
  return xattrs;
}

/** The parts of tar-stream's extractor (3.x, pinned) that PAX headers pass through. */
interface ExtractInternals {
  _decodeLongHeader?: (buf: Buffer) => void;
  _header: { type: string } | null;
  _pax: PaxRecords | null;
  _paxGlobal: PaxRecords | null;
}

/**
 * Makes `extract` keep the raw bytes of PAX xattr values: tar-stream decodes
 * every PAX value as UTF-8, which mangles binary ones (capabilities, ACLs).
 * It hands each PAX header block to `_decodeLongHeader`; the raw records are
 * read there too and kept beside the decoded ones, a global header's under
 * each later local one's.
 */
function keepRawPaxXattrs(extract: object): void {
  const internals = extract as ExtractInternals;
  const decode = internals._decodeLongHeader;
  if (typeof decode !== "function") throw new Error("tar-stream no longer decodes PAX headers in _decodeLongHeader: PAX xattr values cannot be read raw");
  internals._decodeLongHeader = (buf: Buffer): void => {
    decode.call(internals, buf);
    const type = internals._header?.type;
    if (type === "pax-header" && internals._pax !== null) {
      internals._pax[PAX_XATTRS] = new Map([...(internals._paxGlobal?.[PAX_XATTRS] ?? []), ...paxXattrs(buf)]);
    } else if (type === "pax-global-header" && internals._paxGlobal !== null) {
      internals._paxGlobal[PAX_XATTRS] = paxXattrs(buf);
    }
  };
}

// PAX xattr namespaces, as PassthroughFs maps them to the host (DESIGN §3).
// `user.msb.*` is msb's own metadata and never taken from an image.
const XATTR_PREFIX = "SCHILY.xattr.";
function hostXattrName(name: string): string | undefined {
  if (name.startsWith("user.msb.")) return undefined;
  if (name.startsWith("user.")) return name;
  if (name.startsWith("trusted.") || name.startsWith("security.")) return `user.msb.${name}`;
  return undefined;
}

function unsafeEntry(name: string, why: string): OciError {
  return new OciError("ERR_OCI_UNSAFE_ENTRY", name, `layer entry ${why}`);
}

function unsafe(name: string, why: string): never {
  throw unsafeEntry(name, why);
}

/** Splits an entry name into components, refusing absolute names and `..`. */
export function entryComponents(raw: Buffer, display: string): Buffer[] {
  if (raw.length > 0 && raw[0] === SLASH) unsafe(display, "has an absolute path");
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= raw.length; i++) {
    if (i < raw.length && raw[i] !== SLASH) continue;
    const part = raw.subarray(start, i);
    start = i + 1;
    if (part.length === 0 || (part.length === 1 && part[0] === DOT)) continue;
    if (part.length === 2 && part[0] === DOT && part[1] === DOT) unsafe(display, "has a '..' component");
    parts.push(part);
  }
  return parts;
}

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
// untar on the main thread instead of waiting for it every 16 KiB (Node passes stream options through).
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

/**
 * Unpacks a (compressed) tar stream into the existing empty directory `dir`,
 * in one pass. Guest owners, modes and device numbers go into
 * `user.msb.override_stat`; device nodes, FIFOs and sockets become empty
 * regular files; host modes keep the permission bits plus owner read/write
 * (owner rwx for directories), never set-id bits. Whiteouts (`.wh.*`) and
 * opaque markers are kept as the empty files they are in the tar.
 *
 * A source error (e.g. a digest mismatch thrown at the end) fails the unpack.
 *
 * @throws {@link OciError} `ERR_OCI_UNSAFE_ENTRY` for an entry that would land
 *   outside `dir`; `ERR_OCI_LAYER` for a malformed layer.
 */
export async function unpackLayer(source: AsyncIterable<Buffer>, compression: Compression, dir: string, options: UnpackOptions = {}): Promise<void> {
  const layer = options.name ?? dir;
  // tar-stream's options type omits the encoding it honours: names stay raw bytes this way.
  const extract = tarExtract({ filenameEncoding: "latin1" } as Parameters<typeof tarExtract>[0]);
  keepRawPaxXattrs(extract);
  const writer = new LayerWriter(dir);
  try {
    const data = decompressed(source, compression);
    const feeding = (async () => {
      for await (const chunk of data as AsyncIterable<Buffer>) {
        if (!extract.write(chunk)) await once(extract, "drain");
      }
      extract.end(undefined);
    })().catch((error: unknown) => {
      extract.destroy(error as Error);
      throw error;
    });
    const consuming = (async () => {
      for await (const entry of extract) await writer.entry(entry.header as TarHeader, entry as unknown as EntryBody);
      await writer.finish();
    })().catch((error: unknown) => {
      extract.destroy(error as Error);
      data.destroy();
      throw error;
    });
    const [consumed, fed] = await Promise.allSettled([consuming, feeding]);
    // The source's own error (a digest mismatch) explains a tar or gzip error that follows it.
    for (const result of [fed, consumed]) {
      if (result.status === "rejected" && OciError.is(result.reason) && result.reason.code === "ERR_OCI_DIGEST") throw result.reason;
    }
    for (const result of [consumed, fed]) {
      if (result.status === "rejected") {
        const reason: unknown = result.reason;
        if (OciError.is(reason)) throw reason;
        throw new OciError("ERR_OCI_LAYER", layer, `cannot unpack layer: ${reason instanceof Error ? reason.message : String(reason)}`, { cause: reason });
      }
    }
  } finally {
    await writer.close();
  }
}

/** A batch goes to the native writer at this many bytes of file data (or of encoded ops): big enough to pay for the hand-off, small enough to overlap. */
const BATCH_DATA = 2 << 20;
const BATCH_OPS = 256 << 10;
/** The override of a directory tar makes without an entry of its own (the layer root, a missing parent): root-owned 0755. */
const IMPLICIT_DIRECTORY = encodeOverrideStat({ uid: 0, gid: 0, mode: c.S_IFDIR | 0o755, rdev: 0 });
/** `mtime` of an op that sets none. */
const NO_MTIME = -(2n ** 63n);

/** The ops of one {@link layerWriterApply} batch, encoded as it reads them. */
class OpsBuffer {
  #bytes = Buffer.allocUnsafe(64 << 10);
  length = 0;

  #room(n: number): void {
    if (this.length + n <= this.#bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#bytes.length * 2, this.length + n));
    this.#bytes.copy(grown, 0, 0, this.length);
    this.#bytes = grown;
  }

  u8(value: number): void {
    this.#room(1);
    this.length = this.#bytes.writeUInt8(value, this.length);
  }

  u32(value: number): void {
    this.#room(4);
    this.length = this.#bytes.writeUInt32LE(value, this.length);
  }

  i64(value: bigint): void {
    this.#room(8);
    this.length = this.#bytes.writeBigInt64LE(value, this.length);
  }

  bytes(value: Uint8Array): void {
    this.u32(value.length);
    this.#room(value.length);
    this.#bytes.set(value, this.length);
    this.length += value.length;
  }

  path(parts: readonly Buffer[]): void {
    this.bytes(Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [SLASH_BYTE, p]))));
  }

  xattrs(list: readonly (readonly [name: string, value: Uint8Array])[]): void {
    this.u32(list.length);
    for (const [name, value] of list) {
      this.bytes(Buffer.from(name));
      this.bytes(value);
    }
  }

  /** The encoded ops so far (a copy), and a fresh start. */
  take(): Buffer {
    const ops = Buffer.from(this.#bytes.subarray(0, this.length));
    this.length = 0;
    return ops;
  }
}

/** What {@link layerWriterApply} rejects with: a system error or one of its own codes, with the failed op's index. */
interface WriterFailure {
  readonly code?: string;
  readonly message?: string;
  readonly index?: number;
  readonly linkTarget?: boolean;
}

/**
 * Turns tar entries into the ops of a native layer writer and hands them
 * over in batches: the system calls run on the threadpool while this thread
 * decompresses and parses the next entries. Names are checked here first
 * (absolute, `..`), and again in the writer, which resolves every directory
 * from the root fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
 */
class LayerWriter {
  readonly #root: number;
  readonly #native: NativeLayerWriter;
  readonly #ops = new OpsBuffer();
  /** Entry name of each op of the batch being built, for errors. */
  #names: string[] = [];
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  /** The open file's entry name and how many of its chunks no WRITE op covers yet. */
  #open: { display: string; unwritten: number } | undefined;
  /** The batch the native writer runs now: settles with its failure, never rejects. */
  #running: Promise<OciError | undefined> | undefined;

  constructor(dir: string) {
    this.#root = openat(c.AT_FDCWD, dir, c.O_RDONLY | c.O_DIRECTORY | c.O_NOFOLLOW);
    try {
      // The layer root as tar makes it when the archive has no "./" entry to say otherwise.
      fchmodSync(this.#root, 0o755);
      fsetxattr(this.#root, OVERRIDE_STAT_XATTR, IMPLICIT_DIRECTORY);
      this.#native = layerWriter(this.#root, OVERRIDE_STAT_XATTR, IMPLICIT_DIRECTORY);
    } catch (error) {
      close(this.#root);
      throw error;
    }
  }

  /** Waits for the running batch, then closes every fd: nothing is written after this returns. */
  async close(): Promise<void> {
    await this.#running;
    this.#running = undefined;
    layerWriterClose(this.#native);
    close(this.#root);
  }

  /** Hands the last batch over and waits for every batch: throws the first failure. */
  async finish(): Promise<void> {
    await this.#flush();
    await this.#settle();
  }

  async entry(header: TarHeader, body: EntryBody): Promise<void> {
    try {
      await this.#entry(header, body);
    } catch (error) {
      // An earlier entry's failure in the writer comes first, as it happened first.
      await this.#flush();
      await this.#settle();
      throw error;
    }
  }

  async #entry(header: TarHeader, body: EntryBody): Promise<void> {
    const pax = header.pax ?? {};
    // Names from a PAX header are UTF-8; ustar and GNU names are raw bytes (read as latin1).
    const rawName = Buffer.from(header.name, pax.path === undefined ? "latin1" : "utf8");
    const display = rawName.toString("utf8");
    const parts = entryComponents(rawName, display);
    const type: string = header.type;
    if (type === "file" || type === "contiguous-file") {
      await this.#file(parts, display, header, body);
    } else {
      body.resume();
      if (type === "directory") this.#directory(parts, display, header);
      else if (type === "symlink") this.#symlink(parts, display, header);
      else if (type === "link") this.#hardlink(parts, display, header);
      else if (type === "character-device" || type === "block-device" || type === "fifo") await this.#file(parts, display, header, undefined);
      // Anything else (sockets cannot be in a tar; unknown vendor types) carries no file.
    }
    if (this.#chunkBytes >= BATCH_DATA || this.#ops.length >= BATCH_OPS) await this.#flush();
  }

  #op(code: number, display: string): void {
    this.#ops.u8(code);
    this.#names.push(display);
  }

  /** Covers the open file's pending chunks with a WRITE op. */
  #write(): void {
    if (this.#open === undefined || this.#open.unwritten === 0) return;
    this.#op(LAYER_OPS.WRITE, this.#open.display);
    this.#ops.u32(this.#open.unwritten);
    this.#open.unwritten = 0;
  }

  /** Hands the batch built so far to the native writer, once the one before it is done. */
  async #flush(): Promise<void> {
    this.#write();
    if (this.#ops.length === 0) return;
    const ops = this.#ops.take();
    const names = this.#names;
    const chunks = this.#chunks;
    this.#names = [];
    this.#chunks = [];
    this.#chunkBytes = 0;
    await this.#settle();
    this.#running = layerWriterApply(this.#native, ops, chunks).then(
      () => undefined,
      (error: unknown) => writerError(error, names),
    );
  }

  /** Waits for the running batch; throws its failure. */
  async #settle(): Promise<void> {
    const failure = await this.#running;
    this.#running = undefined;
    if (failure !== undefined) throw failure;
  }

  #metadata(header: TarHeader, typeBits: number, rdev: number): void {
    const perms = header.mode & 0o7777;
    const owner = typeBits === c.S_IFDIR ? 0o700 : 0o600;
    const xattrs: [string, Uint8Array][] = [[OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: header.uid, gid: header.gid, mode: typeBits | perms, rdev })]];
    for (const [xattr, value] of header.pax?.[PAX_XATTRS] ?? []) {
      const name = hostXattrName(xattr);
      if (name !== undefined) xattrs.push([name, value]);
    }
    this.#ops.u32((perms & 0o777) | owner);
    if (typeBits !== c.S_IFDIR) {
      const mtime = header.mtime as Date | undefined;
      const ms = mtime instanceof Date ? mtime.getTime() : NaN;
      this.#ops.i64(Number.isNaN(ms) ? NO_MTIME : BigInt(Math.floor(ms / 1000)));
    }
    this.#ops.xattrs(xattrs);
  }

  async #file(parts: readonly Buffer[], display: string, header: TarHeader, body: EntryBody | undefined): Promise<void> {
    if (parts.length === 0) unsafe(display, "names the layer root as a file");
    this.#op(LAYER_OPS.OPEN_FILE, display);
    this.#ops.path(parts);
    const open = { display, unwritten: 0 };
    this.#open = open;
    if (body !== undefined) {
      for await (const chunk of body) {
        this.#chunks.push(chunk);
        this.#chunkBytes += chunk.length;
        open.unwritten++;
        // A big file goes over in several batches, never whole into memory.
        if (this.#chunkBytes >= BATCH_DATA) await this.#flush();
      }
      this.#write();
    }
    this.#open = undefined;
    const typeBits = TYPE_BITS[header.type] ?? c.S_IFREG;
    const device = typeBits === c.S_IFCHR || typeBits === c.S_IFBLK;
    this.#op(LAYER_OPS.CLOSE_FILE, display);
    this.#metadata(header, typeBits, device ? makedev(header.devmajor, header.devminor) : 0);
  }

  #directory(parts: readonly Buffer[], display: string, header: TarHeader): void {
    this.#op(LAYER_OPS.DIRECTORY, display);
    this.#ops.path(parts);
    this.#metadata(header, c.S_IFDIR, 0);
  }

  #symlink(parts: readonly Buffer[], display: string, header: TarHeader): void {
    if (parts.length === 0) unsafe(display, "names the layer root as a symlink");
    // The target is data for the guest: it is never followed on the host.
    this.#op(LAYER_OPS.SYMLINK, display);
    this.#ops.path(parts);
    this.#ops.bytes(Buffer.from(header.linkname ?? "", header.pax?.linkpath === undefined ? "latin1" : "utf8"));
  }

  #hardlink(parts: readonly Buffer[], display: string, header: TarHeader): void {
    if (parts.length === 0) unsafe(display, "names the layer root as a hard link");
    const rawTarget = Buffer.from(header.linkname ?? "", header.pax?.linkpath === undefined ? "latin1" : "utf8");
    const targetDisplay = rawTarget.toString("utf8");
    let targetParts: Buffer[];
    try {
      targetParts = entryComponents(rawTarget, targetDisplay);
    } catch {
      unsafe(display, `links to '${targetDisplay}', outside the layer`);
    }
    if (targetParts.length === 0) unsafe(display, "links to the layer root");
    this.#op(LAYER_OPS.LINK, display);
    this.#ops.path(parts);
    this.#ops.path(targetParts);
  }
}

/** The {@link OciError} for a native writer failure, named after the entry of the failed op. */
function writerError(error: unknown, names: readonly string[]): OciError {
  const failure = error as WriterFailure;
  const display = names[failure.index ?? -1];
  if (display === undefined) return new OciError("ERR_OCI_LAYER", "layer writer", `cannot unpack layer: ${failure.message ?? String(error)}`, { cause: error });
  if (failure.code === "ERR_MSB_LAYER_UNSAFE") return unsafeEntry(display, failure.message ?? "goes outside the layer");
  if (failure.code === "ERR_MSB_LAYER_REPLACES_DIR") return new OciError("ERR_OCI_LAYER", display, "a non-directory entry replaces a directory of the same layer");
  if (failure.linkTarget === true) return new OciError("ERR_OCI_LAYER", display, "hard link target is not in the layer", { cause: error });
  if (failure.code === "EXDEV" || failure.code === "ELOOP") return unsafeEntry(display, "goes through a symlink or outside the layer");
  return new OciError("ERR_OCI_LAYER", display, `cannot unpack entry: ${failure.message ?? String(error)}`, { cause: error });
}
