//! fstatat / fstat (via statx(2)) and statfs / fstatfs.

use std::ffi::{CStr, CString, c_int, c_long};
use std::ptr;

use crate::error::{ArgErr, SysErr, SysResult};
use crate::napi::*;
use crate::sys::{self, StatFsBuf, Statx};
use crate::value::{Args, Env};
use crate::work::{Call, Out, Spec};

/// statx(2) of the basic fields into `buf`.
pub fn statx_into(dirfd: c_int, path: &CStr, flags: c_int, buf: &mut Statx) -> SysResult<()> {
    let rc = unsafe {
        sys::syscall(
            sys::SYS_STATX,
            dirfd as c_long,
            path.as_ptr() as c_long,
            flags as c_long,
            sys::STATX_BASIC_STATS as c_long,
            buf as *mut Statx as c_long,
        )
    };
    if rc < 0 {
        Err(SysErr::last("statx"))
    } else {
        Ok(())
    }
}

fn statx(dirfd: c_int, path: &CString, flags: c_int) -> SysResult<Out> {
    let mut buf = Box::<Statx>::default();
    statx_into(dirfd, path, flags, &mut buf)?;
    Ok(Out::Stat(buf))
}

/// `fstatat(dirfd, path, flags = 0)`; `""` + AT_EMPTY_PATH stats `dirfd`.
fn parse_fstatat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let flags = env.opt_flags(args.get(2), "flags")? as c_int;
    let p = path.clone();
    Ok(Call::new(move || statx(dirfd, &p, flags)).path(&path))
}

/// `fstat(fd)` = statx(fd, "", AT_EMPTY_PATH).
fn parse_fstat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    Ok(Call::new(move || {
        statx(fd, &CString::default(), sys::AT_EMPTY_PATH)
    }))
}

/// How many numbers `statxInto` writes (see `STATX_FIELDS` in index.js).
pub const STATX_FIELDS: usize = 19;

/// The `Float64Array` argument `what` of at least `len` elements.
pub fn f64_out(env: Env, v: napi_value, what: &str, len: usize) -> Result<*mut f64, ArgErr> {
    let Some((data, actual)) = env.typed_array(v, NAPI_FLOAT64_ARRAY) else {
        return Err(env.type_err(v, what, "an instance of Float64Array"));
    };
    if actual < len {
        return Err(ArgErr::Range(format!(
            "The argument '{what}' must hold at least {len} numbers. Received length {actual}"
        )));
    }
    // `data` already includes the view's byte offset.
    Ok(data as *mut f64)
}

/// `statxInto(dirfd, path, flags, out)`: statx(2) written into a
/// `Float64Array` as exact numbers (64-bit inode numbers as two 32-bit
/// halves), with no object or bigint made: the hot path of a server
/// answering lookups. Returns false when `path` does not exist (ENOENT),
/// throws any other error. Synchronous only.
pub unsafe extern "C" fn js_statx_into(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let parsed = (|| -> Result<(c_int, CString, c_int, *mut f64), ArgErr> {
        Ok((
            env.fd(args.get(0), "dirfd")?,
            env.cstr(args.get(1), "path")?,
            env.flags(args.get(2), "flags")? as c_int,
            f64_out(env, args.get(3), "out", STATX_FIELDS)?,
        ))
    })();
    let (dirfd, path, flags, out) = match parsed {
        Ok(parsed) => parsed,
        Err(ArgErr::Pending) => return ptr::null_mut(),
        Err(e) => return env.throw(env.arg_error(e)),
    };
    let mut s = Statx::default();
    match statx_into(dirfd, &path, flags, &mut s) {
        Ok(()) => {}
        Err(SysErr {
            errno: sys::ENOENT, ..
        }) => return env.boolean(false),
        Err(e) => return env.throw(env.sys_error(e, Some(path.as_bytes()), None)),
    }
    // SAFETY: `out` holds at least STATX_FIELDS f64s (checked) and stays
    // alive during this call, which is its argument.
    unsafe { write_fields(&s, out) };
    env.boolean(true)
}

/// Writes the `STATX_FIELDS` numbers of `s` to `out`, laid out as
/// `STATX_FIELDS` in index.js says.
///
/// # Safety
/// `out` points at `STATX_FIELDS` writable f64s.
pub unsafe fn write_fields(s: &Statx, out: *mut f64) {
    let fields = [
        s.dev_major as f64,
        s.dev_minor as f64,
        (s.ino >> 32) as f64,
        (s.ino & 0xffff_ffff) as f64,
        s.mode as f64,
        s.nlink as f64,
        s.uid as f64,
        s.gid as f64,
        s.rdev_major as f64,
        s.rdev_minor as f64,
        s.size as f64,
        s.blksize as f64,
        s.blocks as f64,
        s.atime.tv_sec as f64,
        s.atime.tv_nsec as f64,
        s.mtime.tv_sec as f64,
        s.mtime.tv_nsec as f64,
        s.ctime.tv_sec as f64,
        s.ctime.tv_nsec as f64,
    ];
    unsafe { ptr::copy_nonoverlapping(fields.as_ptr(), out, STATX_FIELDS) };
}

/// `statfs(path)`.
fn parse_statfs(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let path = env.cstr(args.get(0), "path")?;
    let p = path.clone();
    Ok(Call::new(move || {
        let mut buf = Box::<StatFsBuf>::default();
        if unsafe { sys::statfs(p.as_ptr(), &mut *buf) } < 0 {
            Err(SysErr::last("statfs"))
        } else {
            Ok(Out::StatFs(buf))
        }
    })
    .path(&path))
}

/// `fstatfs(fd)`.
fn parse_fstatfs(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    Ok(Call::new(move || {
        let mut buf = Box::<StatFsBuf>::default();
        if unsafe { sys::fstatfs(fd, &mut *buf) } < 0 {
            Err(SysErr::last("fstatfs"))
        } else {
            Ok(Out::StatFs(buf))
        }
    }))
}

pub fn stat_to_js(env: Env, s: &Statx) -> napi_value {
    let o = env.object();
    let dev = sys::makedev(s.dev_major, s.dev_minor);
    let rdev = sys::makedev(s.rdev_major, s.rdev_minor);
    env.set(o, c"dev", env.bigint_u64(dev));
    env.set(o, c"ino", env.bigint_u64(s.ino));
    env.set(o, c"mode", env.uint32(s.mode as u32));
    env.set(o, c"nlink", env.uint32(s.nlink));
    env.set(o, c"uid", env.uint32(s.uid));
    env.set(o, c"gid", env.uint32(s.gid));
    env.set(o, c"rdev", env.bigint_u64(rdev));
    env.set(o, c"size", env.double(s.size as f64));
    env.set(o, c"blksize", env.uint32(s.blksize));
    env.set(o, c"blocks", env.double(s.blocks as f64));
    env.set(o, c"atimeSec", env.double(s.atime.tv_sec as f64));
    env.set(o, c"atimeNsec", env.uint32(s.atime.tv_nsec));
    env.set(o, c"mtimeSec", env.double(s.mtime.tv_sec as f64));
    env.set(o, c"mtimeNsec", env.uint32(s.mtime.tv_nsec));
    env.set(o, c"ctimeSec", env.double(s.ctime.tv_sec as f64));
    env.set(o, c"ctimeNsec", env.uint32(s.ctime.tv_nsec));
    o
}

pub fn statfs_to_js(env: Env, s: &StatFsBuf) -> napi_value {
    let o = env.object();
    env.set(o, c"type", env.double(s.f_type as f64));
    env.set(o, c"bsize", env.double(s.f_bsize as f64));
    env.set(o, c"blocks", env.double(s.f_blocks as f64));
    env.set(o, c"bfree", env.double(s.f_bfree as f64));
    env.set(o, c"bavail", env.double(s.f_bavail as f64));
    env.set(o, c"files", env.double(s.f_files as f64));
    env.set(o, c"ffree", env.double(s.f_ffree as f64));
    env.set(o, c"namelen", env.double(s.f_namelen as f64));
    env.set(o, c"frsize", env.double(s.f_frsize as f64));
    env.set(o, c"flags", env.double(s.f_flags as f64));
    o
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "fstatat",
        parse: parse_fstatat,
    },
    Spec {
        name: "fstat",
        parse: parse_fstat,
    },
    Spec {
        name: "statfs",
        parse: parse_statfs,
    },
    Spec {
        name: "fstatfs",
        parse: parse_fstatfs,
    },
];
