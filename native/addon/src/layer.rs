//! A layer writer: applies the entries of an image layer (files, directories,
//! symlinks, hard links) below one directory, batch by batch, on the libuv
//! threadpool, so the JS thread keeps decompressing and parsing the tar while
//! the kernel creates the inodes. Used by `@msb/oci`; the tar format, names
//! and metadata encoding stay in JS, this only makes the system calls.
//!
//! Confinement: every directory is opened from the root fd with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`,
//! the final component is made with `O_CREAT | O_EXCL | O_NOFOLLOW`,
//! `mkdirat`, `symlinkat` or `linkat` (none follows it), and a path with an
//! empty, `.` or `..` component or a NUL byte is refused before any call.
//!
//! JS API:
//! * `layerWriter(rootFd, implicitDirXattr, implicitDirValue)` → handle (freed
//!   by the GC). `rootFd` stays the caller's; directories the entries imply
//!   but do not list are made `0700` with that xattr.
//! * `layerWriterApply(handle, ops, chunks)` → `Promise<void>`: runs the
//!   encoded `ops` in order on the threadpool. `chunks` (`Uint8Array[]`) are
//!   the file data the `WRITE` ops consume in order; they are read in place,
//!   so they must not change until the promise settles. Batches of one
//!   writer run one at a time; callers await each before the next to keep
//!   their order. A failure rejects with an `Error` whose `index` is the
//!   failed op's position in `ops` (the ops before it are applied).
//! * `layerWriterClose(handle)`: closes the open file and the cached
//!   directory fds (waiting for a running batch); later batches fail EBADF.
//!
//! Ops (little endian; `bytes` is a u32 length and the bytes, a path is
//! `bytes` of components joined by `/`, empty for the root; `xattrs` is a
//! u32 count of (`bytes` name, `bytes` value)):
//! * 1 `OPEN_FILE path`: create a regular file (`0600`) and keep it open.
//! * 2 `WRITE u32 count`: append the next `count` chunks to the open file.
//! * 3 `CLOSE_FILE u32 mode, i64 mtime, xattrs`: `fchmod`, the xattrs, the
//!   mtime (seconds; `i64::MIN` for none), close.
//! * 4 `DIRECTORY path, u32 mode, xattrs`: make it (a directory already there
//!   stays) and set `mode` and the xattrs; the empty path is the root.
//! * 5 `SYMLINK path, bytes target`.
//! * 6 `LINK path, path target`: a hard link to an earlier entry.
//!
//! A new name that exists replaces it, as tar does: a non-directory is
//! unlinked first; a directory stays for `DIRECTORY` and is an error
//! (`ERR_MSB_LAYER_REPLACES_DIR`) for anything else.

use std::collections::HashMap;
use std::ffi::{CString, c_int, c_long, c_void};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{SysErr, SysResult};
use crate::napi::*;
use crate::open;
use crate::sys::{self, OpenHow, Statx, Timespec};
use crate::value::{Args, Env};
use crate::work::{Promised, not_run_error, queue_work, settle};

unsafe extern "C" {
    fn fchmod(fd: c_int, mode: u32) -> c_int;
    fn writev(fd: c_int, iov: *const IoVec, iovcnt: c_int) -> isize;
}

#[repr(C)]
struct IoVec {
    base: *const c_void,
    len: usize,
}

const O_WRONLY: u64 = 0o1;
const O_CREAT: u64 = 0o100;
const O_EXCL: u64 = 0o200;
const O_DIRECTORY: u64 = 0o200000;
const O_NOFOLLOW: u64 = 0o400000;
const RESOLVE: u64 = 0x02 | 0x04 | 0x08; // NO_MAGICLINKS | NO_SYMLINKS | BENEATH
const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const EINTR: i32 = 4;
const EIO: i32 = 5;
const EBADF: i32 = 9;
const EEXIST: i32 = 17;
const EXDEV: i32 = 18;
const ELOOP: i32 = 40;
const IOV_MAX: usize = 1024;
/// Directory fds kept open: a tar lists a directory's entries together.
const DIR_CACHE: usize = 64;
const NO_MTIME: i64 = i64::MIN;

const OPEN_FILE: u8 = 1;
const WRITE: u8 = 2;
const CLOSE_FILE: u8 = 3;
const DIRECTORY: u8 = 4;
const SYMLINK: u8 = 5;
const LINK: u8 = 6;

/// Why an op failed.
enum Fail {
    /// A system call failed on `path` (a name below its directory).
    Sys(SysErr, Vec<u8>),
    /// The hard link target's directory could not be opened.
    LinkTarget(SysErr, Vec<u8>),
    /// The path would leave the root (through a symlink or otherwise).
    Unsafe(&'static str),
    /// A non-directory would replace a directory.
    ReplacesDir,
    /// The ops are not well-formed (a caller bug).
    Malformed(&'static str),
}

type OpResult<T> = Result<T, Fail>;

fn sys_fail(e: SysErr, path: &[u8]) -> Fail {
    Fail::Sys(e, path.to_vec())
}

fn cstring(bytes: &[u8]) -> OpResult<CString> {
    CString::new(bytes).map_err(|_| Fail::Malformed("a name contains a NUL byte"))
}

/// The components of an op path, refusing empty, `.` and `..` ones.
fn components(path: &[u8]) -> OpResult<Vec<&[u8]>> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    path.split(|&b| b == b'/')
        .map(|part| match part {
            b"" | b"." | b".." => Err(Fail::Unsafe("has an empty, '.' or '..' path component")),
            _ if part.contains(&0) => Err(Fail::Malformed("a name contains a NUL byte")),
            _ => Ok(part),
        })
        .collect()
}

/// openat2 confined below `dirfd`.
fn openat2(dirfd: c_int, path: &CString, flags: u64, mode: u64) -> SysResult<c_int> {
    let how = OpenHow {
        flags: flags | sys::O_CLOEXEC,
        mode,
        resolve: RESOLVE,
    };
    open::openat2(dirfd, path, &how)
}

fn check(rc: c_int, syscall: &'static str) -> SysResult<()> {
    if rc < 0 {
        Err(SysErr::last(syscall))
    } else {
        Ok(())
    }
}

fn lstat_mode(dirfd: c_int, name: &CString) -> SysResult<u16> {
    let mut buf = Statx::default();
    let rc = unsafe {
        sys::syscall(
            sys::SYS_STATX,
            dirfd as c_long,
            name.as_ptr() as c_long,
            sys::AT_SYMLINK_NOFOLLOW as c_long,
            sys::STATX_BASIC_STATS as c_long,
            &mut buf as *mut Statx as c_long,
        )
    };
    if rc < 0 {
        Err(SysErr::last("statx"))
    } else {
        Ok(buf.mode)
    }
}

/// Writes all of `chunks` at the file position (writev may stop short).
fn write_all(fd: c_int, chunks: &[(*const u8, usize)]) -> SysResult<()> {
    let mut iov: Vec<IoVec> = chunks
        .iter()
        .filter(|c| c.1 > 0)
        .map(|&(base, len)| IoVec {
            base: base as *const c_void,
            len,
        })
        .collect();
    let mut start = 0;
    while start < iov.len() {
        let end = (start + IOV_MAX).min(iov.len());
        let written = unsafe { writev(fd, iov[start..end].as_ptr(), (end - start) as c_int) };
        if written < 0 {
            let e = SysErr::last("writev");
            if e.errno == EINTR {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            // No progress on a regular file: give up instead of spinning.
            return Err(SysErr {
                errno: EIO,
                syscall: "writev",
            });
        }
        let mut left = written as usize;
        while start < iov.len() && left >= iov[start].len {
            left -= iov[start].len;
            start += 1;
        }
        if left > 0 {
            let v = &mut iov[start];
            v.base = unsafe { (v.base as *const u8).add(left) } as *const c_void;
            v.len -= left;
        }
    }
    Ok(())
}

/// Cursor over the encoded ops.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> OpResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(Fail::Malformed("ops end inside an op"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> OpResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> OpResult<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn i64(&mut self) -> OpResult<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn bytes(&mut self) -> OpResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn xattrs(&mut self) -> OpResult<Vec<(CString, &'a [u8])>> {
        let count = self.u32()?;
        let mut list = Vec::new();
        for _ in 0..count {
            let name = cstring(self.bytes()?)?;
            list.push((name, self.bytes()?));
        }
        Ok(list)
    }
}

struct Writer {
    /// The caller's fd of the layer root (never closed here).
    root: c_int,
    implicit_name: CString,
    implicit_value: Vec<u8>,
    /// Open directory fds by path below the root, with the tick of their last use.
    dirs: HashMap<Vec<u8>, (c_int, u64)>,
    tick: u64,
    /// The file an `OPEN_FILE` left open.
    file: Option<c_int>,
    closed: bool,
}

impl Writer {
    fn close_all(&mut self) {
        if let Some(fd) = self.file.take() {
            unsafe { sys::close(fd) };
        }
        for (fd, _) in self.dirs.values() {
            unsafe { sys::close(*fd) };
        }
        self.dirs.clear();
    }

    /// The fd of the directory `parts` names (the root for none), cached or
    /// opened confined; with `create`, missing directories are made `0700`
    /// with the implicit xattr. The fd belongs to the cache.
    fn dir_fd(&mut self, parts: &[&[u8]], create: bool, why: &'static str) -> OpResult<c_int> {
        if parts.is_empty() {
            return Ok(self.root);
        }
        let key = parts.join(&b'/');
        self.tick += 1;
        if let Some(entry) = self.dirs.get_mut(&key) {
            entry.1 = self.tick;
            return Ok(entry.0);
        }
        let path = cstring(&key)?;
        let fd = match openat2(self.root, &path, O_DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) if e.errno == ELOOP || e.errno == EXDEV => return Err(Fail::Unsafe(why)),
            Err(e) if e.errno != sys::ENOENT || !create => return Err(sys_fail(e, &key)),
            Err(_) => {
                let parent = self.dir_fd(&parts[..parts.len() - 1], true, why)?;
                let base = parts[parts.len() - 1];
                let name = cstring(base)?;
                check(
                    unsafe { sys::mkdirat(parent, name.as_ptr(), 0o700) },
                    "mkdirat",
                )
                .map_err(|e| sys_fail(e, base))?;
                let fd = openat2(parent, &name, O_DIRECTORY, 0).map_err(|e| sys_fail(e, base))?;
                let set = unsafe {
                    sys::fsetxattr(
                        fd,
                        self.implicit_name.as_ptr(),
                        self.implicit_value.as_ptr() as *const c_void,
                        self.implicit_value.len(),
                        0,
                    )
                };
                if let Err(e) = check(set, "fsetxattr") {
                    unsafe { sys::close(fd) };
                    return Err(sys_fail(e, base));
                }
                fd
            }
        };
        self.dirs.insert(key, (fd, self.tick));
        if self.dirs.len() > DIR_CACHE {
            // The least recently used: never one a caller holds (those were just used).
            let oldest = self
                .dirs
                .iter()
                .min_by_key(|(_, v)| v.1)
                .map(|(k, v)| (k.clone(), v.0));
            if let Some((k, old)) = oldest {
                self.dirs.remove(&k);
                unsafe { sys::close(old) };
            }
        }
        Ok(fd)
    }

    /// The parent directory of `parts` (made when missing) and the last component.
    fn parent<'p>(&mut self, parts: &[&'p [u8]]) -> OpResult<(c_int, &'p [u8])> {
        let (base, dirs) = parts
            .split_last()
            .ok_or(Fail::Malformed("the op needs a non-root path"))?;
        Ok((self.dir_fd(dirs, true, "goes through a symlink")?, base))
    }

    /// Runs `make` for a new name; an existing non-directory is replaced, a
    /// directory kept (`Ok(None)`) when `directory`, else refused.
    fn create<T>(
        &mut self,
        parent: c_int,
        base: &[u8],
        directory: bool,
        make: impl Fn(&CString) -> SysResult<T>,
    ) -> OpResult<Option<T>> {
        let name = cstring(base)?;
        match make(&name) {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.errno != EEXIST => return Err(sys_fail(e, base)),
            Err(_) => {}
        }
        let mode = lstat_mode(parent, &name).map_err(|e| sys_fail(e, base))?;
        if mode & S_IFMT == S_IFDIR {
            return if directory {
                Ok(None)
            } else {
                Err(Fail::ReplacesDir)
            };
        }
        check(
            unsafe { sys::unlinkat(parent, name.as_ptr(), 0) },
            "unlinkat",
        )
        .map_err(|e| sys_fail(e, base))?;
        make(&name).map(Some).map_err(|e| sys_fail(e, base))
    }

    fn metadata(fd: c_int, mode: u32, xattrs: &[(CString, &[u8])], mtime: i64) -> SysResult<()> {
        check(unsafe { fchmod(fd, mode) }, "fchmod")?;
        for (name, value) in xattrs {
            let rc = unsafe {
                sys::fsetxattr(
                    fd,
                    name.as_ptr(),
                    value.as_ptr() as *const c_void,
                    value.len(),
                    0,
                )
            };
            check(rc, "fsetxattr")?;
        }
        if mtime != NO_MTIME {
            let times = [
                Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
                Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
            ];
            let rc = unsafe {
                sys::syscall(
                    sys::SYS_UTIMENSAT,
                    fd as c_long,
                    0 as c_long,
                    times.as_ptr() as c_long,
                    0 as c_long,
                )
            };
            if rc < 0 {
                return Err(SysErr::last("futimens"));
            }
        }
        Ok(())
    }

    fn op(
        &mut self,
        r: &mut Reader,
        chunks: &[(*const u8, usize)],
        next: &mut usize,
    ) -> OpResult<()> {
        match r.u8()? {
            OPEN_FILE => {
                let path = r.bytes()?;
                if self.file.is_some() {
                    return Err(Fail::Malformed("OPEN_FILE while a file is open"));
                }
                let parts = components(path)?;
                let (parent, base) = self.parent(&parts)?;
                let fd = self.create(parent, base, false, |name| {
                    openat2(
                        parent,
                        name,
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                        0o600,
                    )
                })?;
                self.file = fd;
                Ok(())
            }
            WRITE => {
                let count = r.u32()? as usize;
                let fd = self
                    .file
                    .ok_or(Fail::Malformed("WRITE without an open file"))?;
                let end = next.checked_add(count).filter(|&e| e <= chunks.len());
                let end = end.ok_or(Fail::Malformed("WRITE past the last chunk"))?;
                let result = write_all(fd, &chunks[*next..end]);
                *next = end;
                result.map_err(|e| sys_fail(e, b""))
            }
            CLOSE_FILE => {
                let mode = r.u32()?;
                let mtime = r.i64()?;
                let xattrs = r.xattrs()?;
                let fd = self
                    .file
                    .take()
                    .ok_or(Fail::Malformed("CLOSE_FILE without an open file"))?;
                let result = Self::metadata(fd, mode, &xattrs, mtime);
                let closed = check(unsafe { sys::close(fd) }, "close");
                result.and(closed).map_err(|e| sys_fail(e, b""))
            }
            DIRECTORY => {
                let path = r.bytes()?;
                let mode = r.u32()?;
                let xattrs = r.xattrs()?;
                let parts = components(path)?;
                if !parts.is_empty() {
                    let (parent, base) = self.parent(&parts)?;
                    self.create(parent, base, true, |name| {
                        check(
                            unsafe { sys::mkdirat(parent, name.as_ptr(), 0o700) },
                            "mkdirat",
                        )
                    })?;
                }
                let fd = self.dir_fd(&parts, false, "goes through a symlink")?;
                Self::metadata(fd, mode, &xattrs, NO_MTIME).map_err(|e| sys_fail(e, path))
            }
            SYMLINK => {
                let path = r.bytes()?;
                let target = cstring(r.bytes()?)?;
                let parts = components(path)?;
                let (parent, base) = self.parent(&parts)?;
                // The target is data for the guest: it is never followed on the host.
                self.create(parent, base, false, |name| {
                    check(
                        unsafe { sys::symlinkat(target.as_ptr(), parent, name.as_ptr()) },
                        "symlinkat",
                    )
                })?;
                Ok(())
            }
            LINK => {
                let path = r.bytes()?;
                let target = r.bytes()?;
                let parts = components(path)?;
                let target_parts = components(target)?;
                let (target_base, target_dirs) = target_parts
                    .split_last()
                    .ok_or(Fail::Unsafe("links to the layer root"))?;
                // The new name's parent first: the target's parent then caches at most one
                // more fd, which can only evict an older one than the fd in hand.
                let (parent, base) = self.parent(&parts)?;
                let target_parent = match self.dir_fd(target_dirs, false, "links through a symlink")
                {
                    Ok(fd) => fd,
                    Err(Fail::Sys(e, p)) => return Err(Fail::LinkTarget(e, p)),
                    Err(other) => return Err(other),
                };
                let target_name = cstring(target_base)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                self.create(parent, base, false, |name| {
                    let rc = unsafe {
                        sys::linkat(
                            target_parent,
                            target_name.as_ptr(),
                            parent,
                            name.as_ptr(),
                            0,
                        )
                    };
                    check(rc, "linkat")
                })?;
                Ok(())
            }
            _ => Err(Fail::Malformed("unknown op")),
        }
    }

    /// Applies every op; on failure, the index of the failed op.
    fn apply(&mut self, ops: &[u8], chunks: &[(*const u8, usize)]) -> Result<(), (usize, Fail)> {
        if self.closed {
            return Err((
                0,
                Fail::Sys(
                    SysErr {
                        errno: EBADF,
                        syscall: "layerWriterApply",
                    },
                    Vec::new(),
                ),
            ));
        }
        let mut reader = Reader { buf: ops, pos: 0 };
        let mut next = 0;
        let mut index = 0;
        while reader.pos < ops.len() {
            self.op(&mut reader, chunks, &mut next)
                .map_err(|f| (index, f))?;
            index += 1;
        }
        if next != chunks.len() {
            return Err((
                index,
                Fail::Malformed("chunks left over after the last WRITE"),
            ));
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close_all();
    }
}

type Shared = Arc<Mutex<Writer>>;

fn lock(writer: &Shared) -> MutexGuard<'_, Writer> {
    writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

unsafe extern "C" fn finalize(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    drop(unsafe { Box::from_raw(data as *mut Shared) });
}

/// Marks this module's externals, so another external (a zstd handle) is never taken for a writer.
const TYPE_TAG: napi_type_tag = napi_type_tag {
    lower: 0x6d73_622d_6c61_7965,
    upper: 0x722d_7772_6974_6572,
};

/// The writer behind a handle, or `None` for any other value.
fn writer_of(env: Env, v: napi_value) -> Option<Shared> {
    let mut tagged = false;
    let mut data: *mut c_void = ptr::null_mut();
    if env.type_of(v) != NAPI_EXTERNAL
        || unsafe { napi_check_object_type_tag(env.0, v, &TYPE_TAG, &mut tagged) } != NAPI_OK
        || !tagged
        || unsafe { napi_get_value_external(env.0, v, &mut data) } != NAPI_OK
        || data.is_null()
    {
        return None;
    }
    // SAFETY: a tagged external's data is the `Shared` boxed in `js_writer`, alive until its finalizer.
    Some(unsafe { (*(data as *const Shared)).clone() })
}

const HANDLE: &str = "a layerWriter() handle";

/// `layerWriter(rootFd, implicitDirXattr, implicitDirValue)` → handle.
pub unsafe extern "C" fn js_writer(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let parsed = (|| {
        let root = env.fd(args.get(0), "rootFd")?;
        let name = env.cstr(args.get(1), "implicitDirXattr")?;
        let value = env.u8array(args.get(2), "implicitDirValue")?;
        Ok((root, name, value))
    })();
    let (root, implicit_name, implicit_value) = match parsed {
        Ok(v) => v,
        Err(e) => return env.throw(env.arg_error(e)),
    };
    let writer = Writer {
        root,
        implicit_name,
        implicit_value,
        dirs: HashMap::new(),
        tick: 0,
        file: None,
        closed: false,
    };
    let data = Box::into_raw(Box::new(Arc::new(Mutex::new(writer))));
    let Some(handle) = env.external(data as *mut c_void, finalize) else {
        drop(unsafe { Box::from_raw(data) });
        return env.throw(env.internal_error("napi_create_external failed"));
    };
    // On failure the external is garbage already: its finalizer frees the writer.
    if unsafe { napi_type_tag_object(env.0, handle, &TYPE_TAG) } != NAPI_OK {
        return env.throw(env.internal_error("napi_type_tag_object failed"));
    }
    handle
}

/// `layerWriterClose(handle)`.
pub unsafe extern "C" fn js_close(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let Some(writer) = writer_of(env, args.get(0)) else {
        return env.throw(env.arg_error(env.type_err(args.get(0), "handle", HANDLE)));
    };
    let mut w = lock(&writer);
    w.close_all();
    w.closed = true;
    env.undefined()
}

/// One `layerWriterApply` call, owned by its async work.
struct Batch {
    writer: Shared,
    ops: Vec<u8>,
    /// Pointers into the `chunks` buffers, kept alive by `refs`.
    chunks: Vec<(*const u8, usize)>,
    refs: Vec<napi_ref>,
    result: Option<Result<(), (usize, Fail)>>,
    deferred: napi_deferred,
    work: napi_async_work,
}

/// `layerWriterApply(handle, ops, chunks)` → `Promise<void>`.
pub unsafe extern "C" fn js_apply(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let Some(promised) = Promised::new(env) else {
        return ptr::null_mut();
    };
    let Promised { deferred, promise } = promised;
    let reject = |error: napi_value| promised.reject(env, error);
    let Some(writer) = writer_of(env, args.get(0)) else {
        return reject(env.arg_error(env.type_err(args.get(0), "handle", HANDLE)));
    };
    let ops = match env.u8array(args.get(1), "ops") {
        Ok(ops) => ops,
        Err(e) => return reject(env.arg_error(e)),
    };
    let list = args.get(2);
    let mut is_array = false;
    let mut count = 0u32;
    unsafe { napi_is_array(env.0, list, &mut is_array) };
    if !is_array || unsafe { napi_get_array_length(env.0, list, &mut count) } != NAPI_OK {
        return reject(env.arg_error(env.type_err(list, "chunks", "an Array of Uint8Array")));
    }
    let mut chunks = Vec::with_capacity(count as usize);
    let mut refs = Vec::with_capacity(count as usize);
    for i in 0..count {
        let mut item = ptr::null_mut();
        unsafe { napi_get_element(env.0, list, i, &mut item) };
        let mut reference = ptr::null_mut();
        match env.uint8_view(item) {
            Some(chunk)
                if unsafe { napi_create_reference(env.0, item, 1, &mut reference) } == NAPI_OK =>
            {
                chunks.push(chunk);
                refs.push(reference);
            }
            _ => {
                env.delete_references(&refs);
                return reject(env.arg_error(env.type_err(
                    item,
                    &format!("chunks[{i}]"),
                    "an instance of Uint8Array",
                )));
            }
        }
    }
    let batch = Box::into_raw(Box::new(Batch {
        writer,
        ops,
        chunks,
        refs,
        result: None,
        deferred,
        work: ptr::null_mut(),
    }));
    let queued = queue_work(
        env,
        "layerWriterApply",
        batch as *mut c_void,
        execute,
        complete,
        |work| unsafe { (*batch).work = work },
    );
    if let Err(error) = queued {
        let batch = unsafe { Box::from_raw(batch) };
        env.delete_references(&batch.refs);
        return reject(error);
    }
    promise
}

/// Threadpool side: applies the batch. Touches no napi value.
unsafe extern "C" fn execute(_env: napi_env, data: *mut c_void) {
    // SAFETY: `data` is the `Batch` of `js_apply`; only this callback uses it until `complete`.
    let batch = unsafe { &mut *(data as *mut Batch) };
    let writer = batch.writer.clone();
    let mut w = lock(&writer);
    batch.result = Some(w.apply(&batch.ops, &batch.chunks));
}

fn fail_to_js(env: Env, index: usize, fail: Fail) -> napi_value {
    let err = match fail {
        Fail::Sys(e, path) => env.sys_error(e, (!path.is_empty()).then_some(&path[..]), None),
        Fail::LinkTarget(e, path) => {
            let err = env.sys_error(e, (!path.is_empty()).then_some(&path[..]), None);
            env.set(err, c"linkTarget", env.boolean(true));
            err
        }
        Fail::Unsafe(why) => env.coded_error("ERR_MSB_LAYER_UNSAFE", why),
        Fail::ReplacesDir => env.coded_error(
            "ERR_MSB_LAYER_REPLACES_DIR",
            "a non-directory entry replaces a directory",
        ),
        Fail::Malformed(why) => env.coded_error(
            "ERR_INVALID_ARG_VALUE",
            &format!("layerWriterApply: malformed ops: {why}"),
        ),
    };
    env.set(err, c"index", env.double(index as f64));
    err
}

/// JS thread side: releases the chunks and settles the promise.
unsafe extern "C" fn complete(env: napi_env, status: napi_status, data: *mut c_void) {
    let env = Env(env);
    // SAFETY: reclaims the box leaked in `js_apply`; called exactly once.
    let batch = unsafe { Box::from_raw(data as *mut Batch) };
    unsafe { napi_delete_async_work(env.0, batch.work) };
    env.delete_references(&batch.refs);
    let outcome = match batch.result {
        Some(Ok(())) => Ok(env.undefined()),
        Some(Err((index, fail))) => Err(fail_to_js(env, index, fail)),
        None => Err(not_run_error(env, status)),
    };
    settle(env, batch.deferred, outcome);
}
