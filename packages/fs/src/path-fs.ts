import { hasAccess } from "./access.js";
import { ACCESS, DT, O, ROOT_INO, S } from "./constants.js";
import { FsError } from "./errno.js";
import { fileKind, isDirectory, isSymlink, type FileKind } from "./mode.js";
import { bytesToString, isDotOrDotDot, joinPath, splitPath, toBytes } from "./names.js";
import { setattrRequest, toTimespec } from "./setattr.js";
import type { Attr, Context, DirEntry, DynFileSystem, Timespec } from "./types.js";
import { ROOT_CONTEXT, listEntries } from "./union.js";

/** A path as text or as bytes (bytes address names that are not UTF-8). */
export type PathLike = string | Uint8Array;

/** Options of a {@link PathFs}. */
export interface PathFsOptions {
  /** Credentials every call runs with; root (`0:0`) by default. */
  readonly ctx?: Context;
  /** Permission bits removed from created files and directories; `0o022` by default. */
  readonly umask?: number;
  /** Bytes per read or write call; 1 MiB by default. */
  readonly chunkSize?: number;
}

/** One entry of {@link PathFs.readdir}. */
export interface PathDirent {
  /** The name as text (invalid UTF-8 shown as U+FFFD). */
  readonly name: string;
  /** The exact name. */
  readonly nameBytes: Uint8Array;
  readonly ino: number;
  /** The kind from the directory entry, `undefined` when the backend did not say. */
  readonly kind: FileKind | undefined;
}

/** One entry of {@link PathFs.walk}. */
export interface WalkEntry {
  /** The path below the walk's start, `""` for the start itself. */
  readonly path: string;
  /** The exact path bytes. */
  readonly pathBytes: Uint8Array;
  readonly attr: Attr;
  /** 0 for the start, 1 for its children, ... */
  readonly depth: number;
}

/** Options of {@link PathFs.writeFile}. */
export interface WriteFileOptions {
  /** Permission bits of a file that gets created (before the umask); `0o666` by default. */
  readonly mode?: number;
  /** Fail with `EEXIST` when the file exists. */
  readonly exclusive?: boolean;
}

const MAX_SYMLINKS = 40;
const DEFAULT_CHUNK = 1024 * 1024;

/** The outcome of resolving a path: the parent directory, the last name, and the inode if it exists. */
interface Resolved {
  readonly parent: number;
  /** The last component; empty for the root. */
  readonly name: Uint8Array;
  readonly entry: { readonly ino: number; readonly attr: Attr } | undefined;
}

/**
 * Lookup counts taken while serving one call; every lookup a backend answers
 * counts, so each is given back with `forget` when the call ends.
 */
class HeldLookups {
  readonly #counts = new Map<number, number>();

  add(ino: number): void {
    this.#counts.set(ino, (this.#counts.get(ino) ?? 0) + 1);
  }

  async release(fs: DynFileSystem, ctx: Context): Promise<void> {
    if (this.#counts.size === 0) return;
    const items = [...this.#counts];
    this.#counts.clear();
    await fs.batchForget(ctx, items);
  }
}

/**
 * Path-level file operations over any {@link DynFileSystem}: what patches,
 * tests and the host-side API need, resolved the way the kernel resolves
 * paths (symlinks followed with an `ELOOP` limit of 40, `..` going to the
 * physical parent, `ENOTDIR` through a file). Every lookup it takes it also
 * forgets, so a backend's inode counts stay balanced.
 *
 * @example
 * ```ts
 * const files = new PathFs(new MemFs());
 * await files.mkdir("/etc/app", { recursive: true });
 * await files.writeFile("/etc/app/config.json", '{"debug":true}');
 * console.log(await files.readFile("/etc/app/config.json", "utf8"));
 * ```
 */
export class PathFs {
  /** The filesystem this client works on. */
  readonly fs: DynFileSystem;
  readonly #ctx: Context;
  readonly #umask: number;
  readonly #chunk: number;

  constructor(fs: DynFileSystem, options: PathFsOptions = {}) {
    this.fs = fs;
    this.#ctx = options.ctx ?? ROOT_CONTEXT;
    this.#umask = options.umask ?? 0o022;
    this.#chunk = options.chunkSize ?? DEFAULT_CHUNK;
    if (!Number.isSafeInteger(this.#chunk) || this.#chunk <= 0) {
      throw new TypeError(`PathFs: chunkSize must be a positive integer, got ${String(options.chunkSize)}`);
    }
  }

  /** The attributes of `path`, following a symlink at its end. */
  stat(path: PathLike): Promise<Attr> {
    return this.#withEntry(path, true, "stat", (ino, attr) => attr);
  }

  /** The attributes of `path` itself, a symlink included. */
  lstat(path: PathLike): Promise<Attr> {
    return this.#withEntry(path, false, "lstat", (ino, attr) => attr);
  }

  /** True when `path` exists (a dangling symlink counts as existing). */
  async exists(path: PathLike): Promise<boolean> {
    try {
      await this.lstat(path);
      return true;
    } catch (error) {
      if (FsError.isInstance(error) && (error.code === "ENOENT" || error.code === "ENOTDIR")) return false;
      throw error;
    }
  }

  /** The whole content of a file, as bytes or, with `"utf8"`, as text. */
  readFile(path: PathLike): Promise<Uint8Array>;
  readFile(path: PathLike, encoding: "utf8"): Promise<string>;
  async readFile(path: PathLike, encoding?: "utf8"): Promise<Uint8Array | string> {
    const data = await this.#withEntry(path, true, "readFile", async (ino, attr) => {
      if (isDirectory(attr.mode)) {
        // As open(2) then read(2): opening needs read permission, reading a directory fails.
        throw new FsError(hasAccess(attr, this.#ctx, ACCESS.R_OK) ? "EISDIR" : "EACCES", { op: "readFile", path: show(path) });
      }
      const { fh } = await this.fs.open(this.#ctx, ino, O.RDONLY);
      try {
        const chunks: Uint8Array[] = [];
        let offset = 0;
        for (;;) {
          const chunk = await this.fs.read(this.#ctx, ino, fh, this.#chunk, offset);
          if (chunk.length === 0) break;
          chunks.push(chunk);
          offset += chunk.length;
        }
        return concat(chunks, offset);
      } finally {
        await this.fs.release(this.#ctx, ino, fh, O.RDONLY);
      }
    });
    return encoding === "utf8" ? bytesToString(data) : data;
  }

  /** Creates or replaces a file's content (text is written as UTF-8). */
  writeFile(path: PathLike, data: string | Uint8Array, options: WriteFileOptions = {}): Promise<void> {
    const flags = O.WRONLY | O.CREAT | O.TRUNC | (options.exclusive === true ? O.EXCL : 0);
    return this.#writeAll(path, toBytes(data), flags, options.mode ?? 0o666, "writeFile");
  }

  /** Appends to a file, creating it when missing. */
  appendFile(path: PathLike, data: string | Uint8Array, options: Pick<WriteFileOptions, "mode"> = {}): Promise<void> {
    return this.#writeAll(path, toBytes(data), O.WRONLY | O.CREAT | O.APPEND, options.mode ?? 0o666, "appendFile");
  }

  /** Sets a file's size, cutting or zero-extending it. */
  truncate(path: PathLike, size = 0): Promise<void> {
    return this.#setattr(path, true, "truncate", { size });
  }

  /**
   * Creates a directory; with `recursive`, also its missing parents, and an
   * existing directory is no error.
   */
  async mkdir(path: PathLike, options: { recursive?: boolean; mode?: number } = {}): Promise<void> {
    const mode = options.mode ?? 0o777;
    if (options.recursive !== true) {
      await this.#create(path, "mkdir", (parent, name) => this.fs.mkdir(this.#ctx, parent, name, mode, this.#umask));
      return;
    }
    const parts = splitPath(path);
    for (let depth = 1; depth <= parts.length; depth++) {
      const prefix = joinPath(...parts.slice(0, depth));
      try {
        await this.#create(prefix, "mkdir", (parent, name) => this.fs.mkdir(this.#ctx, parent, name, mode, this.#umask));
      } catch (error) {
        if (!FsError.isInstance(error) || error.code !== "EEXIST") throw error;
        const attr = await this.stat(prefix);
        if (!isDirectory(attr.mode)) throw new FsError("ENOTDIR", { op: "mkdir", path: show(prefix) });
      }
    }
  }

  /** The entries of a directory, without `.` and `..`, in the backend's order. */
  readdir(path: PathLike): Promise<PathDirent[]> {
    return this.#withEntry(path, true, "readdir", async (ino) => {
      const entries = await this.#listDir(ino);
      return entries.map((e) => ({ name: bytesToString(e.name), nameBytes: e.name, ino: e.ino, kind: kindOfDt(e.type) }));
    });
  }

  /** Creates symlink `path` pointing at `target` (stored as given, not resolved). */
  async symlink(target: PathLike, path: PathLike): Promise<void> {
    const targetBytes = toBytes(target);
    await this.#create(path, "symlink", (parent, name) => this.fs.symlink(this.#ctx, targetBytes, parent, name));
  }

  /** The target of symlink `path`, as text, or as bytes with `{ encoding: "buffer" }`. */
  readlink(path: PathLike): Promise<string>;
  readlink(path: PathLike, options: { encoding: "buffer" }): Promise<Uint8Array>;
  async readlink(path: PathLike, options?: { encoding: "buffer" }): Promise<string | Uint8Array> {
    const target = await this.#withEntry(path, false, "readlink", (ino, attr) => {
      if (!isSymlink(attr.mode)) throw new FsError("EINVAL", { op: "readlink", path: show(path), detail: "not a symlink" });
      return this.fs.readlink(this.#ctx, ino);
    });
    return options?.encoding === "buffer" ? target : bytesToString(target);
  }

  /** Creates hard link `newPath` to `existingPath` (a symlink itself is linked, not its target). */
  async link(existingPath: PathLike, newPath: PathLike): Promise<void> {
    await this.#withEntry(existingPath, false, "link", (ino) =>
      this.#create(newPath, "link", (parent, name) => this.fs.link(this.#ctx, ino, parent, name)),
    );
  }

  /** Renames `from` to `to`, with `renameat2` {@link RENAME} flags. */
  async rename(from: PathLike, to: PathLike, flags = 0): Promise<void> {
    const held = new HeldLookups();
    try {
      const src = await this.#resolve(from, false, held, "rename");
      const dst = await this.#resolve(to, false, held, "rename");
      if (src.entry === undefined) throw new FsError("ENOENT", { op: "rename", path: show(from) });
      if (src.name.length === 0 || dst.name.length === 0 || isDotOrDotDot(src.name) || isDotOrDotDot(dst.name)) {
        throw new FsError("EBUSY", { op: "rename", path: show(from), dest: show(to) });
      }
      await this.fs.rename(this.#ctx, src.parent, src.name, dst.parent, dst.name, flags);
    } finally {
      await held.release(this.fs, this.#ctx);
    }
  }

  /**
   * Removes a file, symlink or empty directory; `recursive` removes a whole
   * tree, `force` makes a missing path no error.
   */
  async rm(path: PathLike, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    const held = new HeldLookups();
    try {
      const target = await this.#resolve(path, false, held, "rm");
      if (target.entry === undefined) {
        if (options.force === true) return;
        throw new FsError("ENOENT", { op: "rm", path: show(path) });
      }
      if (target.name.length === 0 || isDotOrDotDot(target.name)) {
        throw new FsError("EBUSY", { op: "rm", path: show(path), detail: "cannot remove the root, '.' or '..'" });
      }
      await this.#remove(target.parent, target.name, target.entry.ino, target.entry.attr, options.recursive === true, held, show(path));
    } finally {
      await held.release(this.fs, this.#ctx);
    }
  }

  /** Changes the permission bits (and suid/sgid/sticky) of `path`. */
  chmod(path: PathLike, mode: number): Promise<void> {
    return this.#setattr(path, true, "chmod", { mode: mode & S.IALLUGO });
  }

  /** Changes the owner and/or group of `path`; `-1` leaves one as it is. */
  chown(path: PathLike, uid: number, gid: number): Promise<void> {
    return this.#setattr(path, true, "chown", { uid: uid === -1 ? undefined : uid, gid: gid === -1 ? undefined : gid });
  }

  /** Like {@link PathFs.chown} without following a symlink at the end. */
  lchown(path: PathLike, uid: number, gid: number): Promise<void> {
    return this.#setattr(path, false, "lchown", { uid: uid === -1 ? undefined : uid, gid: gid === -1 ? undefined : gid });
  }

  /** Sets access and modification times (`Date`, seconds since the epoch, or a {@link Timespec}). */
  utimes(path: PathLike, atime: Date | number | Timespec, mtime: Date | number | Timespec): Promise<void> {
    return this.#setattr(path, true, "utimes", { atime: toTimespec(atime), mtime: toTimespec(mtime) });
  }

  /**
   * Every entry below `path` (and `path` itself first), depth first, parents
   * before children; symlinks are reported, not followed.
   */
  async *walk(path: PathLike = "/"): AsyncGenerator<WalkEntry> {
    yield* this.#walkFrom(await this.lstat(path), new Uint8Array(0), 0);
  }

  async *#walkFrom(attr: Attr, rel: Uint8Array, depth: number): AsyncGenerator<WalkEntry> {
    yield { path: bytesToString(rel), pathBytes: rel, attr, depth };
    if (!isDirectory(attr.mode)) return;
    for (const child of await this.#listDir(attr.ino)) {
      let entry;
      try {
        entry = await this.fs.lookup(this.#ctx, attr.ino, child.name);
      } catch (error) {
        // Removed while walking: the walk reports what still exists.
        if (FsError.isInstance(error) && error.code === "ENOENT") continue;
        throw error;
      }
      try {
        yield* this.#walkFrom(entry.attr, rel.length === 0 ? child.name : joinPath(rel, child.name), depth + 1);
      } finally {
        await this.fs.forget(this.#ctx, entry.ino, 1);
      }
    }
  }

  async #remove(
    parent: number,
    name: Uint8Array,
    ino: number,
    attr: Attr,
    recursive: boolean,
    held: HeldLookups,
    display: string,
  ): Promise<void> {
    if (!isDirectory(attr.mode)) {
      await this.fs.unlink(this.#ctx, parent, name);
      return;
    }
    if (recursive) {
      for (const child of await this.#listDir(ino)) {
        const entry = await this.fs.lookup(this.#ctx, ino, child.name);
        held.add(entry.ino);
        await this.#remove(ino, child.name, entry.ino, entry.attr, true, held, `${display}/${bytesToString(child.name)}`);
      }
    }
    await this.fs.rmdir(this.#ctx, parent, name);
  }

  /** All entries of directory `ino` but `.` and `..`. */
  #listDir(ino: number): Promise<DirEntry[]> {
    return listEntries(this.fs, ino, this.#ctx);
  }


  async #writeAll(path: PathLike, data: Uint8Array, flags: number, mode: number, op: string): Promise<void> {
    const held = new HeldLookups();
    try {
      const target = await this.#resolve(path, true, held, op);
      let ino: number;
      let fh: number;
      if (target.entry === undefined) {
        if (target.name.length === 0) throw new FsError("EISDIR", { op, path: show(path) });
        const created = await this.fs.create(this.#ctx, target.parent, target.name, S.IFREG | (mode & S.IALLUGO), flags, this.#umask);
        held.add(created.entry.ino);
        ({ ino } = created.entry);
        ({ fh } = created);
      } else {
        if ((flags & O.EXCL) !== 0) throw new FsError("EEXIST", { op, path: show(path) });
        if (isDirectory(target.entry.attr.mode)) throw new FsError("EISDIR", { op, path: show(path) });
        ino = target.entry.ino;
        ({ fh } = await this.fs.open(this.#ctx, ino, flags & ~(O.CREAT | O.EXCL)));
      }
      try {
        let offset = (flags & O.APPEND) !== 0 ? (await this.fs.getattr(this.#ctx, ino, fh)).size : 0;
        for (let done = 0; done < data.length; ) {
          const piece = data.subarray(done, Math.min(done + this.#chunk, data.length));
          const written = await this.fs.write(this.#ctx, ino, fh, piece, offset, 0);
          if (!Number.isSafeInteger(written) || written <= 0 || written > piece.length) {
            throw new FsError("EIO", { op, path: show(path), detail: `backend reported ${written} bytes written of ${piece.length}` });
          }
          done += written;
          offset += written;
        }
        await this.fs.flush(this.#ctx, ino, fh, 0);
      } finally {
        await this.fs.release(this.#ctx, ino, fh, flags);
      }
    } finally {
      await held.release(this.fs, this.#ctx);
    }
  }

  /** Resolves `path` without following its last symlink and creates its last name with `make`; `EEXIST` when it exists. */
  async #create(
    path: PathLike,
    op: string,
    make: (parent: number, name: Uint8Array) => Promise<{ ino: number }> | { ino: number },
  ): Promise<void> {
    const held = new HeldLookups();
    try {
      const target = await this.#resolve(path, false, held, op);
      if (target.entry !== undefined || target.name.length === 0 || isDotOrDotDot(target.name)) {
        throw new FsError("EEXIST", { op, path: show(path) });
      }
      const made = await make(target.parent, target.name);
      held.add(made.ino);
    } finally {
      await held.release(this.fs, this.#ctx);
    }
  }

  async #setattr(path: PathLike, follow: boolean, op: string, changes: Parameters<typeof setattrRequest>[0]): Promise<void> {
    await this.#withEntry(path, follow, op, (ino) => this.fs.setattr(this.#ctx, ino, setattrRequest(changes)));
  }

  /** Resolves an existing path and runs `use` on its inode, releasing the lookups afterwards. */
  async #withEntry<T>(path: PathLike, follow: boolean, op: string, use: (ino: number, attr: Attr) => T | Promise<T>): Promise<T> {
    const held = new HeldLookups();
    try {
      const target = await this.#resolve(path, follow, held, op);
      if (target.entry === undefined) throw new FsError("ENOENT", { op, path: show(path) });
      return await use(target.entry.ino, target.entry.attr);
    } finally {
      await held.release(this.fs, this.#ctx);
    }
  }

  /**
   * Walks `path` from the root. A missing last component is no error (the
   * result has no `entry`); a missing or non-directory one before it is.
   * Symlinks before the end are always followed, the last one when `follow`.
   */
  async #resolve(path: PathLike, follow: boolean, held: HeldLookups, op: string): Promise<Resolved> {
    const pending = splitPath(path).reverse();
    // Directories entered so far, for "..": the physical parent, never above the root.
    const stack: { ino: number; attr: Attr | undefined }[] = [{ ino: ROOT_INO, attr: undefined }];
    let symlinks = 0;
    let parent = ROOT_INO;
    let name: Uint8Array = new Uint8Array(0);
    let entry: Resolved["entry"];
    if (pending.length === 0) {
      entry = { ino: ROOT_INO, attr: await this.fs.getattr(this.#ctx, ROOT_INO) };
    }
    while (pending.length > 0) {
      const part = pending.pop()!;
      const isLast = pending.length === 0;
      const current = stack[stack.length - 1]!;
      if (isDotOrDotDot(part)) {
        // "." and ".." are looked up like any name: they need search permission on the directory they are in.
        const here = current.attr ?? (await this.fs.getattr(this.#ctx, current.ino));
        if (!hasAccess(here, this.#ctx, ACCESS.X_OK)) throw new FsError("EACCES", { op, path: show(path), detail: `no search permission for '${bytesToString(part)}'` });
        if (part.length === 2 && stack.length > 1) stack.pop();
        const dir = stack[stack.length - 1]!;
        const attr = dir.attr ?? (await this.fs.getattr(this.#ctx, dir.ino));
        parent = dir.ino;
        name = part;
        entry = { ino: dir.ino, attr };
        continue;
      }
      let found;
      try {
        found = await this.fs.lookup(this.#ctx, current.ino, part);
      } catch (error) {
        if (isLast && FsError.isInstance(error) && error.code === "ENOENT") {
          return { parent: current.ino, name: part, entry: undefined };
        }
        throw error;
      }
      held.add(found.ino);
      parent = current.ino;
      name = part;
      entry = { ino: found.ino, attr: found.attr };
      if (isSymlink(found.attr.mode) && (!isLast || follow)) {
        if (++symlinks > MAX_SYMLINKS) throw new FsError("ELOOP", { op, path: show(path) });
        const target = await this.fs.readlink(this.#ctx, found.ino);
        if (target.length === 0) throw new FsError("ENOENT", { op, path: show(path), detail: "empty symlink" });
        if (target[0] === 0x2f) stack.length = 1;
        const parts = splitPath(target);
        if (parts.length === 0) {
          // A link to "/": the root itself.
          parent = ROOT_INO;
          name = new Uint8Array(0);
          entry = { ino: ROOT_INO, attr: await this.fs.getattr(this.#ctx, ROOT_INO) };
          continue;
        }
        for (let i = parts.length - 1; i >= 0; i--) pending.push(parts[i]!);
        continue;
      }
      if (!isLast) {
        if (!isDirectory(found.attr.mode)) throw new FsError("ENOTDIR", { op, path: show(path) });
        stack.push({ ino: found.ino, attr: found.attr });
      }
    }
    return { parent, name, entry };
  }
}

function show(path: PathLike): string {
  return typeof path === "string" ? path : bytesToString(path);
}

function concat(chunks: readonly Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function kindOfDt(type: number): FileKind | undefined {
  return type === DT.UNKNOWN ? undefined : fileKind(type << 12);
}
