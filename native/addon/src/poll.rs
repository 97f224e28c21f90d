//! Readiness of a file descriptor on Node's own event loop, and a read that
//! never blocks: what a server needs to take requests from a device such as
//! `/dev/fuse` on the JavaScript thread itself, without a reader thread
//! handing each one over.
//!
//! JS API:
//! * `pollReadable(fd, onReadable)` → an opaque handle: a libuv `uv_poll_t`
//!   on the loop of this thread, calling `onReadable(status)` (0, or a
//!   negative libuv error) each time `fd` is readable (level-triggered), in a
//!   callback scope, so promise reactions queued by the callback run when it
//!   returns. While active it keeps the process alive (unless unref'd).
//! * `pollUnref(handle)`: the poll no longer keeps the process alive.
//! * `pollClose(handle)`: stops the poll for good; idempotent. The caller
//!   closes `fd` afterwards (never before: the poll must not outlive it).
//!   A poll still open when its thread's environment ends (a worker
//!   terminated) is closed by an environment cleanup hook.
//! * `readNonBlocking(fd, target)` → bytes read into `target`, or `null`
//!   when nothing is there (EAGAIN on an `O_NONBLOCK` descriptor); EINTR is
//!   retried, any other error thrown as a Node-style error.
//!
//! libuv's symbols are exported by the node executable, like Node-API's,
//! and declared here by hand.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use crate::error::{ArgErr, SysErr};
use crate::napi::*;
use crate::sys;
use crate::value::{Args, Env};

macro_rules! opaque {
    ($($name:ident),* $(,)?) => {
        $(
            #[repr(C)]
            struct $name {
                _private: [u8; 0],
            }
        )*
    };
}

opaque!(
    UvLoop,
    UvHandle,
    NapiRefData,
    AsyncContextData,
    HandleScopeData
);
type NapiRef = *mut NapiRefData;
type AsyncContext = *mut AsyncContextData;
type HandleScope = *mut HandleScopeData;

#[allow(non_camel_case_types)]
type uv_poll_cb = Option<unsafe extern "C" fn(*mut UvHandle, c_int, c_int)>;
#[allow(non_camel_case_types)]
type uv_close_cb = Option<unsafe extern "C" fn(*mut UvHandle)>;
type CleanupHook = Option<unsafe extern "C" fn(*mut c_void)>;

/// `UV_POLL` of `uv_handle_type`; `UV_READABLE` of `uv_poll_event`.
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;
const EAGAIN: i32 = 11;
const EINTR: i32 = 4;

unsafe extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_poll_init(event_loop: *mut UvLoop, handle: *mut UvHandle, fd: c_int) -> c_int;
    fn uv_poll_start(handle: *mut UvHandle, events: c_int, cb: uv_poll_cb) -> c_int;
    fn uv_poll_stop(handle: *mut UvHandle) -> c_int;
    fn uv_close(handle: *mut UvHandle, cb: uv_close_cb);
    fn uv_unref(handle: *mut UvHandle);
    fn uv_handle_set_data(handle: *mut UvHandle, data: *mut c_void);
    fn uv_handle_get_data(handle: *const UvHandle) -> *mut c_void;
    fn uv_err_name(err: c_int) -> *const c_char;

    fn napi_get_uv_event_loop(env: napi_env, event_loop: *mut *mut UvLoop) -> napi_status;
    fn napi_create_reference(
        env: napi_env,
        value: napi_value,
        initial_refcount: u32,
        result: *mut NapiRef,
    ) -> napi_status;
    fn napi_delete_reference(env: napi_env, reference: NapiRef) -> napi_status;
    fn napi_get_reference_value(
        env: napi_env,
        reference: NapiRef,
        result: *mut napi_value,
    ) -> napi_status;
    fn napi_async_init(
        env: napi_env,
        async_resource: napi_value,
        async_resource_name: napi_value,
        result: *mut AsyncContext,
    ) -> napi_status;
    fn napi_async_destroy(env: napi_env, context: AsyncContext) -> napi_status;
    fn napi_make_callback(
        env: napi_env,
        context: AsyncContext,
        recv: napi_value,
        func: napi_value,
        argc: usize,
        argv: *const napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    fn napi_open_handle_scope(env: napi_env, result: *mut HandleScope) -> napi_status;
    fn napi_close_handle_scope(env: napi_env, scope: HandleScope) -> napi_status;
    fn napi_get_global(env: napi_env, result: *mut napi_value) -> napi_status;
    fn napi_fatal_exception(env: napi_env, err: napi_value) -> napi_status;
    fn napi_get_null(env: napi_env, result: *mut napi_value) -> napi_status;
    fn napi_add_env_cleanup_hook(env: napi_env, hook: CleanupHook, arg: *mut c_void)
    -> napi_status;
    fn napi_remove_env_cleanup_hook(
        env: napi_env,
        hook: CleanupHook,
        arg: *mut c_void,
    ) -> napi_status;

    fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize;
}

/// One poll: the libuv handle (its memory, `uv_handle_size(UV_POLL)` bytes)
/// and the callback. Freed once both the JS handle is collected and libuv
/// has closed the poll, whichever comes last.
struct Poll {
    env: napi_env,
    handle: *mut UvHandle,
    layout: Layout,
    callback: NapiRef,
    context: AsyncContext,
    /// `pollClose` was called: the libuv handle is closing or closed.
    closing: bool,
    /// libuv's close callback has run: the handle memory is free to go.
    closed: bool,
    /// The JS handle was garbage-collected.
    collected: bool,
    /// An environment cleanup hook closes the poll if the JS thread ends first
    /// (a worker terminated while serving), so no open handle outlives its loop.
    hooked: bool,
}

impl Poll {
    /// Frees everything once nothing refers to it any more.
    unsafe fn release_if_unused(poll: *mut Poll) {
        let p = unsafe { &mut *poll };
        if !(p.closed && p.collected) {
            return;
        }
        unsafe { dealloc(p.handle as *mut u8, p.layout) };
        drop(unsafe { Box::from_raw(poll) });
    }

    /// Stops polling and drops the callback (the first call does; later ones nothing).
    unsafe fn close(poll: *mut Poll) {
        let p = unsafe { &mut *poll };
        if p.closing {
            return;
        }
        p.closing = true;
        if p.hooked {
            p.hooked = false;
            unsafe {
                napi_remove_env_cleanup_hook(p.env, Some(on_env_cleanup), poll as *mut c_void)
            };
        }
        unsafe {
            uv_poll_stop(p.handle);
            napi_delete_reference(p.env, p.callback);
            napi_async_destroy(p.env, p.context);
            uv_close(p.handle, Some(on_close));
        }
    }
}

unsafe extern "C" fn on_env_cleanup(arg: *mut c_void) {
    let poll = arg as *mut Poll;
    // The hook is being run: it must not be removed again.
    unsafe { (*poll).hooked = false };
    unsafe { Poll::close(poll) };
}

unsafe extern "C" fn on_close(handle: *mut UvHandle) {
    let poll = unsafe { uv_handle_get_data(handle) } as *mut Poll;
    unsafe { (*poll).closed = true };
    unsafe { Poll::release_if_unused(poll) };
}

unsafe extern "C" fn finalize(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    let poll = data as *mut Poll;
    unsafe { (*poll).collected = true };
    unsafe { Poll::release_if_unused(poll) };
}

unsafe extern "C" fn on_readable(handle: *mut UvHandle, status: c_int, _events: c_int) {
    let poll = unsafe { &*(uv_handle_get_data(handle) as *const Poll) };
    if poll.closing {
        return;
    }
    let env = Env(poll.env);
    let mut scope = ptr::null_mut();
    if unsafe { napi_open_handle_scope(env.0, &mut scope) } != NAPI_OK {
        return;
    }
    let mut callback = ptr::null_mut();
    let mut global = ptr::null_mut();
    unsafe {
        napi_get_reference_value(env.0, poll.callback, &mut callback);
        napi_get_global(env.0, &mut global);
    }
    let argv = [env.int32(status)];
    let mut result = ptr::null_mut();
    // A callback scope: process.nextTick and promise reactions run when it returns.
    let called = unsafe {
        napi_make_callback(
            env.0,
            poll.context,
            global,
            callback,
            argv.len(),
            argv.as_ptr(),
            &mut result,
        )
    };
    if called != NAPI_OK && env.exception_pending() {
        // Thrown from a libuv callback: nobody above to catch it, so it is an uncaught exception.
        let mut error = ptr::null_mut();
        unsafe {
            napi_get_and_clear_last_exception(env.0, &mut error);
            napi_fatal_exception(env.0, error);
        }
    }
    unsafe { napi_close_handle_scope(env.0, scope) };
}

/// The `Poll` behind a `pollReadable` handle.
fn poll_of(env: Env, v: napi_value) -> Result<*mut Poll, ArgErr> {
    let mut data: *mut c_void = ptr::null_mut();
    if env.type_of(v) != NAPI_EXTERNAL
        || unsafe { napi_get_value_external(env.0, v, &mut data) } != NAPI_OK
        || data.is_null()
    {
        return Err(env.type_err(v, "handle", "a pollReadable() handle"));
    }
    Ok(data as *mut Poll)
}

/// A libuv error as a thrown `Error` with its name as `code`.
fn uv_error(env: Env, call: &str, err: c_int) -> napi_value {
    let name = unsafe { std::ffi::CStr::from_ptr(uv_err_name(err)) }.to_string_lossy();
    env.throw_msg(&name, &format!("{call} failed: {name}"))
}

/// `pollReadable(fd, onReadable)` → handle.
pub unsafe extern "C" fn js_poll_readable(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let parsed = (|| -> Result<(c_int, napi_value), ArgErr> {
        let fd = env.int(args.get(0), "fd", 0, i32::MAX as i64)? as c_int;
        let callback = args.get(1);
        if env.type_of(callback) != NAPI_FUNCTION {
            return Err(env.type_err(callback, "onReadable", "a function"));
        }
        Ok((fd, callback))
    })();
    let (fd, callback) = match parsed {
        Ok(parsed) => parsed,
        Err(ArgErr::Pending) => return ptr::null_mut(),
        Err(e) => return env.throw(env.arg_error(e)),
    };
    let mut event_loop = ptr::null_mut();
    if unsafe { napi_get_uv_event_loop(env.0, &mut event_loop) } != NAPI_OK {
        return env.throw(env.internal_error("napi_get_uv_event_loop failed"));
    }
    let Ok(layout) = Layout::from_size_align(unsafe { uv_handle_size(UV_POLL) }, 16) else {
        return env.throw(env.internal_error("uv_handle_size(UV_POLL) is not a valid size"));
    };
    let handle = unsafe { alloc_zeroed(layout) } as *mut UvHandle;
    if handle.is_null() {
        return env.throw(env.internal_error("out of memory for a uv_poll_t"));
    }
    let init = unsafe { uv_poll_init(event_loop, handle, fd) };
    if init != 0 {
        // Not registered with the loop yet: the memory can go at once.
        unsafe { dealloc(handle as *mut u8, layout) };
        return uv_error(env, "uv_poll_init", init);
    }
    let mut reference = ptr::null_mut();
    let mut context = ptr::null_mut();
    unsafe {
        napi_create_reference(env.0, callback, 1, &mut reference);
        napi_async_init(
            env.0,
            ptr::null_mut(),
            env.string("msb:pollReadable"),
            &mut context,
        );
    }
    let poll = Box::into_raw(Box::new(Poll {
        env: env.0,
        handle,
        layout,
        callback: reference,
        context,
        closing: false,
        closed: false,
        collected: false,
        hooked: false,
    }));
    unsafe { uv_handle_set_data(handle, poll as *mut c_void) };
    if unsafe { napi_add_env_cleanup_hook(env.0, Some(on_env_cleanup), poll as *mut c_void) }
        == NAPI_OK
    {
        unsafe { (*poll).hooked = true };
    }
    let started = unsafe { uv_poll_start(handle, UV_READABLE, Some(on_readable)) };
    match (started, env.external(poll as *mut c_void, finalize)) {
        (0, Some(external)) => external,
        (started, external) => {
            unsafe {
                Poll::close(poll);
                if external.is_none() {
                    (*poll).collected = true;
                }
            }
            if started != 0 {
                uv_error(env, "uv_poll_start", started)
            } else {
                env.throw(env.internal_error("napi_create_external failed"))
            }
        }
    }
}

/// `pollUnref(handle)`.
pub unsafe extern "C" fn js_poll_unref(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    match poll_of(env, args.get(0)) {
        Ok(poll) => {
            if !unsafe { (*poll).closing } {
                unsafe { uv_unref((*poll).handle) };
            }
            env.undefined()
        }
        Err(e) => env.throw(env.arg_error(e)),
    }
}

/// `pollClose(handle)`.
pub unsafe extern "C" fn js_poll_close(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    match poll_of(env, args.get(0)) {
        Ok(poll) => {
            unsafe { Poll::close(poll) };
            env.undefined()
        }
        Err(e) => env.throw(env.arg_error(e)),
    }
}

/// `readNonBlocking(fd, target)` → bytes read, or `null` on EAGAIN.
pub unsafe extern "C" fn js_read_non_blocking(
    env: napi_env,
    info: napi_callback_info,
) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let parsed = (|| -> Result<(c_int, (*mut c_void, usize)), ArgErr> {
        let fd = env.fd(args.get(0), "fd")?;
        let target = args.get(1);
        let bytes = env
            .typed_array(target, NAPI_UINT8_ARRAY)
            .ok_or_else(|| env.type_err(target, "target", "an instance of Uint8Array"))?;
        Ok((fd, bytes))
    })();
    let (fd, (data, len)) = match parsed {
        Ok(parsed) => parsed,
        Err(ArgErr::Pending) => return ptr::null_mut(),
        Err(e) => return env.throw(env.arg_error(e)),
    };
    loop {
        let n = unsafe { read(fd, data, len) };
        if n >= 0 {
            return env.double(n as f64);
        }
        match sys::errno() {
            EINTR => continue,
            EAGAIN => {
                let mut null = ptr::null_mut();
                unsafe { napi_get_null(env.0, &mut null) };
                return null;
            }
            _ => return env.throw(env.sys_error(SysErr::last("read"), None, None)),
        }
    }
}
