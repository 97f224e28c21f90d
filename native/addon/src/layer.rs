//! A layer unpacker: reads an image layer's tar (through libarchive, see
//! [`crate::tar`]) and makes its files, directories, symlinks and hard links
//! below one directory, on a thread of its own, while the JS thread
//! downloads and decompresses the next bytes. Used by `@msb/oci`.
//!
//! Confinement: a name that is absolute or has a `..` component is refused
//! before any call; every directory is opened from the root fd with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`,
//! so a symlink unpacked earlier is never walked through; the final
//! component is made with `O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`,
//! `symlinkat` or `linkat` (none follows it).
//!
//! Unprivileged form (DESIGN §3): an entry's owner, mode and device number
//! go into the override xattr (the 20-byte value `@msb/fs`'s
//! `encodeOverrideStat` makes); device nodes and FIFOs become empty regular
//! files; host modes keep the permission bits plus owner read/write (owner
//! rwx for directories), never set-id bits; PAX xattrs keep `user.*`, move
//! `trusted.*` / `security.*` under `user.msb.` and drop the rest (and any
//! `user.msb.*`). Whiteouts are the empty files they are in the tar.
//! Directories the entries imply but do not list are made root-owned 0755.
//!
//! A new name that exists replaces it, as tar does: a non-directory is
//! unlinked first; a directory stays for a directory entry and is an error
//! (`ERR_MSB_LAYER_REPLACES_DIR`) for anything else.
//!
//! JS API:
//! * `layerUnpacker(rootFd, overrideXattr)` → handle: gives the root tar's
//!   default metadata and starts the reading thread. `rootFd` stays the
//!   caller's: close it after `layerUnpackerEnd` settles.
//! * `layerUnpackerWrite(handle, chunk)` → `Promise<boolean>`: queues the tar
//!   bytes once fewer than 8 MiB are queued. They are read in place, by
//!   reference, so `chunk` must not change until `layerUnpackerEnd` settles.
//!   `false`: the reader has stopped (the archive ended or failed) and took
//!   nothing.
//! * `layerUnpackerEnd(handle, abort)` → `Promise<void>`: no more bytes
//!   (`abort`: stop at once); waits for the thread, so nothing is written
//!   after it settles. Rejects with the failure: `ERR_MSB_LAYER_UNSAFE`,
//!   `ERR_MSB_LAYER_REPLACES_DIR`, `ERR_MSB_LAYER_ENTRY` (a header msb
//!   cannot store), `ERR_MSB_LAYER_TAR` (libarchive's reason), or a system
//!   error (`linkTarget: true` when a hard link's target is missing); `entry`
//!   names the entry when there is one.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString, c_int, c_long, c_void};
use std::ptr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::{SysErr, SysResult};
use crate::napi::*;
use crate::open;
use crate::sys::{self, OpenHow, Statx, Timespec};
use crate::tar::{self, Archive, Entry, Utf8Locale};
use crate::value::{Args, Env};
use crate::work::{Promised, not_run_error, queue_work, settle};

unsafe extern "C" {
    fn fchmod(fd: c_int, mode: u32) -> c_int;
    fn pwrite(fd: c_int, buf: *const c_void, count: usize, offset: i64) -> isize;
    fn ftruncate(fd: c_int, length: i64) -> c_int;
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
const EEXIST: i32 = 17;
const EXDEV: i32 = 18;
const ELOOP: i32 = 40;
/// Directory fds kept open: a tar lists a directory's entries together.
const DIR_CACHE: usize = 64;
/// Tar bytes queued for the reader before a write waits.
const QUEUED_MAX: usize = 8 << 20;
/// `@msb/fs`'s override-stat format: u8 version, three zero bytes, u32 uid, gid, mode, rdev (LE).
const OVERRIDE_STAT_VERSION: u8 = 1;

/// Why an entry (or the archive) failed.
enum Fail {
    /// A system call failed on `path` (a name below its directory).
    Sys(SysErr, Vec<u8>),
    /// The hard link target's directory could not be opened.
    LinkTarget(SysErr, Vec<u8>),
    /// The entry would land outside the root (the reason).
    Unsafe(String),
    /// A non-directory would replace a directory.
    ReplacesDir,
    /// The header holds what msb cannot store (an owner beyond u32).
    Invalid(String),
    /// libarchive's reason: a malformed or truncated archive.
    Tar(String),
}

type OpResult<T> = Result<T, Fail>;

/// A failure and the entry it is about (empty for none).
struct Failure {
    entry: Vec<u8>,
    fail: Fail,
}

fn sys_fail(e: SysErr, path: &[u8]) -> Fail {
    Fail::Sys(e, path.to_vec())
}

fn unsafe_entry(why: &str) -> Fail {
    Fail::Unsafe(why.into())
}

fn cstring(bytes: &[u8]) -> OpResult<CString> {
    // Names come from C strings: a NUL cannot be in one.
    CString::new(bytes).map_err(|_| Fail::Invalid("a name contains a NUL byte".into()))
}

/// The components of an entry name: absolute names and `..` are refused,
/// empty and `.` components dropped (`./a//b` is `a/b`).
fn components(path: &[u8]) -> OpResult<Vec<&[u8]>> {
    if path.first() == Some(&b'/') {
        return Err(unsafe_entry("has an absolute path"));
    }
    let mut parts = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry("has a '..' component")),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// The kernel's 32-bit `new_encode_dev` (as `@msb/fs`'s `makedev`): 12 bits of major, 20 of minor.
fn makedev(major: u64, minor: u64) -> u32 {
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & 0xfff00) << 12)) as u32
}

fn override_stat(uid: u32, gid: u32, mode: u32, rdev: u32) -> Vec<u8> {
    let mut value = vec![OVERRIDE_STAT_VERSION, 0, 0, 0];
    for field in [uid, gid, mode, rdev] {
        value.extend_from_slice(&field.to_le_bytes());
    }
    value
}

/// The host name of an image xattr, as PassthroughFs maps them (DESIGN §3);
/// `None` for one the host does not keep. `user.msb.*` is msb's own and never
/// taken from an image.
fn host_xattr(name: &CStr) -> Option<CString> {
    let bytes = name.to_bytes();
    if bytes.starts_with(b"user.msb.") {
        None
    } else if bytes.starts_with(b"user.") {
        Some(name.to_owned())
    } else if bytes.starts_with(b"trusted.") || bytes.starts_with(b"security.") {
        CString::new([b"user.msb.", bytes].concat()).ok()
    } else {
        None
    }
}

/// The host mode of an entry of type `kind`: its permission bits plus owner
/// read/write (owner rwx for a directory), never set-id or sticky.
fn host_mode(entry: &Entry, kind: u32) -> u32 {
    let owner = if kind == tar::AE_IFDIR { 0o700 } else { 0o600 };
    (entry.perm() & 0o777) | owner
}

/// The process umask as `/proc/self/status` says it (reading it with
/// umask(2) would change it for a moment under other threads); all bits when
/// it cannot be read, so every mode is set explicitly.
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
        })
        .unwrap_or(0o777)
}

fn id(value: i64, what: &str) -> OpResult<u32> {
    u32::try_from(value).map_err(|_| Fail::Invalid(format!("{what} {value} is not a u32")))
}

/// An fd closed when dropped (on an error path); [`File::close`] reports the close.
struct File(c_int);

impl File {
    fn close(self) -> SysResult<()> {
        let fd = self.0;
        std::mem::forget(self);
        check(unsafe { sys::close(fd) }, "close")
    }
}

impl Drop for File {
    fn drop(&mut self) {
        unsafe { sys::close(self.0) };
    }
}

/// Writes all of `bytes` at `offset` (pwrite may stop short).
fn pwrite_all(fd: c_int, mut bytes: &[u8], mut offset: i64) -> SysResult<()> {
    while !bytes.is_empty() {
        let written = unsafe { pwrite(fd, bytes.as_ptr() as *const c_void, bytes.len(), offset) };
        if written < 0 {
            let e = SysErr::last("pwrite");
            if e.errno == EINTR {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            // No progress on a regular file: give up instead of spinning.
            return Err(SysErr {
                errno: EIO,
                syscall: "pwrite",
            });
        }
        bytes = &bytes[written as usize..];
        offset += written as i64;
    }
    Ok(())
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

struct Writer {
    /// The caller's fd of the layer root (never closed here).
    root: c_int,
    /// The override xattr's name, and its value for an implicit directory.
    override_name: CString,
    implicit_value: Vec<u8>,
    /// Open directory fds by path below the root, with the tick of their last use.
    dirs: HashMap<Vec<u8>, (c_int, u64)>,
    tick: u64,
    /// The process umask (all bits when unknown), which a new file's mode goes through.
    umask: u32,
}

impl Writer {
    fn close_all(&mut self) {
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
            Err(e) if e.errno == ELOOP || e.errno == EXDEV => return Err(unsafe_entry(why)),
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
                        self.override_name.as_ptr(),
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

    /// The parent directory of `parts` (made when missing) and the last
    /// component; `what` names the entry kind for the layer root.
    fn parent<'p>(&mut self, parts: &[&'p [u8]], what: &str) -> OpResult<(c_int, &'p [u8])> {
        let (base, dirs) = parts
            .split_last()
            .ok_or_else(|| Fail::Unsafe(format!("names the layer root as {what}")))?;
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

    /// Sets `mode` (unless `None`: the fd has it), the xattrs and the mtime.
    fn metadata(
        fd: c_int,
        mode: Option<u32>,
        xattrs: &[(CString, &[u8])],
        mtime: Option<(i64, i64)>,
    ) -> SysResult<()> {
        if let Some(mode) = mode {
            check(unsafe { fchmod(fd, mode) }, "fchmod")?;
        }
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
        if let Some((tv_sec, tv_nsec)) = mtime {
            let times = [Timespec { tv_sec, tv_nsec }, Timespec { tv_sec, tv_nsec }];
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

    /// Sets an entry's host `mode` (unless `None`), its override (type
    /// `kind`, device `rdev`), its image xattrs and (when given) its mtime on `fd`.
    fn entry_metadata(
        &self,
        fd: c_int,
        entry: &Entry,
        kind: u32,
        rdev: u32,
        mode: Option<u32>,
        mtime: Option<(i64, i64)>,
    ) -> OpResult<()> {
        let perm = entry.perm();
        let stat = override_stat(
            id(entry.uid(), "uid")?,
            id(entry.gid(), "gid")?,
            kind | perm,
            rdev,
        );
        let image = entry.xattrs();
        let mut xattrs = vec![(self.override_name.clone(), &stat[..])];
        xattrs.extend(
            image
                .into_iter()
                .filter_map(|(name, value)| Some((host_xattr(name)?, value))),
        );
        Self::metadata(fd, mode, &xattrs, mtime)
            .map_err(|e| sys_fail(e, entry.path().unwrap_or_default()))
    }

    /// Makes one entry; a regular file's data is read from `archive`.
    fn entry(&mut self, archive: &mut Archive, entry: &Entry) -> OpResult<()> {
        let path = entry
            .path()
            .ok_or_else(|| Fail::Invalid("an entry has no name libarchive can read".into()))?;
        let parts = components(path)?;
        if let Some(target) = entry.hardlink() {
            return self.hardlink(&parts, target);
        }
        match entry.file_type() {
            kind @ (tar::AE_IFREG | tar::AE_IFCHR | tar::AE_IFBLK | tar::AE_IFIFO) => {
                self.file(archive, entry, &parts, kind)
            }
            tar::AE_IFDIR => self.directory(entry, &parts),
            tar::AE_IFLNK => self.symlink(&parts, entry.symlink()),
            // Sockets (which tar cannot hold anyway) carry no file.
            _ => Ok(()),
        }
    }

    /// A regular file with the entry's data; a device or FIFO as an empty one.
    fn file(
        &mut self,
        archive: &mut Archive,
        entry: &Entry,
        parts: &[&[u8]],
        kind: u32,
    ) -> OpResult<()> {
        let (parent, base) = self.parent(parts, "a file")?;
        let mode = host_mode(entry, kind);
        let created = self.create(parent, base, false, |name| {
            openat2(
                parent,
                name,
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                mode as u64,
            )
        })?;
        let file = File(created.ok_or(Fail::ReplacesDir)?);
        let rdev = if kind == tar::AE_IFCHR || kind == tar::AE_IFBLK {
            let (major, minor) = entry.rdev();
            makedev(major, minor)
        } else {
            0
        };
        if kind == tar::AE_IFREG {
            let mut end = 0i64;
            while let Some((block, offset)) = archive.data_block().map_err(Fail::Tar)? {
                pwrite_all(file.0, block, offset).map_err(|e| sys_fail(e, base))?;
                end = end.max(offset.saturating_add(block.len() as i64));
            }
            // A sparse file may end in a hole.
            if entry.size() > end {
                check(unsafe { ftruncate(file.0, entry.size()) }, "ftruncate")
                    .map_err(|e| sys_fail(e, base))?;
            }
        }
        // Created with its mode: only bits the umask took need an fchmod.
        let masked = (mode & self.umask != 0).then_some(mode);
        self.entry_metadata(file.0, entry, kind, rdev, masked, entry.mtime())?;
        file.close().map_err(|e| sys_fail(e, base))
    }

    fn directory(&mut self, entry: &Entry, parts: &[&[u8]]) -> OpResult<()> {
        if !parts.is_empty() {
            let (parent, base) = self.parent(parts, "a directory")?;
            self.create(parent, base, true, |name| {
                check(
                    unsafe { sys::mkdirat(parent, name.as_ptr(), 0o700) },
                    "mkdirat",
                )
            })?;
        }
        let fd = self.dir_fd(parts, false, "goes through a symlink")?;
        // No mtime: the entries after it in the layer change it anyway.
        let mode = host_mode(entry, tar::AE_IFDIR);
        self.entry_metadata(fd, entry, tar::AE_IFDIR, 0, Some(mode), None)
    }

    fn symlink(&mut self, parts: &[&[u8]], target: &[u8]) -> OpResult<()> {
        let (parent, base) = self.parent(parts, "a symlink")?;
        let target = cstring(target)?;
        // The target is data for the guest: it is never followed on the host.
        self.create(parent, base, false, |name| {
            check(
                unsafe { sys::symlinkat(target.as_ptr(), parent, name.as_ptr()) },
                "symlinkat",
            )
        })?;
        Ok(())
    }

    fn hardlink(&mut self, parts: &[&[u8]], target: &[u8]) -> OpResult<()> {
        let outside = || {
            Fail::Unsafe(format!(
                "links to '{}', outside the layer",
                String::from_utf8_lossy(target)
            ))
        };
        let target_parts = components(target).map_err(|_| outside())?;
        let (target_base, target_dirs) = target_parts
            .split_last()
            .ok_or_else(|| unsafe_entry("links to the layer root"))?;
        // The new name's parent first: the target's parent then caches at most one
        // more fd, which can only evict an older one than the fd in hand.
        let (parent, base) = self.parent(parts, "a hard link")?;
        let target_parent = match self.dir_fd(target_dirs, false, "links through a symlink") {
            Ok(fd) => fd,
            Err(Fail::Sys(e, p)) => return Err(Fail::LinkTarget(e, p)),
            Err(other) => return Err(other),
        };
        let target_name = cstring(target_base)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        self.create(parent, base, false, |name| {
            check(
                unsafe {
                    sys::linkat(
                        target_parent,
                        target_name.as_ptr(),
                        parent,
                        name.as_ptr(),
                        0,
                    )
                },
                "linkat",
            )
        })?;
        Ok(())
    }

    /// Makes every entry of `archive`, in order; stops at the first failure.
    fn unpack(&mut self, archive: &mut Archive) -> Result<(), Failure> {
        while let Some(entry) = archive.next_entry().map_err(|why| Failure {
            entry: Vec::new(),
            fail: Fail::Tar(why),
        })? {
            self.entry(archive, &entry).map_err(|fail| Failure {
                entry: entry.path().unwrap_or_default().to_vec(),
                fail,
            })?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// A JS chunk of tar bytes, read in place and referenced until the reader is done with it.
struct Chunk {
    bytes: *const u8,
    len: usize,
    reference: napi_ref,
}

// SAFETY: the bytes are only read, and the reference is only deleted on the JS thread.
unsafe impl Send for Chunk {}

/// Tar bytes on their way from JS to the reading thread.
#[derive(Default)]
struct Feed {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    /// Chunks the reader is done with, to release on the JS thread.
    released: Vec<Chunk>,
    /// No more bytes will come.
    ended: bool,
    /// The reader must stop at once.
    aborted: bool,
    /// The reader has stopped: it takes no more bytes.
    stopped: bool,
}

#[derive(Default)]
struct Pipe {
    feed: Mutex<Feed>,
    /// Signalled when bytes are queued or the feed ends.
    readable: Condvar,
    /// Signalled when queued bytes are taken or the reader stops.
    writable: Condvar,
}

fn lock(pipe: &Pipe) -> MutexGuard<'_, Feed> {
    pipe.feed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipe {
    /// Deletes the references of the chunks the reader is done with (on the JS thread).
    fn release(&self, env: Env) {
        let released = std::mem::take(&mut lock(self).released);
        let references: Vec<napi_ref> = released.iter().map(|c| c.reference).collect();
        env.delete_references(&references);
    }
}

/// The archive's side of the pipe: the chunk it reads from now (libarchive
/// may point into it until it asks for the next).
struct PipeSource {
    pipe: Arc<Pipe>,
    current: Option<Chunk>,
}

impl tar::Source for PipeSource {
    fn next(&mut self) -> Result<&[u8], &'static CStr> {
        let mut feed = lock(&self.pipe);
        if let Some(done) = self.current.take() {
            feed.released.push(done);
        }
        loop {
            if feed.aborted {
                return Err(c"unpacking was aborted");
            }
            if let Some(chunk) = feed.chunks.pop_front() {
                feed.bytes -= chunk.len;
                drop(feed);
                self.pipe.writable.notify_all();
                // SAFETY: the chunk's reference keeps its bytes alive and unchanged until released.
                let bytes = unsafe { std::slice::from_raw_parts(chunk.bytes, chunk.len) };
                self.current = Some(chunk);
                return Ok(bytes);
            }
            if feed.ended {
                return Ok(&[]);
            }
            feed = self
                .pipe
                .readable
                .wait(feed)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// The reading thread: unpacks what comes through `pipe`, then marks it
/// stopped and releases every chunk.
fn read_layer(mut writer: Writer, pipe: Arc<Pipe>) -> Result<(), Failure> {
    let layer_fail = |fail| Failure {
        entry: Vec::new(),
        fail,
    };
    let mut source = PipeSource {
        pipe: pipe.clone(),
        current: None,
    };
    let result = (|| {
        let _utf8 = Utf8Locale::enter()
            .ok_or_else(|| layer_fail(Fail::Tar("the C library has no C.UTF-8 locale".into())))?;
        let mut archive = Archive::open(&mut source).map_err(|why| layer_fail(Fail::Tar(why)))?;
        writer.unpack(&mut archive)
    })();
    writer.close_all();
    let mut feed = lock(&pipe);
    // libarchive may take a read error while it probes the format for an empty archive.
    let result = result.and_then(|()| {
        if feed.aborted {
            Err(layer_fail(Fail::Tar("unpacking was aborted".into())))
        } else {
            Ok(())
        }
    });
    feed.stopped = true;
    let queued: Vec<Chunk> = feed.chunks.drain(..).collect();
    feed.released
        .extend(source.current.take().into_iter().chain(queued));
    feed.bytes = 0;
    drop(feed);
    pipe.writable.notify_all();
    result
}

/// A handle's data.
struct Unpacker {
    pipe: Arc<Pipe>,
    /// The reading thread, until `layerUnpackerEnd` (or the finalizer) joins it.
    thread: Mutex<Option<JoinHandle<Result<(), Failure>>>>,
}

impl Unpacker {
    /// Ends the feed (aborting the reader when `abort`) and waits for the thread;
    /// `None` when it was joined before.
    fn end(&self, abort: bool) -> Option<Result<(), Failure>> {
        let mut feed = lock(&self.pipe);
        feed.ended = true;
        feed.aborted |= abort;
        drop(feed);
        self.pipe.readable.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()?;
        Some(thread.join().unwrap_or_else(|_| {
            Err(Failure {
                entry: Vec::new(),
                fail: Fail::Tar("the layer reading thread panicked".into()),
            })
        }))
    }

    /// Queues `chunk` once there is room; gives it back when the reader takes no more.
    fn write(&self, chunk: Chunk) -> Result<(), Chunk> {
        let mut feed = lock(&self.pipe);
        while feed.bytes >= QUEUED_MAX && !feed.stopped && !feed.aborted {
            feed = self
                .pipe
                .writable
                .wait(feed)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if feed.stopped || feed.aborted || feed.ended {
            return Err(chunk);
        }
        feed.bytes += chunk.len;
        feed.chunks.push_back(chunk);
        drop(feed);
        self.pipe.readable.notify_all();
        Ok(())
    }
}

type Shared = Arc<Unpacker>;

unsafe extern "C" fn finalize(env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    let unpacker = unsafe { Box::from_raw(data as *mut Shared) };
    // A handle dropped without `layerUnpackerEnd`: stop the thread before the caller's root fd goes.
    unpacker.end(true);
    unpacker.pipe.release(Env(env));
}

/// Marks this module's externals, so another external (a zstd handle) is never taken for an unpacker.
const TYPE_TAG: napi_type_tag = napi_type_tag {
    lower: 0x6d73_622d_6c61_7965,
    upper: 0x722d_756e_7061_636b,
};

/// The unpacker behind a handle, or `None` for any other value.
fn unpacker_of(env: Env, v: napi_value) -> Option<Shared> {
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
    // SAFETY: a tagged external's data is the `Shared` boxed in `js_unpacker`, alive until its finalizer.
    Some(unsafe { (*(data as *const Shared)).clone() })
}

const HANDLE: &str = "a layerUnpacker() handle";

/// `layerUnpacker(rootFd, overrideXattr)` → handle.
pub unsafe extern "C" fn js_unpacker(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    let parsed = (|| {
        Ok((
            env.fd(args.get(0), "rootFd")?,
            env.cstr(args.get(1), "overrideXattr")?,
        ))
    })();
    let (root, override_name) = match parsed {
        Ok(v) => v,
        Err(e) => return env.throw(env.arg_error(e)),
    };
    let writer = Writer {
        root,
        override_name,
        // Root-owned 0755, as tar makes a directory it has no entry for.
        implicit_value: override_stat(0, 0, tar::AE_IFDIR | 0o755, 0),
        dirs: HashMap::new(),
        tick: 0,
        umask: process_umask(),
    };
    // The layer root as tar makes it when the archive has no "./" entry to say otherwise.
    let root_value: &[u8] = &writer.implicit_value;
    if let Err(e) = Writer::metadata(
        root,
        Some(0o755),
        &[(writer.override_name.clone(), root_value)],
        None,
    ) {
        return env.throw(env.sys_error(e, None, None));
    }
    let pipe = Arc::new(Pipe::default());
    let reader_pipe = pipe.clone();
    let thread = std::thread::Builder::new()
        .name("msb-layer".into())
        .spawn(move || read_layer(writer, reader_pipe));
    let thread = match thread {
        Ok(thread) => thread,
        Err(e) => {
            return env.throw(env.coded_error(
                "ERR_MSB_LAYER_THREAD",
                &format!("cannot start the layer thread: {e}"),
            ));
        }
    };
    let unpacker = Arc::new(Unpacker {
        pipe,
        thread: Mutex::new(Some(thread)),
    });
    let data = Box::into_raw(Box::new(unpacker));
    let Some(handle) = env.external(data as *mut c_void, finalize) else {
        let unpacker = unsafe { Box::from_raw(data) };
        unpacker.end(true);
        return env.throw(env.internal_error("napi_create_external failed"));
    };
    // On failure the external is garbage already: its finalizer stops the thread.
    if unsafe { napi_type_tag_object(env.0, handle, &TYPE_TAG) } != NAPI_OK {
        return env.throw(env.internal_error("napi_type_tag_object failed"));
    }
    handle
}

/// What one async call of a handle does on the threadpool.
enum Job {
    /// Queue the chunk; it stays here when the reader takes no more.
    Write(Option<Chunk>),
    End {
        abort: bool,
    },
}

enum Done {
    Written(bool),
    Ended(Option<Result<(), Failure>>),
}

/// One `layerUnpackerWrite` / `layerUnpackerEnd` call, owned by its async work.
struct Call {
    unpacker: Shared,
    job: Job,
    done: Option<Done>,
    deferred: napi_deferred,
    work: napi_async_work,
}

/// Queues `job` for the handle in argument 0; the promise settles in `complete`.
fn queue(
    env: Env,
    args: &Args,
    name: &str,
    job: impl FnOnce(Env) -> Result<Job, napi_value>,
) -> napi_value {
    let Some(promised) = Promised::new(env) else {
        return ptr::null_mut();
    };
    let Promised { deferred, promise } = promised;
    let Some(unpacker) = unpacker_of(env, args.get(0)) else {
        return promised.reject(
            env,
            env.arg_error(env.type_err(args.get(0), "handle", HANDLE)),
        );
    };
    let job = match job(env) {
        Ok(job) => job,
        Err(error) => return promised.reject(env, error),
    };
    let call = Box::into_raw(Box::new(Call {
        unpacker,
        job,
        done: None,
        deferred,
        work: ptr::null_mut(),
    }));
    if let Err(error) = queue_work(
        env,
        name,
        call as *mut c_void,
        execute,
        complete,
        |work| unsafe { (*call).work = work },
    ) {
        let call = unsafe { Box::from_raw(call) };
        release_unqueued(env, call.job);
        return promised.reject(env, error);
    }
    promise
}

/// Deletes the reference of a chunk that was never queued.
fn release_unqueued(env: Env, job: Job) {
    if let Job::Write(Some(chunk)) = job {
        env.delete_references(&[chunk.reference]);
    }
}

/// `layerUnpackerWrite(handle, chunk)` → `Promise<boolean>`.
pub unsafe extern "C" fn js_write(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    queue(env, &args, "layerUnpackerWrite", |env| {
        let item = args.get(1);
        let mut reference = ptr::null_mut();
        match env.uint8_view(item) {
            // An empty chunk would read as the end of the archive: there is nothing to queue.
            Some((_, 0)) => Ok(Job::Write(None)),
            Some((bytes, len))
                if unsafe { napi_create_reference(env.0, item, 1, &mut reference) } == NAPI_OK =>
            {
                Ok(Job::Write(Some(Chunk {
                    bytes,
                    len,
                    reference,
                })))
            }
            _ => Err(env.arg_error(env.type_err(item, "chunk", "an instance of Uint8Array"))),
        }
    })
}

/// `layerUnpackerEnd(handle, abort)` → `Promise<void>`.
pub unsafe extern "C" fn js_end(env: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env(env);
    let args = unsafe { Args::read(env.0, info) };
    queue(env, &args, "layerUnpackerEnd", |env| {
        let mut abort = false;
        if unsafe { napi_get_value_bool(env.0, args.get(1), &mut abort) } != NAPI_OK {
            return Err(env.arg_error(env.type_err(args.get(1), "abort", "of type boolean")));
        }
        Ok(Job::End { abort })
    })
}

/// Threadpool side: runs the job. Touches no napi value.
unsafe extern "C" fn execute(_env: napi_env, data: *mut c_void) {
    // SAFETY: `data` is the `Call` of `queue`; only this callback uses it until `complete`.
    let call = unsafe { &mut *(data as *mut Call) };
    call.done = Some(match &mut call.job {
        Job::Write(chunk) => Done::Written(match chunk.take() {
            None => true,
            Some(taken) => call
                .unpacker
                .write(taken)
                .map_err(|refused| *chunk = Some(refused))
                .is_ok(),
        }),
        Job::End { abort } => Done::Ended(call.unpacker.end(*abort)),
    });
}

fn failure_to_js(env: Env, failure: Failure) -> napi_value {
    let err = match failure.fail {
        Fail::Sys(e, path) => env.sys_error(e, (!path.is_empty()).then_some(&path[..]), None),
        Fail::LinkTarget(e, path) => {
            let err = env.sys_error(e, (!path.is_empty()).then_some(&path[..]), None);
            env.set(err, c"linkTarget", env.boolean(true));
            err
        }
        Fail::Unsafe(why) => env.coded_error("ERR_MSB_LAYER_UNSAFE", &why),
        Fail::ReplacesDir => env.coded_error(
            "ERR_MSB_LAYER_REPLACES_DIR",
            "a non-directory entry replaces a directory",
        ),
        Fail::Invalid(why) => env.coded_error("ERR_MSB_LAYER_ENTRY", &why),
        Fail::Tar(why) => env.coded_error("ERR_MSB_LAYER_TAR", &why),
    };
    if !failure.entry.is_empty() {
        env.set(
            err,
            c"entry",
            env.string(&String::from_utf8_lossy(&failure.entry)),
        );
    }
    err
}

/// JS thread side: releases the chunks the reader is done with (and one it
/// refused) and settles the promise.
unsafe extern "C" fn complete(env: napi_env, status: napi_status, data: *mut c_void) {
    let env = Env(env);
    // SAFETY: reclaims the box leaked in `queue`; called exactly once.
    let mut call = unsafe { Box::from_raw(data as *mut Call) };
    unsafe { napi_delete_async_work(env.0, call.work) };
    call.unpacker.pipe.release(env);
    release_unqueued(
        env,
        std::mem::replace(&mut call.job, Job::End { abort: false }),
    );
    let outcome = match call.done {
        Some(Done::Written(taken)) => Ok(env.boolean(taken)),
        Some(Done::Ended(None | Some(Ok(())))) => Ok(env.undefined()),
        Some(Done::Ended(Some(Err(failure)))) => Err(failure_to_js(env, failure)),
        None => Err(not_run_error(env, status)),
    };
    settle(env, call.deferred, outcome);
}
