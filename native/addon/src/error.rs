//! Error values: argument errors (created on the JS thread while parsing) and
//! system-call errors (captured on whichever thread ran the call, turned into
//! a Node-style `Error` later on the JS thread).

use std::ptr;

use crate::errno;
use crate::napi::*;
use crate::value::Env;

/// A failed system call: the positive errno and the syscall's name.
#[derive(Debug, Clone, Copy)]
pub struct SysErr {
    pub errno: i32,
    pub syscall: &'static str,
}

impl SysErr {
    /// Captures `errno` right after a failed call.
    pub fn last(syscall: &'static str) -> SysErr {
        SysErr {
            errno: crate::sys::errno(),
            syscall,
        }
    }
}

/// Result of a call that ran: `Ok` or a [`SysErr`].
pub type SysResult<T> = Result<T, SysErr>;

/// A bad argument, detected before anything runs.
#[derive(Debug)]
pub enum ArgErr {
    /// `TypeError` with code `ERR_INVALID_ARG_TYPE`.
    Type(String),
    /// `TypeError` with code `ERR_INVALID_ARG_VALUE` (e.g. a NUL byte in a path).
    Value(String),
    /// `RangeError` with code `ERR_OUT_OF_RANGE` (non-integers, out of range).
    Range(String),
    /// A JS exception is already pending (a getter threw).
    Pending,
    /// A Node-API call failed unexpectedly.
    Napi,
}

impl Env {
    fn make_error(
        self,
        create: unsafe extern "C" fn(
            napi_env,
            napi_value,
            napi_value,
            *mut napi_value,
        ) -> napi_status,
        code: &str,
        msg: &str,
    ) -> napi_value {
        let mut err = ptr::null_mut();
        unsafe { create(self.0, self.string(code), self.string(msg), &mut err) };
        err
    }

    /// The JS value for an argument error. For [`ArgErr::Pending`] the pending
    /// exception is taken (cleared), so it can be thrown again or rejected with.
    pub fn arg_error(self, e: ArgErr) -> napi_value {
        match e {
            ArgErr::Type(m) => self.make_error(napi_create_type_error, "ERR_INVALID_ARG_TYPE", &m),
            ArgErr::Value(m) => {
                self.make_error(napi_create_type_error, "ERR_INVALID_ARG_VALUE", &m)
            }
            ArgErr::Range(m) => self.make_error(napi_create_range_error, "ERR_OUT_OF_RANGE", &m),
            ArgErr::Pending | ArgErr::Napi => self.internal_error("Node-API call failed"),
        }
    }

    /// An `Error` shaped like Node's fs errors:
    /// `{ message: "ENOENT: no such file or directory, openat2 'a/b'", code: 'ENOENT',
    ///    errno: -2, syscall: 'openat2', path: 'a/b', dest?: ... }`.
    pub fn sys_error(self, e: SysErr, path: Option<&[u8]>, dest: Option<&[u8]>) -> napi_value {
        let code = errno::name(e.errno);
        let mut msg = format!("{code}: {}, {}", errno::message(e.errno), e.syscall);
        let path = path.map(String::from_utf8_lossy);
        let dest = dest.map(String::from_utf8_lossy);
        if let Some(p) = &path {
            msg.push_str(&format!(" '{p}'"));
        }
        if let Some(d) = &dest {
            msg.push_str(&format!(" -> '{d}'"));
        }
        let err = self.make_error(napi_create_error, code, &msg);
        self.set(err, c"errno", self.int32(-e.errno));
        self.set(err, c"syscall", self.string(e.syscall));
        if let Some(p) = &path {
            self.set(err, c"path", self.string(p));
        }
        if let Some(d) = &dest {
            self.set(err, c"dest", self.string(d));
        }
        err
    }

    /// The pending JS exception (cleared) if there is one, else an `Error`
    /// with code `ERR_NAPI` and `msg`.
    pub fn internal_error(self, msg: &str) -> napi_value {
        if self.exception_pending() {
            let mut v = ptr::null_mut();
            unsafe { napi_get_and_clear_last_exception(self.0, &mut v) };
            if !v.is_null() {
                return v;
            }
        }
        self.make_error(napi_create_error, "ERR_NAPI", msg)
    }

    pub fn throw(self, err: napi_value) -> napi_value {
        unsafe { napi_throw(self.0, err) };
        ptr::null_mut()
    }

    /// A plain `Error` with a code, to throw or reject with.
    pub fn coded_error(self, code: &str, msg: &str) -> napi_value {
        self.make_error(napi_create_error, code, msg)
    }

    /// Throws a plain `Error` with a code (used for internal failures).
    pub fn throw_msg(self, code: &str, msg: &str) -> napi_value {
        self.throw(self.coded_error(code, msg))
    }
}
