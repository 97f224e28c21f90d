//! Streaming zstd decompression through the system libzstd (`libzstd-dev`),
//! declared by hand like everything else here. Used by `@msb/oci` for
//! `+zstd` image layers.
//!
//! JS API: `zstdDecompressor()` → an opaque handle (freed by the GC), and
//! `zstdDecompress(handle, input, maxOutput?)` → `{ output, consumed, done }`:
//! it decompresses from `input` until the input is used up or `maxOutput`
//! bytes (default 1 MiB) are produced, so a small hostile frame cannot make
//! one call allocate gigabytes. Call again with the unconsumed rest (or an
//! empty input while `output` came back full). `done` is true when the last
//! frame is complete and flushed.

use std::ffi::{CStr, c_char, c_uint, c_void};
use std::ptr;

use crate::error::ArgErr;
use crate::napi::*;
use crate::value::{Args, Env};

#[repr(C)]
struct ZstdDStream {
    _private: [u8; 0],
}

#[repr(C)]
struct InBuffer {
    src: *const c_void,
    size: usize,
    pos: usize,
}

#[repr(C)]
struct OutBuffer {
    dst: *mut c_void,
    size: usize,
    pos: usize,
}

#[link(name = "zstd")]
unsafe extern "C" {
    fn ZSTD_createDStream() -> *mut ZstdDStream;
    fn ZSTD_freeDStream(zds: *mut ZstdDStream) -> usize;
    fn ZSTD_initDStream(zds: *mut ZstdDStream) -> usize;
    fn ZSTD_decompressStream(
        zds: *mut ZstdDStream,
        output: *mut OutBuffer,
        input: *mut InBuffer,
    ) -> usize;
    fn ZSTD_isError(code: usize) -> c_uint;
    fn ZSTD_getErrorName(code: usize) -> *const c_char;
}

#[allow(non_camel_case_types)]
pub(crate) type napi_finalize = Option<unsafe extern "C" fn(napi_env, *mut c_void, *mut c_void)>;

unsafe extern "C" {
    pub(crate) fn napi_create_external(
        env: napi_env,
        data: *mut c_void,
        finalize_cb: napi_finalize,
        finalize_hint: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub(crate) fn napi_get_value_external(
        env: napi_env,
        value: napi_value,
        result: *mut *mut c_void,
    ) -> napi_status;
    fn napi_get_boolean(env: napi_env, value: bool, result: *mut napi_value) -> napi_status;
}

const DEFAULT_MAX_OUTPUT: i64 = 1 << 20;
const ERR: &str = "ERR_MSB_ZSTD";

unsafe extern "C" fn finalize(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    unsafe { ZSTD_freeDStream(data as *mut ZstdDStream) };
}

fn error_name(code: usize) -> String {
    unsafe { CStr::from_ptr(ZSTD_getErrorName(code)) }
        .to_string_lossy()
        .into_owned()
}

/// `zstdDecompressor()` → handle.
pub unsafe extern "C" fn js_decompressor(env: napi_env, _info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let zds = unsafe { ZSTD_createDStream() };
    if zds.is_null() {
        return env.throw_msg(ERR, "ZSTD_createDStream failed (out of memory)");
    }
    let init = unsafe { ZSTD_initDStream(zds) };
    if unsafe { ZSTD_isError(init) } != 0 {
        unsafe { ZSTD_freeDStream(zds) };
        return env.throw_msg(ERR, &format!("ZSTD_initDStream: {}", error_name(init)));
    }
    let mut handle = ptr::null_mut();
    let status = unsafe {
        napi_create_external(
            env.0,
            zds as *mut c_void,
            Some(finalize),
            ptr::null_mut(),
            &mut handle,
        )
    };
    if status != NAPI_OK {
        unsafe { ZSTD_freeDStream(zds) };
        return env.throw(env.internal_error("napi_create_external failed"));
    }
    handle
}

/// `zstdDecompress(handle, input, maxOutput?)` → `{ output, consumed, done }`.
pub unsafe extern "C" fn js_decompress(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let parsed = (|| -> Result<(*mut ZstdDStream, Vec<u8>, usize), ArgErr> {
        let handle = args.get(0);
        let mut data: *mut c_void = ptr::null_mut();
        if env.type_of(handle) != NAPI_EXTERNAL
            || unsafe { napi_get_value_external(env.0, handle, &mut data) } != NAPI_OK
            || data.is_null()
        {
            return Err(env.type_err(handle, "handle", "a zstdDecompressor() handle"));
        }
        let input = env.u8array(args.get(1), "input")?;
        let max = env.opt_int(args.get(2), "maxOutput", 1, 1 << 30, DEFAULT_MAX_OUTPUT)? as usize;
        Ok((data as *mut ZstdDStream, input, max))
    })();
    let (zds, input, max) = match parsed {
        Ok(v) => v,
        Err(e) => return env.throw(env.arg_error(e)),
    };
    let mut out = vec![0u8; max];
    let mut inb = InBuffer {
        src: input.as_ptr() as *const c_void,
        size: input.len(),
        pos: 0,
    };
    let mut outb = OutBuffer {
        dst: out.as_mut_ptr() as *mut c_void,
        size: out.len(),
        pos: 0,
    };
    let mut last = 1usize;
    while outb.pos < outb.size {
        let before = (inb.pos, outb.pos);
        last = unsafe { ZSTD_decompressStream(zds, &mut outb, &mut inb) };
        if unsafe { ZSTD_isError(last) } != 0 {
            return env.throw_msg(ERR, &format!("zstd: {}", error_name(last)));
        }
        // No progress: the input is used up and nothing is left to flush.
        if (inb.pos, outb.pos) == before || (inb.pos == inb.size && outb.pos < outb.size) {
            break;
        }
    }
    out.truncate(outb.pos);
    let result = env.object();
    env.set(result, c"output", env.buffer(&out));
    env.set(result, c"consumed", env.double(inb.pos as f64));
    let mut done = ptr::null_mut();
    unsafe { napi_get_boolean(env.0, last == 0, &mut done) };
    env.set(result, c"done", done);
    result
}
