/** A value now, or later: backends may answer synchronously on the hot path. */
export type MaybePromise<T> = T | Promise<T>;

/** Who is asking: the caller's credentials as the kernel reports them. */
export interface Context {
  /** Effective (filesystem) user id of the caller. */
  readonly uid: number;
  /** Effective (filesystem) group id of the caller. */
  readonly gid: number;
  /** Process id of the caller, `0` when unknown. */
  readonly pid: number;
  /** Supplementary groups, when the transport knows them. */
  readonly groups?: readonly number[];
}

/** A point in time: seconds since the epoch and nanoseconds within that second. */
export interface Timespec {
  readonly sec: number;
  readonly nsec: number;
}

/**
 * The attributes of an inode, as `stat(2)` reports them. `mode` holds the
 * file type bits (`S.IFMT`) and the permission bits.
 *
 * Inode numbers are safe integers (below 2^53). An Attr returned by a backend
 * belongs to the backend: callers must not modify it.
 */
export interface Attr {
  readonly ino: number;
  readonly size: number;
  /** Allocated space in 512-byte units. */
  readonly blocks: number;
  readonly atime: Timespec;
  readonly mtime: Timespec;
  readonly ctime: Timespec;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  /** Device number of a character or block device, `makedev`-encoded as Linux does. */
  readonly rdev: number;
  /** Preferred I/O size. */
  readonly blksize: number;
}

/**
 * The answer to a name lookup (and to every operation that creates a name).
 * Each Entry returned counts one lookup of `ino` that the caller later
 * releases with `forget`.
 */
export interface Entry {
  readonly ino: number;
  /** Distinguishes reuses of one inode number over the filesystem's lifetime. */
  readonly generation: number;
  readonly attr: Attr;
  /** Seconds the kernel may cache the name → inode mapping; the cache policy decides when omitted. */
  readonly entryTimeout?: number;
  /** Seconds the kernel may cache the attributes; the cache policy decides when omitted. */
  readonly attrTimeout?: number;
}

/**
 * What `setattr` changes. Only the fields whose {@link SetattrValid} bit is set in
 * `valid` are read; the others may hold anything.
 */
export interface SetattrRequest {
  readonly valid: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly atime: Timespec;
  readonly mtime: Timespec;
  readonly ctime: Timespec;
  /** The open file handle the change came through (`SetattrValid.FH`). */
  readonly fh: number;
}

/** The result of `open`, `opendir`: a handle and {@link FOPEN} flags. */
export interface OpenReply {
  /** The backend's handle for this open file or directory. */
  readonly fh: number;
  /** `FOPEN_*` bits; `0` lets the cache policy decide. */
  readonly flags?: number;
}

/** The result of `create`: the new name's entry and its open handle. */
export interface CreateReply extends OpenReply {
  readonly entry: Entry;
}

/** One directory entry from `readdir`. */
export interface DirEntry {
  readonly ino: number;
  /** Cookie of the NEXT entry: passing it back as `offset` resumes after this one. */
  readonly offset: number;
  /** A {@link DT} value. */
  readonly type: number;
  readonly name: Uint8Array;
}

/**
 * One directory entry from `readdirplus`, with the lookup result of its name.
 * Each `entry` counts one lookup, except those of `.` and `..`, which the
 * kernel never forgets and so a backend must not count.
 */
export interface DirEntryPlus extends DirEntry {
  readonly entry: Entry;
}

/** Filesystem statistics, as `statfs(2)` reports them. */
export interface StatFs {
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
  readonly bsize: number;
  readonly namelen: number;
  readonly frsize: number;
}

/**
 * How much the kernel may cache: `never` bypasses the page cache (`DIRECT_IO`,
 * zero timeouts), `auto` caches with short timeouts and revalidates on open,
 * `always` keeps file data across opens (`KEEP_CACHE`), caches directory
 * listings and uses long timeouts. `always` is only correct when nothing but
 * this mount changes the files.
 */
export type CachePolicy = "never" | "auto" | "always";

/**
 * A filesystem a kernel could mount: inode-based and shaped like the FUSE
 * protocol, so one implementation serves `/dev/fuse`, a guest, or in-process
 * code alike.
 *
 * Rules every implementation keeps:
 * - Errors are thrown (or rejected) as {@link FsError}; nothing else escapes.
 * - Inode 1 is the root. An inode number is never reused while lookups of it
 *   are outstanding (each returned {@link Entry} counts one; `forget` releases).
 * - Names are bytes and need not be UTF-8.
 * - Permission checks are the implementation's job, using the {@link Context}.
 * - `readdir` includes `.` and `..`, and its offsets are stable cookies.
 * - Any method may answer synchronously or with a Promise.
 */
export interface DynFileSystem {
  /** How much the kernel may cache of this filesystem; `auto` when absent. */
  readonly cachePolicy?: CachePolicy;

  /** Called once before the first request of a mount. */
  init(): MaybePromise<void>;
  /** Called once after the last request of a mount. */
  destroy(): MaybePromise<void>;

  /** Finds `name` in directory `parent`; counts one lookup of the result. */
  lookup(ctx: Context, parent: number, name: Uint8Array): MaybePromise<Entry>;
  /** Releases `nlookup` lookups of `ino`; the inode may go once none remain. */
  forget(ctx: Context, ino: number, nlookup: number): MaybePromise<void>;
  /** `forget` for many inodes at once: `[ino, nlookup]` pairs. */
  batchForget(ctx: Context, items: readonly (readonly [ino: number, nlookup: number])[]): MaybePromise<void>;

  /** The attributes of `ino`; `fh` is given when the caller has the file open. */
  getattr(ctx: Context, ino: number, fh?: number): MaybePromise<Attr>;
  /** Changes attributes (chmod, chown, truncate, utimens) and returns the new ones. */
  setattr(ctx: Context, ino: number, req: SetattrRequest): MaybePromise<Attr>;

  /** The target of symlink `ino`, as bytes. */
  readlink(ctx: Context, ino: number): MaybePromise<Uint8Array>;
  /** Creates symlink `name` in `parent` pointing at `target`. */
  symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): MaybePromise<Entry>;
  /** Creates a regular file, device, FIFO or socket node; `mode` includes the type bits. */
  mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): MaybePromise<Entry>;
  /** Creates a directory. */
  mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): MaybePromise<Entry>;
  /** Removes a non-directory name. */
  unlink(ctx: Context, parent: number, name: Uint8Array): MaybePromise<void>;
  /** Removes an empty directory. */
  rmdir(ctx: Context, parent: number, name: Uint8Array): MaybePromise<void>;
  /** Renames, with `renameat2` {@link RENAME} flags. */
  rename(
    ctx: Context,
    parent: number,
    name: Uint8Array,
    newParent: number,
    newName: Uint8Array,
    flags: number,
  ): MaybePromise<void>;
  /** Creates hard link `newName` in `newParent` to `ino`. */
  link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): MaybePromise<Entry>;

  /** Opens `ino` with {@link O} flags. */
  open(ctx: Context, ino: number, flags: number): MaybePromise<OpenReply>;
  /** Creates and opens a regular file `name` in `parent`. */
  create(
    ctx: Context,
    parent: number,
    name: Uint8Array,
    mode: number,
    flags: number,
    umask: number,
  ): MaybePromise<CreateReply>;
  /** Reads up to `size` bytes at `offset`; fewer only at end of file. */
  read(ctx: Context, ino: number, fh: number, size: number, offset: number): MaybePromise<Uint8Array>;
  /**
   * Optional: `read` into the caller's `target`: up to `target.length` bytes
   * at `offset` go to the start of `target` and the count is returned (fewer
   * only at end of file); bytes of `target` past the count are left as they
   * were. It answers exactly as `read` of `target.length` bytes would, errors
   * included, but lets a caller reuse one buffer instead of getting a new
   * array per call. Callers use `read` when it is absent. A backend that
   * changes what `read` answers (a subclass overriding `read`) must override
   * or drop this too; {@link FsBackend} has none, so wrappers built on it
   * never bypass their own `read`.
   */
  readInto?(ctx: Context, ino: number, fh: number, target: Uint8Array, offset: number): MaybePromise<number>;
  /**
   * Optional: the host file behind open file handle `fh` of `ino`, for a
   * transport that can have the host kernel use it directly (FUSE
   * passthrough on a host mount): reads of a handle open read-only, and
   * mmap of any handle, then reach this host file without `read` calls;
   * `write` calls still come here, but a shared writable mapping changes the
   * file without them. `undefined` when the handle's bytes must go through
   * `read`/`write` (data transformed, writes charged to a quota, ...).
   * Rules a backend keeps:
   * - the descriptor is the backend's own, open until `release` of `fh`; the
   *   caller never closes it nor uses it past that `release`;
   * - it comes from the backend's confined opening of this very file (as
   *   `open` reached it), never from a path the caller chose;
   * - for one inode, the answer is the same host file for every handle
   *   while any handle of it has one.
   * Callers use `read`/`write` when it is absent or answers `undefined`.
   */
  passthroughFd?(ino: number, fh: number): number | undefined;
  /** Writes `data` at `offset` ({@link WRITE} `flags`); returns the number of bytes written. */
  write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): MaybePromise<number>;
  /** Called on each `close(2)` of a file descriptor of the open file. */
  flush(ctx: Context, ino: number, fh: number, lockOwner: number): MaybePromise<void>;
  /** Makes the file's data (and metadata unless `datasync`) durable. */
  fsync(ctx: Context, ino: number, fh: number, datasync: boolean): MaybePromise<void>;
  /** Allocates, punches or zeroes a range, with {@link FALLOC} `mode`. */
  fallocate(ctx: Context, ino: number, fh: number, mode: number, offset: number, length: number): MaybePromise<void>;
  /** The last close of an open file: `fh` is invalid afterwards. */
  release(ctx: Context, ino: number, fh: number, flags: number): MaybePromise<void>;
  /** Filesystem statistics. */
  statfs(ctx: Context, ino: number): MaybePromise<StatFs>;

  /** Sets an extended attribute, with {@link XATTR} flags. */
  setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): MaybePromise<void>;
  /**
   * The whole value of an extended attribute (`ENODATA` when absent). Size
   * probing and `ERANGE` are the transport's business, not the backend's.
   */
  getxattr(ctx: Context, ino: number, name: Uint8Array): MaybePromise<Uint8Array>;
  /** The names of all extended attributes the caller may see. */
  listxattr(ctx: Context, ino: number): MaybePromise<Uint8Array[]>;
  /** Removes an extended attribute (`ENODATA` when absent). */
  removexattr(ctx: Context, ino: number, name: Uint8Array): MaybePromise<void>;

  /** Opens directory `ino` for reading. */
  opendir(ctx: Context, ino: number, flags: number): MaybePromise<OpenReply>;
  /**
   * Entries after cookie `offset` (`0` = from the start), as many as fit in
   * about `size` bytes of FUSE dirents; an empty array means the end.
   */
  readdir(ctx: Context, ino: number, fh: number, offset: number, size: number): MaybePromise<DirEntry[]>;
  /** `readdir` with each entry looked up (see {@link DirEntryPlus} for lookup counting). */
  readdirplus(ctx: Context, ino: number, fh: number, offset: number, size: number): MaybePromise<DirEntryPlus[]>;
  /** Releases a directory handle. */
  releasedir(ctx: Context, ino: number, fh: number, flags: number): MaybePromise<void>;
  /** Makes the directory durable. */
  fsyncdir(ctx: Context, ino: number, fh: number, datasync: boolean): MaybePromise<void>;

  /** Checks {@link ACCESS} `mask` for the caller; throws `EACCES` when denied. */
  access(ctx: Context, ino: number, mask: number): MaybePromise<void>;
  /** `SEEK_DATA` / `SEEK_HOLE` (and plain whences); returns the new offset. */
  lseek(ctx: Context, ino: number, fh: number, offset: number, whence: number): MaybePromise<number>;
  /** Copies `length` bytes between two open files; returns the number copied. */
  copyFileRange(
    ctx: Context,
    inoIn: number,
    fhIn: number,
    offsetIn: number,
    inoOut: number,
    fhOut: number,
    offsetOut: number,
    length: number,
    flags: number,
  ): MaybePromise<number>;
}

/** The names of the operations every {@link DynFileSystem} has (not the optional `readInto` and `passthroughFd`). */
export type FsOperation = Exclude<keyof DynFileSystem, "cachePolicy" | "readInto" | "passthroughFd">;
