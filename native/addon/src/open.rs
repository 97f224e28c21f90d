//! openat2(2), openat(2) and close(2). `O_CLOEXEC` is always added.

use std::ffi::{CStr, c_int, c_long};

use crate::error::{ArgErr, SysErr, SysResult};
use crate::sys::{self, OpenHow};
use crate::value::{Args, Env, MAX_SAFE};
use crate::work::{Call, Out, Spec};

const O_CREAT: u64 = 0o100;
const O_TMPFILE_BIT: u64 = 0o20000000;

/// `openat2(dirfd, path, { flags, mode, resolve }?)`.
fn parse_openat2(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let how = args.get(2);
    let (mut flags, mut mode, mut resolve) = (0u64, None, 0u64);
    if !env.is_undefined(how) {
        if env.type_of(how) != crate::napi::NAPI_OBJECT {
            return Err(env.type_err(how, "how", "of type object"));
        }
        // Read each field once (a getter could change its answer).
        flags = env.opt_int(env.get(how, c"flags")?, "how.flags", 0, MAX_SAFE, 0)? as u64;
        let m = env.get(how, c"mode")?;
        if !env.is_undefined(m) {
            mode = Some(env.int(m, "how.mode", 0, MAX_SAFE)? as u64);
        }
        resolve = env.opt_int(env.get(how, c"resolve")?, "how.resolve", 0, MAX_SAFE, 0)? as u64;
    }
    // openat2 insists on mode == 0 unless a file may be created.
    let creates = flags & (O_CREAT | O_TMPFILE_BIT) != 0;
    let mode = mode.unwrap_or(if creates { 0o666 } else { 0 });
    let job_path = path.clone();
    Ok(Call::new(move || {
        let how = OpenHow {
            flags: flags | sys::O_CLOEXEC,
            mode,
            resolve,
        };
        openat2(dirfd, &job_path, &how).map(Out::Int)
    })
    .path(&path))
}

/// openat2(2) itself (the caller adds `O_CLOEXEC` to `how`).
pub fn openat2(dirfd: c_int, path: &CStr, how: &OpenHow) -> SysResult<c_int> {
    let fd = unsafe {
        sys::syscall(
            sys::SYS_OPENAT2,
            dirfd as c_long,
            path.as_ptr() as c_long,
            how as *const OpenHow as c_long,
            std::mem::size_of::<OpenHow>() as c_long,
        )
    };
    if fd < 0 {
        Err(SysErr::last("openat2"))
    } else {
        Ok(fd as c_int)
    }
}

/// `openat(dirfd, path, flags = O_RDONLY, mode = 0o666)`.
fn parse_openat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let flags = env.opt_flags(args.get(2), "flags")?;
    let mode = env.opt_int(args.get(3), "mode", 0, u32::MAX as i64, 0o666)? as u32;
    let job_path = path.clone();
    Ok(Call::new(move || {
        let flags = flags as u64 | sys::O_CLOEXEC;
        let fd = unsafe {
            sys::syscall(
                sys::SYS_OPENAT,
                dirfd as c_long,
                job_path.as_ptr() as c_long,
                flags as c_long,
                mode as c_long,
            )
        };
        if fd < 0 {
            Err(SysErr::last("openat"))
        } else {
            Ok(Out::Int(fd as i32))
        }
    })
    .path(&path))
}

/// `close(fd)`. Not retried on EINTR (on Linux the fd is gone either way).
fn parse_close(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    Ok(Call::new(move || {
        if unsafe { sys::close(fd) } < 0 {
            Err(SysErr::last("close"))
        } else {
            Ok(Out::Undefined)
        }
    }))
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "openat2",
        parse: parse_openat2,
    },
    Spec {
        name: "openat",
        parse: parse_openat,
    },
    Spec {
        name: "close",
        parse: parse_close,
    },
];
