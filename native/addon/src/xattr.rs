//! Extended attributes: get/set/list/remove × path / no-follow path / fd.

use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr;

use crate::error::{ArgErr, SysErr, SysResult};
use crate::sys;
use crate::value::{Args, Env};
use crate::work::{Call, Out, Spec};

/// Which object the call addresses.
enum Target {
    /// `foo(path)`: follows symlinks.
    Path(CString),
    /// `lfoo(path)`: acts on a symlink itself.
    Link(CString),
    /// `ffoo(fd)`.
    Fd(c_int),
}

const PATH: u8 = 0;
const LINK: u8 = 1;
const FD: u8 = 2;

fn target<const K: u8>(env: Env, args: &Args) -> Result<Target, ArgErr> {
    Ok(match K {
        PATH => Target::Path(env.cstr(args.get(0), "path")?),
        LINK => Target::Link(env.cstr(args.get(0), "path")?),
        _ => Target::Fd(env.fd(args.get(0), "fd")?),
    })
}

/// A [`Call`] running `job` on `t`, reporting the path (if any) in errors.
fn make(t: Target, job: impl FnOnce(&Target) -> SysResult<Out> + Send + 'static) -> Call {
    let path = match &t {
        Target::Path(p) | Target::Link(p) => Some(p.clone()),
        Target::Fd(_) => None,
    };
    Call::new(move || job(&t)).opt_path(path.as_ref())
}

/// Query the size, allocate, read; if the value grew in between (ERANGE),
/// query again. After a few rounds fall back to the VFS maximum.
fn read_growing(
    syscall: &'static str,
    mut read: impl FnMut(*mut c_void, usize) -> isize,
) -> SysResult<Vec<u8>> {
    for attempt in 0..8 {
        let size = if attempt < 7 {
            read(ptr::null_mut(), 0)
        } else {
            sys::XATTR_MAX as isize
        };
        if size < 0 {
            return Err(SysErr::last(syscall));
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size as usize];
        let n = read(buf.as_mut_ptr() as *mut c_void, buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        if sys::errno() != sys::ERANGE {
            return Err(SysErr::last(syscall));
        }
    }
    Err(SysErr {
        errno: sys::ERANGE,
        syscall,
    })
}

// --------------------------------------------------------------------- get --

fn parse_get<const K: u8>(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let t = target::<K>(env, args)?;
    let name = env.cstr(args.get(1), "name")?;
    Ok(make(t, move |t| {
        let n = name.as_ptr();
        let value = match t {
            Target::Path(p) => read_growing("getxattr", |b, s| unsafe {
                sys::getxattr(p.as_ptr(), n, b, s)
            }),
            Target::Link(p) => read_growing("lgetxattr", |b, s| unsafe {
                sys::lgetxattr(p.as_ptr(), n, b, s)
            }),
            Target::Fd(fd) => {
                read_growing("fgetxattr", |b, s| unsafe { sys::fgetxattr(*fd, n, b, s) })
            }
        }?;
        Ok(Out::Buf(value))
    }))
}

// --------------------------------------------------------------------- set --

fn parse_set<const K: u8>(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let t = target::<K>(env, args)?;
    let name = env.cstr(args.get(1), "name")?;
    let value = env.u8array(args.get(2), "value")?;
    let flags = env.opt_flags(args.get(3), "flags")? as c_int;
    Ok(make(t, move |t| {
        let (n, v, len) = (name.as_ptr(), value.as_ptr() as *const c_void, value.len());
        let (rc, syscall) = unsafe {
            match t {
                Target::Path(p) => (sys::setxattr(p.as_ptr(), n, v, len, flags), "setxattr"),
                Target::Link(p) => (sys::lsetxattr(p.as_ptr(), n, v, len, flags), "lsetxattr"),
                Target::Fd(fd) => (sys::fsetxattr(*fd, n, v, len, flags), "fsetxattr"),
            }
        };
        if rc < 0 {
            Err(SysErr::last(syscall))
        } else {
            Ok(Out::Undefined)
        }
    }))
}

// -------------------------------------------------------------------- list --

fn parse_list<const K: u8>(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let t = target::<K>(env, args)?;
    Ok(make(t, move |t| {
        let raw = match t {
            Target::Path(p) => read_growing("listxattr", |b, s| unsafe {
                sys::listxattr(p.as_ptr(), b as *mut c_char, s)
            }),
            Target::Link(p) => read_growing("llistxattr", |b, s| unsafe {
                sys::llistxattr(p.as_ptr(), b as *mut c_char, s)
            }),
            Target::Fd(fd) => read_growing("flistxattr", |b, s| unsafe {
                sys::flistxattr(*fd, b as *mut c_char, s)
            }),
        }?;
        // The kernel returns "name1\0name2\0...".
        let names = raw
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Ok(Out::Bufs(names))
    }))
}

// ------------------------------------------------------------------ remove --

fn parse_remove<const K: u8>(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let t = target::<K>(env, args)?;
    let name = env.cstr(args.get(1), "name")?;
    Ok(make(t, move |t| {
        let n = name.as_ptr();
        let (rc, syscall) = unsafe {
            match t {
                Target::Path(p) => (sys::removexattr(p.as_ptr(), n), "removexattr"),
                Target::Link(p) => (sys::lremovexattr(p.as_ptr(), n), "lremovexattr"),
                Target::Fd(fd) => (sys::fremovexattr(*fd, n), "fremovexattr"),
            }
        };
        if rc < 0 {
            Err(SysErr::last(syscall))
        } else {
            Ok(Out::Undefined)
        }
    }))
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "getxattr",
        parse: parse_get::<PATH>,
    },
    Spec {
        name: "lgetxattr",
        parse: parse_get::<LINK>,
    },
    Spec {
        name: "fgetxattr",
        parse: parse_get::<FD>,
    },
    Spec {
        name: "setxattr",
        parse: parse_set::<PATH>,
    },
    Spec {
        name: "lsetxattr",
        parse: parse_set::<LINK>,
    },
    Spec {
        name: "fsetxattr",
        parse: parse_set::<FD>,
    },
    Spec {
        name: "listxattr",
        parse: parse_list::<PATH>,
    },
    Spec {
        name: "llistxattr",
        parse: parse_list::<LINK>,
    },
    Spec {
        name: "flistxattr",
        parse: parse_list::<FD>,
    },
    Spec {
        name: "removexattr",
        parse: parse_remove::<PATH>,
    },
    Spec {
        name: "lremovexattr",
        parse: parse_remove::<LINK>,
    },
    Spec {
        name: "fremovexattr",
        parse: parse_remove::<FD>,
    },
];
