//! FUSE passthrough's backing files (Linux 6.9+): `FUSE_DEV_IOC_BACKING_OPEN`
//! registers an open host file with a FUSE connection and returns its
//! `backing_id`, which an OPEN or CREATE reply names with
//! `FOPEN_PASSTHROUGH` so that the kernel reads and writes that host file
//! itself; `FUSE_DEV_IOC_BACKING_CLOSE` drops the registration. Both need
//! CAP_SYS_ADMIN and a connection that negotiated `FUSE_PASSTHROUGH`.

use std::ffi::{c_int, c_ulong};

use crate::error::{ArgErr, SysErr};
use crate::value::{Args, Env};
use crate::work::{Call, Out, Spec};

/// `_IOW(229, 1, struct fuse_backing_map)` (16 bytes).
const FUSE_DEV_IOC_BACKING_OPEN: c_ulong = (1 << 30) | (16 << 16) | (229 << 8) | 1;
/// `_IOW(229, 2, uint32_t)`.
const FUSE_DEV_IOC_BACKING_CLOSE: c_ulong = (1 << 30) | (4 << 16) | (229 << 8) | 2;

/// `struct fuse_backing_map` of linux/fuse.h.
#[repr(C)]
struct BackingMap {
    fd: i32,
    flags: u32,
    padding: u64,
}

unsafe extern "C" {
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
}

/// `fuseBackingOpen(fuseFd, fd)` → backing id.
fn parse_backing_open(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fuse_fd = env.fd(args.get(0), "fuseFd")?;
    let fd = env.fd(args.get(1), "fd")?;
    Ok(Call::new(move || {
        let map = BackingMap {
            fd,
            flags: 0,
            padding: 0,
        };
        let id = unsafe {
            ioctl(
                fuse_fd,
                FUSE_DEV_IOC_BACKING_OPEN,
                &map as *const BackingMap,
            )
        };
        if id < 0 {
            Err(SysErr::last("ioctl(FUSE_DEV_IOC_BACKING_OPEN)"))
        } else {
            Ok(Out::Int(id))
        }
    }))
}

/// `fuseBackingClose(fuseFd, backingId)`.
fn parse_backing_close(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fuse_fd = env.fd(args.get(0), "fuseFd")?;
    let id = env.int(args.get(1), "backingId", 1, i32::MAX as i64)? as u32;
    Ok(Call::new(move || {
        crate::at::unit(
            unsafe { ioctl(fuse_fd, FUSE_DEV_IOC_BACKING_CLOSE, &id as *const u32) },
            "ioctl(FUSE_DEV_IOC_BACKING_CLOSE)",
        )
    }))
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "fuseBackingOpen",
        parse: parse_backing_open,
    },
    Spec {
        name: "fuseBackingClose",
        parse: parse_backing_close,
    },
];
