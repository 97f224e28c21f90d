//! msb-agent: PID 1 of an msb microVM. Boots (mounts, modules), opens the
//! virtio-serial port `agent` and serves PROTOCOL.md on it: FUSE root setup,
//! exec, fs operations, shutdown.

mod cbor;
mod conn;
mod dispatch;
mod exec;
mod fsops;
mod proto;
mod setup;
mod sys;
mod users;
mod workers;

use std::ffi::c_int;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A console line prefixed `msb-agent:`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("msb-agent: {}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

pub const VERSION: &str = concat!("msb-agent ", env!("CARGO_PKG_VERSION"));

fn main() {
    if unsafe { sys::getpid() } != 1 {
        eprintln!("{VERSION}: the guest agent runs as PID 1 in an msb microVM");
        std::process::exit(2);
    }
    let t0 = Instant::now();
    boot_mounts();
    console();
    load_modules("order");
    let t_mods = t0.elapsed();
    exec::start_reaper();
    // Everything up to the agent port's open is in a saved state (the host
    // saves when that port opens): a restored VM redoes none of it.
    setup::stage_api_mounts();
    let fs_ports = cmdline_fs_ports();
    setup::stage_fuse_mounts(fs_ports);
    // setup, the first exec, and each filesystem's two relay loops
    workers::prestart(2 + 2 * fs_ports);
    exec::pipe_pool::refill();
    log!(
        "ready ({} ms since start, modules {} ms)",
        t0.elapsed().as_millis(),
        t_mods.as_millis()
    );
    let fd = match find_port("agent", Duration::from_secs(10)) {
        Some(fd) => fd,
        None => {
            log!("virtio-serial port \"agent\" not found; powering off");
            setup::power_off();
        }
    };
    // Non-blocking: see conn.rs.
    unsafe { set_nonblock(fd) };
    let c = conn::init(fd);
    c.run();
}

unsafe extern "C" {
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
}

unsafe fn set_nonblock(fd: c_int) {
    const F_GETFL: c_int = 3;
    const F_SETFL: c_int = 4;
    const O_NONBLOCK: c_int = 0o4000;
    unsafe {
        let fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
}

fn boot_mounts() {
    for (src, target, fstype) in [
        (c"devtmpfs", c"/dev", c"devtmpfs"),
        (c"proc", c"/proc", c"proc"),
        (c"sysfs", c"/sys", c"sysfs"),
    ] {
        let _ = std::fs::create_dir_all(target.to_str().unwrap_or("/"));
        let _ = sys::mount_fs(
            src,
            target,
            fstype,
            sys::MS_NOSUID | (sys::MS_NOEXEC * (fstype != c"devtmpfs") as u64),
            None,
        );
    }
}

/// How many filesystem ports (`fs0`, ...) the host gave this VM: the kernel
/// command line's `msb.fs_ports=N` (0 when absent).
fn cmdline_fs_ports() -> usize {
    std::fs::read_to_string("/proc/cmdline")
        .ok()
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|arg| arg.strip_prefix("msb.fs_ports="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
        .min(64)
}

/// stdin/stdout/stderr on /dev/console (ttyS0).
fn console() {
    if let Ok(fd) = sys::open_path("/dev/console", sys::O_RDWR | sys::O_NOCTTY) {
        unsafe {
            sys::dup2(fd, 0);
            sys::dup2(fd, 1);
            sys::dup2(fd, 2);
            if fd > 2 {
                sys::close(fd);
            }
        }
    }
}

/// finit_module for each name in the list file `order` of /lib/modules (EEXIST is fine).
pub fn load_modules(order: &str) {
    let Ok(order) = std::fs::read_to_string(format!("/lib/modules/{order}")) else {
        return;
    };
    for name in order.split_whitespace() {
        let path = format!("/lib/modules/{name}.ko");
        let fd = match sys::open_path(&path, sys::O_RDONLY) {
            Ok(fd) => sys::Fd(fd),
            Err(e) => {
                log!("module {path}: {}", sys::errno_text(e));
                continue;
            }
        };
        let r = unsafe {
            sys::syscall(
                sys::SYS_FINIT_MODULE,
                fd.0 as std::ffi::c_long,
                c"".as_ptr(),
                0 as std::ffi::c_long,
            )
        };
        if r != 0 {
            let e = sys::errno();
            if e != sys::EEXIST {
                log!("insmod {name}: {}", sys::errno_text(e));
            }
        }
    }
}

/// The /dev node of the virtio-serial port named `name`, or None. Every
/// scan of /sys/class/virtio-ports remembers all the names it saw: the ports
/// exist from boot, so the setup of a VM restored from a saved state (taken
/// after the boot's scan) opens its ports without reading sysfs again.
pub fn port_device(name: &str) -> Option<String> {
    static KNOWN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, dev)) = known.iter().find(|(n, _)| n == name) {
        return Some(dev.clone());
    }
    let dir = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for entry in dir.flatten() {
        let Ok(n) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        let n = n.trim_end_matches('\n');
        if !n.is_empty() && !known.iter().any(|(k, _)| k == n) {
            known.push((
                n.to_string(),
                format!("/dev/{}", entry.file_name().to_string_lossy()),
            ));
        }
    }
    known
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, dev)| dev.clone())
}

/// Bytes of one receive buffer of a virtio-serial port (the guest driver's
/// page-sized buffers). A read(2) of the port returns at most one buffer.
pub const PORT_BUFFER: usize = 4096;
/// Buffers asked for in one readv(2): 1 MiB.
pub const PORT_BUFFERS_PER_READ: usize = 256;

/// Reads into `out` from a port, one buffer-sized piece per iovec: readv
/// reads piece after piece and stops at the first one a buffer did not fill,
/// so one call takes many full buffers where read(2) would take one (a 1 MiB
/// reply was 256 system calls). On a blocking port, ask only for bytes that
/// are on their way: a later piece blocks until data arrives; on a
/// non-blocking one the call ends at the first empty buffer.
pub fn read_port(port: c_int, out: &mut [u8]) -> Result<usize, i32> {
    let pieces: Vec<sys::iovec> = out
        .chunks_mut(PORT_BUFFER)
        .take(PORT_BUFFERS_PER_READ)
        .map(|piece| sys::iovec {
            base: piece.as_mut_ptr() as *mut _,
            len: piece.len(),
        })
        .collect();
    sys::count_retrying(|| unsafe { sys::readv(port, pieces.as_ptr(), pieces.len() as c_int) })
}

/// Bytes the guest driver takes from one write(2) of a virtio-serial port.
const PORT_WRITE_PIECE: usize = 32 * 1024;
/// Pieces handed to one writev(2) (the kernel's limit of iovecs).
const PORT_PIECES_PER_WRITE: usize = 1024;

/// Writes from `data` to a port, one driver-sized piece per iovec: a
/// write(2) of a port takes at most 32 KiB, so a 1 MiB FUSE request or frame
/// was 32 system calls. Returns the bytes written (fewer when a piece did not
/// go whole, e.g. a non-blocking port whose queue filled up).
pub fn write_port(port: c_int, data: &[u8]) -> Result<usize, i32> {
    let pieces: Vec<sys::iovec> = data
        .chunks(PORT_WRITE_PIECE)
        .take(PORT_PIECES_PER_WRITE)
        .map(|piece| sys::iovec {
            base: piece.as_ptr() as *mut _,
            len: piece.len(),
        })
        .collect();
    sys::count_retrying(|| unsafe { sys::writev(port, pieces.as_ptr(), pieces.len() as c_int) })
}

/// Opens the port named `name` (O_RDWR|O_CLOEXEC), waiting up to `wait` for it to appear.
pub fn find_port(name: &str, wait: Duration) -> Option<c_int> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(dev) = port_device(name) {
            match sys::open_path(&dev, sys::O_RDWR) {
                Ok(fd) => return Some(fd),
                Err(e) if e == sys::ENOENT => {} // udev-less: the node may lag the sysfs entry
                Err(e) => {
                    log!("open {dev}: {}", sys::errno_text(e));
                    return None;
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
