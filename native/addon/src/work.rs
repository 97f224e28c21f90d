//! The calling convention shared by every syscall export.
//!
//! Each export is described by a [`Spec`]: a name and a `parse` function that
//! reads and copies all arguments on the JS thread and returns a [`Call`]: an
//! owned, `Send` closure that performs the system call(s) without touching any
//! napi value, plus the path(s) to put in an error. The same `Spec` backs
//!
//! * `foo(...)`: parse, run the closure immediately, convert or throw;
//! * `fooAsync(...)`: parse, then run the closure on the libuv threadpool via
//!   `napi_create_async_work`, and settle a promise from `napi_create_promise`
//!   in the completion callback (back on the JS thread).
//!
//! Argument errors make `fooAsync` reject (it never throws synchronously).

use std::ffi::{CStr, CString, c_void};
use std::ptr;

use crate::error::{ArgErr, SysErr, SysResult};
use crate::napi::*;
use crate::stat;
use crate::sys::{StatFsBuf, Statx};
use crate::value::{Args, Env};

/// What a call produces; converted to JS on the JS thread.
pub enum Out {
    Undefined,
    Int(i32),
    Num(f64),
    BigInt(i64),
    Buf(Vec<u8>),
    Bufs(Vec<Vec<u8>>),
    Stat(Box<Statx>),
    StatFs(Box<StatFsBuf>),
}

impl Out {
    fn into_js(self, env: Env) -> napi_value {
        match self {
            Out::Undefined => env.undefined(),
            Out::Int(n) => env.int32(n),
            Out::Num(n) => env.double(n),
            Out::BigInt(n) => env.bigint_i64(n),
            Out::Buf(b) => env.buffer(&b),
            Out::Bufs(list) => env.buffer_list(&list),
            Out::Stat(s) => stat::stat_to_js(env, &s),
            Out::StatFs(s) => stat::statfs_to_js(env, &s),
        }
    }
}

type Job = Box<dyn FnOnce() -> SysResult<Out> + Send + 'static>;

/// A parsed call, ready to run on any thread.
pub struct Call {
    path: Option<Vec<u8>>,
    dest: Option<Vec<u8>>,
    job: Job,
}

impl Call {
    pub fn new(job: impl FnOnce() -> SysResult<Out> + Send + 'static) -> Call {
        Call {
            path: None,
            dest: None,
            job: Box::new(job),
        }
    }

    /// The path reported as `err.path`.
    pub fn path(mut self, p: &CStr) -> Call {
        self.path = Some(p.to_bytes().to_vec());
        self
    }

    /// The second path reported as `err.dest`.
    pub fn dest(mut self, p: &CStr) -> Call {
        self.dest = Some(p.to_bytes().to_vec());
        self
    }

    /// `path` if present.
    pub fn opt_path(self, p: Option<&CString>) -> Call {
        match p {
            Some(p) => self.path(p),
            None => self,
        }
    }
}

pub type Parse = fn(Env, &Args) -> Result<Call, ArgErr>;

/// One exported syscall: `name` (sync) and `nameAsync`.
pub struct Spec {
    pub name: &'static str,
    pub parse: Parse,
}

/// `foo(...)`.
pub unsafe extern "C" fn call_sync(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    // SAFETY: `data` is the `&'static Spec` registered with this function.
    let spec = unsafe { &*(args.data as *const Spec) };
    match (spec.parse)(env, &args) {
        Err(ArgErr::Pending) => ptr::null_mut(), // leave the pending exception
        Err(e) => env.throw(env.arg_error(e)),
        Ok(call) => match (call.job)() {
            Ok(out) => out.into_js(env),
            Err(e) => env.throw(env.sys_error(e, call.path.as_deref(), call.dest.as_deref())),
        },
    }
}

/// State of one `fooAsync` call, owned by the async work item.
struct Pending {
    job: Option<Job>,
    result: Option<SysResult<Out>>,
    path: Option<Vec<u8>>,
    dest: Option<Vec<u8>>,
    deferred: napi_deferred,
    work: napi_async_work,
}

/// `fooAsync(...)` → `Promise`.
pub unsafe extern "C" fn call_async(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    // SAFETY: `data` is the `&'static Spec` registered with this function.
    let spec = unsafe { &*(args.data as *const Spec) };

    let Some(promised) = Promised::new(env) else {
        return ptr::null_mut();
    };
    let Promised { deferred, promise } = promised;
    let reject = |error: napi_value| promised.reject(env, error);

    let call = match (spec.parse)(env, &args) {
        Ok(call) => call,
        Err(e) => return reject(env.arg_error(e)),
    };

    let pending = Box::into_raw(Box::new(Pending {
        job: Some(call.job),
        result: None,
        path: call.path,
        dest: call.dest,
        deferred,
        work: ptr::null_mut(),
    }));
    let queued = queue_work(
        env,
        spec.name,
        pending as *mut c_void,
        execute,
        complete,
        |work| unsafe { (*pending).work = work },
    );
    if let Err(error) = queued {
        drop(unsafe { Box::from_raw(pending) });
        return reject(error);
    }
    promise
}

/// Threadpool side: runs the owned closure. Touches no napi value.
unsafe extern "C" fn execute(_env: napi_env, data: *mut c_void) {
    // SAFETY: `data` is the `Pending` created in `call_async`; only this
    // callback accesses it until `complete` runs.
    let pending = unsafe { &mut *(data as *mut Pending) };
    if let Some(job) = pending.job.take() {
        pending.result = Some(job());
    }
}

/// JS thread side: settles the promise and frees everything.
unsafe extern "C" fn complete(env: napi_env, status: napi_status, data: *mut c_void) {
    let env = Env(env);
    // SAFETY: reclaims the box leaked in `call_async`; called exactly once.
    let pending = unsafe { Box::from_raw(data as *mut Pending) };
    unsafe { napi_delete_async_work(env.0, pending.work) };
    let outcome = match pending.result {
        Some(Ok(out)) => Ok(out.into_js(env)),
        Some(Err(e)) => Err(env.sys_error(e, pending.path.as_deref(), pending.dest.as_deref())),
        None => Err(not_run_error(env, status)),
    };
    settle(env, pending.deferred, outcome);
}

/// Queues `data` as async work: `execute(data)` on the threadpool, then
/// `complete(data)` on the JS thread. `keep` gets the work before it is
/// queued (`complete` deletes it). On failure nothing is queued, the caller
/// still owns `data`, and the error is returned.
pub fn queue_work(
    env: Env,
    name: &str,
    data: *mut c_void,
    execute: unsafe extern "C" fn(napi_env, *mut c_void),
    complete: unsafe extern "C" fn(napi_env, napi_status, *mut c_void),
    keep: impl FnOnce(napi_async_work),
) -> Result<(), napi_value> {
    let mut work = ptr::null_mut();
    let status = unsafe {
        napi_create_async_work(
            env.0,
            ptr::null_mut(),
            env.string(name),
            Some(execute),
            Some(complete),
            data,
            &mut work,
        )
    };
    if status != NAPI_OK {
        return Err(env.internal_error("napi_create_async_work failed"));
    }
    keep(work);
    if unsafe { napi_queue_async_work(env.0, work) } != NAPI_OK {
        unsafe { napi_delete_async_work(env.0, work) };
        return Err(env.internal_error("napi_queue_async_work failed"));
    }
    Ok(())
}

/// The error of async work whose `execute` never ran (ECANCELED when cancelled).
pub fn not_run_error(env: Env, status: napi_status) -> napi_value {
    let errno = if status == NAPI_CANCELLED { 125 } else { 0 }; // ECANCELED
    env.sys_error(
        SysErr {
            errno,
            syscall: "uv_queue_work",
        },
        None,
        None,
    )
}

/// A promise made for an async call, with what settles it.
#[derive(Clone, Copy)]
pub struct Promised {
    pub deferred: napi_deferred,
    pub promise: napi_value,
}

impl Promised {
    /// A new promise; `None` once an error is thrown (Node-API could not make one).
    pub fn new(env: Env) -> Option<Promised> {
        let mut deferred = ptr::null_mut();
        let mut promise = ptr::null_mut();
        if unsafe { napi_create_promise(env.0, &mut deferred, &mut promise) } != NAPI_OK {
            env.throw_msg("ERR_NAPI", "napi_create_promise failed");
            return None;
        }
        Some(Promised { deferred, promise })
    }

    /// Rejects the promise with `error` and returns it (for a call that fails before any work).
    pub fn reject(self, env: Env, error: napi_value) -> napi_value {
        settle(env, self.deferred, Err(error));
        self.promise
    }
}

/// Resolves (`Ok`) or rejects (`Err`) a promise.
pub fn settle(env: Env, deferred: napi_deferred, outcome: Result<napi_value, napi_value>) {
    unsafe {
        match outcome {
            Ok(value) => napi_resolve_deferred(env.0, deferred, value),
            Err(error) => napi_reject_deferred(env.0, deferred, error),
        }
    };
}
