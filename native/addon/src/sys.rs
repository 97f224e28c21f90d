//! Hand-written glibc declarations, raw syscall numbers and kernel structs
//! (x86_64 Linux; the syscall numbers below are also correct for aarch64
//! where noted, but only x86_64-unknown-linux-gnu is built and tested).
//!
//! Functions that glibc wraps with a stable ABI are called directly; newer
//! or flag-sensitive syscalls go through the variadic `syscall(2)` so glibc
//! never emulates or rewrites them.

use std::ffi::{c_char, c_int, c_long, c_ulong, c_void};

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!("msb-native only supports x86_64 Linux (hand-written syscall numbers and structs)");

unsafe extern "C" {
    /// `long syscall(long number, ...)`: every argument is passed as a `long`.
    pub fn syscall(number: c_long, ...) -> c_long;

    pub fn close(fd: c_int) -> c_int;

    // <sys/xattr.h>
    pub fn getxattr(
        path: *const c_char,
        name: *const c_char,
        value: *mut c_void,
        size: usize,
    ) -> isize;
    pub fn lgetxattr(
        path: *const c_char,
        name: *const c_char,
        value: *mut c_void,
        size: usize,
    ) -> isize;
    pub fn fgetxattr(fd: c_int, name: *const c_char, value: *mut c_void, size: usize) -> isize;
    pub fn setxattr(
        path: *const c_char,
        name: *const c_char,
        value: *const c_void,
        size: usize,
        flags: c_int,
    ) -> c_int;
    pub fn lsetxattr(
        path: *const c_char,
        name: *const c_char,
        value: *const c_void,
        size: usize,
        flags: c_int,
    ) -> c_int;
    pub fn fsetxattr(
        fd: c_int,
        name: *const c_char,
        value: *const c_void,
        size: usize,
        flags: c_int,
    ) -> c_int;
    pub fn listxattr(path: *const c_char, list: *mut c_char, size: usize) -> isize;
    pub fn llistxattr(path: *const c_char, list: *mut c_char, size: usize) -> isize;
    pub fn flistxattr(fd: c_int, list: *mut c_char, size: usize) -> isize;
    pub fn removexattr(path: *const c_char, name: *const c_char) -> c_int;
    pub fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int;
    pub fn fremovexattr(fd: c_int, name: *const c_char) -> c_int;

    // <fcntl.h>, <unistd.h>, <sys/stat.h>
    pub fn mkdirat(dirfd: c_int, path: *const c_char, mode: u32) -> c_int;
    /// glibc checks that `dev` fits the kernel's 32-bit encoding (EINVAL otherwise).
    pub fn mknodat(dirfd: c_int, path: *const c_char, mode: u32, dev: u64) -> c_int;
    pub fn symlinkat(target: *const c_char, newdirfd: c_int, linkpath: *const c_char) -> c_int;
    pub fn linkat(
        olddirfd: c_int,
        oldpath: *const c_char,
        newdirfd: c_int,
        newpath: *const c_char,
        flags: c_int,
    ) -> c_int;
    pub fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    pub fn fchownat(dirfd: c_int, path: *const c_char, uid: u32, gid: u32, flags: c_int) -> c_int;
    pub fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: usize) -> isize;
    pub fn fallocate(fd: c_int, mode: c_int, offset: i64, len: i64) -> c_int;
    pub fn lseek(fd: c_int, offset: i64, whence: c_int) -> i64;

    // <sys/vfs.h>
    pub fn statfs(path: *const c_char, buf: *mut StatFsBuf) -> c_int;
    pub fn fstatfs(fd: c_int, buf: *mut StatFsBuf) -> c_int;

    // <sys/mount.h>
    pub fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    pub fn umount2(target: *const c_char, flags: c_int) -> c_int;
}

// ------------------------------------------------------------ syscall numbers --
pub const SYS_GETDENTS64: c_long = 217;
pub const SYS_OPENAT: c_long = 257;
pub const SYS_FCHMODAT: c_long = 268;
pub const SYS_FACCESSAT: c_long = 269;
pub const SYS_UTIMENSAT: c_long = 280;
pub const SYS_RENAMEAT2: c_long = 316;
pub const SYS_COPY_FILE_RANGE: c_long = 326;
pub const SYS_STATX: c_long = 332;
/// Same number on every architecture (unified syscall table since 5.x).
pub const SYS_OPENAT2: c_long = 437;
pub const SYS_FACCESSAT2: c_long = 439;
/// Linux >= 6.6.
pub const SYS_FCHMODAT2: c_long = 452;
/// Linux >= 6.13.
pub const SYS_GETXATTRAT: c_long = 464;

// ------------------------------------------------------------------ constants --
pub const O_CLOEXEC: u64 = 0o2000000;
pub const AT_EMPTY_PATH: c_int = 0x1000;
pub const STATX_BASIC_STATS: u32 = 0x7ff;
pub const UTIME_NOW: i64 = (1 << 30) - 1;
pub const UTIME_OMIT: i64 = (1 << 30) - 2;
/// Largest value/list the VFS hands out for xattrs (XATTR_SIZE_MAX / XATTR_LIST_MAX).
pub const XATTR_MAX: usize = 65536;

pub const ENOENT: i32 = 2;
pub const EACCES: i32 = 13;
pub const ERANGE: i32 = 34;
pub const ENOSYS: i32 = 38;
pub const ENODATA: i32 = 61;
pub const AT_SYMLINK_NOFOLLOW: c_int = 0x100;

// -------------------------------------------------------------------- structs --
/// `struct open_how` (openat2(2)); the kernel checks the size argument.
#[repr(C)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// `struct xattr_args` of the `*xattrat` syscalls (Linux 6.13).
#[repr(C)]
pub struct XattrArgs {
    pub value: u64,
    pub size: u32,
    pub flags: u32,
}

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

/// `struct statx_timestamp`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct StatxTimestamp {
    pub tv_sec: i64,
    pub tv_nsec: u32,
    pub reserved: i32,
}

/// `struct statx` (256 bytes, architecture independent).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Statx {
    pub mask: u32,
    pub blksize: u32,
    pub attributes: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u16,
    pub spare0: u16,
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub attributes_mask: u64,
    pub atime: StatxTimestamp,
    pub btime: StatxTimestamp,
    pub ctime: StatxTimestamp,
    pub mtime: StatxTimestamp,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub spare: [u64; 14],
}
const _: () = assert!(std::mem::size_of::<Statx>() == 256);

/// glibc `struct statfs` on x86_64 (120 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct StatFsBuf {
    pub f_type: i64,
    pub f_bsize: i64,
    pub f_blocks: u64,
    pub f_bfree: u64,
    pub f_bavail: u64,
    pub f_files: u64,
    pub f_ffree: u64,
    pub f_fsid: [i32; 2],
    pub f_namelen: i64,
    pub f_frsize: i64,
    pub f_flags: i64,
    pub f_spare: [i64; 4],
}
const _: () = assert!(std::mem::size_of::<StatFsBuf>() == 120);

/// glibc's 64-bit `dev_t` encoding (`makedev(3)`), identical to what libuv
/// (and therefore Node's `fs.Stats.dev`/`rdev`) produces from statx.
pub const fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0x0000_0fff) << 8)
        | ((ma & 0xffff_f000) << 32)
        | (mi & 0x0000_00ff)
        | ((mi & 0xffff_ff00) << 12)
}

pub const fn major(dev: u64) -> u32 {
    (((dev >> 8) & 0x0000_0fff) | ((dev >> 32) & 0xffff_f000)) as u32
}

pub const fn minor(dev: u64) -> u32 {
    ((dev & 0x0000_00ff) | ((dev >> 12) & 0xffff_ff00)) as u32
}

/// The calling thread's `errno` after a failed call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
