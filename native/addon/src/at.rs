//! The `*at` family: directory-fd relative operations on names.

use std::ffi::{CString, c_int, c_long};
use std::ptr;

use crate::error::{ArgErr, SysErr, SysResult};
use crate::napi::{NAPI_NUMBER, NAPI_OBJECT, napi_value};
use crate::sys::{self, Timespec};
use crate::value::{Args, Env, MAX_SAFE};
use crate::work::{Call, Out, Spec};

/// `Ok(undefined)` for a non-negative return value, else the errno.
pub fn unit(rc: impl Into<i64>, syscall: &'static str) -> SysResult<Out> {
    if rc.into() < 0 {
        Err(SysErr::last(syscall))
    } else {
        Ok(Out::Undefined)
    }
}

fn mode_arg(env: Env, v: napi_value, default: Option<u32>) -> Result<u32, ArgErr> {
    match default {
        Some(d) if env.is_undefined(v) => Ok(d),
        _ => env.flags(v, "mode"),
    }
}

/// `mkdirat(dirfd, path, mode = 0o777)`.
fn parse_mkdirat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let mode = mode_arg(env, args.get(2), Some(0o777))?;
    let p = path.clone();
    Ok(
        Call::new(move || unit(unsafe { sys::mkdirat(dirfd, p.as_ptr(), mode) }, "mkdirat"))
            .path(&path),
    )
}

/// `mknodat(dirfd, path, mode, dev = 0)`.
fn parse_mknodat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let mode = mode_arg(env, args.get(2), None)?;
    let dev = if env.is_undefined(args.get(3)) {
        0
    } else {
        env.u64_or_bigint(args.get(3), "dev")?
    };
    let p = path.clone();
    Ok(Call::new(move || {
        unit(
            unsafe { sys::mknodat(dirfd, p.as_ptr(), mode, dev) },
            "mknodat",
        )
    })
    .path(&path))
}

/// `symlinkat(target, newdirfd, linkpath)`; errors report `path` = target,
/// `dest` = linkpath like Node's `fs.symlink`.
fn parse_symlinkat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let target = env.cstr(args.get(0), "target")?;
    let dirfd = env.fd(args.get(1), "newdirfd")?;
    let link = env.cstr(args.get(2), "linkpath")?;
    let (t, l) = (target.clone(), link.clone());
    Ok(Call::new(move || {
        unit(
            unsafe { sys::symlinkat(t.as_ptr(), dirfd, l.as_ptr()) },
            "symlinkat",
        )
    })
    .path(&target)
    .dest(&link))
}

/// `linkat(olddirfd, oldpath, newdirfd, newpath, flags = 0)`.
fn parse_linkat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let olddirfd = env.fd(args.get(0), "olddirfd")?;
    let oldpath = env.cstr(args.get(1), "oldpath")?;
    let newdirfd = env.fd(args.get(2), "newdirfd")?;
    let newpath = env.cstr(args.get(3), "newpath")?;
    let flags = env.opt_flags(args.get(4), "flags")? as c_int;
    let (o, n) = (oldpath.clone(), newpath.clone());
    Ok(Call::new(move || {
        unit(
            unsafe { sys::linkat(olddirfd, o.as_ptr(), newdirfd, n.as_ptr(), flags) },
            "linkat",
        )
    })
    .path(&oldpath)
    .dest(&newpath))
}

/// `unlinkat(dirfd, path, flags = 0)`.
fn parse_unlinkat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let flags = env.opt_flags(args.get(2), "flags")? as c_int;
    let p = path.clone();
    Ok(Call::new(move || {
        unit(
            unsafe { sys::unlinkat(dirfd, p.as_ptr(), flags) },
            "unlinkat",
        )
    })
    .path(&path))
}

/// `renameat2(olddirfd, oldpath, newdirfd, newpath, flags = 0)` (raw syscall).
fn parse_renameat2(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let olddirfd = env.fd(args.get(0), "olddirfd")?;
    let oldpath = env.cstr(args.get(1), "oldpath")?;
    let newdirfd = env.fd(args.get(2), "newdirfd")?;
    let newpath = env.cstr(args.get(3), "newpath")?;
    let flags = env.opt_flags(args.get(4), "flags")?;
    let (o, n) = (oldpath.clone(), newpath.clone());
    Ok(Call::new(move || {
        let rc = unsafe {
            sys::syscall(
                sys::SYS_RENAMEAT2,
                olddirfd as c_long,
                o.as_ptr() as c_long,
                newdirfd as c_long,
                n.as_ptr() as c_long,
                flags as c_long,
            )
        };
        unit(rc, "renameat2")
    })
    .path(&oldpath)
    .dest(&newpath))
}

/// `fchownat(dirfd, path, uid, gid, flags = 0)`; -1 leaves an id unchanged.
fn parse_fchownat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let uid = env.int(args.get(2), "uid", -1, u32::MAX as i64)? as u32;
    let gid = env.int(args.get(3), "gid", -1, u32::MAX as i64)? as u32;
    let flags = env.opt_flags(args.get(4), "flags")? as c_int;
    let p = path.clone();
    Ok(Call::new(move || {
        unit(
            unsafe { sys::fchownat(dirfd, p.as_ptr(), uid, gid, flags) },
            "fchownat",
        )
    })
    .path(&path))
}

/// A `(dirfd, path, mode, flags)` call whose classic syscall ignores or lacks
/// flags: the classic one runs for flags 0, the `…2` variant (which honours
/// them) otherwise, and an old kernel's ENOSYS from it surfaces as is.
fn mode_flags_call(
    env: Env,
    args: &Args,
    default_mode: Option<u32>,
    classic: (c_long, &'static str),
    with_flags: (c_long, &'static str),
) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let mode = mode_arg(env, args.get(2), default_mode)?;
    let flags = env.opt_flags(args.get(3), "flags")?;
    let p = path.clone();
    Ok(Call::new(move || {
        let (fd, ptr, m) = (dirfd as c_long, p.as_ptr() as c_long, mode as c_long);
        if flags == 0 {
            unit(unsafe { sys::syscall(classic.0, fd, ptr, m) }, classic.1)
        } else {
            let f = flags as c_long;
            unit(
                unsafe { sys::syscall(with_flags.0, fd, ptr, m, f) },
                with_flags.1,
            )
        }
    })
    .path(&path))
}

/// `fchmodat(dirfd, path, mode, flags = 0)`: fchmodat2 (Linux >= 6.6) for flags.
fn parse_fchmodat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    mode_flags_call(
        env,
        args,
        None,
        (sys::SYS_FCHMODAT, "fchmodat"),
        (sys::SYS_FCHMODAT2, "fchmodat2"),
    )
}

/// `faccessat(dirfd, path, mode = F_OK, flags = 0)`: faccessat2 for flags,
/// which is what honours AT_EACCESS / AT_SYMLINK_NOFOLLOW.
fn parse_faccessat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    mode_flags_call(
        env,
        args,
        Some(0),
        (sys::SYS_FACCESSAT, "faccessat"),
        (sys::SYS_FACCESSAT2, "faccessat2"),
    )
}

/// `{ sec, nsec }`, `UTIME_NOW` or `UTIME_OMIT`.
fn timespec(env: Env, v: napi_value, what: &str) -> Result<Timespec, ArgErr> {
    match env.type_of(v) {
        NAPI_NUMBER => {
            let n = env.int(v, what, 0, MAX_SAFE)?;
            if n == sys::UTIME_NOW || n == sys::UTIME_OMIT {
                Ok(Timespec {
                    tv_sec: 0,
                    tv_nsec: n,
                })
            } else {
                Err(ArgErr::Value(format!(
                    "The argument '{what}' must be {{ sec, nsec }}, UTIME_NOW or UTIME_OMIT. Received {n}"
                )))
            }
        }
        NAPI_OBJECT => {
            let sec = env.int(
                env.get(v, c"sec")?,
                &format!("{what}.sec"),
                -MAX_SAFE,
                MAX_SAFE,
            )?;
            let nsec = env.opt_int(
                env.get(v, c"nsec")?,
                &format!("{what}.nsec"),
                0,
                999_999_999,
                0,
            )?;
            Ok(Timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            })
        }
        _ => Err(env.type_err(v, what, "an object { sec, nsec } or UTIME_NOW / UTIME_OMIT")),
    }
}

/// `utimensat(dirfd, path | null, atime, mtime, flags = 0)`. A null path, or
/// `""` with AT_EMPTY_PATH, sets the times of `dirfd` itself (futimens).
fn parse_utimensat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let mut path = env.opt_cstr(args.get(1), "path")?;
    let atime = timespec(env, args.get(2), "atime")?;
    let mtime = timespec(env, args.get(3), "mtime")?;
    let mut flags = env.opt_flags(args.get(4), "flags")? as c_int;
    if path.as_ref().is_some_and(|p| p.is_empty()) && flags & sys::AT_EMPTY_PATH != 0 {
        path = None;
    }
    if path.is_none() {
        // The kernel operates on the fd itself for a NULL path and wants no
        // AT_EMPTY_PATH there.
        flags &= !sys::AT_EMPTY_PATH;
    }
    let report = path.clone();
    Ok(Call::new(move || {
        let times = [atime, mtime];
        let p = path.as_ref().map_or(ptr::null(), |p| p.as_ptr());
        let rc = unsafe {
            sys::syscall(
                sys::SYS_UTIMENSAT,
                dirfd as c_long,
                p as c_long,
                times.as_ptr() as c_long,
                flags as c_long,
            )
        };
        unit(
            rc,
            if path.is_some() {
                "utimensat"
            } else {
                "futimens"
            },
        )
    })
    .opt_path(report.as_ref()))
}

/// `readlinkat(dirfd, path)` → Buffer, growing the buffer until it fits.
fn parse_readlinkat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let p = path.clone();
    Ok(Call::new(move || readlink(dirfd, &p).map(Out::Buf)).path(&path))
}

fn readlink(dirfd: c_int, path: &CString) -> SysResult<Vec<u8>> {
    let mut cap = 256usize;
    loop {
        let mut buf = vec![0u8; cap];
        let n = unsafe { sys::readlinkat(dirfd, path.as_ptr(), buf.as_mut_ptr().cast(), cap) };
        if n < 0 {
            return Err(SysErr::last("readlinkat"));
        }
        let n = n as usize;
        if n < cap {
            buf.truncate(n);
            return Ok(buf);
        }
        // Possibly truncated: retry with more room (symlink bodies are < 1 MiB
        // on every Linux filesystem; stop somewhere far above that).
        if cap >= 1 << 26 {
            return Err(SysErr {
                errno: 36,
                syscall: "readlinkat",
            }); // ENAMETOOLONG
        }
        cap *= 4;
    }
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "mkdirat",
        parse: parse_mkdirat,
    },
    Spec {
        name: "mknodat",
        parse: parse_mknodat,
    },
    Spec {
        name: "symlinkat",
        parse: parse_symlinkat,
    },
    Spec {
        name: "linkat",
        parse: parse_linkat,
    },
    Spec {
        name: "unlinkat",
        parse: parse_unlinkat,
    },
    Spec {
        name: "renameat2",
        parse: parse_renameat2,
    },
    Spec {
        name: "fchownat",
        parse: parse_fchownat,
    },
    Spec {
        name: "fchmodat",
        parse: parse_fchmodat,
    },
    Spec {
        name: "utimensat",
        parse: parse_utimensat,
    },
    Spec {
        name: "readlinkat",
        parse: parse_readlinkat,
    },
    Spec {
        name: "faccessat",
        parse: parse_faccessat,
    },
];
