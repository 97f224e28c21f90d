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
//!
//! `zstdDecompressAsync(handle, input, maxOutput?)` does the same on the libuv
//! threadpool and resolves with the same result, so the JS thread parses the
//! previous output meanwhile. One call at a time per handle: a second call
//! while one runs fails (`ERR_MSB_ZSTD_BUSY`), as does a sync call then.

use std::ffi::{CStr, c_char, c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::ArgErr;
use crate::napi::*;
use crate::value::{Args, Env};
use crate::work::{Promised, not_run_error, queue_work, settle};

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

/// A handle's data: the stream, and whether a call is using it.
struct Handle {
    zds: *mut ZstdDStream,
    busy: AtomicBool,
}

const DEFAULT_MAX_OUTPUT: i64 = 1 << 20;
const ERR: &str = "ERR_MSB_ZSTD";
const BUSY: &str = "ERR_MSB_ZSTD_BUSY";

unsafe extern "C" fn finalize(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    let handle = unsafe { Box::from_raw(data as *mut Handle) };
    unsafe { ZSTD_freeDStream(handle.zds) };
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
    let data = Box::into_raw(Box::new(Handle {
        zds,
        busy: AtomicBool::new(false),
    }));
    let Some(handle) = env.external(data as *mut c_void, finalize) else {
        unsafe { ZSTD_freeDStream(Box::from_raw(data).zds) };
        return env.throw(env.internal_error("napi_create_external failed"));
    };
    handle
}

/// What one call produced: the output, the input bytes used, and whether the last frame is done.
struct Decoded {
    output: Vec<u8>,
    consumed: usize,
    done: bool,
}

/// Decompresses from `input` until it is used up or `max` bytes are out.
fn decompress(zds: *mut ZstdDStream, input: &[u8], max: usize) -> Result<Decoded, String> {
    let mut out: Vec<u8> = Vec::with_capacity(max);
    let mut inb = InBuffer {
        src: input.as_ptr() as *const c_void,
        size: input.len(),
        pos: 0,
    };
    let mut outb = OutBuffer {
        dst: out.as_mut_ptr() as *mut c_void,
        size: max,
        pos: 0,
    };
    let mut last = 1usize;
    while outb.pos < outb.size {
        let before = (inb.pos, outb.pos);
        last = unsafe { ZSTD_decompressStream(zds, &mut outb, &mut inb) };
        if unsafe { ZSTD_isError(last) } != 0 {
            return Err(format!("zstd: {}", error_name(last)));
        }
        // No progress: the input is used up and nothing is left to flush.
        if (inb.pos, outb.pos) == before || (inb.pos == inb.size && outb.pos < outb.size) {
            break;
        }
    }
    // SAFETY: libzstd wrote the first `outb.pos` bytes.
    unsafe { out.set_len(outb.pos) };
    Ok(Decoded {
        output: out,
        consumed: inb.pos,
        done: last == 0,
    })
}

unsafe extern "C" fn free_output(_env: napi_env, _data: *mut c_void, hint: *mut c_void) {
    drop(unsafe { Box::from_raw(hint as *mut Vec<u8>) });
}

/// `{ output, consumed, done }`, the output handed to JS without a copy.
fn result_to_js(env: Env, decoded: Decoded) -> napi_value {
    let result = env.object();
    let output = if decoded.output.is_empty() {
        env.buffer(&[])
    } else {
        let len = decoded.output.len();
        let vec = Box::into_raw(Box::new(decoded.output));
        let mut buffer = ptr::null_mut();
        let status = unsafe {
            napi_create_external_buffer(
                env.0,
                len,
                (*vec).as_mut_ptr() as *mut c_void,
                Some(free_output),
                vec as *mut c_void,
                &mut buffer,
            )
        };
        if status != NAPI_OK {
            // Runtimes without external buffers: copy instead.
            let vec = unsafe { Box::from_raw(vec) };
            env.buffer(&vec)
        } else {
            buffer
        }
    };
    env.set(result, c"output", output);
    env.set(result, c"consumed", env.double(decoded.consumed as f64));
    let mut done = ptr::null_mut();
    unsafe { napi_get_boolean(env.0, decoded.done, &mut done) };
    env.set(result, c"done", done);
    result
}

/// `input` bytes read in place (see [`Env::uint8_view`]).
type Input = (*const u8, usize);

fn slice<'a>((data, len): Input) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: the caller keeps the `Uint8Array` alive (an argument, or referenced) and unchanged.
        unsafe { std::slice::from_raw_parts(data, len) }
    }
}

/// Reads `(handle, input, maxOutput?)`.
fn parse(env: Env, args: &Args) -> Result<(*mut Handle, Input, usize), ArgErr> {
    let handle = args.get(0);
    let mut data: *mut c_void = ptr::null_mut();
    if env.type_of(handle) != NAPI_EXTERNAL
        || unsafe { napi_get_value_external(env.0, handle, &mut data) } != NAPI_OK
        || data.is_null()
    {
        return Err(env.type_err(handle, "handle", "a zstdDecompressor() handle"));
    }
    let input = env
        .uint8_view(args.get(1))
        .ok_or_else(|| env.type_err(args.get(1), "input", "an instance of Uint8Array"))?;
    let max = env.opt_int(args.get(2), "maxOutput", 1, 1 << 30, DEFAULT_MAX_OUTPUT)? as usize;
    Ok((data as *mut Handle, input, max))
}

/// `zstdDecompress(handle, input, maxOutput?)` → `{ output, consumed, done }`.
pub unsafe extern "C" fn js_decompress(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let (handle, input, max) = match parse(env, &args) {
        Ok(v) => v,
        Err(e) => return env.throw(env.arg_error(e)),
    };
    // SAFETY: the external keeps its `Handle` alive while JS holds it (it is an argument here).
    let handle = unsafe { &*handle };
    if handle.busy.swap(true, Ordering::Acquire) {
        return env.throw_msg(
            BUSY,
            "zstdDecompress: a zstdDecompressAsync call on this handle is running",
        );
    }
    let decoded = decompress(handle.zds, slice(input), max);
    handle.busy.store(false, Ordering::Release);
    match decoded {
        Ok(decoded) => result_to_js(env, decoded),
        Err(msg) => env.throw_msg(ERR, &msg),
    }
}

/// One `zstdDecompressAsync` call, owned by its async work.
struct Pending {
    handle: *mut Handle,
    /// Keep the handle's external (and so the stream) and the input alive until `complete`.
    reference: napi_ref,
    input_reference: napi_ref,
    input: Input,
    max: usize,
    result: Option<Result<Decoded, String>>,
    deferred: napi_deferred,
    work: napi_async_work,
}

/// `zstdDecompressAsync(handle, input, maxOutput?)` → `Promise<{ output, consumed, done }>`.
pub unsafe extern "C" fn js_decompress_async(
    env: napi_env,
    info: napi_callback_info,
) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let Some(promised) = Promised::new(env) else {
        return ptr::null_mut();
    };
    let Promised { deferred, promise } = promised;
    let reject = |error: napi_value| promised.reject(env, error);
    let (handle, input, max) = match parse(env, &args) {
        Ok(v) => v,
        Err(e) => return reject(env.arg_error(e)),
    };
    // SAFETY: as in `js_decompress`.
    if unsafe { &*handle }.busy.swap(true, Ordering::Acquire) {
        return reject(env.coded_error(
            BUSY,
            "zstdDecompressAsync: a call on this handle is running",
        ));
    }
    let mut reference = ptr::null_mut();
    let mut input_reference = ptr::null_mut();
    if unsafe { napi_create_reference(env.0, args.get(0), 1, &mut reference) } != NAPI_OK
        || unsafe { napi_create_reference(env.0, args.get(1), 1, &mut input_reference) } != NAPI_OK
    {
        unsafe { &*handle }.busy.store(false, Ordering::Release);
        env.delete_references(&[reference, input_reference]);
        return reject(env.internal_error("napi_create_reference failed"));
    }
    let pending = Box::into_raw(Box::new(Pending {
        handle,
        reference,
        input_reference,
        input,
        max,
        result: None,
        deferred,
        work: ptr::null_mut(),
    }));
    let queued = queue_work(
        env,
        "zstdDecompressAsync",
        pending as *mut c_void,
        execute,
        complete,
        |work| unsafe { (*pending).work = work },
    );
    if let Err(error) = queued {
        let pending = unsafe { Box::from_raw(pending) };
        unsafe { &*pending.handle }
            .busy
            .store(false, Ordering::Release);
        env.delete_references(&[pending.reference, pending.input_reference]);
        return reject(error);
    }
    promise
}

/// Threadpool side: decompresses. Touches no napi value.
unsafe extern "C" fn execute(_env: napi_env, data: *mut c_void) {
    // SAFETY: `data` is the `Pending` of `js_decompress_async`; only this callback uses it until `complete`.
    let pending = unsafe { &mut *(data as *mut Pending) };
    let zds = unsafe { &*pending.handle }.zds;
    pending.result = Some(decompress(zds, slice(pending.input), pending.max));
}

/// JS thread side: frees the handle for the next call and settles the promise.
unsafe extern "C" fn complete(env: napi_env, status: napi_status, data: *mut c_void) {
    let env = Env(env);
    // SAFETY: reclaims the box leaked in `js_decompress_async`; called exactly once.
    let pending = unsafe { Box::from_raw(data as *mut Pending) };
    unsafe { napi_delete_async_work(env.0, pending.work) };
    unsafe { &*pending.handle }
        .busy
        .store(false, Ordering::Release);
    env.delete_references(&[pending.reference, pending.input_reference]);
    let outcome = match pending.result {
        Some(Ok(decoded)) => Ok(result_to_js(env, decoded)),
        Some(Err(msg)) => Err(env.coded_error(ERR, &msg)),
        None => Err(not_run_error(env, status)),
    };
    settle(env, pending.deferred, outcome);
}
