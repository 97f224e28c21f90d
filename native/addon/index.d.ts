/*
 * Hand-written type declarations for @msb/native (the addon uses no napi
 * crates, so `napi build` generates none).
 *
 * Conventions shared by every function:
 *
 * - Paths and names are `string | Uint8Array`. Strings are encoded as UTF-8;
 *   a `Uint8Array`/`Buffer` is passed byte for byte, so names need not be
 *   UTF-8. A NUL byte inside throws a `TypeError` with code
 *   `ERR_INVALID_ARG_VALUE`.
 * - Returned names and link targets are `Buffer`s (raw bytes).
 * - A wrong argument type throws a `TypeError` with code
 *   `ERR_INVALID_ARG_TYPE`; a non-integer or out-of-range number throws a
 *   `RangeError` with code `ERR_OUT_OF_RANGE`. The `…Async` forms reject with
 *   the same errors instead of throwing.
 * - A failed system call throws (or, for `…Async`, rejects with) a
 *   {@link NativeError}, shaped exactly like Node's `fs` errors.
 * - Every `foo(...)` has a `fooAsync(...)` twin that runs the same system
 *   call on the libuv threadpool and returns a `Promise`. All arguments are
 *   copied before the call is queued, so buffers may be reused right away.
 * - File descriptors opened by this module always have `O_CLOEXEC`.
 */

/// <reference types="node" />

/** A path or a name: a UTF-8 string or raw bytes (no NUL bytes). */
export type PathLike = string | Uint8Array;

/**
 * The error thrown or rejected when a system call fails. Same shape as the
 * errors of `node:fs`, e.g.
 * `{ message: "ENOENT: no such file or directory, openat2 'a/b'", code: 'ENOENT', errno: -2, syscall: 'openat2', path: 'a/b' }`.
 */
export interface NativeError extends Error {
  /** The errno name: `'ENOENT'`, `'EXDEV'`, ... (`'ENOTSUP'` for 95, `'EAGAIN'` for 11; `'UNKNOWN'` if Linux defines none). */
  code: string;
  /** The errno as a negative number (Node convention): -2 for ENOENT. */
  errno: number;
  /** The system call that failed: `'openat2'`, `'statx'`, `'getxattr'`, `'futimens'`, ... */
  syscall: string;
  /** The (first) path argument, decoded as UTF-8 (lossy), when the call took one. */
  path?: string;
  /** The second path of two-path calls (`linkat`, `renameat2`, `symlinkat`'s link path). */
  dest?: string;
}

/** `struct open_how` for {@link openat2}. */
export interface OpenHow {
  /** `O_*` flags (default `O_RDONLY`); `O_CLOEXEC` is always added. */
  flags?: number;
  /**
   * Creation mode. Defaults to `0o666` when `flags` has `O_CREAT` or
   * `O_TMPFILE`, else 0 — openat2 rejects a non-zero mode otherwise (EINVAL).
   */
  mode?: number;
  /** `RESOLVE_*` flags (default 0). */
  resolve?: number;
}

/** Result of {@link fstatat} / {@link fstat} (from `statx(2)`). */
export interface Stat {
  /** Device of the containing filesystem, glibc `makedev` encoding (equals `fs.statSync(p, { bigint: true }).dev`). */
  dev: bigint;
  /** Inode number. */
  ino: bigint;
  /** File type and permission bits (`S_IF*` | mode). */
  mode: number;
  /** Hard link count. */
  nlink: number;
  /** Owner user id. */
  uid: number;
  /** Owner group id. */
  gid: number;
  /** Device number for character/block devices (glibc `makedev` encoding), else 0n. */
  rdev: bigint;
  /** Size in bytes. */
  size: number;
  /** Preferred I/O block size. */
  blksize: number;
  /** Number of 512-byte blocks allocated. */
  blocks: number;
  /** Last access, seconds since the epoch. */
  atimeSec: number;
  /** Last access, nanoseconds part. */
  atimeNsec: number;
  /** Last modification, seconds since the epoch. */
  mtimeSec: number;
  /** Last modification, nanoseconds part. */
  mtimeNsec: number;
  /** Last status change, seconds since the epoch. */
  ctimeSec: number;
  /** Last status change, nanoseconds part. */
  ctimeNsec: number;
}

/** Result of {@link statfs} / {@link fstatfs} (`struct statfs`). */
export interface StatFs {
  /** Filesystem magic (`0xef53` ext4, `0x01021994` tmpfs, ...). */
  type: number;
  /** Optimal transfer block size. */
  bsize: number;
  /** Total data blocks (in `frsize` units). */
  blocks: number;
  /** Free blocks. */
  bfree: number;
  /** Free blocks available to unprivileged users. */
  bavail: number;
  /** Total inodes. */
  files: number;
  /** Free inodes. */
  ffree: number;
  /** Maximum file name length. */
  namelen: number;
  /** Fragment size. */
  frsize: number;
  /** Mount flags (`ST_RDONLY` = 1, `ST_NOSUID` = 2, ...). */
  flags: number;
}

/** One entry from {@link getdents}; `Name` is the type of the records' buffer (see {@link parseDirents}). */
export interface Dirent<Name extends Uint8Array = Buffer> {
  /** Inode number. */
  ino: bigint;
  /**
   * Opaque position cookie of the NEXT entry: `lseek(fd, off, SEEK_SET)`
   * resumes listing after this entry. On ext4 it is a 63-bit hash, so pass
   * it to {@link lseek} as the bigint it is.
   */
  off: bigint;
  /** `DT_*` file type (`DT_UNKNOWN` if the filesystem does not say). */
  type: number;
  /** The entry name, raw bytes. */
  name: Name;
}

/** A timestamp for {@link utimensat}. */
export interface Timespec {
  /** Seconds since the epoch (may be negative). */
  sec: number;
  /** Nanoseconds, 0..999999999 (default 0). */
  nsec?: number;
}

/** `utimensat` special value: set this time to the current time. Also `constants.UTIME_NOW`. */
export declare const UTIME_NOW: 1073741823;
/** `utimensat` special value: leave this time unchanged. Also `constants.UTIME_OMIT`. */
export declare const UTIME_OMIT: 1073741822;

/** A time argument for {@link utimensat}. */
export type TimeArg = Timespec | typeof UTIME_NOW | typeof UTIME_OMIT;

/** Linux x86_64 flag values for every function in this module (frozen). */
export declare const constants: Readonly<{
  /** Open for reading only. */
  O_RDONLY: 0;
  /** Open for writing only. */
  O_WRONLY: 1;
  /** Open for reading and writing. */
  O_RDWR: 2;
  /** Create the file if missing. */
  O_CREAT: 0o100;
  /** With O_CREAT: fail with EEXIST if the file exists. */
  O_EXCL: 0o200;
  /** Do not make a terminal the controlling terminal. */
  O_NOCTTY: 0o400;
  /** Truncate a regular file to length 0. */
  O_TRUNC: 0o1000;
  /** Writes append. */
  O_APPEND: 0o2000;
  /** Non-blocking open and I/O (a FIFO open does not wait for the other end). */
  O_NONBLOCK: 0o4000;
  /** Synchronized data integrity writes. */
  O_DSYNC: 0o10000;
  /** Direct I/O, bypassing the page cache. */
  O_DIRECT: 0o40000;
  /** Kernel value of O_LARGEFILE (implied on 64-bit; glibc defines it as 0 there). */
  O_LARGEFILE: 0o100000;
  /** Fail with ENOTDIR unless the path is a directory. */
  O_DIRECTORY: 0o200000;
  /** Fail with ELOOP if the last component is a symlink. */
  O_NOFOLLOW: 0o400000;
  /** Do not update the access time. */
  O_NOATIME: 0o1000000;
  /** Close on exec (always added by this module). */
  O_CLOEXEC: 0o2000000;
  /** Synchronized file integrity writes. */
  O_SYNC: 0o4010000;
  /** Path-only descriptor (no I/O). */
  O_PATH: 0o10000000;
  /** Create an unnamed temporary file in the given directory. */
  O_TMPFILE: 0o20200000;
  /** Use the current working directory as dirfd. */
  AT_FDCWD: -100;
  /** Do not follow a trailing symlink. */
  AT_SYMLINK_NOFOLLOW: 0x100;
  /** unlinkat: remove a directory. */
  AT_REMOVEDIR: 0x200;
  /** faccessat: check with effective ids. */
  AT_EACCESS: 0x200;
  /** linkat: follow a trailing symlink. */
  AT_SYMLINK_FOLLOW: 0x400;
  /** Do not trigger automounts. */
  AT_NO_AUTOMOUNT: 0x800;
  /** An empty path refers to dirfd itself. */
  AT_EMPTY_PATH: 0x1000;
  /** statx: do what stat does (default). */
  AT_STATX_SYNC_AS_STAT: 0;
  /** statx: force a sync with the server (network filesystems). */
  AT_STATX_FORCE_SYNC: 0x2000;
  /** statx: use cached attributes. */
  AT_STATX_DONT_SYNC: 0x4000;
  /** openat2: do not cross mount points. */
  RESOLVE_NO_XDEV: 0x01;
  /** openat2: refuse magic links (/proc/[pid]/fd/*, /proc/self/root, ...). */
  RESOLVE_NO_MAGICLINKS: 0x02;
  /** openat2: refuse all symlinks (ELOOP). */
  RESOLVE_NO_SYMLINKS: 0x04;
  /** openat2: refuse resolution escaping dirfd (EXDEV): `..` above it, absolute paths and symlinks. */
  RESOLVE_BENEATH: 0x08;
  /** openat2: treat dirfd as the root (`..` and absolute symlinks are clamped to it). */
  RESOLVE_IN_ROOT: 0x10;
  /** openat2: only succeed from the dcache (EAGAIN otherwise). */
  RESOLVE_CACHED: 0x20;
  /** Mask of the file type bits. */
  S_IFMT: 0o170000;
  /** Socket. */
  S_IFSOCK: 0o140000;
  /** Symbolic link. */
  S_IFLNK: 0o120000;
  /** Regular file. */
  S_IFREG: 0o100000;
  /** Block device. */
  S_IFBLK: 0o60000;
  /** Directory. */
  S_IFDIR: 0o40000;
  /** Character device. */
  S_IFCHR: 0o20000;
  /** FIFO. */
  S_IFIFO: 0o10000;
  /** Set-user-id bit. */
  S_ISUID: 0o4000;
  /** Set-group-id bit. */
  S_ISGID: 0o2000;
  /** Sticky bit. */
  S_ISVTX: 0o1000;
  /** d_type: unknown (call fstatat). */
  DT_UNKNOWN: 0;
  /** d_type: FIFO. */
  DT_FIFO: 1;
  /** d_type: character device. */
  DT_CHR: 2;
  /** d_type: directory. */
  DT_DIR: 4;
  /** d_type: block device. */
  DT_BLK: 6;
  /** d_type: regular file. */
  DT_REG: 8;
  /** d_type: symbolic link. */
  DT_LNK: 10;
  /** d_type: socket. */
  DT_SOCK: 12;
  /** d_type: whiteout. */
  DT_WHT: 14;
  /** faccessat: existence. */
  F_OK: 0;
  /** faccessat: execute/search permission. */
  X_OK: 1;
  /** faccessat: write permission. */
  W_OK: 2;
  /** faccessat: read permission. */
  R_OK: 4;
  /** setxattr: fail with EEXIST if the attribute exists. */
  XATTR_CREATE: 1;
  /** setxattr: fail with ENODATA if the attribute does not exist. */
  XATTR_REPLACE: 2;
  /** renameat2: fail with EEXIST instead of replacing the target. */
  RENAME_NOREPLACE: 1;
  /** renameat2: atomically swap the two paths. */
  RENAME_EXCHANGE: 2;
  /** renameat2: leave a whiteout (0/0 char device) at the old path (needs CAP_MKNOD). */
  RENAME_WHITEOUT: 4;
  /** fallocate: allocate (default mode). */
  FALLOC_FL_ALLOCATE_RANGE: 0;
  /** fallocate: do not change the file size. */
  FALLOC_FL_KEEP_SIZE: 0x01;
  /** fallocate: deallocate the range (with KEEP_SIZE). */
  FALLOC_FL_PUNCH_HOLE: 0x02;
  /** fallocate: reserved by the kernel. */
  FALLOC_FL_NO_HIDE_STALE: 0x04;
  /** fallocate: remove the range, shifting the rest down. */
  FALLOC_FL_COLLAPSE_RANGE: 0x08;
  /** fallocate: zero the range. */
  FALLOC_FL_ZERO_RANGE: 0x10;
  /** fallocate: insert a hole, shifting the rest up. */
  FALLOC_FL_INSERT_RANGE: 0x20;
  /** fallocate: unshare shared (reflinked) blocks. */
  FALLOC_FL_UNSHARE_RANGE: 0x40;
  /** lseek: absolute offset. */
  SEEK_SET: 0;
  /** lseek: relative to the current position. */
  SEEK_CUR: 1;
  /** lseek: relative to the end. */
  SEEK_END: 2;
  /** lseek: next data at or after offset (ENXIO if none). */
  SEEK_DATA: 3;
  /** lseek: next hole at or after offset (the end counts as a hole). */
  SEEK_HOLE: 4;
  /** utimensat: now. */
  UTIME_NOW: 1073741823;
  /** utimensat: unchanged. */
  UTIME_OMIT: 1073741822;
  /** mount: read-only. */
  MS_RDONLY: 1;
  /** mount: ignore suid/sgid bits. */
  MS_NOSUID: 2;
  /** mount: no device files. */
  MS_NODEV: 4;
  /** mount: no execution. */
  MS_NOEXEC: 8;
  /** mount: synchronous writes. */
  MS_SYNCHRONOUS: 16;
  /** mount: change the flags of an existing mount. */
  MS_REMOUNT: 32;
  /** mount: mandatory locking (removed from Linux). */
  MS_MANDLOCK: 64;
  /** mount: synchronous directory changes. */
  MS_DIRSYNC: 128;
  /** mount: do not follow symlinks. */
  MS_NOSYMFOLLOW: 256;
  /** mount: no access time updates. */
  MS_NOATIME: 1024;
  /** mount: no directory access time updates. */
  MS_NODIRATIME: 2048;
  /** mount: bind mount. */
  MS_BIND: 4096;
  /** mount: move a mount. */
  MS_MOVE: 8192;
  /** mount: recursive (with BIND or propagation flags). */
  MS_REC: 16384;
  /** mount: fewer kernel log messages. */
  MS_SILENT: 32768;
  /** mount: POSIX ACLs. */
  MS_POSIXACL: 65536;
  /** mount propagation: unbindable. */
  MS_UNBINDABLE: 131072;
  /** mount propagation: private. */
  MS_PRIVATE: 262144;
  /** mount propagation: slave. */
  MS_SLAVE: 524288;
  /** mount propagation: shared. */
  MS_SHARED: 1048576;
  /** mount: relative access time updates. */
  MS_RELATIME: 2097152;
  /** mount: i_version updates. */
  MS_I_VERSION: 8388608;
  /** mount: always update access times. */
  MS_STRICTATIME: 16777216;
  /** mount: lazy timestamp updates. */
  MS_LAZYTIME: 33554432;
  /** umount2: force (may lose data). */
  MNT_FORCE: 1;
  /** umount2: lazy detach. */
  MNT_DETACH: 2;
  /** umount2: mark for expiry (EAGAIN the first time). */
  MNT_EXPIRE: 4;
  /** umount2: do not follow a trailing symlink of target. */
  UMOUNT_NOFOLLOW: 8;
}>;

/** The crate version of the loaded addon, e.g. `"0.1.0"`. */
export declare function version(): string;

/** glibc `makedev(major, minor)`: a device number for {@link mknodat}, comparable with `Stat.rdev`. */
export declare function makedev(major: number, minor: number): bigint;
/**
 * The host's TSC rate in kHz, measured against the monotonic clock (three
 * 30 ms windows, so about 0.1 s of sleeping; measure once and keep it, with
 * {@link tscKhzAsync} where the event loop must not stop). A guest under
 * QEMU's TCG reads the host's TSC as its own and needs this rate on its
 * kernel command line.
 */
export declare function tscKhz(): number;
/** Async {@link tscKhz}: measures on the threadpool, so the event loop runs on meanwhile. */
export declare function tscKhzAsync(): Promise<number>;
/** The major number of a device number (glibc `major(3)`). */
export declare function major(dev: number | bigint): number;
/** The minor number of a device number (glibc `minor(3)`). */
export declare function minor(dev: number | bigint): number;

/** Where {@link statxInto} puts each field in its `out` array; `length` is the size `out` needs. */
export declare const STATX_FIELDS: {
  readonly devMajor: 0;
  readonly devMinor: 1;
  /** The inode number's upper 32 bits: `ino = inoHigh * 2 ** 32 + inoLow`, exact as a bigint. */
  readonly inoHigh: 2;
  readonly inoLow: 3;
  readonly mode: 4;
  readonly nlink: 5;
  readonly uid: 6;
  readonly gid: 7;
  readonly rdevMajor: 8;
  readonly rdevMinor: 9;
  readonly size: 10;
  readonly blksize: 11;
  readonly blocks: 12;
  readonly atimeSec: 13;
  readonly atimeNsec: 14;
  readonly mtimeSec: 15;
  readonly mtimeNsec: 16;
  readonly ctimeSec: 17;
  readonly ctimeNsec: 18;
  readonly length: 19;
};
/**
 * `statx(dirfd, path, flags)` written into `out` (a `Float64Array` of at least
 * `STATX_FIELDS.length` numbers, laid out as {@link STATX_FIELDS}), with no
 * object or bigint made: for hot paths. `""` with `AT_EMPTY_PATH` stats
 * `dirfd` itself (`O_PATH` fds included). Returns `false` (and leaves `out`
 * alone) when `path` does not exist; throws any other error. Synchronous only.
 */
export declare function statxInto(dirfd: number, path: PathLike, flags: number, out: Float64Array): boolean;

// ---------------------------------------------------------------------- pin --

/**
 * One lookup of a passthrough server: opens entry `name` of `dirfd` as an
 * `O_PATH` pin with openat2 (`flags | O_PATH | O_CLOEXEC`, `resolve` as
 * openat2(2) takes it), stats the new fd into `out` (laid out as
 * {@link STATX_FIELDS}) and, for a regular file or directory, reads xattr
 * `xattrName` of that very inode into `value` (a directory's as `.` beneath
 * the pin; a file's, or a directory's the caller may not search, through
 * `/proc/self/fd/<fd>` relative to `procFd`, an fd of the `/proc/self/fd`
 * directory).
 * `out[STATX_FIELDS.length]` is the value's length, or `-errno` when it was
 * not read: `-ENODATA` when absent (or the file is of another type),
 * `-ERANGE` when longer than `value`. Returns the pin, which the caller owns;
 * throws (with nothing left open) when opening or stating fails.
 * `out` needs `STATX_FIELDS.length + 1` numbers. Synchronous only.
 */
export declare function pinAt(
  dirfd: number,
  name: PathLike,
  flags: number,
  resolve: number,
  procFd: number,
  xattrName: string,
  out: Float64Array,
  value: Uint8Array,
): number;

/** Closes pin `fd` and returns its inode's link count, read just before. Throws if either fails (the fd is closed anyway). Synchronous only. */
export declare function unpin(fd: number): number;

/**
 * Creates regular file `name` in `dirfd` with openat2(`O_CREAT | O_EXCL |
 * O_RDWR | O_NOFOLLOW`, `mode`, `resolve`), sets xattr `xattrName` to `value`
 * on it, stats it into `out` (laid out as {@link STATX_FIELDS}) and pins it
 * `O_PATH` through its `/proc/self/fd` magic link (relative to `procFd`):
 * `out[STATX_FIELDS.length]` is that pin. Returns the read-write fd; both fds
 * are the caller's. On any failure the file is closed and removed again
 * before the error is thrown. `out` needs `STATX_FIELDS.length + 1` numbers.
 * Synchronous only.
 */
export declare function createPinned(
  dirfd: number,
  name: PathLike,
  mode: number,
  resolve: number,
  procFd: number,
  xattrName: string,
  value: Uint8Array,
  out: Float64Array,
): number;

// --------------------------------------------------------------------- zstd --

/** An opaque streaming zstd decompressor (libzstd `ZSTD_DStream`), freed by the garbage collector. */
export interface ZstdDecompressor {
  readonly __zstdDecompressor: unique symbol;
}

/** Result of one {@link zstdDecompress} call. */
export interface ZstdChunk {
  /** The bytes produced by this call (at most `maxOutput`). */
  output: Buffer;
  /** How many bytes of `input` were used; call again with the rest. */
  consumed: number;
  /** True when the last frame is complete and fully flushed. */
  done: boolean;
}

/** Creates a streaming zstd decompressor (system libzstd). Throws an `Error` with code `ERR_MSB_ZSTD` if libzstd cannot allocate one. */
export declare function zstdDecompressor(): ZstdDecompressor;

/**
 * Decompresses from `input` until it is used up or `maxOutput` bytes (default
 * 1 MiB, at most 1 GiB) are produced, so a hostile frame cannot make one call
 * allocate without bound. Call again with `input.subarray(consumed)`, or with
 * an empty input while `output.length === maxOutput` (more may be buffered).
 * Concatenated frames are decoded in turn. Corrupt data throws an `Error`
 * with code `ERR_MSB_ZSTD` and libzstd's error name.
 */
export declare function zstdDecompress(handle: ZstdDecompressor, input: Uint8Array, maxOutput?: number): ZstdChunk;

/**
 * {@link zstdDecompress} on the libuv threadpool, so the JS thread works on
 * meanwhile. `input` is read in place: do not change it until the promise
 * settles. One call at a time per handle: a second one while a call runs
 * (async or sync) fails with code `ERR_MSB_ZSTD_BUSY`.
 */
export declare function zstdDecompressAsync(handle: ZstdDecompressor, input: Uint8Array, maxOutput?: number): Promise<ZstdChunk>;

// ----------------------------------------------------------- layer unpacker --

/** An opaque layer unpacker (see {@link layerUnpacker}), freed by the garbage collector. */
export interface LayerUnpacker {
  readonly __layerUnpacker: unique symbol;
}

/**
 * Starts unpacking an image layer's tar below the directory `rootFd` (which
 * stays the caller's: close it once {@link layerUnpackerEnd} settles) on a
 * thread of its own; the tar bytes come through {@link layerUnpackerWrite}.
 * libarchive parses the tar (ustar, PAX, GNU long names and sparse files);
 * the layer is written unprivileged, in the form OverlayFs lowers read:
 * owner, mode and device number of each entry in the xattr `overrideXattr`
 * (`@msb/fs`'s override-stat value), device nodes and FIFOs as empty files,
 * host modes with owner read/write and no set-id bits, PAX xattrs `user.*`
 * kept, `trusted.*` / `security.*` under `user.msb.`, the rest dropped,
 * whiteouts kept as the `.wh.*` files they are. The root (and every
 * directory the entries imply without listing) gets tar's default:
 * root-owned `0755`.
 *
 * A name that is absolute or has a `..` component fails the layer; every
 * directory is opened from `rootFd` with `openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` and every final component is
 * made without following it, so nothing is written outside `rootFd`. A name
 * that exists is replaced as tar does; a directory only by a directory.
 *
 * Throws a system error when the root's metadata cannot be set.
 */
export declare function layerUnpacker(rootFd: number, overrideXattr: PathLike): LayerUnpacker;

/**
 * Queues the next tar bytes for the unpacker, once fewer than 8 MiB wait.
 * They are read in place: do not change `chunk` until
 * {@link layerUnpackerEnd} settles. Resolves `false` when the unpacker takes no more: its
 * archive ended (the end-of-archive blocks) or failed. Await each call before
 * the next, to keep the bytes in order.
 */
export declare function layerUnpackerWrite(handle: LayerUnpacker, chunk: Uint8Array): Promise<boolean>;

/**
 * Ends the bytes (`abort`: stops the unpacker at once instead of letting it
 * read the rest) and waits for the unpacker's thread: nothing is written
 * after this settles. Rejects with the failure, `entry` naming the entry it
 * is about when there is one: `ERR_MSB_LAYER_UNSAFE` (an entry that would
 * land outside the root; the message says how), `ERR_MSB_LAYER_REPLACES_DIR`,
 * `ERR_MSB_LAYER_ENTRY` (a header that cannot be stored, e.g. an owner beyond
 * u32), `ERR_MSB_LAYER_TAR` (a malformed or truncated tar: libarchive's
 * message), or a Node-style system error (`linkTarget: true` when a hard
 * link's target is not there). A later call resolves at once.
 */
export declare function layerUnpackerEnd(handle: LayerUnpacker, abort: boolean): Promise<void>;

// ------------------------------------------------------------------- xattrs --

/** Value of extended attribute `name` of `path` (follows symlinks). Throws ENODATA if absent; retries if the value grows meanwhile. */
export declare function getxattr(path: PathLike, name: PathLike): Buffer;
/** Async {@link getxattr}. */
export declare function getxattrAsync(path: PathLike, name: PathLike): Promise<Buffer>;
/** {@link getxattr} on a symlink itself (`lgetxattr(2)`). */
export declare function lgetxattr(path: PathLike, name: PathLike): Buffer;
/** Async {@link lgetxattr}. */
export declare function lgetxattrAsync(path: PathLike, name: PathLike): Promise<Buffer>;
/** {@link getxattr} by file descriptor (`fgetxattr(2)`). */
export declare function fgetxattr(fd: number, name: PathLike): Buffer;
/** Async {@link fgetxattr}. */
export declare function fgetxattrAsync(fd: number, name: PathLike): Promise<Buffer>;
/**
 * Value of extended attribute `name` of `path` relative to `dirfd`
 * (`getxattrat(2)`, Linux 6.13; earlier kernels are served through
 * `/proc/self/fd/<dirfd>/<path>`), or `undefined` when there is no such
 * attribute (ENODATA), so an absent value costs no exception. `flags`:
 * `AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH` (with `""`: `dirfd` itself; the
 * kernel refuses `O_PATH` fds there with EBADF, so for an `O_PATH` fd pass an
 * fd of `/proc/self/fd` as `dirfd` and the fd's number as `path`).
 */
export declare function getxattrat(dirfd: number, path: PathLike, name: PathLike, flags?: number): Buffer | undefined;
/** Async {@link getxattrat}. */
export declare function getxattratAsync(dirfd: number, path: PathLike, name: PathLike, flags?: number): Promise<Buffer | undefined>;

/**
 * Sets extended attribute `name` of `path` (follows symlinks).
 * @param flags 0 (create or replace), `XATTR_CREATE` (EEXIST if present) or `XATTR_REPLACE` (ENODATA if absent).
 */
export declare function setxattr(path: PathLike, name: PathLike, value: Uint8Array, flags?: number): void;
/** Async {@link setxattr}. */
export declare function setxattrAsync(path: PathLike, name: PathLike, value: Uint8Array, flags?: number): Promise<void>;
/** {@link setxattr} on a symlink itself (`user.*` on a symlink: EPERM; `trusted.*` works for root). */
export declare function lsetxattr(path: PathLike, name: PathLike, value: Uint8Array, flags?: number): void;
/** Async {@link lsetxattr}. */
export declare function lsetxattrAsync(path: PathLike, name: PathLike, value: Uint8Array, flags?: number): Promise<void>;
/** {@link setxattr} by file descriptor. */
export declare function fsetxattr(fd: number, name: PathLike, value: Uint8Array, flags?: number): void;
/** Async {@link fsetxattr}. */
export declare function fsetxattrAsync(fd: number, name: PathLike, value: Uint8Array, flags?: number): Promise<void>;

/** Names of the extended attributes of `path` (follows symlinks), as raw bytes without the NUL separators. */
export declare function listxattr(path: PathLike): Buffer[];
/** Async {@link listxattr}. */
export declare function listxattrAsync(path: PathLike): Promise<Buffer[]>;
/** {@link listxattr} on a symlink itself. */
export declare function llistxattr(path: PathLike): Buffer[];
/** Async {@link llistxattr}. */
export declare function llistxattrAsync(path: PathLike): Promise<Buffer[]>;
/** {@link listxattr} by file descriptor. */
export declare function flistxattr(fd: number): Buffer[];
/** Async {@link flistxattr}. */
export declare function flistxattrAsync(fd: number): Promise<Buffer[]>;

/** Removes extended attribute `name` of `path` (follows symlinks); ENODATA if absent. */
export declare function removexattr(path: PathLike, name: PathLike): void;
/** Async {@link removexattr}. */
export declare function removexattrAsync(path: PathLike, name: PathLike): Promise<void>;
/** {@link removexattr} on a symlink itself. */
export declare function lremovexattr(path: PathLike, name: PathLike): void;
/** Async {@link lremovexattr}. */
export declare function lremovexattrAsync(path: PathLike, name: PathLike): Promise<void>;
/** {@link removexattr} by file descriptor. */
export declare function fremovexattr(fd: number, name: PathLike): void;
/** Async {@link fremovexattr}. */
export declare function fremovexattrAsync(fd: number, name: PathLike): Promise<void>;

// --------------------------------------------------------------- open/close --

/**
 * `openat2(2)`: opens `path` relative to `dirfd` (`AT_FDCWD` allowed) with
 * `RESOLVE_*` confinement, e.g. `{ resolve: RESOLVE_BENEATH }` fails with
 * EXDEV for anything leading outside `dirfd`. Returns the new fd
 * (`O_CLOEXEC` always set). Needs Linux >= 5.6.
 */
export declare function openat2(dirfd: number, path: PathLike, how?: OpenHow): number;
/** Async {@link openat2}. */
export declare function openat2Async(dirfd: number, path: PathLike, how?: OpenHow): Promise<number>;

/**
 * `openat(2)`: opens `path` relative to `dirfd`. Returns the new fd (`O_CLOEXEC` always set).
 * @param flags `O_*` flags (default `O_RDONLY`).
 * @param mode creation mode with `O_CREAT`/`O_TMPFILE` (default `0o666`, before umask).
 */
export declare function openat(dirfd: number, path: PathLike, flags?: number, mode?: number): number;
/** Async {@link openat}. */
export declare function openatAsync(dirfd: number, path: PathLike, flags?: number, mode?: number): Promise<number>;

/** `close(2)`. Not retried on EINTR (the fd is released either way on Linux). */
export declare function close(fd: number): void;
/** Async {@link close}. */
export declare function closeAsync(fd: number): Promise<void>;

// ---------------------------------------------------------------- *at family --

/** `fstatat` (via `statx(2)`; errors report `syscall: 'statx'`). `flags`: `AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH` (`""` stats `dirfd`), `AT_NO_AUTOMOUNT`, `AT_STATX_*`. */
export declare function fstatat(dirfd: number, path: PathLike, flags?: number): Stat;
/** Async {@link fstatat}. */
export declare function fstatatAsync(dirfd: number, path: PathLike, flags?: number): Promise<Stat>;
/** Stats an open fd (`statx(fd, "", AT_EMPTY_PATH)`). */
export declare function fstat(fd: number): Stat;
/** Async {@link fstat}. */
export declare function fstatAsync(fd: number): Promise<Stat>;

/** `mkdirat(2)`; `mode` defaults to `0o777` (before umask). */
export declare function mkdirat(dirfd: number, path: PathLike, mode?: number): void;
/** Async {@link mkdirat}. */
export declare function mkdiratAsync(dirfd: number, path: PathLike, mode?: number): Promise<void>;

/**
 * `mknodat(2)`: creates a FIFO (`S_IFIFO`), socket node, regular file or
 * (root / CAP_MKNOD) a device node.
 * @param mode file type `S_IF*` | permission bits.
 * @param dev device number (see {@link makedev}); default 0.
 */
export declare function mknodat(dirfd: number, path: PathLike, mode: number, dev?: number | bigint): void;
/** Async {@link mknodat}. */
export declare function mknodatAsync(dirfd: number, path: PathLike, mode: number, dev?: number | bigint): Promise<void>;

/** `symlinkat(2)`: creates `linkpath` (relative to `newdirfd`) pointing at the raw bytes of `target`. Errors: `path` = target, `dest` = linkpath. */
export declare function symlinkat(target: PathLike, newdirfd: number, linkpath: PathLike): void;
/** Async {@link symlinkat}. */
export declare function symlinkatAsync(target: PathLike, newdirfd: number, linkpath: PathLike): Promise<void>;

/** `linkat(2)`: creates a hard link. `flags`: `AT_SYMLINK_FOLLOW`, `AT_EMPTY_PATH`. */
export declare function linkat(olddirfd: number, oldpath: PathLike, newdirfd: number, newpath: PathLike, flags?: number): void;
/** Async {@link linkat}. */
export declare function linkatAsync(olddirfd: number, oldpath: PathLike, newdirfd: number, newpath: PathLike, flags?: number): Promise<void>;

/** `unlinkat(2)`: removes a name; with `AT_REMOVEDIR` removes an empty directory. */
export declare function unlinkat(dirfd: number, path: PathLike, flags?: number): void;
/** Async {@link unlinkat}. */
export declare function unlinkatAsync(dirfd: number, path: PathLike, flags?: number): Promise<void>;

/** `renameat2(2)`. `flags`: `RENAME_NOREPLACE` (EEXIST), `RENAME_EXCHANGE` (atomic swap), `RENAME_WHITEOUT` (root; leaves a 0/0 char device). */
export declare function renameat2(olddirfd: number, oldpath: PathLike, newdirfd: number, newpath: PathLike, flags?: number): void;
/** Async {@link renameat2}. */
export declare function renameat2Async(olddirfd: number, oldpath: PathLike, newdirfd: number, newpath: PathLike, flags?: number): Promise<void>;

/** `fchownat(2)`; -1 leaves `uid` or `gid` unchanged. `flags`: `AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH`. */
export declare function fchownat(dirfd: number, path: PathLike, uid: number, gid: number, flags?: number): void;
/** Async {@link fchownat}. */
export declare function fchownatAsync(dirfd: number, path: PathLike, uid: number, gid: number, flags?: number): Promise<void>;

/**
 * `fchmodat`: the plain syscall when `flags` is 0; otherwise `fchmodat2(2)`
 * (Linux >= 6.6), which honours `AT_SYMLINK_NOFOLLOW` (chmod of a symlink
 * itself: EOPNOTSUPP, reported as `'ENOTSUP'`, on most filesystems) and
 * `AT_EMPTY_PATH`. ENOSYS on older kernels is surfaced as is.
 */
export declare function fchmodat(dirfd: number, path: PathLike, mode: number, flags?: number): void;
/** Async {@link fchmodat}. */
export declare function fchmodatAsync(dirfd: number, path: PathLike, mode: number, flags?: number): Promise<void>;

/**
 * `utimensat(2)`: sets access and modification times; each is `{ sec, nsec }`,
 * `UTIME_NOW` or `UTIME_OMIT`. With `path` null, or `""` plus
 * `AT_EMPTY_PATH`, sets the times of `dirfd` itself (futimens; errors report
 * `syscall: 'futimens'`). `flags`: `AT_SYMLINK_NOFOLLOW`.
 */
export declare function utimensat(dirfd: number, path: PathLike | null, atime: TimeArg, mtime: TimeArg, flags?: number): void;
/** Async {@link utimensat}. */
export declare function utimensatAsync(dirfd: number, path: PathLike | null, atime: TimeArg, mtime: TimeArg, flags?: number): Promise<void>;

/** `readlinkat(2)`: the raw bytes of a symlink's target (any length). `""` reads the link `dirfd` (an `O_PATH|O_NOFOLLOW` fd) refers to. */
export declare function readlinkat(dirfd: number, path: PathLike): Buffer;
/** Async {@link readlinkat}. */
export declare function readlinkatAsync(dirfd: number, path: PathLike): Promise<Buffer>;

/**
 * Access check (`faccessat` for flags 0, `faccessat2(2)` otherwise so
 * `AT_EACCESS` and `AT_SYMLINK_NOFOLLOW` are honoured). Returns normally when
 * allowed; throws EACCES / ENOENT / ... otherwise.
 * @param mode `F_OK` (default) or a mix of `R_OK`, `W_OK`, `X_OK`.
 */
export declare function faccessat(dirfd: number, path: PathLike, mode?: number, flags?: number): void;
/** Async {@link faccessat}. */
export declare function faccessatAsync(dirfd: number, path: PathLike, mode?: number, flags?: number): Promise<void>;

// -------------------------------------------------------------- directories --

/**
 * One `getdents64(2)` call on a directory fd: the entries that fit in
 * `bufferSize` bytes (default 32768), `.` and `..` included. An empty array
 * means the end. To resume elsewhere, `lseek(fd, entry.off, SEEK_SET)` with
 * an entry's `off` cookie; the next call continues after that entry.
 * EINVAL if the buffer cannot hold the next entry.
 */
export declare function getdents(fd: number, bufferSize?: number): Dirent[];
/** Async {@link getdents}. */
export declare function getdentsAsync(fd: number, bufferSize?: number): Promise<Dirent[]>;
/**
 * {@link getdents} without the parsing: the raw `linux_dirent64` records of
 * one `getdents64(2)` call (empty at the end), for callers that walk them
 * with {@link parseDirents} or their own loop.
 */
export declare function getdentsRaw(fd: number, bufferSize?: number): Buffer;
/** Async {@link getdentsRaw}. */
export declare function getdentsRawAsync(fd: number, bufferSize?: number): Promise<Buffer>;
/**
 * Parses `linux_dirent64` records as {@link getdentsRaw} returns them,
 * stopping at a malformed record; each name is a view into `records`, of its
 * type: Buffers from a Buffer, plain Uint8Arrays (cheaper to make) from a
 * plain Uint8Array view of it.
 */
export declare function parseDirents(records: Buffer): Dirent[];
export declare function parseDirents(records: Uint8Array): Dirent<Uint8Array>[];

// ---------------------------------------------------------------- file data --

/** `fallocate(2)`. `mode`: 0 or `FALLOC_FL_*` (e.g. `PUNCH_HOLE | KEEP_SIZE`). EOPNOTSUPP (`'ENOTSUP'`) if the filesystem cannot. */
export declare function fallocate(fd: number, mode: number, offset: number, len: number): void;
/** Async {@link fallocate}. */
export declare function fallocateAsync(fd: number, mode: number, offset: number, len: number): Promise<void>;

/**
 * `copy_file_range(2)`: copies up to `len` bytes in the kernel (reflinks /
 * server-side copy where possible). A null offset uses and advances that
 * fd's file position; a number leaves the position alone. Returns the
 * number of bytes copied (0 at end of input; may be short).
 */
export declare function copyFileRange(fdIn: number, offIn: number | null, fdOut: number, offOut: number | null, len: number, flags?: number): number;
/** Async {@link copyFileRange}. */
export declare function copyFileRangeAsync(fdIn: number, offIn: number | null, fdOut: number, offOut: number | null, len: number, flags?: number): Promise<number>;

/**
 * `lseek(2)`. `whence`: `SEEK_SET`, `SEEK_CUR`, `SEEK_END`, `SEEK_DATA`,
 * `SEEK_HOLE` (ENXIO when there is no data/hole at or after `offset`).
 * Returns the new offset, as a bigint when `offset` was a bigint (needed
 * for directory cookies from {@link getdents}).
 */
export declare function lseek(fd: number, offset: number, whence: number): number;
/** {@link lseek} with a bigint offset (e.g. a {@link Dirent.off} cookie): returns a bigint. */
export declare function lseek(fd: number, offset: bigint, whence: number): bigint;
/** Async {@link lseek}. */
export declare function lseekAsync(fd: number, offset: number, whence: number): Promise<number>;
/** Async {@link lseek} with a bigint offset: resolves to a bigint. */
export declare function lseekAsync(fd: number, offset: bigint, whence: number): Promise<bigint>;
/**
 * `ioctl(fd, FUSE_DEV_IOC_CLONE, &sessionFd)`: attaches `fd`, a freshly
 * opened `/dev/fuse`, to the FUSE connection of `sessionFd` (the descriptor
 * passed to mount), so that several threads can each read requests from
 * their own descriptor. A reply must be written to the descriptor its
 * request was read from.
 */
export declare function fuseDevClone(fd: number, sessionFd: number): void;
/** Async {@link fuseDevClone}. */
export declare function fuseDevCloneAsync(fd: number, sessionFd: number): Promise<void>;

/** `statfs(2)` of the filesystem containing `path`. */
export declare function statfs(path: PathLike): StatFs;
/** Async {@link statfs}. */
export declare function statfsAsync(path: PathLike): Promise<StatFs>;
/** `fstatfs(2)` of the filesystem containing the open file `fd`. */
export declare function fstatfs(fd: number): StatFs;
/** Async {@link fstatfs}. */
export declare function fstatfsAsync(fd: number): Promise<StatFs>;

// ------------------------------------------------------------------- mounts --

/**
 * `mount(2)` (root / CAP_SYS_ADMIN). E.g.
 * `mount('tmpfs', dir, 'tmpfs', MS_NOSUID | MS_NODEV, 'size=1m')`, a bind
 * mount `mount(src, dir, null, MS_BIND)`, or a propagation change
 * `mount(null, dir, null, MS_PRIVATE | MS_REC)`.
 * @param data filesystem-specific options (string or bytes) or null.
 */
export declare function mount(source: PathLike | null, target: PathLike, fstype: PathLike | null, flags?: number, data?: PathLike | null): void;
/** Async {@link mount}. */
export declare function mountAsync(source: PathLike | null, target: PathLike, fstype: PathLike | null, flags?: number, data?: PathLike | null): Promise<void>;

/** `umount2(2)`. `flags`: `MNT_FORCE`, `MNT_DETACH`, `MNT_EXPIRE`, `UMOUNT_NOFOLLOW`. */
export declare function umount2(target: PathLike, flags?: number): void;
/** Async {@link umount2}. */
export declare function umount2Async(target: PathLike, flags?: number): Promise<void>;

// ------------------------------------------------------------------ polling --

/** An opaque readiness poll of one descriptor on Node's event loop; see {@link pollReadable}. */
export interface FdPoll {
  readonly __fdPoll: unique symbol;
}
/**
 * Calls `onReadable(status)` on this thread each time `fd` is readable
 * (level-triggered: again on the next loop turn while data is left), through
 * a libuv `uv_poll_t` on Node's own event loop. `status` is 0, or a negative
 * libuv error when polling failed. The callback runs in a callback scope, so
 * promise reactions it queues run when it returns; an exception it throws is
 * an uncaught exception. While active the poll keeps the process alive
 * (see {@link pollUnref}). Stop it with {@link pollClose} before closing `fd`;
 * a thread (worker) that ends first closes its polls itself.
 */
export declare function pollReadable(fd: number, onReadable: (status: number) => void): FdPoll;
/** The poll no longer keeps the process alive on its own. */
export declare function pollUnref(handle: FdPoll): void;
/** Stops the poll for good (no callback after this returns); idempotent. */
export declare function pollClose(handle: FdPoll): void;
/**
 * `read(2)` of `fd` (opened `O_NONBLOCK`) into `target`: the number of
 * bytes read, or `null` when nothing is there (EAGAIN). EINTR is retried;
 * other errors are thrown as Node-style errors (`code`, `errno`, `syscall`).
 */
export declare function readNonBlocking(fd: number, target: Uint8Array): number | null;

// ------------------------------------------------------- FUSE passthrough --

/**
 * `ioctl(fuseFd, FUSE_DEV_IOC_BACKING_OPEN, { fd })` (Linux 6.9+): registers
 * the open host file `fd` with the FUSE connection of `fuseFd` (which must
 * have negotiated `FUSE_PASSTHROUGH`) and returns its backing id, for an
 * OPEN/CREATE reply with `FOPEN_PASSTHROUGH`. The connection keeps its own
 * reference: `fd` may be closed afterwards. Needs CAP_SYS_ADMIN (EPERM);
 * ELOOP when `fd`'s filesystem is stacked too deep for the connection's
 * `max_stack_depth`.
 */
export declare function fuseBackingOpen(fuseFd: number, fd: number): number;
/** Async {@link fuseBackingOpen}. */
export declare function fuseBackingOpenAsync(fuseFd: number, fd: number): Promise<number>;
/** `ioctl(fuseFd, FUSE_DEV_IOC_BACKING_CLOSE, backingId)`: drops a registration of {@link fuseBackingOpen}. */
export declare function fuseBackingClose(fuseFd: number, backingId: number): void;
/** Async {@link fuseBackingClose}. */
export declare function fuseBackingCloseAsync(fuseFd: number, backingId: number): Promise<void>;
