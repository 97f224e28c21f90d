//! getdents64(2): list a directory by fd, one kernel call per JS call.

use std::ffi::c_long;

use crate::error::{ArgErr, SysErr};
use crate::napi::napi_value;
use crate::sys;
use crate::value::{Args, Env};
use crate::work::{Call, Out, Spec};

pub struct Dirent {
    ino: u64,
    off: i64,
    kind: u8,
    name: Vec<u8>,
}

const DEFAULT_BUFFER: i64 = 32 * 1024;
/// Upper bound for `bufferSize` (the kernel caps a single call at INT_MAX).
const MAX_BUFFER: i64 = 64 * 1024 * 1024;

/// Offsets inside `struct linux_dirent64`.
const D_INO: usize = 0;
const D_OFF: usize = 8;
const D_RECLEN: usize = 16;
const D_TYPE: usize = 18;
const D_NAME: usize = 19;

/// Decodes the records the kernel wrote into `buf`.
fn parse_records(buf: &[u8]) -> Vec<Dirent> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + D_NAME <= buf.len() {
        let rec = &buf[pos..];
        let reclen = u16::from_ne_bytes([rec[D_RECLEN], rec[D_RECLEN + 1]]) as usize;
        if reclen < D_NAME || pos + reclen > buf.len() {
            break; // malformed: never trust it further
        }
        let mut ino = [0u8; 8];
        ino.copy_from_slice(&rec[D_INO..D_INO + 8]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&rec[D_OFF..D_OFF + 8]);
        let name_area = &rec[D_NAME..reclen];
        let name_len = name_area
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_area.len());
        out.push(Dirent {
            ino: u64::from_ne_bytes(ino),
            off: i64::from_ne_bytes(off),
            kind: rec[D_TYPE],
            name: name_area[..name_len].to_vec(),
        });
        pos += reclen;
    }
    out
}

/// `getdents(fd, bufferSize = 32768)`.
fn parse_getdents(env: Env, args: &Args) -> Result<Call, ArgErr> {
    let fd = env.fd(args.get(0), "fd")?;
    let size = env.opt_int(args.get(1), "bufferSize", 1, MAX_BUFFER, DEFAULT_BUFFER)? as usize;
    Ok(Call::new(move || {
        let mut buf = vec![0u8; size];
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
        buf.truncate(n as usize);
        Ok(Out::Dirents(parse_records(&buf)))
    }))
}

pub fn dirents_to_js(env: Env, list: &[Dirent]) -> napi_value {
    let arr = env.array(list.len());
    for (i, d) in list.iter().enumerate() {
        let o = env.object();
        env.set(o, c"ino", env.bigint_u64(d.ino));
        env.set(o, c"off", env.bigint_i64(d.off));
        env.set(o, c"type", env.uint32(d.kind as u32));
        env.set(o, c"name", env.buffer(&d.name));
        env.set_index(arr, i, o);
    }
    arr
}

pub const SPECS: &[Spec] = &[Spec {
    name: "getdents",
    parse: parse_getdents,
}];
