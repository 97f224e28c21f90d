//! fstatat / fstat (via statx(2)) and statfs / fstatfs.

use std::ffi::{CString, c_int, c_long};

use crate::error::{ArgErr, SysErr, SysResult};
use crate::napi::napi_value;
use crate::sys::{self, StatFsBuf, Statx};
use crate::value::{Args, Env};
use crate::work::{Call, Out, Spec};

fn statx(dirfd: c_int, path: &CString, flags: c_int) -> SysResult<Out> {
    let mut buf = Box::<Statx>::default();
    let rc = unsafe {
        sys::syscall(
            sys::SYS_STATX,
            dirfd as c_long,
            path.as_ptr() as c_long,
            flags as c_long,
            sys::STATX_BASIC_STATS as c_long,
            &mut *buf as *mut Statx as c_long,
        )
    };
    if rc < 0 {
        Err(SysErr::last("statx"))
    } else {
        Ok(Out::Stat(buf))
    }
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
