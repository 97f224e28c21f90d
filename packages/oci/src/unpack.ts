// Layer unpacking without root and without ever writing outside the layer directory.
//
// Every write goes through a directory fd opened from the layer root with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS): a
// symlink unpacked earlier can never be walked through, `..` and absolute names
// are refused before any system call, and the final component is created with
// O_EXCL | O_NOFOLLOW (symlinkat / linkat never follow it either).
import { closeSync, fchmodSync, writevSync } from "node:fs";
import { once } from "node:events";
import { PassThrough, pipeline, Readable, Transform, type TransformOptions } from "node:stream";
import { createGunzip, type ZlibOptions } from "node:zlib";
import { encodeOverrideStat, makedev, OVERRIDE_STAT_XATTR } from "@msb/fs";
import { constants as c, close, fsetxattr, fstatat, linkat, mkdirat, openat, openat2, symlinkat, unlinkat, utimensat, zstdDecompress, zstdDecompressor } from "@msb/native";
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

const RESOLVE = c.RESOLVE_BENEATH | c.RESOLVE_NO_MAGICLINKS | c.RESOLVE_NO_SYMLINKS;
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

function unsafe(name: string, why: string): never {
  throw new OciError("ERR_OCI_UNSAFE_ENTRY", name, `layer entry ${why}`);
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

function code(error: unknown): string | undefined {
  const value = (error as { code?: unknown } | null)?.code;
  return typeof value === "string" ? value : undefined;
}

// libzstd output per call: bounded, so a tiny hostile frame cannot balloon one allocation.
const ZSTD_OUTPUT = 1 << 20;

function zstdTransform(): Transform {
  const handle = zstdDecompressor();
  let done = false;
  const feed = (transform: Transform, input: Buffer): void => {
    let rest = input;
    for (;;) {
      const result = zstdDecompress(handle, rest, ZSTD_OUTPUT);
      if (result.output.length > 0) transform.push(result.output);
      // A call that made no progress says nothing about the frame that ended before it.
      if (result.consumed > 0 || result.output.length > 0) done = result.done;
      rest = rest.subarray(result.consumed);
      if (rest.length === 0 && result.output.length < ZSTD_OUTPUT) return;
    }
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      try {
        feed(this, chunk);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback) {
      try {
        feed(this, Buffer.alloc(0));
        callback(done ? null : new Error("zstd stream ends inside a frame"));
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}

// zlib inflates on the thread pool: big output chunks and a deep buffer let it run ahead of the
// untar on the main thread instead of waiting for it every 16 KiB (Node passes stream options through).
const GUNZIP: ZlibOptions & TransformOptions = { chunkSize: 256 << 10, highWaterMark: 8 << 20 };

function decompressor(compression: Compression): Transform {
  if (compression === "gzip") return createGunzip(GUNZIP);
  if (compression === "zstd") return zstdTransform();
  return new PassThrough();
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
    const decompressed = pipeline(Readable.from(source), decompressor(compression), () => undefined);
    const feeding = (async () => {
      for await (const chunk of decompressed as AsyncIterable<Buffer>) {
        if (!extract.write(chunk)) await once(extract, "drain");
      }
      extract.end(undefined);
    })().catch((error: unknown) => {
      extract.destroy(error as Error);
      throw error;
    });
    const consuming = (async () => {
      for await (const entry of extract) await writer.entry(entry.header as TarHeader, entry as unknown as EntryBody);
    })().catch((error: unknown) => {
      extract.destroy(error as Error);
      decompressed.destroy();
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
    writer.close();
  }
}

/** Directory fds kept open between entries: a tar lists a directory's entries together, so most entries find their parent here. */
const DIR_CACHE = 64;
/** File data is gathered up to this many bytes (or {@link WRITE_CHUNKS} chunks) per writev. */
const WRITE_BYTES = 1 << 20;
const WRITE_CHUNKS = 256;

/** Writes every byte of `chunks` at the file position (writev may stop short). */
function writeAll(fd: number, chunks: readonly Buffer[]): void {
  let pending = chunks;
  while (pending.length > 0) {
    let written = writevSync(fd, pending);
    let done = 0;
    while (done < pending.length && written >= pending[done]!.length) written -= pending[done++]!.length;
    pending = done < pending.length ? [pending[done]!.subarray(written), ...pending.slice(done + 1)] : [];
  }
}

class LayerWriter {
  readonly #root: number;
  /**
   * Open directory fds by their path below the root (latin1 of the raw
   * bytes), least recently used first. A directory never leaves the layer
   * while it unpacks (no entry may replace a directory), so a cached fd
   * always names what its path names.
   */
  readonly #dirs = new Map<string, number>();

  constructor(dir: string) {
    this.#root = openat(c.AT_FDCWD, dir, c.O_RDONLY | c.O_DIRECTORY | c.O_NOFOLLOW);
    // The layer root as tar makes it when the archive has no "./" entry to say otherwise.
    fchmodSync(this.#root, 0o755);
    fsetxattr(this.#root, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: 0, gid: 0, mode: c.S_IFDIR | 0o755, rdev: 0 }));
  }

  close(): void {
    for (const fd of this.#dirs.values()) close(fd);
    this.#dirs.clear();
    close(this.#root);
  }

  async entry(header: TarHeader, body: EntryBody): Promise<void> {
    const pax = header.pax ?? {};
    // Names from a PAX header are UTF-8; ustar and GNU names are raw bytes (read as latin1).
    const rawName = Buffer.from(header.name, pax.path === undefined ? "latin1" : "utf8");
    const display = rawName.toString("utf8");
    const parts = entryComponents(rawName, display);
    const type: string = header.type;
    try {
      if (type === "file" || type === "contiguous-file") {
        await this.#file(parts, display, header, body);
        return;
      }
      body.resume();
      if (type === "directory") this.#directory(parts, display, header);
      else if (type === "symlink") this.#symlink(parts, display, header);
      else if (type === "link") this.#hardlink(parts, display, header);
      else if (type === "character-device" || type === "block-device" || type === "fifo") await this.#file(parts, display, header, undefined);
      // Anything else (sockets cannot be in a tar; unknown vendor types) carries no file.
    } catch (error) {
      if (OciError.is(error)) throw error;
      const errno = code(error);
      if (errno === "EXDEV" || errno === "ELOOP") unsafe(display, "goes through a symlink or outside the layer");
      throw new OciError("ERR_OCI_LAYER", display, `cannot unpack entry: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }

  /**
   * The fd of the directory `parts` names (the root for none), from the
   * cache or opened in one confined openat2; with `create`, missing
   * directories are made as tar makes them (root-owned 0755). The fd belongs
   * to the cache: callers never close it.
   */
  #directoryFd(parts: readonly Buffer[], display: string, create: boolean, why: string): number {
    if (parts.length === 0) return this.#root;
    const path = Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [SLASH_BYTE, p])));
    const key = path.toString("latin1");
    const cached = this.#dirs.get(key);
    if (cached !== undefined) {
      this.#dirs.delete(key);
      this.#dirs.set(key, cached);
      return cached;
    }
    let fd: number;
    try {
      fd = openat2(this.#root, path, { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: RESOLVE });
    } catch (error) {
      if (code(error) === "ELOOP" || code(error) === "EXDEV") unsafe(display, why);
      if (code(error) !== "ENOENT" || !create) throw error;
      const parent = this.#directoryFd(parts.slice(0, -1), display, true, why);
      const base = parts[parts.length - 1]!;
      mkdirat(parent, base, 0o700);
      fd = openat2(parent, base, { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: RESOLVE });
      fsetxattr(fd, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: 0, gid: 0, mode: c.S_IFDIR | 0o755, rdev: 0 }));
    }
    this.#dirs.set(key, fd);
    if (this.#dirs.size > DIR_CACHE) {
      const [oldestKey, oldest] = this.#dirs.entries().next().value as [string, number];
      this.#dirs.delete(oldestKey);
      close(oldest);
    }
    return fd;
  }

  /** The parent directory of `parts` (created when missing) and the last component. */
  #parent(parts: readonly Buffer[], display: string): [parent: number, base: Buffer] {
    return [this.#directoryFd(parts.slice(0, -1), display, true, "goes through a symlink"), parts[parts.length - 1]!];
  }

  /**
   * Runs `make` for a new name. When the name exists, a later tar entry
   * replaces an earlier one: the old non-directory is removed and `make`
   * runs again; a directory stays (for a directory entry, `make` is then
   * skipped) and is an error for anything else.
   */
  #create<T>(parent: number, base: Buffer, display: string, directory: boolean, make: () => T): T | undefined {
    try {
      return make();
    } catch (error) {
      if (code(error) !== "EEXIST") throw error;
    }
    if ((fstatat(parent, base, c.AT_SYMLINK_NOFOLLOW).mode & c.S_IFMT) === c.S_IFDIR) {
      if (directory) return undefined;
      throw new OciError("ERR_OCI_LAYER", display, "a non-directory entry replaces a directory of the same layer");
    }
    unlinkat(parent, base);
    return make();
  }

  #metadata(fd: number, header: TarHeader, typeBits: number, rdev: number): void {
    const perms = (header.mode) & 0o7777;
    const owner = typeBits === c.S_IFDIR ? 0o700 : 0o600;
    fchmodSync(fd, (perms & 0o777) | owner);
    fsetxattr(fd, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: header.uid, gid: header.gid, mode: typeBits | perms, rdev }));
    for (const [xattr, value] of header.pax?.[PAX_XATTRS] ?? []) {
      const name = hostXattrName(xattr);
      if (name !== undefined) fsetxattr(fd, name, value);
    }
    const mtime = header.mtime as Date | undefined;
    if (typeBits !== c.S_IFDIR && mtime instanceof Date && !Number.isNaN(mtime.getTime())) {
      const sec = Math.floor(mtime.getTime() / 1000);
      utimensat(fd, null, { sec }, { sec });
    }
  }

  async #file(parts: readonly Buffer[], display: string, header: TarHeader, body: EntryBody | undefined): Promise<void> {
    if (parts.length === 0) unsafe(display, "names the layer root as a file");
    const [parent, base] = this.#parent(parts, display);
    const fd = this.#create(parent, base, display, false, () =>
      openat2(parent, base, { flags: c.O_WRONLY | c.O_CREAT | c.O_EXCL | c.O_NOFOLLOW, mode: 0o600, resolve: RESOLVE }),
    )!;
    try {
      if (body !== undefined) {
        // Few, big writes: the data comes in chunks of a few KiB.
        let gathered: Buffer[] = [];
        let bytes = 0;
        for await (const chunk of body) {
          gathered.push(chunk);
          bytes += chunk.length;
          if (bytes >= WRITE_BYTES || gathered.length >= WRITE_CHUNKS) {
            writeAll(fd, gathered);
            gathered = [];
            bytes = 0;
          }
        }
        writeAll(fd, gathered);
      }
      const typeBits = TYPE_BITS[header.type] ?? c.S_IFREG;
      const device = typeBits === c.S_IFCHR || typeBits === c.S_IFBLK;
      this.#metadata(fd, header, typeBits, device ? makedev(header.devmajor, header.devminor) : 0);
    } finally {
      closeSync(fd);
    }
  }

  #directory(parts: readonly Buffer[], display: string, header: TarHeader): void {
    if (parts.length === 0) {
      this.#metadata(this.#root, header, c.S_IFDIR, 0);
      return;
    }
    const [parent, base] = this.#parent(parts, display);
    this.#create(parent, base, display, true, () => mkdirat(parent, base, 0o700));
    this.#metadata(this.#directoryFd(parts, display, false, "goes through a symlink"), header, c.S_IFDIR, 0);
  }

  #symlink(parts: readonly Buffer[], display: string, header: TarHeader): void {
    if (parts.length === 0) unsafe(display, "names the layer root as a symlink");
    const target = Buffer.from(header.linkname ?? "", header.pax?.linkpath === undefined ? "latin1" : "utf8");
    // The target is data for the guest: it is never followed on the host.
    const [parent, base] = this.#parent(parts, display);
    this.#create(parent, base, display, false, () => symlinkat(target, parent, base));
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
    // The new name's parent first: finding the target's parent then caches at most one more fd,
    // which can only evict an older one than the fd in hand.
    const [parent, base] = this.#parent(parts, display);
    let targetParent: number;
    try {
      targetParent = this.#directoryFd(targetParts.slice(0, -1), display, false, "links through a symlink");
    } catch (error) {
      if (OciError.is(error)) throw error;
      throw new OciError("ERR_OCI_LAYER", display, "hard link target is not in the layer", { cause: error });
    }
    // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
    this.#create(parent, base, display, false, () => linkat(targetParent, targetParts[targetParts.length - 1]!, parent, base));
  }
}
