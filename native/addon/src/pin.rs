//! The hot paths of a passthrough filesystem server, each one native call
//! with its results written into arrays the caller reuses (no object, no
//! exception for the common "no such attribute"):
//! * `pinAt`: open a directory entry `O_PATH` with openat2, statx the fd and
//!   read one xattr of that very inode (a directory's as `.` beneath it, a
//!   file's through `/proc/self/fd/<fd>`).
//! * `unpin`: statx a pinned fd for its link count, then close it.
//! * `createPinned`: create a file `O_CREAT | O_EXCL` with openat2, set one
//!   xattr on it, statx it and pin it `O_PATH`; on failure nothing is left.

use std::ffi::{CStr, CString, c_int, c_long, c_void};
use std::ptr;
use std::sync::atomic::Ordering;

use crate::error::{ArgErr, SysErr, SysResult};
use crate::napi::*;
use crate::open::openat2;
use crate::stat::{STATX_FIELDS, f64_out, statx_into, write_fields};
use crate::sys::{self, OpenHow, Statx};
use crate::value::{Args, Env};
use crate::xattr::{HAVE_GETXATTRAT, getxattrat};

/// `out` holds the statx fields and one number more (see index.d.ts).
const OUT_LEN: usize = STATX_FIELDS + 1;
const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;
const S_IFDIR: u16 = 0o040000;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_EXCL: u64 = 0o200;
const O_NOFOLLOW: u64 = 0o400000;
const O_PATH: u64 = 0o10000000;
const AT_NO_AUTOMOUNT: c_int = 0x800;

/// Turns a parse result into the call's arguments or the thrown argument error.
fn parsed<T>(env: Env, result: Result<T, ArgErr>) -> Result<T, napi_value> {
    match result {
        Ok(value) => Ok(value),
        Err(ArgErr::Pending) => Err(ptr::null_mut()),
        Err(e) => Err(env.throw(env.arg_error(e))),
    }
}

fn statx_fd(fd: c_int, buf: &mut Statx) -> SysResult<()> {
    statx_into(fd, c"", sys::AT_EMPTY_PATH | AT_NO_AUTOMOUNT, buf)
}

/// The decimal name of `fd` in `/proc/self/fd`.
fn fd_name(fd: c_int) -> CString {
    // Digits and a sign never hold a NUL.
    CString::new(fd.to_string()).unwrap_or_default()
}

/// xattr `name` of the inode our fd `fd` refers to, into `value`: its length,
/// or `-errno`. Through the magic link `/proc/self/fd/<fd>` (resolved by
/// `getxattrat` relative to `proc_fd`, the `/proc/self/fd` directory), which
/// leads to that inode and is followed no further; the kernel refuses `O_PATH`
/// fds to `fgetxattr` and to `getxattrat`'s `AT_EMPTY_PATH`.
fn pinned_xattr(proc_fd: c_int, fd: c_int, name: &CStr, value: &mut [u8]) -> isize {
    let link = fd_name(fd);
    let (buf, size) = (value.as_mut_ptr() as *mut c_void, value.len());
    if HAVE_GETXATTRAT.load(Ordering::Relaxed) {
        let n = getxattrat(proc_fd, &link, 0, name, buf, size);
        if n >= 0 || sys::errno() != sys::ENOSYS {
            return if n >= 0 { n } else { -(sys::errno() as isize) };
        }
        HAVE_GETXATTRAT.store(false, Ordering::Relaxed);
    }
    let path = CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    let n = unsafe { sys::getxattr(path.as_ptr(), name.as_ptr(), buf, size) };
    if n >= 0 { n } else { -(sys::errno() as isize) }
}

/// [`pinned_xattr`] of a directory: read as `.` beneath its own fd, which
/// names exactly that directory and is cheaper than the /proc walk, unless
/// searching the directory is not permitted (the magic link needs no search).
fn pinned_dir_xattr(proc_fd: c_int, fd: c_int, name: &CStr, value: &mut [u8]) -> isize {
    if HAVE_GETXATTRAT.load(Ordering::Relaxed) {
        let (buf, size) = (value.as_mut_ptr() as *mut c_void, value.len());
        let n = getxattrat(fd, c".", 0, name, buf, size);
        if n >= 0 {
            return n;
        }
        let errno = sys::errno();
        if errno != sys::EACCES && errno != sys::ENOSYS {
            return -(errno as isize);
        }
    }
    pinned_xattr(proc_fd, fd, name, value)
}

/// The `Uint8Array` argument `what`, writable in place for this call.
fn u8_out<'a>(env: Env, v: napi_value, what: &str) -> Result<&'a mut [u8], ArgErr> {
    let Some((data, len)) = env.uint8_view(v) else {
        return Err(env.type_err(v, what, "an instance of Uint8Array"));
    };
    if len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: the array is this call's argument, alive and not detached
    // while the call runs on the JS thread.
    Ok(unsafe { std::slice::from_raw_parts_mut(data as *mut u8, len) })
}

/// `pinAt(dirfd, name, flags, resolve, procFd, xattrName, out, value)` → fd.
pub unsafe extern "C" fn js_pin_at(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let Ok((dirfd, name, flags, resolve, proc_fd, xattr, out, value)) = parsed(
        env,
        (|| {
            Ok((
                env.fd(args.get(0), "dirfd")?,
                env.cstr(args.get(1), "name")?,
                env.flags(args.get(2), "flags")?,
                env.flags(args.get(3), "resolve")?,
                env.fd(args.get(4), "procFd")?,
                env.cstr(args.get(5), "xattrName")?,
                f64_out(env, args.get(6), "out", OUT_LEN)?,
                u8_out(env, args.get(7), "value")?,
            ))
        })(),
    ) else {
        return ptr::null_mut();
    };
    let how = OpenHow {
        flags: flags as u64 | O_PATH | sys::O_CLOEXEC,
        mode: 0,
        resolve: resolve as u64,
    };
    let fd = match openat2(dirfd, &name, &how) {
        Ok(fd) => fd,
        Err(e) => return env.throw(env.sys_error(e, Some(name.as_bytes()), None)),
    };
    let mut s = Statx::default();
    if let Err(e) = statx_fd(fd, &mut s) {
        unsafe { sys::close(fd) };
        return env.throw(env.sys_error(e, Some(name.as_bytes()), None));
    }
    // Only regular files and directories carry user xattrs.
    let kind = s.mode & S_IFMT;
    let length = if kind == S_IFDIR {
        pinned_dir_xattr(proc_fd, fd, &xattr, value)
    } else if kind == S_IFREG {
        pinned_xattr(proc_fd, fd, &xattr, value)
    } else {
        -(sys::ENODATA as isize)
    };
    // SAFETY: `out` holds OUT_LEN f64s (checked), this call's argument.
    unsafe {
        write_fields(&s, out);
        *out.add(STATX_FIELDS) = length as f64;
    }
    env.int32(fd)
}

/// `unpin(fd)` → the inode's link count, read just before `fd` is closed.
pub unsafe extern "C" fn js_unpin(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let Ok(fd) = parsed(env, env.fd(args.get(0), "fd")) else {
        return ptr::null_mut();
    };
    let mut s = Statx::default();
    let stat = statx_fd(fd, &mut s);
    let closed = if unsafe { sys::close(fd) } < 0 {
        Err(SysErr::last("close"))
    } else {
        Ok(())
    };
    match stat.and(closed) {
        Ok(()) => env.uint32(s.nlink),
        Err(e) => env.throw(env.sys_error(e, None, None)),
    }
}

/// The new file `name` in `dirfd` (opened as `how` says), open read-write, with xattr `xattr` set
/// to `value`, stat'ed into `s`, and its `O_PATH` pin.
fn create_pinned(
    dirfd: c_int,
    name: &CStr,
    how: &OpenHow,
    proc_fd: c_int,
    xattr: &CStr,
    value: &[u8],
    s: &mut Statx,
) -> SysResult<(c_int, c_int)> {
    let fd = openat2(dirfd, name, how)?;
    let rest = (|| {
        let rc = unsafe {
            sys::fsetxattr(
                fd,
                xattr.as_ptr(),
                value.as_ptr() as *const c_void,
                value.len(),
                0,
            )
        };
        if rc < 0 {
            return Err(SysErr::last("fsetxattr"));
        }
        statx_fd(fd, s)?;
        // The pin reaches this very inode through its magic link, whatever the name holds now.
        let pin = unsafe {
            sys::syscall(
                sys::SYS_OPENAT,
                proc_fd as c_long,
                fd_name(fd).as_ptr() as c_long,
                (O_PATH | sys::O_CLOEXEC) as c_long,
                0 as c_long,
            )
        };
        if pin < 0 {
            return Err(SysErr::last("openat"));
        }
        Ok(pin as c_int)
    })();
    match rest {
        Ok(pin) => Ok((fd, pin)),
        Err(e) => {
            unsafe {
                sys::close(fd);
                // Only this call created the name (O_EXCL); the first error is the one reported.
                sys::unlinkat(dirfd, name.as_ptr(), 0);
            }
            Err(e)
        }
    }
}

/// `createPinned(dirfd, name, mode, resolve, procFd, xattrName, value, out)` → read-write fd.
pub unsafe extern "C" fn js_create_pinned(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let Ok((dirfd, name, mode, resolve, proc_fd, xattr, value, out)) = parsed(
        env,
        (|| {
            Ok((
                env.fd(args.get(0), "dirfd")?,
                env.cstr(args.get(1), "name")?,
                env.int(args.get(2), "mode", 0, 0o7777)? as u32,
                env.flags(args.get(3), "resolve")?,
                env.fd(args.get(4), "procFd")?,
                env.cstr(args.get(5), "xattrName")?,
                env.u8array(args.get(6), "value")?,
                f64_out(env, args.get(7), "out", OUT_LEN)?,
            ))
        })(),
    ) else {
        return ptr::null_mut();
    };
    let how = OpenHow {
        flags: O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | sys::O_CLOEXEC,
        mode: mode as u64,
        resolve: resolve as u64,
    };
    let mut s = Statx::default();
    match create_pinned(dirfd, &name, &how, proc_fd, &xattr, &value, &mut s) {
        Ok((fd, pin)) => {
            // SAFETY: `out` holds OUT_LEN f64s (checked), this call's argument.
            unsafe {
                write_fields(&s, out);
                *out.add(STATX_FIELDS) = pin as f64;
            }
            env.int32(fd)
        }
        Err(e) => env.throw(env.sys_error(e, Some(name.as_bytes()), None)),
    }
}
