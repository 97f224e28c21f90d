//! Extended attributes: get/set/list/remove × path / no-follow path / fd.

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

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

// -------------------------------------------------------------- getxattrat --

/// False once the kernel answered ENOSYS (before Linux 6.13): use /proc paths.
pub static HAVE_GETXATTRAT: AtomicBool = AtomicBool::new(true);

/// `getxattrat(2)` into `buf` (`size` 0 asks for the length).
pub fn getxattrat(
    dirfd: c_int,
    path: &CStr,
    at_flags: c_int,
    name: &CStr,
    buf: *mut c_void,
    size: usize,
) -> isize {
    let mut args = sys::XattrArgs {
        value: buf as u64,
        size: size as u32,
        flags: 0,
    };
    unsafe {
        sys::syscall(
            sys::SYS_GETXATTRAT,
            dirfd as c_long,
            path.as_ptr() as c_long,
            at_flags as c_long,
            name.as_ptr() as c_long,
            &mut args as *mut sys::XattrArgs as c_long,
            std::mem::size_of::<sys::XattrArgs>() as c_long,
        ) as isize
    }
}

/// The same lookup as `getxattrat(dirfd, path, at_flags)` through procfs:
/// `/proc/self/fd/<dirfd>/<path>`, or the magic link `/proc/self/fd/<dirfd>`
/// itself for an empty path (followed to the inode, never further).
fn getxattr_via_proc(
    dirfd: c_int,
    path: &CString,
    at_flags: c_int,
    name: &CString,
) -> SysResult<Vec<u8>> {
    let mut full = format!("/proc/self/fd/{dirfd}").into_bytes();
    let relative = path.as_bytes();
    if !relative.is_empty() {
        full.push(b'/');
        full.extend_from_slice(relative);
    }
    // `path` has no NUL (it is a CString), nor has the prefix.
    let full = CString::new(full).map_err(|_| SysErr {
        errno: sys::ENOENT,
        syscall: "getxattr",
    })?;
    if !relative.is_empty() && at_flags & sys::AT_SYMLINK_NOFOLLOW != 0 {
        read_growing("lgetxattr", |b, s| unsafe {
            sys::lgetxattr(full.as_ptr(), name.as_ptr(), b, s)
        })
    } else {
        read_growing("getxattr", |b, s| unsafe {
            sys::getxattr(full.as_ptr(), name.as_ptr(), b, s)
        })
    }
}

/// `getxattrat(dirfd, path, name, flags = 0)`: the value, or `undefined` when
/// the inode has no such attribute (ENODATA), so the common "absent" answer
/// costs no exception.
fn parse_getat(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let dirfd = env.fd(args.get(0), "dirfd")?;
    let path = env.cstr(args.get(1), "path")?;
    let name = env.cstr(args.get(2), "name")?;
    let at_flags = env.opt_flags(args.get(3), "flags")? as c_int;
    let p = path.clone();
    Ok(Call::new(move || {
        let mut value = Err(SysErr {
            errno: sys::ENOSYS,
            syscall: "getxattrat",
        });
        if HAVE_GETXATTRAT.load(Ordering::Relaxed) {
            value = read_growing("getxattrat", |b, s| {
                getxattrat(dirfd, &p, at_flags, &name, b, s)
            });
        }
        if matches!(
            value,
            Err(SysErr {
                errno: sys::ENOSYS,
                ..
            })
        ) {
            HAVE_GETXATTRAT.store(false, Ordering::Relaxed);
            value = getxattr_via_proc(dirfd, &p, at_flags, &name);
        }
        match value {
            Ok(bytes) => Ok(Out::Buf(bytes)),
            Err(SysErr {
                errno: sys::ENODATA,
                ..
            }) => Ok(Out::Undefined),
            Err(e) => Err(e),
        }
    })
    .path(&path))
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
        name: "getxattrat",
        parse: parse_getat,
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
