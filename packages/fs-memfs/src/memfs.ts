import {
  ACCESS,
  bytesToString,
  checkAccess,
  checkCount,
  checkXattrAccess,
  checkXattrValue,
  dtFromMode,
  FALLOC,
  FOPEN,
  FsBackend,
  FsError,
  isCount,
  isDotOrDotDot,
  isTimespec,
  isU32,
  modeAfterWrite,
  newInodeOwnership,
  nowTimespec,
  O,
  openAccess,
  planSetattr,
  RENAME,
  ROOT_INO,
  S,
  SEEK,
  SetattrValid,
  stickyAllows,
  validateEntryName,
  validateName,
  WRITE,
  XATTR,
  xattrNamespace,
  xattrVisible,
  type Attr,
  type CachePolicy,
  type Context,
  type CreateReply,
  type DirEntry,
  type DirEntryPlus,
  type Entry,
  type ErrnoName,
  type OpenReply,
  type SetattrRequest,
  type StatFs,
  type Timespec,
} from "@msb/fs";
import { ByteSlab, bytesKey } from "./bytes.js";
import { Directory, type Slot } from "./directory.js";
import { FileData, MAX_MAP_ENTRIES, PagePool } from "./file-data.js";
import { Inode } from "./inode.js";
import { resolveOptions, type MemFsOptions } from "./options.js";

/** Bytes charged per inode for its metadata, whatever its type. */
const INODE_COST = 256;
/** Bytes charged per directory entry besides its name. */
const ENTRY_COST = 64;
/** Bytes charged per extended attribute besides its name and value. */
const XATTR_COST = 64;
/** Longest symlink target: PATH_MAX less the terminating NUL. */
const SYMLINK_MAX = 4095;
/** Linux caps one read or write at this many bytes (`MAX_RW_COUNT`). */
const MAX_RW = 0x7fff_f000;
const BSIZE = 4096;
/** `statfs` blocks when the capacity is unlimited: 16 TiB. */
const UNLIMITED_BLOCKS = 2 ** 32;
/** Size of a FUSE dirent (`fuse_dirent`, 24 bytes + name, 8-aligned) and of a `fuse_direntplus` (128 bytes more). */
const DIRENT_HEADER = 24;
const DIRENTPLUS_HEADER = 152;
const WHITEOUT_DEV = 0;
const RENAME_FLAGS = RENAME.NOREPLACE | RENAME.EXCHANGE | RENAME.WHITEOUT;
const FALLOC_MODES = FALLOC.KEEP_SIZE | FALLOC.PUNCH_HOLE | FALLOC.ZERO_RANGE;
const EMPTY = new Uint8Array(0);
/** Bytes of freed pages kept for reuse: enough to rewrite a few MiB without allocating. */
const POOL_BYTES = 4 * 1024 * 1024;
const DAY = 86_400;

/** An open file or directory. */
class Handle {
  readonly canRead: boolean;
  readonly canWrite: boolean;
  readonly append: boolean;

  constructor(
    readonly node: Inode,
    readonly isDir: boolean,
    flags: number,
  ) {
    // O_ACCMODE itself (3) opens for neither, as on Linux (it only allows ioctls).
    const mode = flags & O.ACCMODE;
    this.canRead = mode === O.RDONLY || mode === O.RDWR;
    this.canWrite = mode === O.WRONLY || mode === O.RDWR;
    this.append = (flags & O.APPEND) !== 0;
  }
}

const earlier = (a: Timespec, b: Timespec): boolean => a.sec < b.sec || (a.sec === b.sec && a.nsec < b.nsec);

function invalid(op: string, detail: string, ino?: number): FsError {
  return new FsError("EINVAL", { op, ino, detail });
}

/**
 * An in-memory filesystem with Linux (tmpfs) semantics, answering every
 * `DynFileSystem` call synchronously.
 *
 * File data lives in 64 KiB pages, of which only the written ones exist, so
 * sparse files cost what they hold. `capacity` bounds the bytes held (data
 * pages, names, symlink targets, xattrs and 256 bytes per inode, see the
 * README), `maxInodes` the number of inodes and `maxFileSize` any file's
 * size. Permissions are checked for every caller as the kernel would, with
 * root (uid 0) bypassing them as the kernel does.
 *
 * @example
 * ```ts
 * const fs = new MemFs({ capacity: "64MiB", maxInodes: 10_000 });
 * const files = new PathFs(fs);
 * await files.writeFile("/hello.txt", "hi");
 * ```
 */
export class MemFs extends FsBackend {
  /** Bytes charged to the capacity per inode, for its metadata. */
  static readonly INODE_COST = INODE_COST;
  /** Bytes charged per directory entry besides its name's bytes. */
  static readonly ENTRY_COST = ENTRY_COST;
  /** Bytes charged per extended attribute besides its name's and value's bytes. */
  static readonly XATTR_COST = XATTR_COST;

  readonly #capacity: number;
  readonly #maxInodes: number;
  readonly #maxFileSize: number;
  readonly #cache: CachePolicy;
  readonly #fileOpenFlags: number;
  readonly #dirOpenFlags: number;
  readonly #inodes = new Map<number, Inode>();
  readonly #handles = new Map<number, Handle>();
  /** Where the byte arrays handed to callers come from (read data, names). */
  readonly #bytes = new ByteSlab();
  /** Freed pages kept for the next writes (at most POOL_BYTES). */
  readonly #pool = new PagePool(POOL_BYTES);
  #nextIno = ROOT_INO + 1;
  #nextFh = 1;
  #used = 0;

  constructor(options?: MemFsOptions) {
    super();
    const limits = resolveOptions(options);
    this.#capacity = limits.capacity;
    this.#maxInodes = Math.min(limits.maxInodes, MAX_MAP_ENTRIES);
    this.#maxFileSize = limits.maxFileSize;
    this.#cache = limits.cache;
    this.#fileOpenFlags = { never: FOPEN.DIRECT_IO, auto: 0, always: FOPEN.KEEP_CACHE }[limits.cache];
    this.#dirOpenFlags = limits.cache === "always" ? FOPEN.CACHE_DIR | FOPEN.KEEP_CACHE : 0;
    const owner = { uid: limits.rootUid, gid: limits.rootGid, mode: S.IFDIR | limits.rootMode };
    const root = new Inode(ROOT_INO, owner, nowTimespec(), { dir: new Directory() });
    root.parent = ROOT_INO;
    root.nlink = 2;
    root.charged = INODE_COST;
    this.#used = INODE_COST;
    this.#inodes.set(ROOT_INO, root);
  }

  override get cachePolicy(): CachePolicy {
    return this.#cache;
  }

  /** What the filesystem holds now: bytes charged to the capacity, and live inodes (the root included). */
  get usage(): { readonly bytes: number; readonly inodes: number } {
    return { bytes: this.#used, inodes: this.#inodes.size };
  }

  override init(): void {}

  override destroy(): void {}

  // ---- names ------------------------------------------------------------

  override lookup(ctx: Context, parent: number, name: Uint8Array): Entry {
    const dir = this.#dir(parent, "lookup");
    if (!(name instanceof Uint8Array)) throw invalid("lookup", "name is not bytes", parent);
    validateName(name, "lookup", true);
    checkAccess(dir, ctx, ACCESS.X_OK, "lookup");
    if (dir.nlink === 0 && name.length === 2 && isDotOrDotDot(name)) {
      throw new FsError("ENOENT", { op: "lookup", path: "..", ino: parent, detail: "the directory was removed" });
    }
    let node: Inode;
    if (isDotOrDotDot(name)) {
      node = name.length === 1 ? dir : this.#inodes.get(dir.parent)!;
    } else {
      const slot = dir.dir!.get(bytesKey(name));
      if (slot === undefined) throw new FsError("ENOENT", { op: "lookup", path: bytesToString(name), ino: parent });
      node = this.#inodes.get(slot.ino)!;
    }
    node.lookups++;
    return node.entry();
  }

  override forget(_ctx: Context, ino: number, nlookup: number): void {
    if (!isCount(nlookup)) throw invalid("forget", `nlookup ${String(nlookup)}`, ino);
    const node = this.#inodes.get(ino);
    if (node === undefined) return;
    node.lookups = Math.max(0, node.lookups - nlookup);
    this.#maybeFree(node);
  }

  override batchForget(ctx: Context, items: readonly (readonly [number, number])[]): void {
    // Every valid item is applied even when another is not: the kernel never hears back.
    const list: unknown = items;
    if (!Array.isArray(list)) throw invalid("batchForget", "items is not an array");
    let bad: FsError | undefined;
    for (const item of items) {
      try {
        this.forget(ctx, item[0], item[1]);
      } catch (error) {
        bad = FsError.from(error, { op: "batchForget" });
      }
    }
    if (bad !== undefined) throw bad;
  }

  override getattr(_ctx: Context, ino: number, fh?: number): Attr {
    if (fh !== undefined) return this.#handle(ino, fh, "getattr").node.attr();
    return this.#node(ino, "getattr").attr();
  }

  override setattr(ctx: Context, ino: number, req: SetattrRequest): Attr {
    const op = "setattr";
    const node = this.#node(ino, op);
    if (typeof req !== "object" || req === null || !Number.isInteger(req.valid)) throw invalid(op, "malformed request", ino);
    const { valid } = req;
    if (((valid & SetattrValid.UID) !== 0 && !isU32(req.uid)) || ((valid & SetattrValid.GID) !== 0 && !isU32(req.gid))) {
      throw invalid(op, "uid or gid out of range", ino);
    }
    const badTime =
      ((valid & (SetattrValid.ATIME | SetattrValid.ATIME_NOW)) === SetattrValid.ATIME && !isTimespec(req.atime)) ||
      ((valid & (SetattrValid.MTIME | SetattrValid.MTIME_NOW)) === SetattrValid.MTIME && !isTimespec(req.mtime)) ||
      ((valid & SetattrValid.CTIME) !== 0 && !isTimespec(req.ctime));
    if (badTime) throw invalid(op, "malformed time", ino);
    const openForWrite = (valid & SetattrValid.FH) !== 0 && this.#handle(ino, req.fh, op).canWrite;
    const plan = planSetattr(node, ctx, req, { now: nowTimespec(), openForWrite });
    if (plan.size !== undefined) this.#resize(node, plan.size, "truncate");
    if (plan.mode !== undefined) node.mode = plan.mode;
    if (plan.uid !== undefined) node.uid = plan.uid;
    if (plan.gid !== undefined) node.gid = plan.gid;
    if (plan.atime !== undefined) node.atime = plan.atime;
    if (plan.mtime !== undefined) node.mtime = plan.mtime;
    node.ctime = plan.ctime;
    node.changed();
    return node.attr();
  }

  override readlink(_ctx: Context, ino: number): Uint8Array {
    const node = this.#node(ino, "readlink");
    if (node.target === undefined) throw invalid("readlink", "not a symlink", ino);
    return node.target.slice();
  }

  override symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Entry {
    const op = "symlink";
    if (!(target instanceof Uint8Array)) throw invalid(op, "target is not bytes", parent);
    if (target.length === 0) throw new FsError("ENOENT", { op, ino: parent, detail: "empty target" });
    if (target.length > SYMLINK_MAX) throw new FsError("ENAMETOOLONG", { op, ino: parent, detail: `target of ${target.length} bytes` });
    // The kernel passes targets as C strings; one with a NUL could not be read back through it.
    if (target.includes(0)) throw invalid(op, "target holds a NUL byte", parent);
    const node = this.#create(ctx, parent, name, S.IFLNK | 0o777, 0, op, target.length, {});
    node.target = target.slice();
    node.size = target.length;
    return this.#counted(node);
  }

  override mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Entry {
    const op = "mknod";
    let type = mode & S.IFMT;
    if (type === 0) type = S.IFREG;
    if (type === S.IFDIR) throw new FsError("EPERM", { op, ino: parent, detail: "mknod cannot make a directory" });
    if (type !== S.IFREG && type !== S.IFCHR && type !== S.IFBLK && type !== S.IFIFO && type !== S.IFSOCK) {
      throw invalid(op, `file type 0o${type.toString(8)}`, parent);
    }
    const device = type === S.IFCHR || type === S.IFBLK;
    if (device && !isU32(rdev)) throw invalid(op, `device number ${String(rdev)}`, parent);
    if (device && ctx.uid !== 0 && !(type === S.IFCHR && rdev === WHITEOUT_DEV)) {
      throw new FsError("EPERM", { op, ino: parent, detail: "only root makes device nodes" });
    }
    const node = this.#create(ctx, parent, name, type | (mode & S.IALLUGO), umask, op, 0, type === S.IFREG ? { data: new FileData(this.#pool) } : {});
    if (device) node.rdev = rdev;
    return this.#counted(node);
  }

  override mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Entry {
    const dir = this.#inodes.get(parent);
    const node = this.#create(ctx, parent, name, S.IFDIR | (mode & S.IALLUGO), umask, "mkdir", 0, { dir: new Directory() });
    node.parent = parent;
    dir!.nlink++;
    return this.#counted(node);
  }

  override unlink(ctx: Context, parent: number, name: Uint8Array): void {
    const { dir, slot, node } = this.#victim(ctx, parent, name, "unlink", "EISDIR");
    if (node.dir !== undefined) throw new FsError("EISDIR", { op: "unlink", path: bytesToString(name), ino: parent });
    this.#removeName(dir, slot, node, nowTimespec());
  }

  override rmdir(ctx: Context, parent: number, name: Uint8Array): void {
    const op = "rmdir";
    if (name instanceof Uint8Array && name.length === 2 && isDotOrDotDot(name)) throw new FsError("ENOTEMPTY", { op, path: "..", ino: parent });
    const { dir, slot, node } = this.#victim(ctx, parent, name, op, "EINVAL");
    if (node.dir === undefined) throw new FsError("ENOTDIR", { op, path: bytesToString(name), ino: parent });
    if (node.dir.size > 0) throw new FsError("ENOTEMPTY", { op, path: bytesToString(name), ino: parent });
    this.#removeName(dir, slot, node, nowTimespec());
  }

  override rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): void {
    const op = "rename";
    if (!Number.isInteger(flags) || (flags & ~RENAME_FLAGS) !== 0 || flags < 0) throw invalid(op, `flags ${String(flags)}`, parent);
    const exchange = (flags & RENAME.EXCHANGE) !== 0;
    if (exchange && (flags & (RENAME.NOREPLACE | RENAME.WHITEOUT)) !== 0) throw invalid(op, "RENAME_EXCHANGE with other flags", parent);
    // The contract keeps whiteouts to root, as Linux did before 5.8 (CAP_MKNOD).
    if ((flags & RENAME.WHITEOUT) !== 0 && ctx.uid !== 0) throw new FsError("EPERM", { op, ino: parent, detail: "RENAME_WHITEOUT needs root" });
    const oldDir = this.#dir(parent, op);
    const newDir = this.#dir(newParent, op);
    validateEntryName(name, op, "EBUSY");
    validateEntryName(newName, op, (flags & RENAME.NOREPLACE) !== 0 ? "EEXIST" : "EBUSY");
    checkAccess(oldDir, ctx, ACCESS.X_OK, op);
    checkAccess(newDir, ctx, ACCESS.X_OK, op);
    const srcSlot = oldDir.dir!.get(bytesKey(name));
    if (srcSlot === undefined) throw new FsError("ENOENT", { op, path: bytesToString(name), ino: parent });
    const newKey = bytesKey(newName);
    const dstSlot = newDir.dir!.get(newKey);
    const path = bytesToString(name);
    const dest = bytesToString(newName);
    if (dstSlot !== undefined && (flags & RENAME.NOREPLACE) !== 0) throw new FsError("EEXIST", { op, path, dest });
    if (dstSlot === undefined && exchange) throw new FsError("ENOENT", { op, path, dest });
    if (newDir.nlink === 0) throw new FsError("ENOENT", { op, path, dest, detail: "the directory was removed" });
    const src = this.#inodes.get(srcSlot.ino)!;
    const dst = dstSlot === undefined ? undefined : this.#inodes.get(dstSlot.ino)!;
    // Loops: a directory may not move below itself, nor may its ancestor be replaced.
    if (src.dir !== undefined && this.#isAncestor(src, newDir)) throw new FsError("EINVAL", { op, path, dest, detail: "into its own subtree" });
    if (dst?.dir !== undefined && this.#isAncestor(dst, oldDir)) throw new FsError(exchange ? "EINVAL" : "ENOTEMPTY", { op, path, dest });
    if (src === dst) return;

    checkAccess(oldDir, ctx, ACCESS.W_OK, op);
    if (!stickyAllows(oldDir, src, ctx)) throw new FsError("EPERM", { op, path, dest, detail: "sticky directory" });
    if (newDir !== oldDir) checkAccess(newDir, ctx, ACCESS.W_OK, op);
    if (dst !== undefined && !stickyAllows(newDir, dst, ctx)) throw new FsError("EPERM", { op, path, dest, detail: "sticky directory" });
    if (dst !== undefined && !exchange) {
      if (src.dir !== undefined && dst.dir === undefined) throw new FsError("ENOTDIR", { op, path, dest });
      if (src.dir === undefined && dst.dir !== undefined) throw new FsError("EISDIR", { op, path, dest });
    }
    // A directory changing parents rewrites its "..": that needs write access to it.
    if (newDir !== oldDir) {
      if (src.dir !== undefined) checkAccess(src, ctx, ACCESS.W_OK, op);
      if (exchange && dst?.dir !== undefined) checkAccess(dst, ctx, ACCESS.W_OK, op);
    }
    if (!exchange && dst?.dir !== undefined && dst.dir.size > 0) throw new FsError("ENOTEMPTY", { op, path, dest });

    const now = nowTimespec();
    if (exchange) {
      this.#exchange(oldDir, srcSlot, src, newDir, dstSlot!, dst!, now);
      return;
    }
    const whiteout = (flags & RENAME.WHITEOUT) !== 0;
    // Everything that can fail is checked before anything changes: the name
    // moves (its length may change), a replaced name goes, a whiteout comes.
    if (whiteout) this.#checkInodeRoom(op);
    if (dstSlot === undefined && newDir !== oldDir && newDir.dir!.size >= MAX_MAP_ENTRIES) throw new FsError("ENOSPC", { op, path, dest });
    const replaced = dstSlot === undefined ? 0 : ENTRY_COST + newName.length;
    this.#checkRoom(newName.length - name.length - replaced + (whiteout ? INODE_COST + ENTRY_COST + name.length : 0), op);

    if (dstSlot !== undefined) this.#removeName(newDir, dstSlot, dst!, now);
    this.#dropName(oldDir, srcSlot, src);
    this.#addName(newDir, newKey, src);
    if (src.dir !== undefined && newDir !== oldDir) {
      oldDir.nlink--;
      newDir.nlink++;
      src.parent = newDir.ino;
    }
    src.ctime = now;
    src.changed();
    oldDir.modified(now);
    newDir.modified(now);
    if (whiteout) {
      const owner = newInodeOwnership(ctx, oldDir, S.IFCHR, 0);
      const node = this.#newInode(owner, now, {});
      node.rdev = WHITEOUT_DEV;
      this.#addName(oldDir, srcSlot.key, node);
    }
  }

  override link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Entry {
    const op = "link";
    const node = this.#node(ino, op);
    if (node.dir !== undefined) throw new FsError("EPERM", { op, ino, detail: "hard link to a directory" });
    const { dir, key } = this.#placeFor(ctx, newParent, newName, op);
    if (node.nlink === 0) throw new FsError("ENOENT", { op, ino, detail: "the file was removed" });
    this.#checkRoom(ENTRY_COST + newName.length, op);
    const now = nowTimespec();
    this.#addName(dir, key, node);
    node.ctime = now;
    node.changed();
    dir.modified(now);
    return this.#counted(node);
  }

  // ---- files ------------------------------------------------------------

  override open(ctx: Context, ino: number, flags: number): OpenReply {
    const op = "open";
    const node = this.#node(ino, op);
    if (!Number.isInteger(flags)) throw invalid(op, `flags ${String(flags)}`, ino);
    this.#checkOpen(ctx, node, flags, op);
    return this.#openFile(ctx, node, flags);
  }

  override create(ctx: Context, parent: number, name: Uint8Array, mode: number, flags: number, umask: number): CreateReply {
    const op = "create";
    if (!Number.isInteger(flags)) throw invalid(op, `flags ${String(flags)}`, parent);
    const dir = this.#dir(parent, op);
    validateEntryName(name, op, "EISDIR");
    checkAccess(dir, ctx, ACCESS.X_OK, op);
    const slot = dir.nlink === 0 ? undefined : dir.dir!.get(bytesKey(name));
    if (slot !== undefined) {
      if ((flags & O.EXCL) !== 0) throw new FsError("EEXIST", { op, path: bytesToString(name), ino: parent });
      const existing = this.#inodes.get(slot.ino)!;
      if (existing.dir !== undefined) throw new FsError("EISDIR", { op, path: bytesToString(name), ino: parent });
      this.#checkOpen(ctx, existing, flags, op);
      const reply = this.#openFile(ctx, existing, flags);
      return { entry: this.#counted(existing), fh: reply.fh, flags: reply.flags };
    }
    const node = this.#create(ctx, parent, name, S.IFREG | (mode & S.IALLUGO), umask, op, 0, { data: new FileData(this.#pool) });
    // A file this call created opens with any access and is not truncated (FMODE_CREATED).
    const fh = this.#addHandle(node, false, flags & ~O.TRUNC, op);
    return { entry: this.#counted(node), fh, flags: this.#fileOpenFlags };
  }

  override read(_ctx: Context, ino: number, fh: number, size: number, offset: number): Uint8Array {
    const op = "read";
    const node = this.#readable(ino, fh, size, offset, op);
    const length = Math.min(size, node.size - offset, MAX_RW);
    if (length <= 0) return EMPTY;
    let data: Uint8Array;
    try {
      data = node.data!.read(offset, this.#bytes.take(length));
    } catch (error) {
      throw new FsError("ENOMEM", { op, ino, detail: `read of ${length} bytes`, cause: error });
    }
    this.#accessed(node);
    return data;
  }

  /** `read` into the caller's `target`, so no array is made (the optional `readInto` of the contract). */
  readInto(_ctx: Context, ino: number, fh: number, target: Uint8Array, offset: number): number {
    const op = "read";
    if (!(target instanceof Uint8Array)) throw invalid(op, "target is not bytes", ino);
    const node = this.#readable(ino, fh, target.length, offset, op);
    const length = Math.min(target.length, node.size - offset, MAX_RW);
    if (length <= 0) return 0;
    node.data!.read(offset, length === target.length ? target : target.subarray(0, length));
    this.#accessed(node);
    return length;
  }

  /** The regular file a read of `size` bytes at `offset` through handle `fh` of `ino` reads, or the kernel's error. */
  #readable(ino: number, fh: number, size: number, offset: number, op: string): Inode {
    const handle = this.#handles.get(fh);
    if (handle === undefined || handle.node.ino !== ino || !handle.canRead) throw this.#badHandle(ino, fh, op);
    const node = handle.node;
    this.#fileData(node, op);
    checkCount(size, "size", op, ino);
    checkCount(offset, "offset", op, ino);
    return node;
  }

  override write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): number {
    const op = "write";
    const handle = this.#handles.get(fh);
    if (handle === undefined || handle.node.ino !== ino || !handle.canWrite) throw this.#badHandle(ino, fh, op);
    const node = handle.node;
    const file = this.#fileData(node, op);
    if (!(data instanceof Uint8Array)) throw invalid(op, "data is not bytes", ino);
    checkCount(offset, "offset", op, ino);
    if (handle.append) offset = node.size;
    if (data.length === 0) return 0;
    if (offset >= this.#maxFileSize) throw new FsError("EFBIG", { op, ino, detail: `offset ${offset} at or past the largest file size` });
    const length = Math.min(data.length, this.#maxFileSize - offset, MAX_RW);
    const before = file.allocated;
    const written = file.write(length === data.length ? data : data.subarray(0, length), offset, this.#capacity - this.#used);
    this.#used += file.allocated - before;
    if (written === 0) throw new FsError("ENOSPC", { op, ino });
    if (offset + written > node.size) node.size = offset + written;
    this.#wrote(node, ctx, (flags & WRITE.KILL_SUIDGID) !== 0);
    return written;
  }

  override flush(_ctx: Context, ino: number, fh: number, _lockOwner: number): void {
    this.#handle(ino, fh, "flush");
  }

  override fsync(_ctx: Context, ino: number, fh: number, _datasync: boolean): void {
    this.#handle(ino, fh, "fsync");
  }

  override fallocate(ctx: Context, ino: number, fh: number, mode: number, offset: number, length: number): void {
    const op = "fallocate";
    const handle = this.#handle(ino, fh, op);
    if (!handle.canWrite) throw this.#badHandle(ino, fh, op);
    // Directories never open for writing, so only special files get here without data.
    const node = handle.node;
    if (node.data === undefined) throw new FsError("ENODEV", { op, ino, detail: "not a regular file" });
    if (!Number.isInteger(mode) || mode < 0) throw invalid(op, `mode ${String(mode)}`, ino);
    checkCount(offset, "offset", op, ino);
    if (!isCount(length) || length === 0) throw invalid(op, `length ${String(length)}`, ino);
    const punch = (mode & FALLOC.PUNCH_HOLE) !== 0;
    const zero = (mode & FALLOC.ZERO_RANGE) !== 0;
    const keepSize = (mode & FALLOC.KEEP_SIZE) !== 0;
    if ((mode & ~FALLOC_MODES) !== 0 || (punch && (zero || !keepSize))) {
      throw new FsError("EOPNOTSUPP", { op, ino, detail: `mode 0x${mode.toString(16)}` });
    }
    const end = offset + length;
    if (end > this.#maxFileSize) throw new FsError("EFBIG", { op, ino, detail: `end ${end} past the largest file size` });
    const file = node.data;
    const before = file.allocated;
    if (punch) {
      file.punch(offset, end);
    } else if (this.#capacity === Infinity) {
      // Nothing to reserve against, and allocating would let one call take
      // all the host's memory: zeroes read the same from a hole.
      if (zero) file.punch(offset, end);
    } else {
      if (!file.allocate(offset, end, this.#capacity - this.#used)) throw new FsError("ENOSPC", { op, ino, detail: `${length} bytes at ${offset}` });
      if (zero) file.zero(offset, end);
    }
    if (!punch && !keepSize && end > node.size) node.size = end;
    this.#used += file.allocated - before;
    this.#wrote(node, ctx, false);
  }

  override release(_ctx: Context, ino: number, fh: number, _flags: number): void {
    this.#closeHandle(ino, fh, false, "release");
  }

  override statfs(_ctx: Context, _ino: number): StatFs {
    const limited = this.#capacity !== Infinity;
    const blocks = limited ? Math.floor(this.#capacity / BSIZE) : UNLIMITED_BLOCKS;
    const free = limited ? Math.max(0, Math.floor((this.#capacity - this.#used) / BSIZE)) : Math.max(0, blocks - Math.ceil(this.#used / BSIZE));
    const files = this.#maxInodes;
    return { blocks, bfree: free, bavail: free, files, ffree: Math.max(0, files - this.#inodes.size), bsize: BSIZE, namelen: 255, frsize: BSIZE };
  }

  // ---- xattrs -----------------------------------------------------------

  override setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): void {
    const op = "setxattr";
    const node = this.#node(ino, op);
    // Both flags at once are allowed and can never succeed, as on Linux: EEXIST or ENODATA.
    if (!Number.isInteger(flags) || (flags & ~(XATTR.CREATE | XATTR.REPLACE)) !== 0) throw invalid(op, `flags ${String(flags)}`, ino);
    if (!(name instanceof Uint8Array) || !(value instanceof Uint8Array)) throw invalid(op, "name or value is not bytes", ino);
    const ns = xattrNamespace(name, op);
    checkXattrValue(value, op);
    checkXattrAccess(node, ctx, ns, true, op);
    const key = bytesKey(name);
    const old = node.xattrs?.get(key);
    if (old !== undefined && (flags & XATTR.CREATE) !== 0) throw new FsError("EEXIST", { op, ino, path: bytesToString(name) });
    if (old === undefined && (flags & XATTR.REPLACE) !== 0) throw new FsError("ENODATA", { op, ino, path: bytesToString(name) });
    const xattrs = (node.xattrs ??= new Map());
    if (old === undefined && xattrs.size >= MAX_MAP_ENTRIES) throw new FsError("ENOSPC", { op, ino, detail: "too many xattrs" });
    const cost = old === undefined ? XATTR_COST + key.length + value.length : value.length - old.length;
    this.#checkRoom(cost, op);
    xattrs.set(key, value.slice());
    this.#charge(node, cost);
    node.ctime = nowTimespec();
    node.changed();
  }

  override getxattr(ctx: Context, ino: number, name: Uint8Array): Uint8Array {
    const op = "getxattr";
    const node = this.#node(ino, op);
    const key = this.#xattrKey(ctx, node, name, false, op);
    return node.xattrs!.get(key)!.slice();
  }

  override listxattr(ctx: Context, ino: number): Uint8Array[] {
    const node = this.#node(ino, "listxattr");
    const names: Uint8Array[] = [];
    for (const key of node.xattrs?.keys() ?? []) {
      const name = this.#bytes.keyBytes(key);
      if (xattrVisible(name, ctx)) names.push(name);
    }
    return names;
  }

  override removexattr(ctx: Context, ino: number, name: Uint8Array): void {
    const op = "removexattr";
    const node = this.#node(ino, op);
    const key = this.#xattrKey(ctx, node, name, true, op);
    const value = node.xattrs!.get(key)!;
    node.xattrs!.delete(key);
    this.#charge(node, -(XATTR_COST + key.length + value.length));
    node.ctime = nowTimespec();
    node.changed();
  }

  // ---- directories ------------------------------------------------------

  override opendir(ctx: Context, ino: number, flags: number): OpenReply {
    const op = "opendir";
    const node = this.#node(ino, op);
    if (node.dir === undefined) throw new FsError("ENOTDIR", { op, ino });
    if (!Number.isInteger(flags)) throw invalid(op, `flags ${String(flags)}`, ino);
    if ((flags & O.ACCMODE) !== O.RDONLY) throw new FsError("EISDIR", { op, ino });
    checkAccess(node, ctx, ACCESS.R_OK, op);
    return { fh: this.#addHandle(node, true, flags, op), flags: this.#dirOpenFlags };
  }

  override readdir(_ctx: Context, ino: number, fh: number, offset: number, size: number): DirEntry[] {
    return this.#list(ino, fh, offset, size, false, "readdir");
  }

  override readdirplus(_ctx: Context, ino: number, fh: number, offset: number, size: number): DirEntryPlus[] {
    return this.#list(ino, fh, offset, size, true, "readdirplus") as DirEntryPlus[];
  }

  override releasedir(_ctx: Context, ino: number, fh: number, _flags: number): void {
    this.#closeHandle(ino, fh, true, "releasedir");
  }

  override fsyncdir(_ctx: Context, ino: number, fh: number, _datasync: boolean): void {
    this.#handle(ino, fh, "fsyncdir");
  }

  override access(ctx: Context, ino: number, mask: number): void {
    const node = this.#node(ino, "access");
    if (!Number.isInteger(mask) || (mask & ~(ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK)) !== 0) throw invalid("access", `mask ${String(mask)}`, ino);
    checkAccess(node, ctx, mask, "access");
  }

  override lseek(_ctx: Context, ino: number, fh: number, offset: number, whence: number): number {
    const op = "lseek";
    const node = this.#handle(ino, fh, op).node;
    if (!Number.isSafeInteger(offset)) throw invalid(op, `offset ${String(offset)}`, ino);
    const size = node.data === undefined ? 0 : node.size;
    switch (whence) {
      case SEEK.SET:
      case SEEK.CUR:
      case SEEK.END: {
        const pos = whence === SEEK.END ? size + offset : offset;
        if (pos < 0) throw invalid(op, `offset ${pos}`, ino);
        return pos;
      }
      case SEEK.DATA:
      case SEEK.HOLE: {
        if (offset < 0 || offset >= size) throw new FsError("ENXIO", { op, ino, detail: `offset ${offset} of ${size} bytes` });
        const file = this.#fileData(node, op);
        const pos = whence === SEEK.DATA ? file.nextData(offset) : file.nextHole(offset);
        if (whence === SEEK.HOLE) return Math.min(pos, size);
        if (pos >= size) throw new FsError("ENXIO", { op, ino, detail: `no data after ${offset}` });
        return pos;
      }
      default:
        throw invalid(op, `whence ${String(whence)}`, ino);
    }
  }

  override copyFileRange(
    ctx: Context,
    inoIn: number,
    fhIn: number,
    offsetIn: number,
    inoOut: number,
    fhOut: number,
    offsetOut: number,
    length: number,
    flags: number,
  ): number {
    const op = "copy_file_range";
    if (flags !== 0) throw invalid(op, `flags ${String(flags)}`, inoIn);
    const from = this.#handle(inoIn, fhIn, op);
    const to = this.#handle(inoOut, fhOut, op);
    if (!from.canRead) throw this.#badHandle(inoIn, fhIn, op);
    if (!to.canWrite || to.append) throw this.#badHandle(inoOut, fhOut, op);
    const src = this.#fileData(from.node, op);
    const dst = this.#fileData(to.node, op);
    checkCount(offsetIn, "offset", op, inoIn);
    checkCount(offsetOut, "offset", op, inoOut);
    checkCount(length, "length", op, inoIn);
    const size = from.node.size;
    let count = offsetIn >= size ? 0 : Math.min(length, size - offsetIn, MAX_RW);
    if (count === 0) return 0;
    if (offsetOut >= this.#maxFileSize) throw new FsError("EFBIG", { op, ino: inoOut });
    count = Math.min(count, this.#maxFileSize - offsetOut);
    if (src === dst && offsetOut + count > offsetIn && offsetOut < offsetIn + count) {
      throw invalid(op, "overlapping ranges of one file", inoIn);
    }
    const before = dst.allocated;
    const copied = src.copyTo(dst, offsetIn, count, offsetOut, this.#capacity - this.#used);
    this.#used += dst.allocated - before;
    if (copied === 0) throw new FsError("ENOSPC", { op, ino: inoOut });
    const node = to.node;
    if (offsetOut + copied > node.size) node.size = offsetOut + copied;
    this.#wrote(node, ctx, false);
    return copied;
  }

  // ---- internals --------------------------------------------------------

  #node(ino: number, op: string): Inode {
    const node = this.#inodes.get(ino);
    if (node === undefined) throw new FsError("ENOENT", { op, ino });
    return node;
  }

  #dir(ino: number, op: string): Inode {
    const node = this.#node(ino, op);
    if (node.dir === undefined) throw new FsError("ENOTDIR", { op, ino });
    return node;
  }

  #fileData(node: Inode, op: string): FileData {
    if (node.data !== undefined) return node.data;
    throw node.dir !== undefined ? new FsError("EISDIR", { op, ino: node.ino }) : invalid(op, "not a regular file", node.ino);
  }

  #badHandle(ino: number, fh: number, op: string): FsError {
    return new FsError("EBADF", { op, ino, detail: `handle ${String(fh)}` });
  }

  /** The open handle `fh` of inode `ino`, or `EBADF`. */
  #handle(ino: number, fh: number, op: string): Handle {
    const handle = this.#handles.get(fh);
    if (handle === undefined || handle.node.ino !== ino) throw this.#badHandle(ino, fh, op);
    return handle;
  }

  #addHandle(node: Inode, isDir: boolean, flags: number, op: string): number {
    if (this.#handles.size >= MAX_MAP_ENTRIES) throw new FsError("ENFILE", { op, ino: node.ino });
    const fh = this.#nextFh++;
    this.#handles.set(fh, new Handle(node, isDir, flags));
    node.opens++;
    return fh;
  }

  #closeHandle(ino: number, fh: number, isDir: boolean, op: string): void {
    const handle = this.#handle(ino, fh, op);
    if (handle.isDir !== isDir) throw this.#badHandle(ino, fh, op);
    this.#handles.delete(fh);
    handle.node.opens--;
    this.#maybeFree(handle.node);
  }

  /** The kernel's checks of `open` on an existing inode (`may_open`). */
  #checkOpen(ctx: Context, node: Inode, flags: number, op: string): void {
    const type = node.type;
    if (type === S.IFLNK) throw new FsError("ELOOP", { op, ino: node.ino, detail: "a symlink" });
    if ((flags & O.DIRECTORY) !== 0 && type !== S.IFDIR) throw new FsError("ENOTDIR", { op, ino: node.ino });
    const mask = openAccess(flags);
    if (type === S.IFDIR && (mask & ACCESS.W_OK) !== 0) throw new FsError("EISDIR", { op, ino: node.ino });
    checkAccess(node, ctx, mask, op);
  }

  /** Opens a checked inode; truncates a regular file on `O_TRUNC`. */
  #openFile(ctx: Context, node: Inode, flags: number): OpenReply {
    const isDir = node.dir !== undefined;
    const fh = this.#addHandle(node, isDir, flags, "open");
    if ((flags & O.TRUNC) !== 0 && node.data !== undefined) {
      this.#resize(node, 0, "open");
      this.#wrote(node, ctx, false);
    }
    return { fh, flags: isDir ? this.#dirOpenFlags : this.#fileOpenFlags };
  }

  /** Sets a regular file's size, freeing what a shrink cuts off. */
  #resize(node: Inode, size: number, op: string): void {
    if (size > this.#maxFileSize) throw new FsError("EFBIG", { op, ino: node.ino, detail: `size ${size}` });
    const file = node.data!;
    if (size < node.size) {
      const before = file.allocated;
      file.truncate(size);
      this.#used += file.allocated - before;
    }
    node.size = size;
    node.changed();
  }

  /** After data changed: mtime and ctime now, and setuid/setgid dropped as the kernel would for `ctx`. */
  #wrote(node: Inode, ctx: Context, killSuidgid: boolean): void {
    node.mode = modeAfterWrite(node, ctx, killSuidgid);
    node.modified(nowTimespec());
  }

  /** relatime: atime moves when it is older than mtime or ctime, or a day old. */
  #accessed(node: Inode): void {
    const atime = node.atime;
    if (earlier(node.mtime, atime) && earlier(node.ctime, atime) && Date.now() / 1000 - atime.sec < DAY) return;
    node.atime = nowTimespec();
    node.changed();
  }

  /**
   * Checks that `ctx` may add `name` to directory `parent` (search and write
   * access, a name that is free) and returns the directory and the name's key.
   */
  #placeFor(ctx: Context, parent: number, name: Uint8Array, op: string): { dir: Inode; key: string } {
    const dir = this.#dir(parent, op);
    validateEntryName(name, op, "EEXIST");
    checkAccess(dir, ctx, ACCESS.X_OK, op);
    if (dir.nlink === 0) throw new FsError("ENOENT", { op, ino: parent, detail: "the directory was removed" });
    const key = bytesKey(name);
    if (dir.dir!.get(key) !== undefined) throw new FsError("EEXIST", { op, path: bytesToString(name), ino: parent });
    checkAccess(dir, ctx, ACCESS.W_OK, op);
    if (dir.dir!.size >= MAX_MAP_ENTRIES) throw new FsError("ENOSPC", { op, ino: parent, detail: "directory full" });
    return { dir, key };
  }

  /** Creates an inode named `name` in `parent`, with `extra` bytes charged for its contents; not yet counted as a lookup. */
  #create(
    ctx: Context,
    parent: number,
    name: Uint8Array,
    mode: number,
    umask: number,
    op: string,
    extra: number,
    contents: { data?: FileData; dir?: Directory },
  ): Inode {
    const { dir, key } = this.#placeFor(ctx, parent, name, op);
    this.#checkInodeRoom(op);
    this.#checkRoom(INODE_COST + extra + ENTRY_COST + name.length, op);
    const now = nowTimespec();
    const node = this.#newInode(newInodeOwnership(ctx, dir, mode, umask), now, contents);
    this.#charge(node, extra);
    this.#addName(dir, key, node);
    dir.modified(now);
    return node;
  }

  #newInode(owner: { uid: number; gid: number; mode: number }, now: Timespec, contents: { data?: FileData; dir?: Directory }): Inode {
    const node = new Inode(this.#nextIno++, owner, now, contents);
    this.#charge(node, INODE_COST);
    this.#inodes.set(node.ino, node);
    return node;
  }

  #counted(node: Inode): Entry {
    node.lookups++;
    return node.entry();
  }

  #checkInodeRoom(op: string): void {
    if (this.#inodes.size >= this.#maxInodes) throw new FsError("ENOSPC", { op, detail: `all ${this.#maxInodes} inodes in use` });
  }

  #checkRoom(bytes: number, op: string): void {
    if (bytes > 0 && bytes > this.#capacity - this.#used) {
      throw new FsError("ENOSPC", { op, detail: `${bytes} bytes more than the ${this.#capacity - this.#used} left` });
    }
  }

  /** Charges (or refunds, when negative) bytes held by `node` besides its file data. */
  #charge(node: Inode, bytes: number): void {
    node.charged += bytes;
    this.#used += bytes;
  }

  /** Links `node` as the name `key` in `dir`, charging the entry. */
  #addName(dir: Inode, key: string, node: Inode): Slot {
    const slot = dir.dir!.add(key, node.ino);
    this.#used += ENTRY_COST + key.length;
    node.nlink++;
    node.changed();
    dir.changed();
    return slot;
  }

  /** Removes the name `slot` of `node` from `dir` and refunds it. */
  #dropName(dir: Inode, slot: Slot, node: Inode): void {
    dir.dir!.remove(slot);
    this.#used -= ENTRY_COST + slot.key.length;
    node.nlink--;
    node.changed();
    dir.changed();
  }

  /** Removes the name `slot` of `node` from `dir` (unlink, rmdir, rename over it); frees the inode if nothing holds it. */
  #removeName(dir: Inode, slot: Slot, node: Inode, now: Timespec): void {
    this.#dropName(dir, slot, node);
    if (node.dir !== undefined) {
      // Its "." goes too, and the parent loses the child's "..".
      node.nlink = 0;
      dir.nlink--;
    }
    node.ctime = now;
    node.changed();
    dir.modified(now);
    this.#maybeFree(node);
  }

  /** Finds the entry `name` of `parent` that `ctx` wants to remove, checking its rights (`may_delete`). */
  #victim(ctx: Context, parent: number, name: Uint8Array, op: string, dotErrno: ErrnoName): { dir: Inode; slot: Slot; node: Inode } {
    const dir = this.#dir(parent, op);
    validateEntryName(name, op, dotErrno);
    checkAccess(dir, ctx, ACCESS.X_OK, op);
    const slot = dir.dir!.get(bytesKey(name));
    if (slot === undefined) throw new FsError("ENOENT", { op, path: bytesToString(name), ino: parent });
    const node = this.#inodes.get(slot.ino)!;
    checkAccess(dir, ctx, ACCESS.W_OK, op);
    if (!stickyAllows(dir, node, ctx)) throw new FsError("EPERM", { op, path: bytesToString(name), ino: parent, detail: "sticky directory" });
    return { dir, slot, node };
  }

  /** True when directory `node` is `dir` or one of its ancestors. */
  #isAncestor(node: Inode, dir: Inode): boolean {
    for (let at = dir; ; at = this.#inodes.get(at.parent)!) {
      if (at === node) return true;
      if (at.ino === ROOT_INO) return false;
    }
  }

  #exchange(oldDir: Inode, srcSlot: Slot, src: Inode, newDir: Inode, dstSlot: Slot, dst: Inode, now: Timespec): void {
    srcSlot.ino = dst.ino;
    dstSlot.ino = src.ino;
    if (oldDir !== newDir) {
      if (src.dir !== undefined) {
        src.parent = newDir.ino;
        oldDir.nlink--;
        newDir.nlink++;
      }
      if (dst.dir !== undefined) {
        dst.parent = oldDir.ino;
        newDir.nlink--;
        oldDir.nlink++;
      }
    }
    src.ctime = dst.ctime = now;
    src.changed();
    dst.changed();
    oldDir.modified(now);
    newDir.modified(now);
  }

  /** Drops an inode nothing refers to any more: no name, no lookup, no open handle. */
  #maybeFree(node: Inode): void {
    if (node.nlink !== 0 || node.lookups !== 0 || node.opens !== 0 || node.ino === ROOT_INO) return;
    if (this.#inodes.delete(node.ino)) this.#used -= node.charged + (node.data?.allocated ?? 0);
  }

  /** The key of an existing xattr `ctx` may read (or change, with `write`), or the kernel's error. */
  #xattrKey(ctx: Context, node: Inode, name: Uint8Array, write: boolean, op: string): string {
    if (!(name instanceof Uint8Array)) throw invalid(op, "name is not bytes", node.ino);
    checkXattrAccess(node, ctx, xattrNamespace(name, op), write, op);
    const key = bytesKey(name);
    if (node.xattrs?.has(key) !== true) throw new FsError("ENODATA", { op, ino: node.ino, path: bytesToString(name) });
    return key;
  }

  /** readdir and readdirplus: entries after cookie `offset`, within about `size` bytes of FUSE dirents. */
  #list(ino: number, fh: number, offset: number, size: number, plus: boolean, op: string): DirEntry[] {
    const handle = this.#handle(ino, fh, op);
    if (!handle.isDir) throw this.#badHandle(ino, fh, op);
    checkCount(offset, "offset", op, ino);
    checkCount(size, "size", op, ino);
    const node = handle.node;
    if (node.nlink === 0) throw new FsError("ENOENT", { op, ino, detail: "the directory was removed" });
    const header = plus ? DIRENTPLUS_HEADER : DIRENT_HEADER;
    const out: DirEntry[] = [];
    let used = 0;
    const add = (child: Inode, key: string, cookie: number, counted: boolean): boolean => {
      const bytes = (header + key.length + 7) & ~7;
      if (out.length > 0 && used + bytes > size) return false;
      used += bytes;
      const name = this.#bytes.keyBytes(key);
      const type = dtFromMode(child.mode);
      if (!plus) {
        out.push({ ino: child.ino, offset: cookie, type, name });
        return true;
      }
      if (counted) child.lookups++;
      const plusEntry: DirEntryPlus = { ino: child.ino, offset: cookie, type, name, entry: child.entry() };
      out.push(plusEntry);
      return true;
    };
    if (offset < 1 && !add(node, ".", 1, false)) return out;
    if (offset < 2 && !add(this.#inodes.get(node.parent)!, "..", 2, false)) return out;
    node.dir!.forEachAfter(offset, (slot) => add(this.#inodes.get(slot.ino)!, slot.key, slot.seq, true));
    this.#accessed(node);
    return out;
  }
}
