//! The frozen `constants` object (x86_64 Linux values).

use std::ffi::CStr;

use crate::napi::{napi_object_freeze, napi_value};
use crate::sys;
use crate::value::Env;

const CONSTANTS: &[(&CStr, f64)] = &[
    // open(2) flags (kernel values; O_LARGEFILE is implied on 64-bit)
    (c"O_RDONLY", 0.0),
    (c"O_WRONLY", 1.0),
    (c"O_RDWR", 2.0),
    (c"O_CREAT", 0o100 as f64),
    (c"O_EXCL", 0o200 as f64),
    (c"O_NOCTTY", 0o400 as f64),
    (c"O_TRUNC", 0o1000 as f64),
    (c"O_APPEND", 0o2000 as f64),
    (c"O_NONBLOCK", 0o4000 as f64),
    (c"O_DSYNC", 0o10000 as f64),
    (c"O_DIRECT", 0o40000 as f64),
    (c"O_LARGEFILE", 0o100000 as f64),
    (c"O_DIRECTORY", 0o200000 as f64),
    (c"O_NOFOLLOW", 0o400000 as f64),
    (c"O_NOATIME", 0o1000000 as f64),
    (c"O_CLOEXEC", 0o2000000 as f64),
    (c"O_SYNC", 0o4010000 as f64),
    (c"O_PATH", 0o10000000 as f64),
    (c"O_TMPFILE", 0o20200000 as f64),
    // *at(2) flags
    (c"AT_FDCWD", -100.0),
    (c"AT_SYMLINK_NOFOLLOW", 0x100 as f64),
    (c"AT_REMOVEDIR", 0x200 as f64),
    (c"AT_EACCESS", 0x200 as f64),
    (c"AT_SYMLINK_FOLLOW", 0x400 as f64),
    (c"AT_NO_AUTOMOUNT", 0x800 as f64),
    (c"AT_EMPTY_PATH", 0x1000 as f64),
    (c"AT_STATX_SYNC_AS_STAT", 0.0),
    (c"AT_STATX_FORCE_SYNC", 0x2000 as f64),
    (c"AT_STATX_DONT_SYNC", 0x4000 as f64),
    // openat2(2) resolve flags
    (c"RESOLVE_NO_XDEV", 0x01 as f64),
    (c"RESOLVE_NO_MAGICLINKS", 0x02 as f64),
    (c"RESOLVE_NO_SYMLINKS", 0x04 as f64),
    (c"RESOLVE_BENEATH", 0x08 as f64),
    (c"RESOLVE_IN_ROOT", 0x10 as f64),
    (c"RESOLVE_CACHED", 0x20 as f64),
    // file types and mode bits
    (c"S_IFMT", 0o170000 as f64),
    (c"S_IFSOCK", 0o140000 as f64),
    (c"S_IFLNK", 0o120000 as f64),
    (c"S_IFREG", 0o100000 as f64),
    (c"S_IFBLK", 0o060000 as f64),
    (c"S_IFDIR", 0o040000 as f64),
    (c"S_IFCHR", 0o020000 as f64),
    (c"S_IFIFO", 0o010000 as f64),
    (c"S_ISUID", 0o4000 as f64),
    (c"S_ISGID", 0o2000 as f64),
    (c"S_ISVTX", 0o1000 as f64),
    // getdents64(2) d_type
    (c"DT_UNKNOWN", 0.0),
    (c"DT_FIFO", 1.0),
    (c"DT_CHR", 2.0),
    (c"DT_DIR", 4.0),
    (c"DT_BLK", 6.0),
    (c"DT_REG", 8.0),
    (c"DT_LNK", 10.0),
    (c"DT_SOCK", 12.0),
    (c"DT_WHT", 14.0),
    // faccessat(2) modes
    (c"F_OK", 0.0),
    (c"X_OK", 1.0),
    (c"W_OK", 2.0),
    (c"R_OK", 4.0),
    // setxattr(2) flags
    (c"XATTR_CREATE", 1.0),
    (c"XATTR_REPLACE", 2.0),
    // renameat2(2) flags
    (c"RENAME_NOREPLACE", 1.0),
    (c"RENAME_EXCHANGE", 2.0),
    (c"RENAME_WHITEOUT", 4.0),
    // fallocate(2) modes
    (c"FALLOC_FL_ALLOCATE_RANGE", 0.0),
    (c"FALLOC_FL_KEEP_SIZE", 0x01 as f64),
    (c"FALLOC_FL_PUNCH_HOLE", 0x02 as f64),
    (c"FALLOC_FL_NO_HIDE_STALE", 0x04 as f64),
    (c"FALLOC_FL_COLLAPSE_RANGE", 0x08 as f64),
    (c"FALLOC_FL_ZERO_RANGE", 0x10 as f64),
    (c"FALLOC_FL_INSERT_RANGE", 0x20 as f64),
    (c"FALLOC_FL_UNSHARE_RANGE", 0x40 as f64),
    // lseek(2) whence
    (c"SEEK_SET", 0.0),
    (c"SEEK_CUR", 1.0),
    (c"SEEK_END", 2.0),
    (c"SEEK_DATA", 3.0),
    (c"SEEK_HOLE", 4.0),
    // utimensat(2) special nsec values
    (c"UTIME_NOW", sys::UTIME_NOW as f64),
    (c"UTIME_OMIT", sys::UTIME_OMIT as f64),
    // mount(2) flags
    (c"MS_RDONLY", 1.0),
    (c"MS_NOSUID", 2.0),
    (c"MS_NODEV", 4.0),
    (c"MS_NOEXEC", 8.0),
    (c"MS_SYNCHRONOUS", 16.0),
    (c"MS_REMOUNT", 32.0),
    (c"MS_MANDLOCK", 64.0),
    (c"MS_DIRSYNC", 128.0),
    (c"MS_NOSYMFOLLOW", 256.0),
    (c"MS_NOATIME", 1024.0),
    (c"MS_NODIRATIME", 2048.0),
    (c"MS_BIND", 4096.0),
    (c"MS_MOVE", 8192.0),
    (c"MS_REC", 16384.0),
    (c"MS_SILENT", 32768.0),
    (c"MS_POSIXACL", (1 << 16) as f64),
    (c"MS_UNBINDABLE", (1 << 17) as f64),
    (c"MS_PRIVATE", (1 << 18) as f64),
    (c"MS_SLAVE", (1 << 19) as f64),
    (c"MS_SHARED", (1 << 20) as f64),
    (c"MS_RELATIME", (1 << 21) as f64),
    (c"MS_I_VERSION", (1 << 23) as f64),
    (c"MS_STRICTATIME", (1 << 24) as f64),
    (c"MS_LAZYTIME", (1 << 25) as f64),
    // umount2(2) flags
    (c"MNT_FORCE", 1.0),
    (c"MNT_DETACH", 2.0),
    (c"MNT_EXPIRE", 4.0),
    (c"UMOUNT_NOFOLLOW", 8.0),
];

/// Builds and freezes the `constants` object.
pub fn build(env: Env) -> napi_value {
    let o = env.object();
    for (name, value) in CONSTANTS {
        env.set(o, name, env.double(*value));
    }
    unsafe { napi_object_freeze(env.0, o) };
    o
}
