//! getdents64(2): one kernel call per JS call, the records returned raw.
//! The loader (index.js) parses them: building one JS object per entry
//! through Node-API cost ~1.3 µs each, parsing a Buffer in JS a fraction.

use std::ffi::c_long;

use crate::error::{ArgErr, SysErr};
use crate::sys;
use crate::value::{Args, Env};
use crate::work::{Call, Out, Spec};

const DEFAULT_BUFFER: i64 = 32 * 1024;
/// Upper bound for `bufferSize` (the kernel caps a single call at INT_MAX).
const MAX_BUFFER: i64 = 64 * 1024 * 1024;

/// `getdentsRaw(fd, bufferSize = 32768)`: the `linux_dirent64` records the
/// kernel wrote, as one Buffer (empty at the end of the directory).
fn parse_getdents_raw(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    let size = env.opt_int(args.get(1), "bufferSize", 1, MAX_BUFFER, DEFAULT_BUFFER)? as usize;
    Ok(Call::new(move || {
        // Not zeroed: the kernel writes the first `n` bytes, and only those are kept.
        let mut buf: Vec<u8> = Vec::with_capacity(size);
        let n = unsafe {
            sys::syscall(
                sys::SYS_GETDENTS64,
                fd as c_long,
                buf.as_mut_ptr() as c_long,
                size as c_long,
            )
        };
        if n < 0 {
            return Err(SysErr::last("getdents64"));
        }
        // SAFETY: the kernel initialised exactly `n` (<= capacity) bytes.
        unsafe { buf.set_len(n as usize) };
        Ok(Out::Buf(buf))
    }))
}

pub const SPECS: &[Spec] = &[Spec {
    name: "getdentsRaw",
    parse: parse_getdents_raw,
}];
