// Layer unpacking without root and without ever writing outside the layer directory.
//
// Every write goes through a directory fd opened from the layer root with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS): a
// symlink unpacked earlier can never be walked through, `..` and absolute names
// are refused before any system call, and the final component is created with
// O_EXCL | O_NOFOLLOW (symlinkat / linkat never follow it either).
import { closeSync, fchmodSync, writeSync } from "node:fs";
import { once } from "node:events";
import { PassThrough, pipeline, Readable, Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { encodeOverrideStat, makedev, OVERRIDE_STAT_XATTR } from "@msb/fs";
import { constants as c, close, fsetxattr, fstatat, linkat, mkdirat, openat, openat2, symlinkat, unlinkat, utimensat, zstdDecompress, zstdDecompressor } from "@msb/native";
import { extract as tarExtract, type Header } from "tar-stream";
import { OciError } from "./errors.js";

/** How a layer blob is compressed. */
export type Compression = "gzip" | "zstd" | "none";

/** A tar header as tar-stream decodes it, PAX records included. */
type TarHeader = Header & { readonly pax?: Readonly<Record<string, string>> | null };

/** An entry's data: read it fully, or resume() to skip it. */
type EntryBody = AsyncIterable<Buffer> & { resume(): unknown };

const RESOLVE = c.RESOLVE_BENEATH | c.RESOLVE_NO_MAGICLINKS | c.RESOLVE_NO_SYMLINKS;
const SLASH = 0x2f;
const DOT = 0x2e;

const TYPE_BITS: Readonly<Record<string, number>> = {
  file: c.S_IFREG,
  "contiguous-file": c.S_IFREG,
  directory: c.S_IFDIR,
  "character-device": c.S_IFCHR,
  "block-device": c.S_IFBLK,
  fifo: c.S_IFIFO,
};

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

function decompressor(compression: Compression): Transform {
  if (compression === "gzip") return createGunzip();
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

class LayerWriter {
  readonly #root: number;

  constructor(dir: string) {
    this.#root = openat(c.AT_FDCWD, dir, c.O_RDONLY | c.O_DIRECTORY | c.O_NOFOLLOW);
    // The layer root as tar makes it when the archive has no "./" entry to say otherwise.
    fchmodSync(this.#root, 0o755);
    fsetxattr(this.#root, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: 0, gid: 0, mode: c.S_IFDIR | 0o755, rdev: 0 }));
  }

  close(): void {
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

  /** Opens (creating missing directories) the parent of `parts`; the caller closes the fd unless it is the root. */
  #parent(parts: readonly Buffer[], display: string): number {
    if (parts.length <= 1) return this.#root;
    try {
      return this.#openParentDir(parts, display, "goes through a symlink");
    } catch (error) {
      if (code(error) !== "ENOENT") throw error;
    }
    // Tars may omit parent directories: create them as root-owned 0755, as tar does.
    let fd = this.#root;
    for (const part of parts.slice(0, -1)) {
      let next: number;
      try {
        next = openat2(fd, part, { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: RESOLVE });
      } catch (error) {
        if (code(error) === "ELOOP" || code(error) === "EXDEV") unsafe(display, "goes through a symlink");
        if (code(error) !== "ENOENT") throw error;
        mkdirat(fd, part, 0o700);
        next = openat2(fd, part, { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: RESOLVE });
        fsetxattr(next, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: 0, gid: 0, mode: c.S_IFDIR | 0o755, rdev: 0 }));
      }
      if (fd !== this.#root) close(fd);
      fd = next;
    }
    return fd;
  }

  #withParent<T>(parts: readonly Buffer[], display: string, fn: (parent: number, base: Buffer) => T): T {
    const parent = this.#parent(parts, display);
    try {
      return fn(parent, parts[parts.length - 1]!);
    } finally {
      if (parent !== this.#root) close(parent);
    }
  }

  /** Clears the way for a new entry: a later tar entry replaces an earlier one, except a directory stays a directory. */
  #replace(parent: number, base: Buffer, display: string, directory: boolean): boolean {
    let mode: number;
    try {
      mode = fstatat(parent, base, c.AT_SYMLINK_NOFOLLOW).mode;
    } catch (error) {
      if (code(error) === "ENOENT") return false;
      throw error;
    }
    if ((mode & c.S_IFMT) === c.S_IFDIR) {
      if (directory) return true;
      throw new OciError("ERR_OCI_LAYER", display, "a non-directory entry replaces a directory of the same layer");
    }
    unlinkat(parent, base);
    return false;
  }

  #metadata(fd: number, header: TarHeader, typeBits: number, rdev: number): void {
    const perms = (header.mode) & 0o7777;
    const owner = typeBits === c.S_IFDIR ? 0o700 : 0o600;
    fchmodSync(fd, (perms & 0o777) | owner);
    fsetxattr(fd, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: header.uid, gid: header.gid, mode: typeBits | perms, rdev }));
    for (const [key, value] of Object.entries(header.pax ?? {})) {
      if (!key.startsWith(XATTR_PREFIX)) continue;
      const name = hostXattrName(key.slice(XATTR_PREFIX.length));
      if (name !== undefined) fsetxattr(fd, name, Buffer.from(value, "utf8"));
    }
    const mtime = header.mtime as Date | undefined;
    if (typeBits !== c.S_IFDIR && mtime instanceof Date && !Number.isNaN(mtime.getTime())) {
      const sec = Math.floor(mtime.getTime() / 1000);
      utimensat(fd, null, { sec }, { sec });
    }
  }

  async #file(parts: readonly Buffer[], display: string, header: TarHeader, body: EntryBody | undefined): Promise<void> {
    if (parts.length === 0) unsafe(display, "names the layer root as a file");
    const fd = this.#withParent(parts, display, (parent, base) => {
      this.#replace(parent, base, display, false);
      return openat2(parent, base, { flags: c.O_WRONLY | c.O_CREAT | c.O_EXCL | c.O_NOFOLLOW, mode: 0o600, resolve: RESOLVE });
    });
    try {
      if (body !== undefined) {
        for await (const chunk of body) {
          for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off, chunk.length - off);
        }
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
    const fd = this.#withParent(parts, display, (parent, base) => {
      if (!this.#replace(parent, base, display, true)) mkdirat(parent, base, 0o700);
      return openat2(parent, base, { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: RESOLVE });
    });
    try {
      this.#metadata(fd, header, c.S_IFDIR, 0);
    } finally {
      close(fd);
    }
  }

  #symlink(parts: readonly Buffer[], display: string, header: TarHeader): void {
    if (parts.length === 0) unsafe(display, "names the layer root as a symlink");
    const target = Buffer.from(header.linkname ?? "", header.pax?.linkpath === undefined ? "latin1" : "utf8");
    // The target is data for the guest: it is never followed on the host.
    this.#withParent(parts, display, (parent, base) => {
      this.#replace(parent, base, display, false);
      symlinkat(target, parent, base);
    });
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
    const targetParent = this.#existingParent(targetParts, display);
    try {
      this.#withParent(parts, display, (parent, base) => {
        this.#replace(parent, base, display, false);
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(targetParent, targetParts[targetParts.length - 1]!, parent, base);
      });
    } finally {
      if (targetParent !== this.#root) close(targetParent);
    }
  }

  #existingParent(parts: readonly Buffer[], display: string): number {
    if (parts.length <= 1) return this.#root;
    try {
      return this.#openParentDir(parts, display, "links through a symlink");
    } catch (error) {
      if (OciError.is(error)) throw error;
      throw new OciError("ERR_OCI_LAYER", display, "hard link target is not in the layer", { cause: error });
    }
  }

  /** Opens the directory holding `parts`' last component in one confined openat2. */
  #openParentDir(parts: readonly Buffer[], display: string, why: string): number {
    const path = Buffer.concat(parts.slice(0, -1).flatMap((p, i) => (i === 0 ? [p] : [Buffer.from("/"), p])));
    try {
      return openat2(this.#root, path, { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: RESOLVE });
    } catch (error) {
      if (code(error) === "ELOOP" || code(error) === "EXDEV") unsafe(display, why);
      throw error;
    }
  }
}
