//! `@msb/native`: the Linux filesystem system calls Node's `fs` lacks
//! (xattrs, openat2, the `*at` family, getdents64, fallocate, copy_file_range,
//! SEEK_DATA/HOLE, statfs, mount), as a Node-API addon with zero crates.
//!
//! Layout:
//! * `napi`: hand-declared Node-API functions; `sys`: glibc + raw syscalls.
//! * `value`: argument parsing / value creation; `error` + `errno`: Node-style errors.
//! * `work`: the sync/async calling convention (napi async work + promises).
//! * one module per syscall family: `xattr`, `open`, `at`, `stat`,
//!   `dir`, `file`, `mount`; plus `constants`.
//! * `backing`: FUSE passthrough's backing files.
//! * `poll`: readiness of a descriptor on Node's event loop, non-blocking reads.
//! * `zstd`: streaming decompression through the system libzstd.
//! * `layer`: an image layer's tar unpacked on a thread of its own; `tar`: libarchive's tar reader.
//! * `pin`: a passthrough server's lookup, forget and create, one call each.
//! * `tsc`: the host's TSC rate, for guests that read it under TCG.

mod at;
mod backing;
mod constants;
mod dir;
mod errno;
mod error;
mod file;
mod layer;
mod mount;
mod napi;
mod open;
mod pin;
mod poll;
mod stat;
mod sys;
mod tar;
mod tsc;
mod value;
mod work;
mod xattr;
mod zstd;

use std::ffi::{CString, c_char, c_void};
use std::ptr;

use error::ArgErr;
use napi::*;
use value::{Args, Env};
use work::Spec;

/// Every syscall export; each becomes `name` and `nameAsync`.
const FAMILIES: &[&[Spec]] = &[
    xattr::SPECS,
    open::SPECS,
    at::SPECS,
    stat::SPECS,
    dir::SPECS,
    file::SPECS,
    mount::SPECS,
    backing::SPECS,
    tsc::SPECS,
];

fn export_fn(env: Env, exports: napi_value, name: &str, cb: napi_callback, data: *mut c_void) {
    let mut f = ptr::null_mut();
    unsafe {
        napi_create_function(
            env.0,
            name.as_ptr() as *const c_char,
            name.len(),
            cb,
            data,
            &mut f,
        )
    };
    // Names are ASCII literals without NULs.
    if let Ok(cname) = CString::new(name) {
        env.set(exports, &cname, f);
    }
}

/// `version()` → the crate version.
unsafe extern "C" fn js_version(env: napi_env, _info: napi_callback_info) -> napi_value {
    Env(env).string(env!("CARGO_PKG_VERSION"))
}

/// `makedev(major, minor)` → bigint (glibc encoding).
unsafe extern "C" fn js_makedev(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let parsed = (|| -> Result<u64, ArgErr> {
        let major = env.int(args.get(0), "major", 0, u32::MAX as i64)? as u32;
        let minor = env.int(args.get(1), "minor", 0, u32::MAX as i64)? as u32;
        Ok(sys::makedev(major, minor))
    })();
    match parsed {
        Ok(dev) => env.bigint_u64(dev),
        Err(e) => env.throw(env.arg_error(e)),
    }
}

fn dev_part(env: Env, info: napi_callback_info, part: fn(u64) -> u32) -> napi_value {
    let args = unsafe { Args::read(env.0, info) };
    match env.u64_or_bigint(args.get(0), "dev") {
        Ok(dev) => env.uint32(part(dev)),
        Err(e) => env.throw(env.arg_error(e)),
    }
}

/// `major(dev)` → number.
unsafe extern "C" fn js_major(env: napi_env, info: napi_callback_info) -> napi_value {
    dev_part(Env(env), info, sys::major)
}

/// `minor(dev)` → number.
unsafe extern "C" fn js_minor(env: napi_env, info: napi_callback_info) -> napi_value {
    dev_part(Env(env), info, sys::minor)
}

/// Entry point Node looks up with `dlsym` after `dlopen`.
///
/// # Safety
/// Called by Node with a valid `env` and `exports` object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn napi_register_module_v1(env: napi_env, exports: napi_value) -> napi_value {
    let env = Env(env);
    for family in FAMILIES {
        for spec in family.iter() {
            let data = spec as *const Spec as *mut c_void;
            export_fn(env, exports, spec.name, Some(work::call_sync), data);
            export_fn(
                env,
                exports,
                &format!("{}Async", spec.name),
                Some(work::call_async),
                data,
            );
        }
    }
    export_fn(env, exports, "version", Some(js_version), ptr::null_mut());
    export_fn(env, exports, "makedev", Some(js_makedev), ptr::null_mut());
    export_fn(env, exports, "major", Some(js_major), ptr::null_mut());
    export_fn(env, exports, "minor", Some(js_minor), ptr::null_mut());
    export_fn(
        env,
        exports,
        "statxInto",
        Some(stat::js_statx_into),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "zstdDecompressor",
        Some(zstd::js_decompressor),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "zstdDecompress",
        Some(zstd::js_decompress),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "pollReadable",
        Some(poll::js_poll_readable),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "zstdDecompressAsync",
        Some(zstd::js_decompress_async),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "pollUnref",
        Some(poll::js_poll_unref),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "layerUnpacker",
        Some(layer::js_unpacker),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "pollClose",
        Some(poll::js_poll_close),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "layerUnpackerWrite",
        Some(layer::js_write),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "readNonBlocking",
        Some(poll::js_read_non_blocking),
        ptr::null_mut(),
    );
    export_fn(
        env,
        exports,
        "layerUnpackerEnd",
        Some(layer::js_end),
        ptr::null_mut(),
    );
    export_fn(env, exports, "pinAt", Some(pin::js_pin_at), ptr::null_mut());
    export_fn(env, exports, "unpin", Some(pin::js_unpin), ptr::null_mut());
    export_fn(
        env,
        exports,
        "createPinned",
        Some(pin::js_create_pinned),
        ptr::null_mut(),
    );
    env.set(exports, c"constants", constants::build(env));
    env.set(exports, c"UTIME_NOW", env.double(sys::UTIME_NOW as f64));
    env.set(exports, c"UTIME_OMIT", env.double(sys::UTIME_OMIT as f64));
    exports
}

/// Declares the Node-API version this addon needs (8: `napi_object_freeze`).
#[unsafe(no_mangle)]
pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
    8
}
