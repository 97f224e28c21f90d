//! mount(2) and umount2(2).

use std::ffi::{c_int, c_ulong, c_void};
use std::ptr;

use crate::at::unit;
use crate::error::ArgErr;
use crate::sys;
use crate::value::{Args, Env};
use crate::work::{Call, Spec};

/// `mount(source | null, target, fstype | null, flags = 0, data | null)`.
/// `data` is the filesystem's option string (`"size=1m,mode=0700"`), as a
/// string or bytes; it must not contain NUL bytes.
fn parse_mount(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let source = env.opt_cstr(args.get(0), "source")?;
    let target = env.cstr(args.get(1), "target")?;
    let fstype = env.opt_cstr(args.get(2), "fstype")?;
    let flags = env.opt_flags(args.get(3), "flags")? as c_ulong;
    let data = env.opt_cstr(args.get(4), "data")?;
    let t = target.clone();
    Ok(Call::new(move || {
        let opt = |s: &Option<std::ffi::CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let rc = unsafe {
            sys::mount(
                opt(&source),
                t.as_ptr(),
                opt(&fstype),
                flags,
                opt(&data) as *const c_void,
            )
        };
        unit(rc, "mount")
    })
    .path(&target))
}

/// `umount2(target, flags = 0)`.
fn parse_umount2(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let target = env.cstr(args.get(0), "target")?;
    let flags = env.opt_flags(args.get(1), "flags")? as c_int;
    let t = target.clone();
    Ok(
        Call::new(move || unit(unsafe { sys::umount2(t.as_ptr(), flags) }, "umount2"))
            .path(&target),
    )
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "mount",
        parse: parse_mount,
    },
    Spec {
        name: "umount2",
        parse: parse_umount2,
    },
];
