//! Hand-declared glibc functions and Linux constants (x86_64 / aarch64 generic values
//! where they agree; ioctl numbers are the x86_64 ones).
#![allow(non_camel_case_types, dead_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_ulong, c_void};
use std::io;

pub type pid_t = c_int;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct winsize {
    pub ws_row: u16,
    pub ws_col: u16,
    pub ws_xpixel: u16,
    pub ws_ypixel: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct pollfd {
    pub fd: c_int,
    pub events: i16,
    pub revents: i16,
}

/// glibc's sigset_t: 1024 bits.
#[repr(C)]
pub struct sigset_t([u64; 16]);

impl sigset_t {
    pub fn empty() -> Self {
        sigset_t([0; 16])
    }
    pub fn full() -> Self {
        sigset_t([!0; 16])
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct rlimit {
    pub cur: u64,
    pub max: u64,
}

unsafe extern "C" {
    pub fn syscall(number: c_long, ...) -> c_long;
    pub fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    pub fn close(fd: c_int) -> c_int;
    pub fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize;
    pub fn readv(fd: c_int, iov: *const iovec, count: c_int) -> isize;
    pub fn writev(fd: c_int, iov: *const iovec, count: c_int) -> isize;
    pub fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    pub fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    pub fn eventfd(initval: u32, flags: c_int) -> c_int;
    pub fn dup2(old: c_int, new: c_int) -> c_int;
    pub fn poll(fds: *mut pollfd, n: c_ulong, timeout: c_int) -> c_int;
    pub fn ioctl(fd: c_int, req: c_ulong, ...) -> c_int;
    /// glibc's wrapper: runs `f(arg)` in the child on `stack` (its top).
    pub fn clone(
        f: extern "C" fn(*mut c_void) -> c_int,
        stack: *mut c_void,
        flags: c_int,
        arg: *mut c_void,
        ...
    ) -> c_int;
    pub fn pthread_sigmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int;
    pub fn sigprocmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int;
    pub fn execve(
        path: *const c_char,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> c_int;
    pub fn _exit(code: c_int) -> !;
    pub fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t;
    pub fn kill(pid: pid_t, sig: c_int) -> c_int;
    pub fn setsid() -> pid_t;
    pub fn chdir(path: *const c_char) -> c_int;
    pub fn chroot(path: *const c_char) -> c_int;
    pub fn getpid() -> pid_t;
    pub fn mount(
        src: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    pub fn umount2(target: *const c_char, flags: c_int) -> c_int;
    pub fn sethostname(name: *const c_char, len: usize) -> c_int;
    pub fn clock_settime(clock: c_int, tp: *const timespec) -> c_int;
    pub fn reboot(cmd: c_int) -> c_int;
    pub fn sync();
    pub fn signal(sig: c_int, handler: usize) -> usize;
    pub fn setrlimit(resource: c_int, rl: *const rlimit) -> c_int;
    pub fn fchmod(fd: c_int, mode: u32) -> c_int;
    pub fn umask(mask: u32) -> u32;
}

pub const O_RDONLY: c_int = 0;
pub const O_WRONLY: c_int = 1;
pub const O_RDWR: c_int = 2;
pub const O_NOCTTY: c_int = 0o400;
pub const O_CLOEXEC: c_int = 0o2000000;
pub const O_NONBLOCK: c_int = 0o4000;

pub const POLLIN: i16 = 1;
pub const POLLOUT: i16 = 4;
pub const POLLERR: i16 = 8;
pub const POLLHUP: i16 = 16;
pub const POLLNVAL: i16 = 32;

pub const SIGHUP: c_int = 1;
pub const SIGKILL: c_int = 9;
pub const SIGPIPE: c_int = 13;
pub const SIGTERM: c_int = 15;
pub const SIGCHLD: c_int = 17;
pub const SIG_DFL: usize = 0;
pub const SIG_SETMASK: c_int = 2;

pub const CLONE_VM: c_int = 0x100;
pub const CLONE_VFORK: c_int = 0x4000;

pub const MS_RDONLY: c_ulong = 1;
pub const MS_NOSUID: c_ulong = 2;
pub const MS_NODEV: c_ulong = 4;
pub const MS_NOEXEC: c_ulong = 8;
pub const MS_REMOUNT: c_ulong = 32;
pub const MS_BIND: c_ulong = 4096;
pub const MS_MOVE: c_ulong = 8192;
pub const MNT_DETACH: c_int = 2;

pub const TIOCSCTTY: c_ulong = 0x540E;
pub const TIOCSWINSZ: c_ulong = 0x5414;
pub const TIOCGPGRP: c_ulong = 0x540F;
pub const TIOCGPTN: c_ulong = 0x80045430;
pub const TIOCSPTLCK: c_ulong = 0x40045431;
pub const TIOCGPTPEER: c_ulong = 0x5441;
pub const RNDADDENTROPY: c_ulong = 0x40085203;
pub const RNDRESEEDCRNG: c_ulong = 0x5207;

pub const CLOCK_REALTIME: c_int = 0;
pub const RB_POWER_OFF: c_int = 0x4321fedcu32 as c_int;

pub const SYS_FINIT_MODULE: c_long = 313;
pub const SYS_SETGROUPS: c_long = 116;
pub const SYS_SETRESUID: c_long = 117;
pub const SYS_SETRESGID: c_long = 119;

pub const ECHILD: i32 = 10;
pub const EINTR: i32 = 4;
pub const EAGAIN: i32 = 11;
pub const ENOENT: i32 = 2;
pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;
pub const EIO: i32 = 5;

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A C string from bytes; None when they contain a NUL.
pub fn cstr(bytes: &[u8]) -> Option<CString> {
    CString::new(bytes).ok()
}

/// Converts a -1 return into the errno.
pub fn check(r: c_int) -> Result<c_int, i32> {
    if r < 0 { Err(errno()) } else { Ok(r) }
}

pub fn mount_fs(
    src: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    let d = data.map_or(std::ptr::null(), |d| d.as_ptr() as *const c_void);
    check(unsafe { mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, d) }).map(|_| ())
}

/// Moves the mount at `from` to `to` (MS_MOVE), its submounts with it.
pub fn move_mount(from: &CStr, to: &CStr) -> Result<(), i32> {
    check(unsafe {
        mount(
            from.as_ptr(),
            to.as_ptr(),
            std::ptr::null(),
            MS_MOVE,
            std::ptr::null(),
        )
    })
    .map(|_| ())
}

/// Writes all of `buf`, retrying short writes and EINTR/EAGAIN.
pub fn write_all(fd: c_int, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        let n = unsafe { write(fd, buf.as_ptr() as *const c_void, buf.len()) };
        if n < 0 {
            let e = errno();
            if e == EINTR {
                continue;
            }
            if e == EAGAIN {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Runs `call`, a system call that returns a byte count or -1, again while
/// it is interrupted (EINTR); Err(errno) on failure.
pub fn count_retrying(mut call: impl FnMut() -> isize) -> Result<usize, i32> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != EINTR {
            return Err(e);
        }
    }
}

/// One read; Err(errno) on failure (EINTR retried).
pub fn read_some(fd: c_int, buf: &mut [u8]) -> Result<usize, i32> {
    count_retrying(|| unsafe { read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) })
}

pub fn open_path(path: &str, flags: c_int) -> Result<c_int, i32> {
    let p = cstr(path.as_bytes()).ok_or(22)?;
    check(unsafe { open(p.as_ptr(), flags | O_CLOEXEC, 0o666 as c_int) })
}

pub fn pipe_cloexec() -> Result<(c_int, c_int), i32> {
    let mut fds = [0 as c_int; 2];
    check(unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// One buffer of a vectored read.
#[repr(C)]
pub struct iovec {
    pub base: *mut c_void,
    pub len: usize,
}

/// An owned fd closed on drop.
pub struct Fd(pub c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            unsafe { close(self.0) };
        }
    }
}

/// Linux errno names (code field of `error`).
pub fn errno_name(e: i32) -> &'static str {
    match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        34 => "ERANGE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        71 => "EPROTO",
        74 => "EBADMSG",
        75 => "EOVERFLOW",
        84 => "EILSEQ",
        93 => "EPROTONOSUPPORT",
        95 => "EOPNOTSUPP",
        107 => "ENOTCONN",
        110 => "ETIMEDOUT",
        122 => "EDQUOT",
        125 => "ECANCELED",
        _ => "EIO",
    }
}

/// The errno of an io::Error (EIO when it has none).
pub fn io_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(EIO)
}

/// strerror-like text without calling strerror (not thread-safe in all libcs).
pub fn errno_text(e: i32) -> String {
    let s = io::Error::from_raw_os_error(e).to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
