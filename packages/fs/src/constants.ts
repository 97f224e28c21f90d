// Linux x86_64 values, as the kernel and the FUSE protocol use them, so a backend's
// numbers go to the wire unchanged.

/** File type bits of `mode` (`S_IFMT` mask) and permission bits. */
export const S = Object.freeze({
  IFMT: 0o170000,
  IFSOCK: 0o140000,
  IFLNK: 0o120000,
  IFREG: 0o100000,
  IFBLK: 0o060000,
  IFDIR: 0o040000,
  IFCHR: 0o020000,
  IFIFO: 0o010000,
  ISUID: 0o4000,
  ISGID: 0o2000,
  ISVTX: 0o1000,
  /** All permission bits including suid, sgid and sticky. */
  IALLUGO: 0o7777,
});

/** Directory entry types (`d_type`), as `readdir` reports them. */
export const DT = Object.freeze({
  UNKNOWN: 0,
  FIFO: 1,
  CHR: 2,
  DIR: 4,
  BLK: 6,
  REG: 8,
  LNK: 10,
  SOCK: 12,
});

/** `open(2)` flags. */
export const O = Object.freeze({
  ACCMODE: 0o3,
  RDONLY: 0o0,
  WRONLY: 0o1,
  RDWR: 0o2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DSYNC: 0o10000,
  DIRECT: 0o40000,
  LARGEFILE: 0o100000,
  DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000,
  NOATIME: 0o1000000,
  CLOEXEC: 0o2000000,
  SYNC: 0o4010000,
  PATH: 0o10000000,
  TMPFILE: 0o20200000,
});

/**
 * Which fields of a {@link SetattrRequest} to apply: the FUSE `FATTR_*` bits.
 * `ATIME_NOW` / `MTIME_NOW` mean "the current time" instead of the given value.
 */
export const SetattrValid = Object.freeze({
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
});

/** Flags a backend may return from `open`/`opendir`/`create`: the FUSE `FOPEN_*` bits. */
export const FOPEN = Object.freeze({
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
  PARALLEL_DIRECT_WRITES: 1 << 6,
});

/** `write` flags passed by the kernel (`FUSE_WRITE_*`). */
export const WRITE = Object.freeze({
  /** Delayed write from the page cache; the file handle may not be valid. */
  CACHE: 1 << 0,
  LOCKOWNER: 1 << 1,
  /** Clear suid/sgid as the write happens (HANDLE_KILLPRIV_V2). */
  KILL_SUIDGID: 1 << 2,
});

/** `setxattr(2)` flags. */
export const XATTR = Object.freeze({
  CREATE: 1,
  REPLACE: 2,
});

/** `renameat2(2)` flags. */
export const RENAME = Object.freeze({
  NOREPLACE: 1 << 0,
  EXCHANGE: 1 << 1,
  WHITEOUT: 1 << 2,
});

/** `access(2)` mode bits. */
export const ACCESS = Object.freeze({
  F_OK: 0,
  X_OK: 1,
  W_OK: 2,
  R_OK: 4,
});

/** `lseek(2)` whence values. */
export const SEEK = Object.freeze({
  SET: 0,
  CUR: 1,
  END: 2,
  DATA: 3,
  HOLE: 4,
});

/** `fallocate(2)` mode bits. */
export const FALLOC = Object.freeze({
  KEEP_SIZE: 0x01,
  PUNCH_HOLE: 0x02,
  NO_HIDE_STALE: 0x04,
  COLLAPSE_RANGE: 0x08,
  ZERO_RANGE: 0x10,
  INSERT_RANGE: 0x20,
  UNSHARE_RANGE: 0x40,
});

/** The root inode of every filesystem. */
export const ROOT_INO = 1;

/** Longest name of one directory entry, in bytes. */
export const NAME_MAX = 255;

/** Longest path or symlink target, in bytes including the terminating NUL. */
export const PATH_MAX = 4096;

/** Longest xattr name, in bytes. */
export const XATTR_NAME_MAX = 255;

/** Largest xattr value, in bytes. */
export const XATTR_SIZE_MAX = 65536;
