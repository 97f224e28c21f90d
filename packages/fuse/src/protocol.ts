// The FUSE kernel protocol (include/uapi/linux/fuse.h), version 7.x: opcodes,
// INIT flags and the sizes of the fixed structs this server reads and writes.
// Written from the header's definitions; all integers are little endian.

/** The protocol major version this server speaks. */
export const FUSE_MAJOR = 7;
/** The newest protocol minor this server understands (7.45: COPY_FILE_RANGE_64). */
export const FUSE_MINOR = 45;
/**
 * The oldest minor this server accepts: 7.12 added the umask to create,
 * mknod and mkdir, which backends need. Kernels older than Linux 2.6.31 are refused.
 */
export const FUSE_MIN_MINOR = 12;

/** Request opcodes (`enum fuse_opcode`). */
export const Op = Object.freeze({
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
  COPY_FILE_RANGE_64: 53,
  CUSE_INIT: 4096,
});

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name]));

/** The name of an opcode for log lines (`"LOOKUP"`, or `"OP_99"` when unknown). */
export function opName(opcode: number): string {
  return OP_NAMES.get(opcode) ?? `OP_${opcode}`;
}

/** Opcodes the kernel never expects a reply to. */
export function isNoReply(opcode: number): boolean {
  return opcode === Op.FORGET || opcode === Op.BATCH_FORGET || opcode === Op.INTERRUPT || opcode === Op.NOTIFY_REPLY;
}

/**
 * INIT flags (`FUSE_*` in fuse_init_in/out.flags; bits 32 and up travel in
 * flags2 when FUSE_INIT_EXT is set). Kept as bigints because they exceed 32 bits.
 */
export const InitFlag = Object.freeze({
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  FLOCK_LOCKS: 1n << 10n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  ABORT_ERROR: 1n << 21n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  EXPLICIT_INVAL_DATA: 1n << 25n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
  SECURITY_CTX: 1n << 32n,
  CREATE_SUPP_GROUP: 1n << 34n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
  PASSTHROUGH: 1n << 37n,
  NO_EXPORT_SUPPORT: 1n << 38n,
  HAS_RESEND: 1n << 39n,
  ALLOW_IDMAP: 1n << 40n,
  REQUEST_TIMEOUT: 1n << 42n,
});

/** The names of the set bits of an INIT flag word, for logs and reports. */
export function initFlagNames(flags: bigint): string[] {
  return Object.entries(InitFlag)
    .filter(([, bit]) => (flags & bit) !== 0n)
    .map(([name]) => name);
}

/** `FOPEN_PASSTHROUGH`: the kernel reads and writes the open file's backing file (`fuse_open_out.backing_id`) itself. */
export const FOPEN_PASSTHROUGH = 1 << 7;
/**
 * `max_stack_depth` asked with FUSE_PASSTHROUGH: backing files on a plain
 * filesystem (depth 0) only, so that the FUSE mount counts depth 1 and
 * kernel overlayfs can still stack on it.
 */
export const PASSTHROUGH_STACK_DEPTH = 1;

/** `fuse_open_in.open_flags` (HANDLE_KILLPRIV_V2): the open truncates and must clear suid/sgid. */
export const OPEN_KILL_SUIDGID = 1;
/** `fuse_notify_code`: drop the kernel's cached attributes (and, for off >= 0, pages) of an inode. */
export const NOTIFY_INVAL_INODE = 2;
/** `fuse_getattr_in.getattr_flags`: `fh` is valid. */
export const GETATTR_FH = 1;
/** `fuse_fsync_in.fsync_flags`: data only. */
export const FSYNC_FDATASYNC = 1;
/** `fuse_ext_header.type` of the supplementary groups extension (7.38+). */
export const EXT_GROUPS = 32;

/** Struct sizes in bytes. */
export const Size = Object.freeze({
  IN_HEADER: 40,
  OUT_HEADER: 16,
  ATTR: 88,
  ENTRY_OUT: 128,
  ATTR_OUT: 104,
  OPEN_OUT: 16,
  WRITE_OUT: 8,
  STATFS_OUT: 80,
  GETXATTR_OUT: 8,
  LSEEK_OUT: 8,
  COPY_FILE_RANGE_OUT: 8,
  INIT_OUT: 64,
  /** init_out as minors 7.5 to 7.22 know it. */
  INIT_OUT_COMPAT_22: 24,
  DIRENT: 24,
  DIRENTPLUS: 152,
  INIT_IN_MIN: 8,
  FORGET_IN: 8,
  FORGET_ONE: 16,
  BATCH_FORGET_IN: 8,
  GETATTR_IN: 16,
  SETATTR_IN: 88,
  MKNOD_IN: 16,
  MKDIR_IN: 8,
  RENAME_IN: 8,
  RENAME2_IN: 16,
  LINK_IN: 8,
  OPEN_IN: 8,
  CREATE_IN: 16,
  RELEASE_IN: 24,
  FLUSH_IN: 24,
  READ_IN: 40,
  WRITE_IN: 40,
  FSYNC_IN: 16,
  SETXATTR_IN: 8,
  SETXATTR_IN_EXT: 16,
  GETXATTR_IN: 8,
  ACCESS_IN: 8,
  INTERRUPT_IN: 8,
  FALLOCATE_IN: 32,
  LSEEK_IN: 24,
  COPY_FILE_RANGE_IN: 56,
  EXT_HEADER: 8,
  NOTIFY_INVAL_INODE_OUT: 24,
});

/** The largest name of a directory entry the kernel accepts (`FUSE_NAME_MAX`). */
export const FUSE_NAME_MAX = 1024;

/**
 * The largest request a server negotiating `maxWrite` can receive: a WRITE
 * of `maxWrite` bytes or a SETXATTR of a 64 KiB value, plus headers. This
 * is the read buffer size on /dev/fuse and the frame limit of streams.
 */
export function maxRequestSize(maxWrite: number): number {
  return Math.max(maxWrite, 65536) + 4096;
}
