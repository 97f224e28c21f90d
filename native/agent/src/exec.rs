//! `exec` streams and the zombie reaper.
//!
//! PID 1 reaps everything: one reaper thread runs waitpid(-1) and hands each
//! status to the exec session owning the pid (orphans are reaped silently).
//! A session is registered under the CHILDREN lock across the spawn, so the
//! reaper cannot see a pid before its session exists. Between clone and
//! execve the child only makes async-signal-safe calls on data prepared
//! before the clone (no allocation, no locks).

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cbor::{self, Value};
use crate::conn::{Conn, Stream, conn, on_worker, too_many};
use crate::log;
use crate::proto::{self, FLAG_END, WINDOW};
use crate::sys;
use crate::users;

const CHUNK: usize = 64 * 1024;
const MAX_ARGS_BYTES: usize = 1 << 20;
const MAX_ARGS: usize = 4096;
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------------ reaper

fn children() -> &'static Mutex<HashMap<c_int, Arc<Exec>>> {
    static C: OnceLock<Mutex<HashMap<c_int, Arc<Exec>>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

static SPAWN_GEN: Mutex<u64> = Mutex::new(0);
static SPAWNED: Condvar = Condvar::new();

fn notify_spawned() {
    *lock(&SPAWN_GEN) += 1;
    SPAWNED.notify_all();
}

pub fn start_reaper() {
    let r = std::thread::Builder::new().name("reaper".into()).spawn(|| {
        loop {
            let generation = *lock(&SPAWN_GEN);
            let mut status: c_int = 0;
            let pid = unsafe { sys::waitpid(-1, &mut status, 0) };
            if pid > 0 {
                let session = lock(children()).remove(&pid);
                if let Some(s) = session {
                    s.on_exit(status);
                }
                continue;
            }
            let e = sys::errno();
            if e == sys::EINTR {
                continue;
            }
            // ECHILD: nothing to wait for until the next fork (orphans reparented
            // to us arrive with a fork somewhere too, but also re-check every second).
            let g = lock(&SPAWN_GEN);
            if *g == generation {
                let _ = SPAWNED.wait_timeout(g, Duration::from_secs(1));
            }
        }
    });
    if r.is_err() {
        log!("cannot start the reaper thread");
    }
}

/// Eventfds that wake pump loops, kept across sessions: creating one per
/// exec was a measurable part of an exec's guest-side cost under TCG.
mod wake_pool {
    use super::{c_int, lock, sys};
    use std::sync::Mutex;

    /// Eventfds kept for reuse; more are closed.
    const KEEP: usize = 32;
    static FREE: Mutex<Vec<c_int>> = Mutex::new(Vec::new());

    /// A non-blocking eventfd, reused when one is free (its count cleared).
    pub fn take() -> Result<c_int, i32> {
        if let Some(fd) = lock(&FREE).pop() {
            let mut count = [0u8; 8];
            let _ = sys::read_some(fd, &mut count);
            return Ok(fd);
        }
        let fd = unsafe { sys::eventfd(0, sys::O_CLOEXEC | sys::O_NONBLOCK) };
        if fd < 0 { Err(sys::errno()) } else { Ok(fd) }
    }

    /// Returns `fd` once its session is gone (no waker can write to it any more).
    pub fn give(fd: c_int) {
        let mut free = lock(&FREE);
        if free.len() < KEEP {
            free.push(fd);
        } else {
            drop(free);
            unsafe { sys::close(fd) };
        }
    }
}

/// Pipes made ahead of time for children's stdout and stderr: an exec takes
/// ready ones, and the thread that ends an exec makes new ones after its
/// reply has gone out, so the pipe2 calls (each a measurable part of an
/// exec's guest-side cost under TCG) run while the agent would be idle.
/// A pipe here was never given to any process.
pub mod pipe_pool {
    use super::{c_int, lock, sys};
    use std::sync::Mutex;

    /// Pipes kept ready: two execs' stdout and stderr.
    const READY: usize = 4;
    static POOL: Mutex<Vec<(c_int, c_int)>> = Mutex::new(Vec::new());

    /// A ready pipe (read end, write end), or a new one when none is left.
    pub fn take() -> Result<(c_int, c_int), i32> {
        match lock(&POOL).pop() {
            Some(pipe) => Ok(pipe),
            None => sys::pipe_cloexec(),
        }
    }

    /// Tops the pool up to `READY` pipes.
    pub fn refill() {
        while lock(&POOL).len() < READY {
            let Ok(pipe) = sys::pipe_cloexec() else {
                return;
            };
            lock(&POOL).push(pipe);
        }
    }
}

// ------------------------------------------------------------------ session

enum StdinMsg {
    Data(Vec<u8>),
    Close,
}

#[derive(Default)]
struct State {
    /// stdout+stderr bytes sent / acknowledged by the host
    sent: u64,
    acked: u64,
    status: Option<c_int>,
    /// clone() to reaping, measured here: the guest's own cost of the process,
    /// which the host compares with its round trip (the protocol's overhead).
    forked_at: Option<Instant>,
    lifetime: Option<Duration>,
    cancelled: bool,
    started: bool,
    /// stdout and stderr have ended and the pump loop is gone: the reaper sends `exited`.
    output_done: bool,
}

pub struct Exec {
    id: u32,
    pid: AtomicI32,
    tty: bool,
    stdin_pipe: bool,
    /// pty master (-1 without tty); closed when the session is dropped
    master: AtomicI32,
    /// Wakes the pump loop (an eventfd lent by `wake_pool` for the session's life).
    wake: c_int,
    state: Mutex<State>,
    stdin_tx: Mutex<Option<mpsc::Sender<StdinMsg>>>,
    stdin_queued: AtomicU64,
}

impl Drop for Exec {
    fn drop(&mut self) {
        wake_pool::give(self.wake);
        unsafe {
            let m = self.master.load(Ordering::SeqCst);
            if m >= 0 {
                sys::close(m);
            }
        }
    }
}

impl Exec {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        unsafe { sys::write(self.wake, one.as_ptr() as *const _, one.len()) };
    }

    fn on_exit(&self, status: c_int) {
        let mut st = lock(&self.state);
        st.status = Some(status);
        st.lifetime = st.forked_at.map(|t| t.elapsed());
        if st.output_done && !st.cancelled {
            let lifetime = st.lifetime;
            drop(st);
            self.send_exited(status, lifetime);
        } else {
            drop(st);
            self.wake();
        }
    }

    /// Ends the stream with `exited`; then, the reply gone, tops the pipe pool up.
    fn send_exited(&self, status: c_int, lifetime: Option<Duration>) {
        conn().send(self.id, FLAG_END, &exited(status, lifetime));
        pipe_pool::refill();
    }

    fn kill_all(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            unsafe {
                sys::kill(-pid, sys::SIGKILL);
                sys::kill(pid, sys::SIGKILL);
            }
        }
    }

    fn foreground_group(&self) -> Option<c_int> {
        let m = self.master.load(Ordering::SeqCst);
        let mut pgrp: c_int = 0;
        (m >= 0 && unsafe { sys::ioctl(m, sys::TIOCGPGRP, &mut pgrp) } == 0 && pgrp > 0)
            .then_some(pgrp)
    }

    fn close_stdin(&self) {
        if let Some(tx) = lock(&self.stdin_tx).take() {
            let _ = tx.send(StdinMsg::Close);
        }
    }
}

impl Stream for Exec {
    fn on_frame(&self, flags: u8, body: Value) {
        match body.get("t").and_then(|t| t.as_str()) {
            Some("stdin") => {
                let data = match body.get("data") {
                    Some(Value::Bytes(b)) => b.clone(),
                    _ => Vec::new(),
                };
                if !data.is_empty() {
                    let n = data.len() as u64;
                    let sent = match &*lock(&self.stdin_tx) {
                        Some(tx) if self.stdin_pipe || self.tty => {
                            self.stdin_queued.fetch_add(n, Ordering::SeqCst);
                            tx.send(StdinMsg::Data(data)).is_ok()
                        }
                        _ => false,
                    };
                    if !sent {
                        // stdin is null or closed: discard, but keep the host's window moving
                        conn().send(
                            self.id,
                            0,
                            &cbor::map(vec![("t", "ack".into()), ("bytes", n.into())]),
                        );
                    }
                }
            }
            Some("signal") => {
                let signo = body.get("signo").and_then(|v| v.as_int()).unwrap_or(0);
                let pid = self.pid.load(Ordering::SeqCst);
                if (1..=64).contains(&signo) && pid > 0 && lock(&self.state).status.is_none() {
                    // With a tty: the terminal's foreground process group, as a typed ^C would.
                    let target = if self.tty {
                        -self.foreground_group().unwrap_or(pid)
                    } else {
                        pid
                    };
                    unsafe { sys::kill(target, signo as c_int) };
                }
            }
            Some("resize") => {
                let rows = body
                    .get("rows")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
                    .min(65535) as u16;
                let cols = body
                    .get("cols")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
                    .min(65535) as u16;
                let m = self.master.load(Ordering::SeqCst);
                if m >= 0 {
                    let ws = sys::winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ..Default::default()
                    };
                    unsafe { sys::ioctl(m, sys::TIOCSWINSZ, &ws) };
                }
            }
            Some("ack") => {
                let n = body.get("bytes").and_then(|v| v.as_u64()).unwrap_or(0);
                {
                    let mut s = lock(&self.state);
                    s.acked = s.acked.saturating_add(n).min(s.sent);
                }
                self.wake();
            }
            other => log!("exec stream {}: ignoring {:?}", self.id, other),
        }
        if flags & FLAG_END != 0 {
            self.close_stdin();
        }
    }

    fn abort(&self, reply: Option<Value>) {
        {
            let mut s = lock(&self.state);
            s.cancelled = true;
        }
        self.kill_all();
        self.close_stdin();
        self.wake();
        if let Some(r) = reply {
            conn().send(self.id, FLAG_END, &r);
        }
    }
}

// ------------------------------------------------------------------ request parsing

struct Failure {
    code: &'static str,
    errno: i32,
    message: String,
    kind: Option<&'static str>,
}

/// A failure from a system call: its errno, named, with what was being done.
fn os_failure(errno: i32, what: &str, kind: Option<&'static str>) -> Failure {
    Failure {
        code: sys::errno_name(errno),
        errno,
        message: format!("{what}: {}", sys::errno_text(errno)),
        kind,
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        code: "EINVAL",
        errno: 22,
        message: message.into(),
        kind: Some("invalid"),
    }
}

struct Plan {
    /// candidate paths for execve, in PATH order
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    ids: Option<users::Ids>,
    rlimits: Vec<(c_int, sys::rlimit)>,
    tty: Option<(u16, u16)>,
    stdin_pipe: bool,
    display: String,
}

fn os_list(v: Option<&Value>, what: &str) -> Result<Vec<Vec<u8>>, Failure> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let a = v
        .as_array()
        .ok_or_else(|| invalid(format!("{what} must be an array")))?;
    a.iter()
        .map(|x| {
            let b = x
                .as_os_bytes()
                .ok_or_else(|| invalid(format!("{what} entries must be strings")))?;
            if b.contains(&0) {
                return Err(invalid(format!("{what} entry contains NUL")));
            }
            Ok(b.to_vec())
        })
        .collect()
}

fn rlimit_resource(name: &str) -> Option<c_int> {
    Some(match name {
        "cpu" => 0,
        "fsize" => 1,
        "data" => 2,
        "stack" => 3,
        "core" => 4,
        "nproc" => 6,
        "nofile" => 7,
        "memlock" => 8,
        "as" => 9,
        _ => return None,
    })
}

fn plan(body: &Value) -> Result<Plan, Failure> {
    let argv = os_list(body.get("argv"), "argv")?;
    if argv.is_empty() || body.get("argv").and_then(|v| v.as_array()).is_none() {
        return Err(invalid("argv must be a non-empty array"));
    }
    let mut env = os_list(body.opt("env"), "env")?;
    let total: usize = argv.iter().chain(env.iter()).map(|a| a.len() + 1).sum();
    if argv.len() + env.len() > MAX_ARGS || total > MAX_ARGS_BYTES {
        return Err(Failure {
            code: "E2BIG",
            errno: 7,
            message: "argv + env exceed 1 MiB or 4096 entries".into(),
            kind: Some("invalid"),
        });
    }
    let display = String::from_utf8_lossy(&argv[0]).into_owned();
    let cwd = match body.opt("cwd") {
        None => b"/".to_vec(),
        Some(v) => v
            .as_os_bytes()
            .ok_or_else(|| invalid("cwd must be a string"))?
            .to_vec(),
    };
    let cwd = CString::new(cwd).map_err(|_| invalid("cwd contains NUL"))?;
    let ids = match body.opt("user") {
        None => None,
        Some(v) => {
            let spec = match v {
                Value::Int(i) => users::Spec::Uid(
                    u32::try_from(*i).map_err(|_| invalid("user id out of range"))?,
                ),
                other => users::Spec::Text(
                    other
                        .as_os_bytes()
                        .ok_or_else(|| invalid("user must be a name, id or \"user:group\""))?
                        .to_vec(),
                ),
            };
            let passwd = std::fs::read("/etc/passwd").unwrap_or_default();
            let group = std::fs::read("/etc/group").unwrap_or_default();
            let ids = users::resolve(&spec, &passwd, &group).map_err(|m| Failure {
                code: "EINVAL",
                errno: 22,
                message: m,
                kind: Some("bad_user"),
            })?;
            if let Some(home) = &ids.home
                && !env.iter().any(|e| e.starts_with(b"HOME="))
                && !home.contains(&0)
            {
                let mut h = b"HOME=".to_vec();
                h.extend_from_slice(home);
                env.push(h);
            }
            Some(ids)
        }
    };
    let mut rlimits = Vec::new();
    if let Some(list) = body.opt("rlimits") {
        for r in list
            .as_array()
            .ok_or_else(|| invalid("rlimits must be an array"))?
        {
            let name = r.get("resource").and_then(|v| v.as_str()).unwrap_or("");
            let res = rlimit_resource(name)
                .ok_or_else(|| invalid(format!("unknown rlimit resource {name:?}")))?;
            let lim = |k: &str| -> Result<u64, Failure> {
                match r.get(k) {
                    None | Some(Value::Null) => Ok(u64::MAX),
                    Some(v) => v.as_u64().ok_or_else(|| {
                        invalid(format!(
                            "rlimit {name} {k} must be a non-negative integer or null"
                        ))
                    }),
                }
            };
            let (soft, hard) = (lim("soft")?, lim("hard")?);
            if soft > hard {
                return Err(invalid(format!(
                    "rlimit {name}: soft limit above hard limit"
                )));
            }
            rlimits.push((
                res,
                sys::rlimit {
                    cur: soft,
                    max: hard,
                },
            ));
        }
    }
    let tty = match body.opt("tty") {
        None => None,
        Some(t) => {
            let dim = |k: &str| {
                t.get(k)
                    .and_then(|v| v.as_u64())
                    .filter(|&n| n <= 65535)
                    .map(|n| n as u16)
            };
            match (dim("rows"), dim("cols")) {
                (Some(r), Some(c)) => Some((r, c)),
                _ => return Err(invalid("tty must be {rows, cols}")),
            }
        }
    };
    let stdin_pipe = match body.opt("stdin").map(|v| v.as_str()) {
        None | Some(Some("null")) => false,
        Some(Some("pipe")) => true,
        _ => return Err(invalid("stdin must be \"pipe\" or \"null\"")),
    };
    // PATH lookup like execvp, from the request's env.
    let name = &argv[0];
    let candidates: Vec<Vec<u8>> = if name.contains(&b'/') {
        vec![name.clone()]
    } else if name.is_empty() {
        Vec::new()
    } else {
        let path = env
            .iter()
            .find(|e| e.starts_with(b"PATH="))
            .map(|e| e[5..].to_vec())
            .unwrap_or_else(|| DEFAULT_PATH.to_vec());
        path.split(|&c| c == b':')
            .map(|dir| {
                let mut p = if dir.is_empty() {
                    b".".to_vec()
                } else {
                    dir.to_vec()
                };
                p.push(b'/');
                p.extend_from_slice(name);
                p
            })
            .collect()
    };
    let cs = |v: Vec<Vec<u8>>| {
        v.into_iter()
            .filter_map(|b| CString::new(b).ok())
            .collect::<Vec<_>>()
    };
    Ok(Plan {
        candidates: cs(candidates),
        argv: cs(argv),
        env: cs(env),
        cwd,
        ids,
        rlimits,
        tty,
        stdin_pipe,
        display,
    })
}

// ------------------------------------------------------------------ request

pub fn request(c: &'static Conn, id: u32, flags: u8, body: Value) {
    let wake = match wake_pool::take() {
        Ok(fd) => fd,
        Err(e) => {
            c.send_unregistered(
                id,
                FLAG_END,
                &proto::error_body(sys::errno_name(e), e, "cannot create an eventfd", None),
            );
            return;
        }
    };
    let tty = body.opt("tty").is_some();
    let stdin_pipe = matches!(body.opt("stdin").and_then(|v| v.as_str()), Some("pipe"));
    let (tx, rx) = mpsc::channel();
    let session = Arc::new(Exec {
        id,
        pid: AtomicI32::new(0),
        tty,
        stdin_pipe,
        master: AtomicI32::new(-1),
        wake,
        state: Mutex::new(State::default()),
        stdin_tx: Mutex::new(Some(tx)),
        stdin_queued: AtomicU64::new(0),
    });
    if !c.register(id, session.clone()) {
        too_many(c, id);
        return;
    }
    if flags & FLAG_END != 0 {
        session.close_stdin();
    }
    let s2 = session.clone();
    on_worker(c, id, move || run(c, s2, body, rx));
}

fn fail(c: &Conn, id: u32, f: Failure) {
    c.send_error(id, f.code, f.errno, &f.message, f.kind);
}

/// Pipes and pty prepared for one child: (child side, parent side).
struct Stdio {
    child_in: c_int,
    /// `child_in` is the kept `/dev/null`: not closed after the spawn.
    shared_in: bool,
    child_out: c_int,
    child_err: c_int,
    parent_in: c_int,
    parent_out: c_int,
    parent_err: c_int,
    master: c_int,
}

fn open_pty(rows: u16, cols: u16) -> Result<(c_int, c_int), i32> {
    let flags = sys::O_RDWR | sys::O_NOCTTY;
    let master =
        sys::open_path("/dev/pts/ptmx", flags).or_else(|_| sys::open_path("/dev/ptmx", flags))?;
    let unlock: c_int = 0;
    unsafe {
        if sys::ioctl(master, sys::TIOCSPTLCK, &unlock) != 0 {
            let e = sys::errno();
            sys::close(master);
            return Err(e);
        }
        let ws = sys::winsize {
            ws_row: rows,
            ws_col: cols,
            ..Default::default()
        };
        sys::ioctl(master, sys::TIOCSWINSZ, &ws);
        let mut slave = sys::ioctl(
            master,
            sys::TIOCGPTPEER,
            (flags | sys::O_CLOEXEC) as std::ffi::c_ulong,
        );
        if slave < 0 {
            let mut n: c_int = 0;
            if sys::ioctl(master, sys::TIOCGPTN, &mut n) == 0 {
                slave = sys::open_path(&format!("/dev/pts/{n}"), flags).unwrap_or(-1);
            }
        }
        if slave < 0 {
            let e = sys::errno();
            sys::close(master);
            return Err(e);
        }
        Ok((master, slave))
    }
}

/// `/dev/null`, the stdin of children without one: opened by the first exec
/// that needs it (after the root switch) and kept, an open and a close
/// fewer per exec. None when it cannot be opened (then an ended pipe serves).
fn dev_null() -> Option<c_int> {
    static NULL: OnceLock<c_int> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Some(*fd);
    }
    let fd = sys::open_path("/dev/null", sys::O_RDWR).ok()?;
    if NULL.set(fd).is_err() {
        unsafe { sys::close(fd) };
    }
    NULL.get().copied()
}

fn make_stdio(p: &Plan) -> Result<Stdio, i32> {
    if let Some((rows, cols)) = p.tty {
        let (master, slave) = open_pty(rows, cols)?;
        let parent_in = unsafe { dup_cloexec(master) };
        return Ok(Stdio {
            child_in: slave,
            shared_in: false,
            child_out: slave,
            child_err: slave,
            parent_in,
            parent_out: master,
            parent_err: -1,
            master,
        });
    }
    let (child_in, parent_in, shared_in) = if p.stdin_pipe {
        let (r, w) = sys::pipe_cloexec()?;
        (r, w, false)
    } else if let Some(null) = dev_null() {
        (null, -1, true)
    } else {
        // No /dev/null: a pipe whose write end is closed reads as end of file.
        let (r, w) = sys::pipe_cloexec()?;
        unsafe { sys::close(w) };
        (r, -1, false)
    };
    // On a failure below, nothing made above is left open.
    let close_in = || unsafe {
        if !shared_in {
            sys::close(child_in);
        }
        if parent_in >= 0 {
            sys::close(parent_in);
        }
    };
    let (out_r, out_w) = pipe_pool::take().inspect_err(|_| close_in())?;
    let (err_r, err_w) = pipe_pool::take().inspect_err(|_| unsafe {
        close_in();
        sys::close(out_r);
        sys::close(out_w);
    })?;
    Ok(Stdio {
        child_in,
        shared_in,
        child_out: out_w,
        child_err: err_w,
        parent_in,
        parent_out: out_r,
        parent_err: err_r,
        master: -1,
    })
}

unsafe extern "C" {
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
}

unsafe fn dup_cloexec(fd: c_int) -> c_int {
    const F_DUPFD_CLOEXEC: c_int = 1030;
    unsafe { fcntl(fd, F_DUPFD_CLOEXEC, 3) }
}

const STAGE_EXEC: u8 = 1;
const STAGE_CWD: u8 = 2;
const STAGE_USER: u8 = 3;
const STAGE_RLIMIT: u8 = 4;
const STAGE_TTY: u8 = 5;

/// Stack of the spawned child until its execve: it only runs `child`.
const CHILD_STACK: usize = 64 << 10;

/// Where the child says why it did not reach its program: written by the
/// child (which shares the parent's memory until execve), read by the parent
/// once clone returns. Stage 0: the execve succeeded.
#[derive(Default)]
struct SpawnReport {
    stage: u8,
    errno: i32,
}

/// Everything the child touches, prepared before the clone.
struct ChildPlan<'a> {
    io: &'a Stdio,
    report: *mut SpawnReport,
    tty: bool,
    rlimits: &'a [(c_int, sys::rlimit)],
    ids: Option<(&'a users::Ids, &'a [u32])>,
    cwd: &'a CString,
    candidates: &'a [*const c_char],
    argv: &'a [*const c_char],
    envp: &'a [*const c_char],
}

/// Starts the child with CLONE_VM | CLONE_VFORK: no copy of the agent's page
/// tables and no copy-on-write faults afterwards, which under TCG made a
/// fork cost milliseconds. This thread waits until the child has called
/// execve (or failed); the agent's other threads run on. All signals stay
/// blocked in the child until just before its execve, so no handler of the
/// agent ever runs on the shared memory.
fn spawn(plan: &ChildPlan) -> Result<c_int, i32> {
    // Uninitialised (zeroing 64 KiB costs more than the rest of a spawn under
    // TCG); the stack grows down from a 16-byte aligned top.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) } as usize & !15;
    let all = sys::sigset_t::full();
    let mut old = sys::sigset_t::empty();
    unsafe {
        sys::pthread_sigmask(sys::SIG_SETMASK, &all, &mut old);
        let pid = sys::clone(
            child_main,
            top as *mut c_void,
            sys::CLONE_VM | sys::CLONE_VFORK | sys::SIGCHLD,
            plan as *const ChildPlan as *mut c_void,
        );
        let e = sys::errno();
        sys::pthread_sigmask(sys::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 { Err(e) } else { Ok(pid) }
    }
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    unsafe { child(&*(arg as *const ChildPlan)) }
}

/// The child: async-signal-safe calls only, on prepared data, and raw
/// system calls for the ids (glibc's setresuid would signal the agent's
/// threads, whose memory the child shares).
unsafe fn child(p: &ChildPlan) -> ! {
    unsafe {
        let die = |stage: u8, e: i32| -> ! {
            std::ptr::write_volatile(p.report, SpawnReport { stage, errno: e });
            sys::_exit(127)
        };
        sys::signal(sys::SIGPIPE, sys::SIG_DFL);
        sys::setsid();
        let io = p.io;
        if p.tty && sys::ioctl(io.child_out, sys::TIOCSCTTY, 0 as c_int) != 0 {
            die(STAGE_TTY, sys::errno());
        }
        if sys::dup2(io.child_in, 0) < 0
            || sys::dup2(io.child_out, 1) < 0
            || sys::dup2(io.child_err, 2) < 0
        {
            die(STAGE_TTY, sys::errno());
        }
        for (res, lim) in p.rlimits {
            if sys::setrlimit(*res, lim) != 0 {
                die(STAGE_RLIMIT, sys::errno());
            }
        }
        if let Some((ids, groups)) = p.ids
            && (sys::syscall(
                sys::SYS_SETGROUPS,
                groups.len() as std::ffi::c_long,
                groups.as_ptr(),
            ) != 0
                || sys::syscall(
                    sys::SYS_SETRESGID,
                    ids.gid as std::ffi::c_long,
                    ids.gid as std::ffi::c_long,
                    ids.gid as std::ffi::c_long,
                ) != 0
                || sys::syscall(
                    sys::SYS_SETRESUID,
                    ids.uid as std::ffi::c_long,
                    ids.uid as std::ffi::c_long,
                    ids.uid as std::ffi::c_long,
                ) != 0)
        {
            die(STAGE_USER, sys::errno());
        }
        if sys::chdir(p.cwd.as_ptr()) != 0 {
            die(STAGE_CWD, sys::errno());
        }
        let none = sys::sigset_t::empty();
        sys::sigprocmask(sys::SIG_SETMASK, &none, std::ptr::null_mut());
        let mut saw_eacces = false;
        let mut last = sys::ENOENT;
        for &c in p.candidates {
            sys::execve(c, p.argv.as_ptr(), p.envp.as_ptr());
            let e = sys::errno();
            match e {
                13 => saw_eacces = true,
                2 | 20 => {}
                _ => die(STAGE_EXEC, e),
            }
            last = e;
        }
        die(STAGE_EXEC, if saw_eacces { 13 } else { last })
    }
}

fn run(c: &'static Conn, s: Arc<Exec>, body: Value, stdin_rx: mpsc::Receiver<StdinMsg>) {
    let id = s.id;
    let p = match plan(&body) {
        Ok(p) => p,
        Err(f) => return fail(c, id, f),
    };
    let io = match make_stdio(&p) {
        Ok(io) => io,
        Err(e) => {
            return fail(c, id, os_failure(e, "cannot set up stdio", None));
        }
    };
    if io.master >= 0 {
        s.master.store(io.master, Ordering::SeqCst);
    }
    let ptrs = |v: &[CString]| -> Vec<*const c_char> {
        let mut out: Vec<*const c_char> = v.iter().map(|x| x.as_ptr()).collect();
        out.push(std::ptr::null());
        out
    };
    let argv = ptrs(&p.argv);
    let envp = ptrs(&p.env);
    let candidates: Vec<*const c_char> = p.candidates.iter().map(|x| x.as_ptr()).collect();
    let groups: Vec<u32> = p.ids.as_ref().map(|i| i.groups.clone()).unwrap_or_default();
    let mut report = SpawnReport::default();
    let child_plan = ChildPlan {
        io: &io,
        report: &mut report,
        tty: p.tty.is_some(),
        rlimits: &p.rlimits,
        ids: p.ids.as_ref().map(|i| (i, &groups[..])),
        cwd: &p.cwd,
        candidates: &candidates,
        argv: &argv,
        envp: &envp,
    };

    let spawned = {
        let mut reg = lock(children());
        if lock(&s.state).cancelled {
            None
        } else {
            lock(&s.state).forked_at = Some(Instant::now());
            let spawned = spawn(&child_plan);
            if let Ok(pid) = spawned {
                s.pid.store(pid, Ordering::SeqCst);
                reg.insert(pid, s.clone());
            }
            Some(spawned)
        }
    };
    notify_spawned();
    // Parent: close the child's ends.
    unsafe {
        for fd in [io.child_in, io.child_out, io.child_err] {
            if fd >= 0 && fd != io.child_out && !(fd == io.child_in && io.shared_in) {
                sys::close(fd);
            }
        }
        if io.child_out >= 0 {
            sys::close(io.child_out);
        }
    }
    let close_parent = || unsafe {
        for fd in [io.parent_in, io.parent_out, io.parent_err] {
            if fd >= 0 && fd != io.master {
                sys::close(fd);
            }
        }
    };
    let pid = match spawned {
        Some(Ok(pid)) => pid,
        None => return close_parent(),
        Some(Err(e)) => {
            close_parent();
            return fail(c, id, os_failure(e, "clone", None));
        }
    };
    // Did the child get to execve?
    let report = unsafe { std::ptr::read_volatile(&report) };
    if report.stage != 0 {
        let e = report.errno;
        let (kind, what) = match report.stage {
            STAGE_CWD => (
                Some("bad_cwd"),
                format!("cwd {:?}", p.cwd.to_string_lossy()),
            ),
            STAGE_USER => (Some("bad_user"), "switching user".to_string()),
            STAGE_RLIMIT => (Some("invalid"), "setrlimit".to_string()),
            STAGE_TTY => (None, "terminal setup".to_string()),
            _ => (
                match e {
                    2 | 20 => Some("not_found"),
                    13 | 1 | 8 | 21 => Some("permission_denied"),
                    7 => Some("invalid"),
                    _ => None,
                },
                if e == 2 || e == 20 {
                    format!("not found: {:?}", p.display)
                } else {
                    format!("exec {:?}", p.display)
                },
            ),
        };
        close_parent();
        fail(c, id, os_failure(e, &what, kind));
        return;
    }
    lock(&s.state).started = true;
    c.send(
        id,
        0,
        &cbor::map(vec![("t", "started".into()), ("pid", pid.into())]),
    );
    if lock(&s.state).cancelled {
        s.kill_all();
    }
    // stdin writer
    if io.parent_in >= 0 {
        let s2 = s.clone();
        let fd = io.parent_in;
        on_worker(c, id, move || stdin_writer(c, s2, fd, stdin_rx));
    } else {
        drop(stdin_rx);
    }
    pump(c, &s, io.parent_out, io.parent_err, p.tty.is_some());
    // The stream is over: release the stdin writer (it holds the session).
    s.close_stdin();
    for fd in [io.parent_out, io.parent_err] {
        if fd >= 0 && fd != io.master {
            unsafe { sys::close(fd) };
        }
    }
}

fn stdin_writer(c: &'static Conn, s: Arc<Exec>, fd: c_int, rx: mpsc::Receiver<StdinMsg>) {
    let mut broken = false;
    while let Ok(msg) = rx.recv() {
        match msg {
            StdinMsg::Data(d) => {
                if !broken && sys::write_all(fd, &d).is_err() {
                    broken = true; // EPIPE: the process closed stdin; keep acking
                }
                s.stdin_queued.fetch_sub(d.len() as u64, Ordering::SeqCst);
                c.send(
                    s.id,
                    0,
                    &cbor::map(vec![("t", "ack".into()), ("bytes", d.len().into())]),
                );
            }
            StdinMsg::Close => break,
        }
    }
    unsafe { sys::close(fd) };
}

/// The `exited` message for a wait status.
fn exited(status: c_int, lifetime: Option<Duration>) -> Value {
    let (code, signal) = if status & 0x7f == 0 {
        (((status >> 8) & 0xff) as i64, Value::Null)
    } else {
        let sig = (status & 0x7f) as i64;
        (128 + sig, Value::Int(sig as i128))
    };
    cbor::map(vec![
        ("t", "exited".into()),
        ("code", code.into()),
        ("signal", signal),
        (
            "guest_us",
            lifetime.map_or(Value::Null, |d| Value::Int(d.as_micros() as i128)),
        ),
    ])
}

/// Streams stdout/stderr within the window, then `exited` once both hit EOF
/// and the process has been reaped (sent by whichever of this loop and the
/// reaper sees the second of those).
fn pump(c: &Conn, s: &Exec, out: c_int, err: c_int, tty: bool) {
    // One output buffer per worker thread, zeroed once, not once per exec.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]);
    }
    BUF.with_borrow_mut(|buf| pump_with(c, s, out, err, tty, buf))
}

fn pump_with(c: &Conn, s: &Exec, out: c_int, err: c_int, tty: bool, buf: &mut [u8]) {
    let id = s.id;
    let mut out_open = out >= 0;
    let mut err_open = err >= 0;
    loop {
        let (room, status, lifetime) = {
            let st = lock(&s.state);
            if st.cancelled {
                return;
            }
            (
                WINDOW - (st.sent - st.acked).min(WINDOW),
                st.status,
                st.lifetime,
            )
        };
        if !out_open && !err_open {
            if let Some(status) = status {
                s.send_exited(status, lifetime);
                return;
            }
            // The output ended before the reaper saw the exit: it sends `exited`
            // itself, one thread hand-off fewer than waking this loop for it.
            let mut st = lock(&s.state);
            if st.status.is_none() {
                st.output_done = true;
                return;
            }
            continue;
        }
        let mut fds = vec![sys::pollfd {
            fd: s.wake,
            events: sys::POLLIN,
            revents: 0,
        }];
        let mut which = Vec::new();
        if room > 0 {
            if out_open {
                fds.push(sys::pollfd {
                    fd: out,
                    events: sys::POLLIN,
                    revents: 0,
                });
                which.push(("stdout", out));
            }
            if err_open {
                fds.push(sys::pollfd {
                    fd: err,
                    events: sys::POLLIN,
                    revents: 0,
                });
                which.push(("stderr", err));
            }
        }
        let r = unsafe { sys::poll(fds.as_mut_ptr(), fds.len() as _, -1) };
        if r < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            let mut b = [0u8; 64];
            let _ = sys::read_some(s.wake, &mut b);
        }
        for (i, (name, fd)) in which.iter().enumerate() {
            if fds[i + 1].revents == 0 {
                continue;
            }
            let want = CHUNK.min(room as usize);
            match sys::read_some(*fd, &mut buf[..want]) {
                Ok(0) => {
                    if *fd == out {
                        out_open = false
                    } else {
                        err_open = false
                    }
                }
                Ok(n) => {
                    lock(&s.state).sent += n as u64;
                    c.send(
                        id,
                        0,
                        &cbor::map(vec![
                            ("t", (*name).into()),
                            ("data", Value::Bytes(buf[..n].to_vec())),
                        ]),
                    );
                    break; // recompute the window before reading more
                }
                Err(e) if e == sys::EAGAIN => {}
                Err(e) => {
                    // a pty master reads EIO once the slave side is gone
                    if !(tty && e == sys::EIO) {
                        log!("exec {id}: read {name}: {}", sys::errno_text(e));
                    }
                    if *fd == out {
                        out_open = false
                    } else {
                        err_open = false
                    }
                }
            }
        }
    }
}
