//! The control connection: one reader thread decoding frames and dispatching
//! them by stream id, one write lock around the port so frames go out whole.
//!
//! The port fd is O_NONBLOCK: a virtio-serial write blocks while the host is
//! disconnected, and a frame queued for a connection that went away must not
//! reach the next one. Writes therefore poll and give up when the connection
//! epoch changes.

use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::cbor::{self, Value};
use crate::log;
use crate::proto::{self, FLAG_CANCEL, FLAG_END, Parsed};
use crate::sys;

/// A stream the host opened and the agent has not ended yet.
pub trait Stream: Send + Sync {
    /// A further frame from the host on this stream (never CANCEL).
    fn on_frame(&self, flags: u8, body: Value);
    /// Stop the work. With `reply`, end the stream with that error (unless
    /// already ended); without, the connection is gone: just clean up.
    fn abort(&self, reply: Option<Value>);
}

pub struct Conn {
    fd: c_int,
    epoch: AtomicU64,
    write_lock: Mutex<()>,
    streams: Mutex<Streams>,
}

struct Streams {
    map: HashMap<u32, Arc<dyn Stream>>,
    /// The highest id the host opened on this connection (ids count up):
    /// frames on lower ids that are not open are late frames and ignored.
    high: u32,
}

static CONN: OnceLock<Conn> = OnceLock::new();

pub fn conn() -> &'static Conn {
    CONN.get().expect("connection not initialised")
}

pub fn init(fd: c_int) -> &'static Conn {
    CONN.get_or_init(|| Conn {
        fd,
        epoch: AtomicU64::new(0),
        write_lock: Mutex::new(()),
        streams: Mutex::new(Streams {
            map: HashMap::new(),
            high: 0,
        }),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Sends a frame on an open stream; dropped when the stream is no longer
    /// open (ended, cancelled, connection gone). END unregisters the stream.
    /// Returns false when the frame was dropped.
    pub fn send(&self, id: u32, flags: u8, body: &Value) -> bool {
        let frame = proto::encode(id, flags, Some(body));
        let _w = lock(&self.write_lock);
        let epoch = {
            let mut s = lock(&self.streams);
            if !s.map.contains_key(&id) {
                return false;
            }
            if flags & FLAG_END != 0 {
                s.map.remove(&id);
            }
            self.epoch()
        };
        self.write_frame(&frame, epoch)
    }

    /// Sends without a registered stream: replies to requests answered on the
    /// spot, and errors on id 0.
    pub fn send_unregistered(&self, id: u32, flags: u8, body: &Value) -> bool {
        let frame = proto::encode(id, flags, Some(body));
        let _w = lock(&self.write_lock);
        let epoch = self.epoch();
        self.write_frame(&frame, epoch)
    }

    pub fn send_error(
        &self,
        id: u32,
        code: &str,
        errno: i32,
        message: &str,
        kind: Option<&str>,
    ) -> bool {
        self.send(id, FLAG_END, &proto::error_body(code, errno, message, kind))
    }

    fn write_frame(&self, mut buf: &[u8], epoch: u64) -> bool {
        while !buf.is_empty() {
            if self.epoch() != epoch {
                return false;
            }
            let e = match crate::write_port(self.fd, buf) {
                Ok(n) if n > 0 => {
                    buf = &buf[n..];
                    continue;
                }
                Ok(_) => sys::EAGAIN,
                Err(e) => e,
            };
            if e != sys::EAGAIN {
                log!("control port write failed: {}", sys::errno_text(e));
                return false;
            }
            let mut p = sys::pollfd {
                fd: self.fd,
                events: sys::POLLOUT,
                revents: 0,
            };
            let r = unsafe { sys::poll(&mut p, 1, 100) };
            if r > 0 && p.revents & sys::POLLHUP != 0 {
                // host side not connected: poll does not wait then
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        true
    }

    /// Registers a new stream; false when MAX_STREAMS are open.
    pub fn register(&self, id: u32, stream: Arc<dyn Stream>) -> bool {
        let mut s = lock(&self.streams);
        if s.map.len() >= proto::MAX_STREAMS {
            return false;
        }
        s.map.insert(id, stream);
        true
    }

    /// The host went away: every stream is abandoned, ids start afresh.
    fn reset(&self) {
        let streams: Vec<Arc<dyn Stream>> = {
            let mut s = lock(&self.streams);
            self.epoch.fetch_add(1, Ordering::SeqCst);
            s.high = 0;
            s.map.drain().map(|(_, v)| v).collect()
        };
        if !streams.is_empty() {
            log!("connection lost: abandoning {} streams", streams.len());
        }
        for st in streams {
            st.abort(None);
        }
    }

    /// Waits up to a second for the port to be readable; returns poll's revents.
    fn wait_readable(&self) -> i16 {
        let mut p = sys::pollfd {
            fd: self.fd,
            events: sys::POLLIN,
            revents: 0,
        };
        unsafe { sys::poll(&mut p, 1, 1000) };
        p.revents
    }

    /// The reader loop: runs forever.
    pub fn run(&'static self) -> ! {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut chunk = vec![0u8; crate::PORT_BUFFER * crate::PORT_BUFFERS_PER_READ];
        let mut connected = false;
        let mut draining = false;
        // Every byte read so far was a whole frame: most likely nothing more
        // is queued, so wait for data first instead of paying a read that
        // fails with EAGAIN before every wait.
        let mut wait_first = false;
        loop {
            if wait_first {
                wait_first = false;
                self.wait_readable();
            }
            let n = match crate::read_port(self.fd, &mut chunk) {
                Ok(n) => n,
                Err(e) if e == sys::EINTR => continue,
                Err(e) if e == sys::EAGAIN => {
                    let revents = self.wait_readable();
                    if revents & sys::POLLHUP != 0 && revents & sys::POLLIN == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    continue;
                }
                Err(e) => {
                    log!("control port read failed: {}", sys::errno_text(e));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if n == 0 {
                // The host side is not connected (virtio-serial returns 0, not EOF for good).
                if connected {
                    log!("host disconnected");
                    connected = false;
                    draining = false;
                    buf.clear();
                    self.reset();
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if !connected {
                connected = true;
            }
            if draining {
                continue;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            loop {
                match proto::parse(&buf[start..]) {
                    Parsed::Incomplete => break,
                    Parsed::BadLength(len) => {
                        log!(
                            "frame length {len} out of range: dropping the connection until the host reconnects"
                        );
                        let body = proto::error_body(
                            "EPROTO",
                            71,
                            &format!("frame length {len} is out of range; connection dropped"),
                            None,
                        );
                        self.send_unregistered(0, 0, &body);
                        draining = true;
                        self.reset();
                        break;
                    }
                    Parsed::Frame(frame, used) => {
                        start += used;
                        self.dispatch(frame);
                    }
                }
            }
            if draining {
                buf.clear();
            } else if start > 0 {
                buf.drain(..start);
            }
            wait_first = buf.is_empty();
        }
    }

    fn dispatch(&'static self, frame: proto::Frame) {
        let id = frame.id;
        if id == 0 {
            let body = proto::error_body(
                "EPROTO",
                71,
                "stream id 0 is the connection stream; the host may not send on it",
                None,
            );
            self.send_unregistered(0, 0, &body);
            return;
        }
        let existing = {
            let mut s = lock(&self.streams);
            match s.map.get(&id) {
                Some(st) => Some(st.clone()),
                None if id <= s.high => return, // late frame on an ended stream
                None => {
                    s.high = id;
                    None
                }
            }
        };
        if let Some(stream) = existing {
            if frame.flags & FLAG_CANCEL != 0 {
                stream.abort(Some(proto::error_body(
                    "ECANCELED",
                    125,
                    "cancelled by the host",
                    None,
                )));
                return;
            }
            match frame.body {
                Ok(Some(body)) => stream.on_frame(frame.flags, body),
                Ok(None) => {}
                Err(e) => {
                    log!("malformed frame on stream {id}: {e}");
                    stream.abort(Some(proto::error_body(
                        "EPROTO",
                        71,
                        &format!("malformed frame: {e}"),
                        None,
                    )));
                }
            }
            return;
        }
        // A new stream.
        if frame.flags & FLAG_CANCEL != 0 {
            return;
        }
        let body = match frame.body {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                log!("malformed request on stream {id}: {e}");
                let body = proto::error_body("EPROTO", 71, &format!("malformed frame: {e}"), None);
                self.send_unregistered(id, FLAG_END, &body);
                return;
            }
        };
        crate::dispatch::request(self, id, frame.flags, body);
    }
}

/// A request answered once (fs.stat, fs.list, ...) by a worker thread. A
/// CANCEL ends it at once with ECANCELED; the worker's late reply is dropped.
pub struct OneShot {
    pub id: u32,
}

impl Stream for OneShot {
    fn on_frame(&self, _flags: u8, _body: Value) {}
    fn abort(&self, reply: Option<Value>) {
        if let Some(r) = reply {
            conn().send(self.id, FLAG_END, &r);
        }
    }
}

/// Runs `work` on a worker thread as a registered one-shot stream and sends
/// its result (a reply body) with END.
pub fn spawn_oneshot(c: &'static Conn, id: u32, work: impl FnOnce() -> Value + Send + 'static) {
    if !c.register(id, Arc::new(OneShot { id })) {
        too_many(c, id);
        return;
    }
    on_worker(c, id, move || {
        let reply = work();
        c.send(id, FLAG_END, &reply);
    });
}

/// Runs the work of stream `id` on a worker thread; when no thread can be
/// started, ends the stream with EAGAIN instead.
pub fn on_worker(c: &Conn, id: u32, job: impl FnOnce() + Send + 'static) {
    if crate::workers::run(job).is_err() {
        c.send_error(id, "EAGAIN", 11, "cannot start a thread", None);
    }
}

pub fn too_many(c: &Conn, id: u32) {
    let body = proto::error_body(
        "EAGAIN",
        11,
        &format!("more than {} streams open", proto::MAX_STREAMS),
        None,
    );
    c.send_unregistered(id, FLAG_END, &body);
}

/// `{t:"ok"}`.
pub fn ok() -> Value {
    cbor::map(vec![("t", "ok".into())])
}
