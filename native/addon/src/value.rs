//! Safe-ish wrapper around `napi_env` for reading arguments and building
//! results. An [`Env`] only exists inside a Node-API callback on the JS
//! thread, which is the invariant every method relies on.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;

use crate::error::ArgErr;
use crate::napi::*;

/// `Number.MAX_SAFE_INTEGER`.
pub const MAX_SAFE: i64 = (1 << 53) - 1;

/// Maximum number of arguments any export takes.
const MAX_ARGS: usize = 8;

#[derive(Clone, Copy)]
pub struct Env(pub napi_env);

/// The arguments of one call; missing trailing arguments read as `undefined`.
pub struct Args {
    argv: [napi_value; MAX_ARGS],
    /// The function's `data` pointer given to `napi_create_function`.
    pub data: *mut c_void,
}

impl Args {
    /// # Safety
    /// `env` and `info` must be the ones passed to the current callback.
    pub unsafe fn read(env: napi_env, info: napi_callback_info) -> Args {
        let mut argv = [ptr::null_mut(); MAX_ARGS];
        let mut argc = MAX_ARGS;
        let mut data = ptr::null_mut();
        // Unused slots are filled with `undefined` by Node.
        unsafe {
            napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                &mut data,
            )
        };
        Args { argv, data }
    }

    pub fn get(&self, i: usize) -> napi_value {
        self.argv[i]
    }
}

fn check(status: napi_status) -> Result<(), ArgErr> {
    if status == NAPI_OK {
        Ok(())
    } else {
        Err(ArgErr::Napi)
    }
}

impl Env {
    // ------------------------------------------------------------ inspecting --

    pub fn type_of(self, v: napi_value) -> napi_valuetype {
        let mut t = NAPI_UNDEFINED;
        // On failure (should not happen for a live value) `t` stays undefined.
        unsafe { napi_typeof(self.0, v, &mut t) };
        t
    }

    pub fn is_nullish(self, v: napi_value) -> bool {
        matches!(self.type_of(v), NAPI_UNDEFINED | NAPI_NULL)
    }

    pub fn is_undefined(self, v: napi_value) -> bool {
        self.type_of(v) == NAPI_UNDEFINED
    }

    /// `"type number (1.5)"`, `"an instance of Uint8Array"` ... for messages,
    /// in the style of Node's `ERR_INVALID_ARG_TYPE`.
    pub fn describe(self, v: napi_value) -> String {
        match self.type_of(v) {
            NAPI_UNDEFINED => "undefined".into(),
            NAPI_NULL => "null".into(),
            NAPI_BOOLEAN => "type boolean".into(),
            NAPI_NUMBER => match self.raw_double(v) {
                Some(n) => format!("type number ({})", fmt_number(n)),
                None => "type number".into(),
            },
            NAPI_STRING => "type string".into(),
            NAPI_SYMBOL => "type symbol".into(),
            NAPI_FUNCTION => "function".into(),
            NAPI_EXTERNAL => "type external".into(),
            NAPI_BIGINT => "type bigint".into(),
            NAPI_OBJECT => {
                if self.is_typed_array(v) {
                    "an instance of a TypedArray".into()
                } else {
                    "an instance of Object".into()
                }
            }
            _ => "an unknown value".into(),
        }
    }

    fn raw_double(self, v: napi_value) -> Option<f64> {
        let mut n = 0.0;
        (unsafe { napi_get_value_double(self.0, v, &mut n) } == NAPI_OK).then_some(n)
    }

    fn is_typed_array(self, v: napi_value) -> bool {
        let mut yes = false;
        unsafe { napi_is_typedarray(self.0, v, &mut yes) };
        yes
    }

    /// The memory of typed array `v` of `kind`: its data (the view's byte
    /// offset included) and its length in elements; `None` for anything else.
    pub fn typed_array(
        self,
        v: napi_value,
        kind: napi_typedarray_type,
    ) -> Option<(*mut c_void, usize)> {
        if !self.is_typed_array(v) {
            return None;
        }
        let mut actual = 0;
        let mut len = 0usize;
        let mut data: *mut c_void = ptr::null_mut();
        let status = unsafe {
            napi_get_typedarray_info(
                self.0,
                v,
                &mut actual,
                &mut len,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        (status == NAPI_OK && actual == kind).then_some((data, len))
    }

    /// The bytes of a `Uint8Array` (or `Buffer`) in place, as (pointer, length):
    /// valid while the value lives and its buffer is neither detached nor
    /// changed; a call that reads them on another thread holds a reference.
    pub fn uint8_view(self, v: napi_value) -> Option<(*const u8, usize)> {
        let (data, len) = self.typed_array(v, NAPI_UINT8_ARRAY)?;
        Some((data as *const u8, if data.is_null() { 0 } else { len }))
    }

    /// The bytes of a `Uint8Array` (or `Buffer`), copied.
    fn uint8_bytes(self, v: napi_value) -> Option<Vec<u8>> {
        let (data, len) = self.uint8_view(v)?;
        if len == 0 {
            return Some(Vec::new());
        }
        Some(unsafe { std::slice::from_raw_parts(data, len) }.to_vec())
    }

    fn string_bytes(self, v: napi_value) -> Result<Vec<u8>, ArgErr> {
        let mut len = 0usize;
        check(unsafe { napi_get_value_string_utf8(self.0, v, ptr::null_mut(), 0, &mut len) })?;
        let mut buf = vec![0u8; len + 1];
        let mut written = 0usize;
        check(unsafe {
            napi_get_value_string_utf8(
                self.0,
                v,
                buf.as_mut_ptr() as *mut c_char,
                buf.len(),
                &mut written,
            )
        })?;
        buf.truncate(written);
        Ok(buf)
    }

    // ------------------------------------------------------- argument parsing --

    /// `string | Uint8Array` → bytes (strings are encoded as UTF-8).
    pub fn bytes(self, v: napi_value, what: &str) -> Result<Vec<u8>, ArgErr> {
        match self.type_of(v) {
            NAPI_STRING => self.string_bytes(v),
            NAPI_OBJECT => self
                .uint8_bytes(v)
                .ok_or_else(|| self.type_err(v, what, STR_OR_U8)),
            _ => Err(self.type_err(v, what, STR_OR_U8)),
        }
    }

    /// A path or name for a C API: `string | Uint8Array` without NUL bytes.
    pub fn cstr(self, v: napi_value, what: &str) -> Result<CString, ArgErr> {
        let bytes = self.bytes(v, what)?;
        CString::new(bytes).map_err(|_| {
            ArgErr::Value(format!(
                "The argument '{what}' must be a string or Uint8Array without null bytes"
            ))
        })
    }

    /// Like [`Env::cstr`] but `null`/`undefined` give `None`.
    pub fn opt_cstr(self, v: napi_value, what: &str) -> Result<Option<CString>, ArgErr> {
        if self.is_nullish(v) {
            Ok(None)
        } else {
            self.cstr(v, what).map(Some)
        }
    }

    /// A `Uint8Array` (or `Buffer`) value, copied.
    pub fn u8array(self, v: napi_value, what: &str) -> Result<Vec<u8>, ArgErr> {
        if self.type_of(v) == NAPI_OBJECT
            && let Some(b) = self.uint8_bytes(v)
        {
            return Ok(b);
        }
        Err(self.type_err(v, what, "an instance of Uint8Array"))
    }

    /// An integral JS number in `min..=max`.
    pub fn int(self, v: napi_value, what: &str, min: i64, max: i64) -> Result<i64, ArgErr> {
        if self.type_of(v) != NAPI_NUMBER {
            return Err(self.type_err(v, what, "of type number"));
        }
        let n = self.raw_double(v).ok_or(ArgErr::Napi)?;
        if !n.is_finite() || n.trunc() != n {
            return Err(ArgErr::Range(format!(
                "The value of \"{what}\" is out of range. It must be an integer. Received {}",
                fmt_number(n)
            )));
        }
        if n < min as f64 || n > max as f64 {
            return Err(ArgErr::Range(format!(
                "The value of \"{what}\" is out of range. It must be >= {min} && <= {max}. Received {}",
                fmt_number(n)
            )));
        }
        Ok(n as i64)
    }

    /// [`Env::int`], with `undefined` (argument omitted) giving `default`.
    pub fn opt_int(
        self,
        v: napi_value,
        what: &str,
        min: i64,
        max: i64,
        default: i64,
    ) -> Result<i64, ArgErr> {
        if self.is_undefined(v) {
            Ok(default)
        } else {
            self.int(v, what, min, max)
        }
    }

    /// A file descriptor: any int32 (so `AT_FDCWD` = -100 passes; the kernel
    /// reports EBADF for the rest).
    pub fn fd(self, v: napi_value, what: &str) -> Result<c_int, ArgErr> {
        self.int(v, what, i32::MIN as i64, i32::MAX as i64)
            .map(|n| n as c_int)
    }

    /// A flags word: `0..=0xffff_ffff`, passed to C as the same 32 bits.
    pub fn flags(self, v: napi_value, what: &str) -> Result<u32, ArgErr> {
        self.int(v, what, 0, u32::MAX as i64).map(|n| n as u32)
    }

    /// [`Env::flags`] with `undefined` giving 0.
    pub fn opt_flags(self, v: napi_value, what: &str) -> Result<u32, ArgErr> {
        self.opt_int(v, what, 0, u32::MAX as i64, 0)
            .map(|n| n as u32)
    }

    /// A `number | bigint` holding a signed 64-bit value. Returns the value and
    /// whether it was a bigint.
    pub fn i64_or_bigint(self, v: napi_value, what: &str) -> Result<(i64, bool), ArgErr> {
        if self.type_of(v) == NAPI_BIGINT {
            let mut n = 0i64;
            let mut lossless = false;
            check(unsafe { napi_get_value_bigint_int64(self.0, v, &mut n, &mut lossless) })?;
            if !lossless {
                return Err(ArgErr::Range(format!(
                    "The value of \"{what}\" is out of range. It must fit in a signed 64-bit integer"
                )));
            }
            return Ok((n, true));
        }
        if self.type_of(v) != NAPI_NUMBER {
            return Err(self.type_err(v, what, "of type number or bigint"));
        }
        self.int(v, what, -MAX_SAFE, MAX_SAFE).map(|n| (n, false))
    }

    /// A `number | bigint` holding an unsigned 64-bit value.
    pub fn u64_or_bigint(self, v: napi_value, what: &str) -> Result<u64, ArgErr> {
        if self.type_of(v) == NAPI_BIGINT {
            let mut n = 0u64;
            let mut lossless = false;
            check(unsafe { napi_get_value_bigint_uint64(self.0, v, &mut n, &mut lossless) })?;
            if !lossless {
                return Err(ArgErr::Range(format!(
                    "The value of \"{what}\" is out of range. It must fit in an unsigned 64-bit integer"
                )));
            }
            return Ok(n);
        }
        if self.type_of(v) != NAPI_NUMBER {
            return Err(self.type_err(v, what, "of type number or bigint"));
        }
        self.int(v, what, 0, MAX_SAFE).map(|n| n as u64)
    }

    /// `obj[name]`; may run a getter, which may throw (→ [`ArgErr::Pending`]).
    pub fn get(self, obj: napi_value, name: &CStr) -> Result<napi_value, ArgErr> {
        let mut out = ptr::null_mut();
        let status = unsafe { napi_get_named_property(self.0, obj, name.as_ptr(), &mut out) };
        if status == NAPI_OK {
            Ok(out)
        } else if self.exception_pending() {
            Err(ArgErr::Pending)
        } else {
            Err(ArgErr::Napi)
        }
    }

    pub fn exception_pending(self) -> bool {
        let mut yes = false;
        unsafe { napi_is_exception_pending(self.0, &mut yes) };
        yes
    }

    pub fn type_err(self, v: napi_value, what: &str, expected: &str) -> ArgErr {
        ArgErr::Type(format!(
            "The \"{what}\" argument must be {expected}. Received {}",
            self.describe(v)
        ))
    }

    // ------------------------------------------------------------- creating --

    pub fn undefined(self) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_get_undefined(self.0, &mut v) };
        v
    }

    pub fn int32(self, n: i32) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_int32(self.0, n, &mut v) };
        v
    }

    pub fn uint32(self, n: u32) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_uint32(self.0, n, &mut v) };
        v
    }

    pub fn boolean(self, b: bool) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_get_boolean(self.0, b, &mut v) };
        v
    }

    pub fn double(self, n: f64) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_double(self.0, n, &mut v) };
        v
    }

    pub fn bigint_i64(self, n: i64) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_bigint_int64(self.0, n, &mut v) };
        v
    }

    pub fn bigint_u64(self, n: u64) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_bigint_uint64(self.0, n, &mut v) };
        v
    }

    pub fn string(self, s: &str) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_string_utf8(self.0, s.as_ptr() as *const c_char, s.len(), &mut v) };
        v
    }

    pub fn buffer(self, bytes: &[u8]) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe {
            napi_create_buffer_copy(
                self.0,
                bytes.len(),
                bytes.as_ptr() as *const c_void,
                ptr::null_mut(),
                &mut v,
            )
        };
        v
    }

    /// An external holding `data`, which `finalize` frees once it is
    /// collected; `None` when Node-API refuses (the caller still owns `data`).
    pub fn external(
        self,
        data: *mut c_void,
        finalize: unsafe extern "C" fn(napi_env, *mut c_void, *mut c_void),
    ) -> Option<napi_value> {
        let mut value = ptr::null_mut();
        let status = unsafe {
            napi_create_external(self.0, data, Some(finalize), ptr::null_mut(), &mut value)
        };
        (status == NAPI_OK).then_some(value)
    }

    /// Deletes references (null ones are skipped).
    pub fn delete_references(self, references: &[napi_ref]) {
        for &r in references.iter().filter(|r| !r.is_null()) {
            unsafe { napi_delete_reference(self.0, r) };
        }
    }

    pub fn object(self) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_object(self.0, &mut v) };
        v
    }

    pub fn array(self, len: usize) -> napi_value {
        let mut v = ptr::null_mut();
        unsafe { napi_create_array_with_length(self.0, len, &mut v) };
        v
    }

    pub fn set(self, obj: napi_value, name: &CStr, value: napi_value) {
        unsafe { napi_set_named_property(self.0, obj, name.as_ptr(), value) };
    }

    pub fn set_index(self, arr: napi_value, i: usize, value: napi_value) {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        unsafe { napi_set_element(self.0, arr, i, value) };
    }

    /// `Buffer[]`.
    pub fn buffer_list(self, items: &[Vec<u8>]) -> napi_value {
        let arr = self.array(items.len());
        for (i, item) in items.iter().enumerate() {
            self.set_index(arr, i, self.buffer(item));
        }
        arr
    }
}

const STR_OR_U8: &str = "of type string or an instance of Uint8Array";

/// Numbers in messages: integers without a fraction, like JS prints them.
fn fmt_number(n: f64) -> String {
    if n.is_finite() && n.trunc() == n && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{n}")
    }
}
