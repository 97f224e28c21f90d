//! Reading tar archives through the system libarchive (`libarchive-dev`),
//! declared by hand like everything else here: ustar, PAX (long names,
//! `SCHILY.xattr.*` values byte for byte) and GNU (long names, sparse files)
//! as libarchive parses them. Only its reader is used: it never touches the
//! filesystem; [`crate::layer`] makes every system call.
//!
//! The bytes come from a [`Source`] the archive pulls from on its own thread.
//! Names come back as the archive holds them: raw bytes for ustar and GNU
//! names, UTF-8 for PAX ones — libarchive converts PAX names to the thread's
//! locale charset, so [`Utf8Locale`] makes that UTF-8 on the reading thread.

use std::ffi::{CStr, c_char, c_int, c_long, c_void};
use std::ptr;

#[repr(C)]
struct RawArchive {
    _private: [u8; 0],
}

#[repr(C)]
struct RawEntry {
    _private: [u8; 0],
}

type ReadCallback = unsafe extern "C" fn(*mut RawArchive, *mut c_void, *mut *const c_void) -> isize;

#[link(name = "archive")]
unsafe extern "C" {
    fn archive_read_new() -> *mut RawArchive;
    fn archive_read_support_format_tar(a: *mut RawArchive) -> c_int;
    fn archive_read_support_format_empty(a: *mut RawArchive) -> c_int;
    fn archive_read_open(
        a: *mut RawArchive,
        client: *mut c_void,
        open: *const c_void,
        read: ReadCallback,
        close: *const c_void,
    ) -> c_int;
    fn archive_read_next_header(a: *mut RawArchive, entry: *mut *mut RawEntry) -> c_int;
    fn archive_read_data_block(
        a: *mut RawArchive,
        buf: *mut *const c_void,
        size: *mut usize,
        offset: *mut i64,
    ) -> c_int;
    fn archive_read_free(a: *mut RawArchive) -> c_int;
    fn archive_error_string(a: *mut RawArchive) -> *const c_char;
    fn archive_set_error(a: *mut RawArchive, errno: c_int, fmt: *const c_char, ...);

    fn archive_entry_pathname(e: *mut RawEntry) -> *const c_char;
    fn archive_entry_hardlink(e: *mut RawEntry) -> *const c_char;
    fn archive_entry_symlink(e: *mut RawEntry) -> *const c_char;
    fn archive_entry_filetype(e: *mut RawEntry) -> u32;
    fn archive_entry_perm(e: *mut RawEntry) -> u32;
    fn archive_entry_uid(e: *mut RawEntry) -> i64;
    fn archive_entry_gid(e: *mut RawEntry) -> i64;
    fn archive_entry_rdevmajor(e: *mut RawEntry) -> u64;
    fn archive_entry_rdevminor(e: *mut RawEntry) -> u64;
    fn archive_entry_mtime(e: *mut RawEntry) -> i64;
    fn archive_entry_mtime_nsec(e: *mut RawEntry) -> c_long;
    fn archive_entry_mtime_is_set(e: *mut RawEntry) -> c_int;
    fn archive_entry_size(e: *mut RawEntry) -> i64;
    fn archive_entry_xattr_reset(e: *mut RawEntry) -> c_int;
    fn archive_entry_xattr_next(
        e: *mut RawEntry,
        name: *mut *const c_char,
        value: *mut *const c_void,
        size: *mut usize,
    ) -> c_int;
}

unsafe extern "C" {
    fn newlocale(mask: c_int, locale: *const c_char, base: *mut c_void) -> *mut c_void;
    fn uselocale(locale: *mut c_void) -> *mut c_void;
    fn freelocale(locale: *mut c_void);
}

const ARCHIVE_OK: c_int = 0;
const ARCHIVE_EOF: c_int = 1;
const ARCHIVE_WARN: c_int = -20;
const LC_CTYPE_MASK: c_int = 1;
const LC_GLOBAL_LOCALE: *mut c_void = -1isize as *mut c_void;

pub const AE_IFREG: u32 = 0o100000;
pub const AE_IFDIR: u32 = 0o040000;
pub const AE_IFLNK: u32 = 0o120000;
pub const AE_IFCHR: u32 = 0o020000;
pub const AE_IFBLK: u32 = 0o060000;
pub const AE_IFIFO: u32 = 0o010000;

/// Where an archive's bytes come from, pulled on the reading thread.
pub trait Source {
    /// The next bytes (valid until the next call); empty at the end; `Err`
    /// with a reason to stop the archive.
    fn next(&mut self) -> Result<&[u8], &'static CStr>;
}

/// The C locale with a UTF-8 charset on the calling thread while it lives.
pub struct Utf8Locale(*mut c_void);

impl Utf8Locale {
    /// `None` when the C library has no C.UTF-8 locale.
    pub fn enter() -> Option<Utf8Locale> {
        let locale = unsafe { newlocale(LC_CTYPE_MASK, c"C.UTF-8".as_ptr(), ptr::null_mut()) };
        if locale.is_null() {
            return None;
        }
        unsafe { uselocale(locale) };
        Some(Utf8Locale(locale))
    }
}

impl Drop for Utf8Locale {
    fn drop(&mut self) {
        unsafe {
            uselocale(LC_GLOBAL_LOCALE);
            freelocale(self.0);
        }
    }
}

/// A tar archive being read from a [`Source`] (the source outlives it).
pub struct Archive<'s> {
    raw: *mut RawArchive,
    /// What the read callback reads through; freed after the archive.
    client: *mut Client<'s>,
}

/// The source of one archive as the read callback sees it.
struct Client<'s> {
    source: &'s mut dyn Source,
}

unsafe extern "C" fn read_callback(
    a: *mut RawArchive,
    client: *mut c_void,
    buffer: *mut *const c_void,
) -> isize {
    // SAFETY: `client` is the boxed `Client` of `Archive::open`, alive as long as the archive.
    let client = unsafe { &mut *(client as *mut Client) };
    match client.source.next() {
        Ok(bytes) => {
            unsafe { *buffer = bytes.as_ptr() as *const c_void };
            bytes.len() as isize
        }
        Err(why) => {
            unsafe { archive_set_error(a, 0, c"%s".as_ptr(), why.as_ptr()) };
            -1
        }
    }
}

/// One header as libarchive parsed it; borrowed from the archive until the next header.
pub struct Entry {
    raw: *mut RawEntry,
}

fn c_bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: libarchive returns NUL-terminated strings owned by the entry.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

impl Entry {
    /// The name; `None` when libarchive has none to give.
    pub fn path(&self) -> Option<&[u8]> {
        c_bytes(unsafe { archive_entry_pathname(self.raw) })
    }
    /// The target of a hard link entry.
    pub fn hardlink(&self) -> Option<&[u8]> {
        c_bytes(unsafe { archive_entry_hardlink(self.raw) })
    }
    pub fn symlink(&self) -> &[u8] {
        c_bytes(unsafe { archive_entry_symlink(self.raw) }).unwrap_or_default()
    }
    /// The `AE_IF*` type bits.
    pub fn file_type(&self) -> u32 {
        unsafe { archive_entry_filetype(self.raw) }
    }
    /// Permission bits with set-id and sticky.
    pub fn perm(&self) -> u32 {
        (unsafe { archive_entry_perm(self.raw) }) & 0o7777
    }
    pub fn uid(&self) -> i64 {
        unsafe { archive_entry_uid(self.raw) }
    }
    pub fn gid(&self) -> i64 {
        unsafe { archive_entry_gid(self.raw) }
    }
    pub fn rdev(&self) -> (u64, u64) {
        unsafe {
            (
                archive_entry_rdevmajor(self.raw),
                archive_entry_rdevminor(self.raw),
            )
        }
    }
    /// Seconds and nanoseconds, when the header has a time.
    pub fn mtime(&self) -> Option<(i64, i64)> {
        (unsafe { archive_entry_mtime_is_set(self.raw) } != 0).then(|| unsafe {
            (
                archive_entry_mtime(self.raw),
                archive_entry_mtime_nsec(self.raw) as i64,
            )
        })
    }
    pub fn size(&self) -> i64 {
        unsafe { archive_entry_size(self.raw) }
    }
    /// The extended attributes, values byte for byte.
    pub fn xattrs(&self) -> Vec<(&CStr, &[u8])> {
        let mut list = Vec::new();
        unsafe { archive_entry_xattr_reset(self.raw) };
        loop {
            let mut name = ptr::null();
            let mut value = ptr::null();
            let mut size = 0usize;
            let rc =
                unsafe { archive_entry_xattr_next(self.raw, &mut name, &mut value, &mut size) };
            if rc != ARCHIVE_OK || name.is_null() {
                return list;
            }
            let value: &[u8] = if value.is_null() || size == 0 {
                &[]
            } else {
                // SAFETY: libarchive keeps `size` bytes at `value` with the entry.
                unsafe { std::slice::from_raw_parts(value as *const u8, size) }
            };
            list.push((unsafe { CStr::from_ptr(name) }, value));
        }
    }
}

impl<'s> Archive<'s> {
    /// Starts reading a tar (or empty) archive from `source`; `Err` with libarchive's reason.
    pub fn open(source: &'s mut dyn Source) -> Result<Archive<'s>, String> {
        let raw = unsafe { archive_read_new() };
        if raw.is_null() {
            return Err("libarchive: out of memory".into());
        }
        let archive = Archive {
            raw,
            client: Box::into_raw(Box::new(Client { source })),
        };
        let rc = unsafe {
            archive_read_support_format_tar(raw);
            archive_read_support_format_empty(raw);
            archive_read_open(
                raw,
                archive.client as *mut c_void,
                ptr::null(),
                read_callback,
                ptr::null(),
            )
        };
        if rc != ARCHIVE_OK {
            return Err(archive.error());
        }
        Ok(archive)
    }

    fn error(&self) -> String {
        c_bytes(unsafe { archive_error_string(self.raw) })
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|| "unknown libarchive error".into())
    }

    /// The next header; `Ok(None)` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, String> {
        let mut raw = ptr::null_mut();
        match unsafe { archive_read_next_header(self.raw, &mut raw) } {
            ARCHIVE_EOF => Ok(None),
            // A warning (a name not convertible to the locale) still comes with a whole entry.
            ARCHIVE_OK | ARCHIVE_WARN if !raw.is_null() => Ok(Some(Entry { raw })),
            _ => Err(self.error()),
        }
    }

    /// The current entry's next data block and its offset in the file; `Ok(None)` after the last.
    pub fn data_block(&mut self) -> Result<Option<(&[u8], i64)>, String> {
        let mut buf = ptr::null();
        let mut size = 0usize;
        let mut offset = 0i64;
        match unsafe { archive_read_data_block(self.raw, &mut buf, &mut size, &mut offset) } {
            ARCHIVE_EOF => Ok(None),
            ARCHIVE_OK | ARCHIVE_WARN => {
                let bytes: &[u8] = if buf.is_null() || size == 0 {
                    &[]
                } else {
                    // SAFETY: libarchive keeps the block until the next read call.
                    unsafe { std::slice::from_raw_parts(buf as *const u8, size) }
                };
                Ok(Some((bytes, offset)))
            }
            _ => Err(self.error()),
        }
    }
}

impl Drop for Archive<'_> {
    fn drop(&mut self) {
        unsafe { archive_read_free(self.raw) };
        // SAFETY: boxed in `open`; the archive that read through it is gone.
        drop(unsafe { Box::from_raw(self.client) });
    }
}
