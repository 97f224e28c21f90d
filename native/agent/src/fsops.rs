//! fs.* requests (PROTOCOL.md "Filesystem operations"), on the guest's root.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use crate::cbor::{self, Value};
use crate::conn::{self, Conn, Stream, conn, on_worker, too_many};
use crate::proto::{self, FLAG_END, MAX_CHUNK, WINDOW};
use crate::sys;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Fail = Value;

fn err_io(op: &str, path: &Path, e: &io::Error) -> Fail {
    let n = sys::io_errno(e);
    proto::error_body(
        sys::errno_name(n),
        n,
        &format!("{op} {}: {}", path.display(), sys::errno_text(n)),
        None,
    )
}

fn err_inval(message: String) -> Fail {
    proto::error_body("EINVAL", 22, &message, None)
}

fn path_arg(body: &Value, key: &str) -> Result<PathBuf, Fail> {
    let b = body
        .get(key)
        .and_then(|v| v.as_os_bytes())
        .ok_or_else(|| proto::error_body("EPROTO", 71, &format!("{key} must be a string"), None))?;
    if b.first() != Some(&b'/') || b.contains(&0) {
        return Err(err_inval(format!(
            "{key} {:?} must be an absolute path without NUL",
            String::from_utf8_lossy(b)
        )));
    }
    Ok(PathBuf::from(OsStr::from_bytes(b)))
}

fn opt_bool(body: &Value, key: &str, default: bool) -> Result<bool, Fail> {
    match body.opt(key) {
        None => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| {
            proto::error_body("EPROTO", 71, &format!("{key} must be a boolean"), None)
        }),
    }
}

fn opt_u64(body: &Value, key: &str) -> Result<Option<u64>, Fail> {
    match body.opt(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            proto::error_body(
                "EPROTO",
                71,
                &format!("{key} must be a non-negative integer"),
                None,
            )
        }),
    }
}

fn type_name(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char"
    } else {
        "block"
    }
}

fn time(sec: i64, nsec: i64) -> Value {
    Value::Array(vec![sec.into(), nsec.into()])
}

fn name_value(p: &OsStr) -> Value {
    Value::os_string(p.as_bytes())
}

// ------------------------------------------------------------------ one-shot requests

pub fn simple(t: &str, body: &Value) -> Value {
    let r = match t {
        "fs.list" => list(body),
        "fs.stat" => stat(body),
        "fs.mkdir" => mkdir(body),
        "fs.remove" => remove(body),
        "fs.rename" => rename(body),
        "fs.copy" => copy(body),
        _ => Err(proto::error_body("EBADMSG", 74, "unknown request", None)),
    };
    r.unwrap_or_else(|e| e)
}

fn list(body: &Value) -> Result<Value, Fail> {
    let path = path_arg(body, "path")?;
    let dir = fs::read_dir(&path).map_err(|e| err_io("list", &path, &e))?;
    let mut entries = Vec::new();
    for e in dir {
        let e = e.map_err(|e| err_io("list", &path, &e))?;
        let Ok(m) = e.metadata() else { continue }; // raced with a removal
        entries.push((
            e.file_name(),
            cbor::map(vec![
                ("name", name_value(&e.file_name())),
                ("type", type_name(m.file_type()).into()),
                ("size", m.size().into()),
                ("mode", (m.mode() & 0o7777).into()),
                ("mtime", time(m.mtime(), m.mtime_nsec())),
            ]),
        ));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(cbor::map(vec![
        ("t", "entries".into()),
        (
            "entries",
            Value::Array(entries.into_iter().map(|e| e.1).collect()),
        ),
    ]))
}

fn stat(body: &Value) -> Result<Value, Fail> {
    let path = path_arg(body, "path")?;
    let follow = opt_bool(body, "follow", true)?;
    let m = if follow {
        fs::metadata(&path)
    } else {
        fs::symlink_metadata(&path)
    }
    .map_err(|e| err_io("stat", &path, &e))?;
    let mut out = vec![
        ("t", Value::from("stat")),
        ("type", type_name(m.file_type()).into()),
        ("size", m.size().into()),
        ("mode", (m.mode() & 0o7777).into()),
        ("uid", m.uid().into()),
        ("gid", m.gid().into()),
        ("mtime", time(m.mtime(), m.mtime_nsec())),
        ("atime", time(m.atime(), m.atime_nsec())),
        ("ctime", time(m.ctime(), m.ctime_nsec())),
        ("nlink", m.nlink().into()),
        ("ino", m.ino().into()),
    ];
    if m.file_type().is_symlink() {
        let target = fs::read_link(&path).map_err(|e| err_io("readlink", &path, &e))?;
        out.push(("target", name_value(target.as_os_str())));
    }
    Ok(cbor::map(out))
}

fn mkdir(body: &Value) -> Result<Value, Fail> {
    let path = path_arg(body, "path")?;
    let mode = opt_u64(body, "mode")?.unwrap_or(0o755) as u32 & 0o7777;
    let parents = opt_bool(body, "parents", false)?;
    if parents && fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
        return Ok(conn::ok());
    }
    fs::DirBuilder::new()
        .recursive(parents)
        .mode(mode)
        .create(&path)
        .map_err(|e| err_io("mkdir", &path, &e))?;
    // exact mode, whatever the umask
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
    Ok(conn::ok())
}

fn remove(body: &Value) -> Result<Value, Fail> {
    let path = path_arg(body, "path")?;
    let recursive = opt_bool(body, "recursive", false)?;
    let m = fs::symlink_metadata(&path).map_err(|e| err_io("remove", &path, &e))?;
    let r = if m.is_dir() {
        if recursive {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_dir(&path)
        }
    } else {
        fs::remove_file(&path)
    };
    r.map_err(|e| err_io("remove", &path, &e))?;
    Ok(conn::ok())
}

fn rename(body: &Value) -> Result<Value, Fail> {
    let from = path_arg(body, "from")?;
    let to = path_arg(body, "to")?;
    fs::rename(&from, &to).map_err(|e| err_io("rename", &from, &e))?;
    Ok(conn::ok())
}

fn copy(body: &Value) -> Result<Value, Fail> {
    let from = path_arg(body, "from")?;
    let to = path_arg(body, "to")?;
    let recursive = opt_bool(body, "recursive", false)?;
    let m = fs::symlink_metadata(&from).map_err(|e| err_io("copy", &from, &e))?;
    if m.is_dir() {
        if !recursive {
            return Err(proto::error_body(
                "EISDIR",
                21,
                &format!(
                    "copy {}: is a directory (recursive not set)",
                    from.display()
                ),
                None,
            ));
        }
        if to.starts_with(&from) {
            return Err(err_inval(format!(
                "copy {}: cannot copy a directory into itself",
                from.display()
            )));
        }
    }
    copy_entry(&from, &to, &m)?;
    Ok(conn::ok())
}

fn copy_entry(from: &Path, to: &Path, m: &fs::Metadata) -> Result<(), Fail> {
    let ft = m.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(from).map_err(|e| err_io("readlink", from, &e))?;
        std::os::unix::fs::symlink(&target, to).map_err(|e| err_io("symlink", to, &e))?;
    } else if ft.is_dir() {
        match fs::DirBuilder::new().mode(m.mode() & 0o7777).create(to) {
            Ok(()) => {}
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && fs::metadata(to).map(|x| x.is_dir()).unwrap_or(false) => {}
            Err(e) => return Err(err_io("mkdir", to, &e)),
        }
        for e in fs::read_dir(from).map_err(|e| err_io("list", from, &e))? {
            let e = e.map_err(|e| err_io("list", from, &e))?;
            let cm = fs::symlink_metadata(e.path()).map_err(|x| err_io("stat", &e.path(), &x))?;
            copy_entry(&e.path(), &to.join(e.file_name()), &cm)?;
        }
        let _ = fs::set_permissions(to, fs::Permissions::from_mode(m.mode() & 0o7777));
    } else if ft.is_file() {
        fs::copy(from, to).map_err(|e| err_io("copy", from, &e))?;
    } else {
        return Err(err_inval(format!(
            "copy {}: cannot copy a {}",
            from.display(),
            type_name(ft)
        )));
    }
    Ok(())
}

// ------------------------------------------------------------------ fs.read

struct Window {
    sent: u64,
    acked: u64,
    cancelled: bool,
}

struct ReadStream {
    id: u32,
    w: Mutex<Window>,
    cv: Condvar,
}

impl Stream for ReadStream {
    fn on_frame(&self, _flags: u8, body: Value) {
        if body.get("t").and_then(|t| t.as_str()) == Some("ack") {
            let n = body.get("bytes").and_then(|v| v.as_u64()).unwrap_or(0);
            let mut w = lock(&self.w);
            w.acked = w.acked.saturating_add(n).min(w.sent);
            self.cv.notify_all();
        }
    }
    fn abort(&self, reply: Option<Value>) {
        lock(&self.w).cancelled = true;
        self.cv.notify_all();
        if let Some(r) = reply {
            conn().send(self.id, FLAG_END, &r);
        }
    }
}

pub fn read_request(c: &'static Conn, id: u32, body: Value) {
    let s = Arc::new(ReadStream {
        id,
        w: Mutex::new(Window {
            sent: 0,
            acked: 0,
            cancelled: false,
        }),
        cv: Condvar::new(),
    });
    if !c.register(id, s.clone()) {
        return too_many(c, id);
    }
    on_worker(c, id, move || {
        if let Err(e) = read_file(c, &s, &body) {
            c.send(id, FLAG_END, &e);
        }
    });
}

fn read_file(c: &Conn, s: &ReadStream, body: &Value) -> Result<(), Fail> {
    let path = path_arg(body, "path")?;
    let offset = opt_u64(body, "offset")?.unwrap_or(0);
    let mut remaining = opt_u64(body, "length")?.unwrap_or(u64::MAX);
    let mut f = File::open(&path).map_err(|e| err_io("read", &path, &e))?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(proto::error_body(
            "EISDIR",
            21,
            &format!("read {}: is a directory", path.display()),
            None,
        ));
    }
    if offset > 0 {
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| err_io("seek", &path, &e))?;
    }
    let mut buf = vec![0u8; MAX_CHUNK];
    while remaining > 0 {
        let room = {
            let mut w = lock(&s.w);
            while !w.cancelled && w.sent - w.acked >= WINDOW {
                w = s.cv.wait(w).unwrap_or_else(|p| p.into_inner());
            }
            if w.cancelled {
                return Ok(());
            }
            WINDOW - (w.sent - w.acked)
        };
        let want = (MAX_CHUNK as u64).min(room).min(remaining) as usize;
        let mut n = 0;
        while n < want {
            match f.read(&mut buf[n..want]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err_io("read", &path, &e)),
            }
        }
        if n == 0 {
            break;
        }
        lock(&s.w).sent += n as u64;
        remaining -= n as u64;
        if !c.send(
            s.id,
            0,
            &cbor::map(vec![
                ("t", "data".into()),
                ("data", Value::Bytes(buf[..n].to_vec())),
            ]),
        ) {
            return Ok(()); // stream gone
        }
        if n < want {
            break;
        }
    }
    c.send(s.id, FLAG_END, &cbor::map(vec![("t", "eof".into())]));
    Ok(())
}

// ------------------------------------------------------------------ fs.write

enum WriteMsg {
    Data(Vec<u8>),
    End,
}

struct WriteStream {
    id: u32,
    tx: Mutex<Option<mpsc::Sender<WriteMsg>>>,
    cancelled: AtomicBool,
}

impl Stream for WriteStream {
    fn on_frame(&self, flags: u8, body: Value) {
        let ok = match (body.get("t").and_then(|t| t.as_str()), body.get("data")) {
            (Some("data"), Some(Value::Bytes(b))) => {
                let guard = lock(&self.tx);
                if let Some(tx) = guard.as_ref() {
                    if !b.is_empty() {
                        let _ = tx.send(WriteMsg::Data(b.clone()));
                    }
                    if flags & FLAG_END != 0 {
                        let _ = tx.send(WriteMsg::End);
                    }
                }
                true
            }
            _ => false,
        };
        if !ok {
            self.abort(Some(proto::error_body(
                "EBADMSG",
                74,
                "fs.write expects {t:\"data\", data} frames",
                None,
            )));
        }
    }
    fn abort(&self, reply: Option<Value>) {
        self.cancelled.store(true, Ordering::SeqCst);
        lock(&self.tx).take();
        if let Some(r) = reply {
            conn().send(self.id, FLAG_END, &r);
        }
    }
}

pub fn write_request(c: &'static Conn, id: u32, flags: u8, body: Value) {
    let (tx, rx) = mpsc::channel();
    if flags & FLAG_END != 0 {
        let _ = tx.send(WriteMsg::End);
    }
    let s = Arc::new(WriteStream {
        id,
        tx: Mutex::new(Some(tx)),
        cancelled: AtomicBool::new(false),
    });
    if !c.register(id, s.clone()) {
        return too_many(c, id);
    }
    on_worker(c, id, move || {
        let reply = write_file(c, &s, &body, rx).unwrap_or_else(|e| e);
        c.send(id, FLAG_END, &reply);
    });
}

/// Removes the temporary file unless disarmed.
struct TempGuard(Option<PathBuf>);
impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn write_file(
    c: &Conn,
    s: &WriteStream,
    body: &Value,
    rx: mpsc::Receiver<WriteMsg>,
) -> Result<Value, Fail> {
    let mut path = path_arg(body, "path")?;
    let mode = opt_u64(body, "mode")?.map(|m| m as u32 & 0o7777);
    let append = opt_bool(body, "append", false)?;
    let create = opt_bool(body, "create", true)?;
    if s.cancelled.load(Ordering::SeqCst) {
        return Err(proto::error_body("ECANCELED", 125, "write cancelled", None));
    }
    // Through a symlink to its target, as open(2) would: the rename must not replace the link.
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
        && let Ok(real) = fs::canonicalize(&path)
    {
        path = real;
    }
    let existing = fs::metadata(&path).ok();
    // A device, FIFO or socket is written in place: a rename would replace the node.
    let in_place = existing.as_ref().is_some_and(|m| !m.is_file());
    if existing.as_ref().is_some_and(|m| m.is_dir()) {
        return Err(proto::error_body(
            "EISDIR",
            21,
            &format!("write {}: is a directory", path.display()),
            None,
        ));
    }
    if !create && existing.is_none() {
        return Err(proto::error_body(
            "ENOENT",
            2,
            &format!("write {}: does not exist (create is false)", path.display()),
            None,
        ));
    }
    let mut guard = TempGuard(None);
    let (mut file, write_path) = if append || in_place {
        let f = OpenOptions::new()
            .write(true)
            .append(append)
            .truncate(!append && existing.as_ref().is_some_and(|m| m.is_file()))
            .create(create)
            .mode(mode.unwrap_or(0o644))
            .open(&path)
            .map_err(|e| err_io("open", &path, &e))?;
        (f, path.clone())
    } else {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let base = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let mut tmp_name = b".".to_vec();
        tmp_name.extend_from_slice(&base);
        tmp_name
            .extend_from_slice(format!(".msb-write-{}-{}", s.id, std::process::id()).as_bytes());
        let tmp = dir.join(OsStr::from_bytes(&tmp_name));
        let _ = fs::remove_file(&tmp);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err_io("create", &tmp, &e))?;
        guard.0 = Some(tmp.clone());
        let perm = mode
            .or(existing.as_ref().map(|m| m.mode() & 0o7777))
            .unwrap_or(0o644);
        f.set_permissions(fs::Permissions::from_mode(perm))
            .map_err(|e| err_io("chmod", &tmp, &e))?;
        if let Some(m) = &existing {
            // keep the owner of the file being replaced
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
            let _ = f.set_permissions(fs::Permissions::from_mode(perm));
        }
        (f, tmp)
    };
    let mut total: u64 = 0;
    loop {
        match rx.recv() {
            Ok(WriteMsg::Data(d)) => {
                file.write_all(&d)
                    .map_err(|e| err_io("write", &write_path, &e))?;
                total += d.len() as u64;
                c.send(
                    s.id,
                    0,
                    &cbor::map(vec![("t", "ack".into()), ("bytes", d.len().into())]),
                );
            }
            Ok(WriteMsg::End) => break,
            Err(_) => return Err(proto::error_body("ECANCELED", 125, "write cancelled", None)), // aborted
        }
        if s.cancelled.load(Ordering::SeqCst) {
            return Err(proto::error_body("ECANCELED", 125, "write cancelled", None));
        }
    }
    file.flush().map_err(|e| err_io("write", &write_path, &e))?;
    drop(file);
    if let Some(tmp) = guard.0.take()
        && let Err(e) = fs::rename(&tmp, &path)
    {
        let _ = fs::remove_file(&tmp);
        return Err(err_io("rename", &path, &e));
    }
    Ok(cbor::map(vec![("t", "ok".into()), ("bytes", total.into())]))
}
