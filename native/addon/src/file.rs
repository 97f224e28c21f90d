//! Per-file-descriptor operations: fallocate, copy_file_range, lseek, and
//! the FUSE device's clone ioctl.

use std::ffi::{c_int, c_long};
use std::ptr;

use crate::error::{ArgErr, SysErr};
use crate::value::{Args, Env, MAX_SAFE};
use crate::work::{Call, Out, Spec};
use crate::{at, sys};

/// `fallocate(fd, mode, offset, len)`.
fn parse_fallocate(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    let mode = env.flags(args.get(1), "mode")? as c_int;
    let offset = env.int(args.get(2), "offset", 0, MAX_SAFE)?;
    let len = env.int(args.get(3), "len", 0, MAX_SAFE)?;
    Ok(Call::new(move || {
        at::unit(
            unsafe { sys::fallocate(fd, mode, offset, len) },
            "fallocate",
        )
    }))
}

/// `copyFileRange(fdIn, offIn | null, fdOut, offOut | null, len, flags = 0)`.
/// A null offset uses (and advances) the fd's file position; a number is
/// used like pread/pwrite and the fd position is left alone.
fn parse_copy_file_range(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let opt_off = |i: usize, what: &str| -> Result<Option<i64>, ArgErr> {
        let v = args.get(i);
        if env.is_nullish(v) {
            Ok(None)
        } else {
            env.int(v, what, 0, MAX_SAFE).map(Some)
        }
    };
    let fd_in = env.fd(args.get(0), "fdIn")?;
    let off_in = opt_off(1, "offIn")?;
    let fd_out = env.fd(args.get(2), "fdOut")?;
    let off_out = opt_off(3, "offOut")?;
    let len = env.int(args.get(4), "len", 0, MAX_SAFE)?;
    let flags = env.opt_flags(args.get(5), "flags")?;
    Ok(Call::new(move || {
        let (mut oi, mut oo) = (off_in.unwrap_or(0), off_out.unwrap_or(0));
        let pi = if off_in.is_some() {
            &mut oi as *mut i64
        } else {
            ptr::null_mut()
        };
        let po = if off_out.is_some() {
            &mut oo as *mut i64
        } else {
            ptr::null_mut()
        };
        let n = unsafe {
            sys::syscall(
                sys::SYS_COPY_FILE_RANGE,
                fd_in as c_long,
                pi as c_long,
                fd_out as c_long,
                po as c_long,
                len as c_long,
                flags as c_long,
            )
        };
        if n < 0 {
            Err(SysErr::last("copy_file_range"))
        } else {
            Ok(Out::Num(n as f64))
        }
    }))
}

/// `lseek(fd, offset, whence)`. A bigint offset gives a bigint result, so
/// 63-bit directory cookies (ext4 hashes) survive the round trip.
fn parse_lseek(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    let (offset, big) = env.i64_or_bigint(args.get(1), "offset")?;
    let whence = env.int(args.get(2), "whence", 0, i32::MAX as i64)? as c_int;
    Ok(Call::new(move || {
        let pos = unsafe { sys::lseek(fd, offset, whence) };
        if pos < 0 {
            Err(SysErr::last("lseek"))
        } else if big {
            Ok(Out::BigInt(pos))
        } else {
            Ok(Out::Num(pos as f64))
        }
    }))
}

/// `FUSE_DEV_IOC_CLONE` = `_IOR(229, 0, uint32_t)` (linux/fuse.h).
const FUSE_DEV_IOC_CLONE: std::ffi::c_ulong = (2 << 30) | (4 << 16) | (229 << 8);

unsafe extern "C" {
    fn ioctl(fd: c_int, request: std::ffi::c_ulong, ...) -> c_int;
}

/// `fuseDevClone(fd, sessionFd)`: attaches `fd`, a freshly opened
/// `/dev/fuse`, to the FUSE connection of `sessionFd` (the descriptor given
/// to mount), so several threads can each read requests from their own
/// descriptor; a reply goes to the descriptor its request came from.
fn parse_fuse_dev_clone(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    let session = env.fd(args.get(1), "sessionFd")? as u32;
    Ok(Call::new(move || {
        at::unit(
            unsafe { ioctl(fd, FUSE_DEV_IOC_CLONE, &session as *const u32) },
            "ioctl(FUSE_DEV_IOC_CLONE)",
        )
    }))
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "fallocate",
        parse: parse_fallocate,
    },
    Spec {
        name: "copyFileRange",
        parse: parse_copy_file_range,
    },
    Spec {
        name: "lseek",
        parse: parse_lseek,
    },
    Spec {
        name: "fuseDevClone",
        parse: parse_fuse_dev_clone,
    },
];
