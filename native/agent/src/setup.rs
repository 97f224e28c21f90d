//! `setup` (FUSE mounts over virtio-serial ports, switch root, hostname,
//! entropy, clock) and `shutdown`.

use std::ffi::{CString, c_int, c_ulong};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cbor::Value;
use crate::conn::{self, Conn};
use crate::log;
use crate::proto::{self, FLAG_END};
use crate::sys;

static SETUP_STARTED: AtomicBool = AtomicBool::new(false);

struct FuseMount {
    tag: String,
    target: Vec<u8>,
    ro: bool,
}

struct Tmpfs {
    target: Vec<u8>,
    size: Option<u64>,
}

/// A virtio-blk disk the host attached, found by its serial.
struct Disk {
    serial: String,
    target: Vec<u8>,
    fstype: String,
    ro: bool,
}

/// Filesystems a disk may carry (their modules are in the initramfs).
const DISK_FSTYPES: [&str; 2] = ["ext4", "vfat"];

struct Setup {
    hostname: Vec<u8>,
    entropy: Vec<u8>,
    time: Option<(i64, i64)>,
    mounts: Vec<FuseMount>,
    tmpfs: Vec<Tmpfs>,
    disks: Vec<Disk>,
}

fn parse(body: &Value) -> Result<Setup, String> {
    let hostname = body
        .get("hostname")
        .and_then(|v| v.as_os_bytes())
        .ok_or("hostname must be a string")?
        .to_vec();
    if hostname.len() > 64 {
        return Err("hostname is longer than 64 bytes".into());
    }
    let entropy = match body.opt("entropy") {
        None => Vec::new(),
        Some(Value::Bytes(b)) if b.len() <= 4096 => b.clone(),
        Some(_) => return Err("entropy must be at most 4096 bytes".into()),
    };
    let time = match body.opt("time") {
        None => None,
        Some(v) => {
            let a = v.as_array().ok_or("time must be [sec, nsec]")?;
            let (Some(sec), Some(nsec)) = (
                a.first().and_then(|x| x.as_int()),
                a.get(1).and_then(|x| x.as_int()),
            ) else {
                return Err("time must be [sec, nsec]".into());
            };
            if a.len() != 2
                || !(0..=i64::MAX as i128).contains(&sec)
                || !(0..1_000_000_000).contains(&nsec)
            {
                return Err("time must be [sec, nsec] with 0 <= nsec < 1e9".into());
            }
            Some((sec as i64, nsec as i64))
        }
    };
    let mut mounts = Vec::new();
    for m in body
        .get("mounts")
        .and_then(|v| v.as_array())
        .ok_or("mounts must be an array")?
    {
        let tag = m
            .get("tag")
            .and_then(|v| v.as_str())
            .ok_or("mount tag must be text")?
            .to_string();
        if tag.is_empty() || tag.contains('/') || tag == "agent" {
            return Err(format!("bad mount tag {tag:?}"));
        }
        let target = m
            .get("target")
            .and_then(|v| v.as_os_bytes())
            .ok_or("mount target must be a string")?
            .to_vec();
        check_abs(&target)?;
        let ro = m
            .opt("ro")
            .map(|v| v.as_bool().ok_or("ro must be a boolean"))
            .transpose()?
            .unwrap_or(false);
        mounts.push(FuseMount { tag, target, ro });
    }
    match mounts.first() {
        Some(m) if m.target == b"/" => {}
        _ => return Err("the first mount must have target \"/\"".into()),
    }
    if mounts[1..].iter().any(|m| m.target == b"/") {
        return Err("only the first mount may have target \"/\"".into());
    }
    let mut tmpfs = Vec::new();
    if let Some(list) = body.opt("tmpfs") {
        for t in list.as_array().ok_or("tmpfs must be an array")? {
            let target = t
                .get("target")
                .and_then(|v| v.as_os_bytes())
                .ok_or("tmpfs target must be a string")?
                .to_vec();
            check_abs(&target)?;
            if target == b"/" {
                return Err("a tmpfs may not replace the root".into());
            }
            let size = t
                .opt("size")
                .map(|v| {
                    v.as_u64()
                        .ok_or("tmpfs size must be a non-negative integer")
                })
                .transpose()?;
            tmpfs.push(Tmpfs { target, size });
        }
    }
    let mut disks = Vec::new();
    if let Some(list) = body.opt("disks") {
        for d in list.as_array().ok_or("disks must be an array")? {
            let serial = d
                .get("serial")
                .and_then(|v| v.as_str())
                .ok_or("disk serial must be text")?
                .to_string();
            if serial.is_empty()
                || serial.len() > 20
                || !serial
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!("bad disk serial {serial:?}"));
            }
            let target = d
                .get("target")
                .and_then(|v| v.as_os_bytes())
                .ok_or("disk target must be a string")?
                .to_vec();
            check_abs(&target)?;
            if target == b"/" {
                return Err("a disk may not replace the root".into());
            }
            let fstype = d
                .get("fstype")
                .and_then(|v| v.as_str())
                .ok_or("disk fstype must be text")?
                .to_string();
            if !DISK_FSTYPES.contains(&fstype.as_str()) {
                return Err(format!(
                    "disk fstype {fstype:?} is not one of {DISK_FSTYPES:?}"
                ));
            }
            let ro = d
                .opt("ro")
                .map(|v| v.as_bool().ok_or("ro must be a boolean"))
                .transpose()?
                .unwrap_or(false);
            disks.push(Disk {
                serial,
                target,
                fstype,
                ro,
            });
        }
    }
    Ok(Setup {
        hostname,
        entropy,
        time,
        mounts,
        tmpfs,
        disks,
    })
}

fn check_abs(p: &[u8]) -> Result<(), String> {
    if p.first() != Some(&b'/') || p.contains(&0) {
        return Err(format!(
            "path {:?} must be absolute without NUL",
            String::from_utf8_lossy(p)
        ));
    }
    if p.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(format!(
            "path {:?} may not contain ..",
            String::from_utf8_lossy(p)
        ));
    }
    Ok(())
}

pub fn request(c: &'static Conn, id: u32, body: Value) {
    if SETUP_STARTED.swap(true, Ordering::SeqCst) {
        c.send_unregistered(
            id,
            FLAG_END,
            &proto::error_body("EBUSY", 16, "setup was already done", None),
        );
        return;
    }
    let s = match parse(&body) {
        Ok(s) => s,
        Err(m) => {
            SETUP_STARTED.store(false, Ordering::SeqCst);
            c.send_unregistered(
                id,
                FLAG_END,
                &proto::error_body("EPROTO", 71, &format!("setup: {m}"), None),
            );
            return;
        }
    };
    conn::spawn_oneshot(c, id, move || {
        match run(s) {
            // Only failures are logged: under TCG every console byte is a trap
            // into the emulator, and this path is on every sandbox's start.
            Ok(()) => conn::ok(),
            Err((e, m)) => {
                log!("setup failed: {m}");
                proto::error_body(sys::errno_name(e), e, &m, None)
            }
        }
    });
}

type Fail = (i32, String);

fn fail(e: i32, what: impl std::fmt::Display) -> Fail {
    (e, format!("{what}: {}", sys::errno_text(e)))
}

fn c(bytes: &[u8]) -> CString {
    // callers checked for NUL
    CString::new(bytes.to_vec()).unwrap_or_default()
}

fn run(s: Setup) -> Result<(), Fail> {
    // The root's relay first: the host answers its INIT while the guest sets
    // the clock and the entropy.
    let root = &s.mounts[0];
    let _ = std::fs::create_dir_all("/newroot");
    fuse_mount(&root.tag, c"/newroot", root.ro)?;
    if let Some((sec, nsec)) = s.time {
        let ts = sys::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        };
        if unsafe { sys::clock_settime(sys::CLOCK_REALTIME, &ts) } != 0 {
            return Err(fail(sys::errno(), "clock_settime"));
        }
    }
    if !s.entropy.is_empty() {
        add_entropy(&s.entropy)?;
    }
    // Disk filesystems' modules come from the initramfs, so load them before it goes.
    let mut fstypes: Vec<&str> = s.disks.iter().map(|d| d.fstype.as_str()).collect();
    fstypes.sort_unstable();
    fstypes.dedup();
    for fstype in fstypes {
        crate::load_modules(&format!("order.{fstype}"));
    }
    // The API filesystems, mounted at boot, move into the new root (mkdir
    // when missing; a read-only root must have them).
    for name in ["proc", "sys", "dev"] {
        let target = format!("/newroot/{name}");
        if std::fs::metadata(&target).is_err() {
            let _ = std::fs::create_dir_all(&target);
        }
        let staged = c(format!("{API_STAGE}/{name}").as_bytes());
        if let Err(e) = sys::move_mount(&staged, &c(target.as_bytes())) {
            // Not fatal: a rootfs without the directory still runs most commands.
            log!("mount {target}: {}", sys::errno_text(e));
        }
    }
    // Volumes go in before the switch of root: their mounts staged at boot
    // are only reachable from the initramfs.
    for m in &s.mounts[1..] {
        let target = [&b"/newroot"[..], &m.target].concat();
        mkdir_p(&target)?;
        fuse_mount(&m.tag, &c(&target), m.ro)?;
    }
    unsafe {
        if sys::chdir(c"/newroot".as_ptr()) != 0 {
            return Err(fail(sys::errno(), "chdir /newroot"));
        }
    }
    sys::move_mount(c".", c"/").map_err(|e| fail(e, "MS_MOVE /newroot to /"))?;
    unsafe {
        if sys::chroot(c".".as_ptr()) != 0 {
            return Err(fail(sys::errno(), "chroot"));
        }
        if sys::chdir(c"/".as_ptr()) != 0 {
            return Err(fail(sys::errno(), "chdir /"));
        }
    }
    for t in &s.tmpfs {
        mkdir_p(&t.target)?;
        let data = match t.size {
            Some(n) => format!("size={n}"),
            None => String::new(),
        };
        sys::mount_fs(
            c"tmpfs",
            &c(&t.target),
            c"tmpfs",
            sys::MS_NOSUID | sys::MS_NODEV,
            Some(&c(data.as_bytes())),
        )
        .map_err(|e| {
            fail(
                e,
                format!("mount tmpfs on {}", String::from_utf8_lossy(&t.target)),
            )
        })?;
    }
    for d in &s.disks {
        let dev = disk_device(&d.serial).ok_or((
            sys::ENODEV,
            format!("no virtio-blk disk with serial {:?}", d.serial),
        ))?;
        mkdir_p(&d.target)?;
        sys::mount_fs(
            &c(dev.as_bytes()),
            &c(&d.target),
            &c(d.fstype.as_bytes()),
            sys::MS_NOSUID | sys::MS_NODEV | if d.ro { sys::MS_RDONLY } else { 0 },
            None,
        )
        .map_err(|e| {
            fail(
                e,
                format!(
                    "mount {dev} ({}) on {}",
                    d.fstype,
                    String::from_utf8_lossy(&d.target)
                ),
            )
        })?;
    }
    if unsafe { sys::sethostname(s.hostname.as_ptr() as *const _, s.hostname.len()) } != 0 {
        return Err(fail(sys::errno(), "sethostname"));
    }
    Ok(())
}

/// Where the root's API filesystems wait from boot until setup moves them in.
const API_STAGE: &str = "/run/msb-api";

/// Mounts the API filesystems every root gets (proc, sys, dev with pts and
/// shm) under API_STAGE, at boot: a VM restored from a saved state then runs
/// none of their mount code, which TCG would translate afresh in every VM;
/// setup only moves them.
pub fn stage_api_mounts() {
    let mounts: [(
        &std::ffi::CStr,
        &str,
        &std::ffi::CStr,
        c_ulong,
        Option<&std::ffi::CStr>,
    ); 5] = [
        (
            c"proc",
            "proc",
            c"proc",
            sys::MS_NOSUID | sys::MS_NODEV | sys::MS_NOEXEC,
            None,
        ),
        (
            c"sysfs",
            "sys",
            c"sysfs",
            sys::MS_NOSUID | sys::MS_NODEV | sys::MS_NOEXEC,
            None,
        ),
        (c"devtmpfs", "dev", c"devtmpfs", sys::MS_NOSUID, None),
        (
            c"devpts",
            "dev/pts",
            c"devpts",
            sys::MS_NOSUID | sys::MS_NOEXEC,
            Some(c"newinstance,ptmxmode=0666,mode=0620"),
        ),
        (
            c"shm",
            "dev/shm",
            c"tmpfs",
            sys::MS_NOSUID | sys::MS_NODEV,
            Some(c"mode=1777"),
        ),
    ];
    for (src, name, fstype, flags, data) in mounts {
        let target = format!("{API_STAGE}/{name}");
        let _ = std::fs::create_dir_all(&target);
        if let Err(e) = sys::mount_fs(src, &c(target.as_bytes()), fstype, flags, data) {
            log!("mount {target}: {}", sys::errno_text(e));
        }
    }
}

/// `/dev/vdX` of the virtio-blk disk whose serial is `serial` (the host sets
/// serials, so the order in which the guest probed the disks does not matter).
fn disk_device(serial: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Ok(entries) = std::fs::read_dir("/sys/block") {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let found = std::fs::read_to_string(entry.path().join("serial"))
                    .map(|s| s.trim_end() == serial)
                    .unwrap_or(false);
                if found {
                    return Some(format!("/dev/{name}"));
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mkdir_p(p: &[u8]) -> Result<(), Fail> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(p));
    std::fs::create_dir_all(path)
        .map_err(|e| fail(sys::io_errno(&e), format!("mkdir -p {}", path.display())))
}

fn add_entropy(bytes: &[u8]) -> Result<(), Fail> {
    let fd = sys::Fd(
        sys::open_path("/dev/urandom", sys::O_RDWR).map_err(|e| fail(e, "open /dev/urandom"))?,
    );
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info: Vec<u8> = Vec::with_capacity(8 + bytes.len() + 4);
    info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(bytes);
    info.resize(8 + bytes.len().div_ceil(4) * 4, 0);
    unsafe {
        if sys::ioctl(fd.0, sys::RNDADDENTROPY, info.as_ptr()) != 0 {
            return Err(fail(sys::errno(), "RNDADDENTROPY"));
        }
        if sys::ioctl(fd.0, sys::RNDRESEEDCRNG) != 0 {
            return Err(fail(sys::errno(), "RNDRESEEDCRNG"));
        }
    }
    Ok(())
}

/// Size of a relay buffer: the largest FUSE message with max_write 16 MiB.
const RELAY_BUF: usize = (16 << 20) + 8192;

/// Where each filesystem port's FUSE mount waits from boot until setup.
const FUSE_STAGE: &str = "/run/msb-fs";

/// A filesystem port's FUSE mount, made at boot under FUSE_STAGE.
struct StagedMount {
    tag: String,
    port: c_int,
    fuse: c_int,
    /// The mount's readahead knob (see [`readahead_knob`]).
    knob: Option<c_int>,
}

/// FUSE mounts made at boot, waiting for setup.
static STAGED: Mutex<Vec<StagedMount>> = Mutex::new(Vec::new());

/// Opens the port `tag` (waiting up to `wait` for it) and a /dev/fuse.
fn open_fuse_port(tag: &str, wait: Duration) -> Result<(c_int, c_int), Fail> {
    let port = crate::find_port(tag, wait)
        .ok_or((sys::ENODEV, format!("virtio-serial port {tag:?} not found")))?;
    match sys::open_path("/dev/fuse", sys::O_RDWR) {
        Ok(fuse) => Ok((port, fuse)),
        Err(e) => {
            unsafe { sys::close(port) };
            Err(fail(e, "open /dev/fuse"))
        }
    }
}

/// Opens the port `tag` and a /dev/fuse and mounts that FUSE connection at
/// `target`, read-write (setup makes a mount read-only by a bind remount).
fn mount_fuse_port(
    tag: &str,
    target: &std::ffi::CStr,
    wait: Duration,
) -> Result<StagedMount, Fail> {
    let (port, fuse) = open_fuse_port(tag, wait)?;
    let opts =
        format!("fd={fuse},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions");
    if let Err(e) = sys::mount_fs(
        &c(tag.as_bytes()),
        target,
        c"fuse",
        0,
        Some(&c(opts.as_bytes())),
    ) {
        unsafe {
            sys::close(port);
            sys::close(fuse);
        }
        return Err(fail(
            e,
            format!("mount fuse {tag} on {}", target.to_string_lossy()),
        ));
    }
    let knob = readahead_knob(tag, target);
    Ok(StagedMount {
        tag: tag.to_string(),
        port,
        fuse,
        knob,
    })
}

/// Mounts the FUSE filesystems of the `count` filesystem ports (`fs0`, ...)
/// under FUSE_STAGE, at boot, before the agent port opens. The kernel sends
/// each INIT at once, but nothing reads it until setup starts the relays:
/// a saved state taken now holds no host-side FUSE state, and a VM restored
/// from it does none of a mount's work (a superblock, its bdi device and
/// sysfs files), which TCG would translate anew. A port that fails here is
/// mounted by setup instead.
pub fn stage_fuse_mounts(count: usize) {
    let mut staged = STAGED.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..count {
        let tag = format!("fs{i}");
        let target = format!("{FUSE_STAGE}/{tag}");
        let _ = std::fs::create_dir_all(&target);
        match mount_fuse_port(&tag, &c(target.as_bytes()), Duration::from_secs(2)) {
            Ok(mount) => staged.push(mount),
            Err((_, m)) => log!("{m}"),
        }
    }
}

/// Puts the FUSE filesystem of port `tag` at `target` (moving its mount
/// staged at boot, or mounting it now), read-only when `ro`, and starts its
/// relay.
fn fuse_mount(tag: &str, target: &std::ffi::CStr, ro: bool) -> Result<(), Fail> {
    let staged = {
        let mut staged = STAGED.lock().unwrap_or_else(|p| p.into_inner());
        staged
            .iter()
            .position(|m| m.tag == tag)
            .map(|i| staged.swap_remove(i))
    };
    let mount = match staged {
        Some(mount) => {
            sys::move_mount(&c(format!("{FUSE_STAGE}/{tag}").as_bytes()), target).map_err(|e| {
                fail(
                    e,
                    format!("move the {tag} mount to {}", target.to_string_lossy()),
                )
            })?;
            mount
        }
        None => mount_fuse_port(tag, target, Duration::from_secs(2))?,
    };
    if ro {
        let remounted = unsafe {
            sys::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                sys::MS_REMOUNT | sys::MS_BIND | sys::MS_RDONLY,
                std::ptr::null(),
            )
        };
        if remounted != 0 {
            return Err(fail(
                sys::errno(),
                format!("make {} read-only", target.to_string_lossy()),
            ));
        }
    }
    // On workers started at boot: no thread creation in a restored VM.
    let StagedMount {
        tag,
        port,
        fuse,
        knob,
    } = mount;
    let t = tag.clone();
    let a = crate::workers::run(move || relay_fuse_to_port(&t, fuse, port));
    let b = crate::workers::run(move || relay_port_to_fuse(&tag, port, fuse, knob));
    if a.is_err() || b.is_err() {
        return Err((sys::EAGAIN, "cannot start the FUSE relay threads".into()));
    }
    Ok(())
}

/// Readahead for a FUSE mount, in KiB. The kernel caps a FUSE mount's
/// readahead at its own default (128 KiB) whatever INIT says. Every request
/// costs a round trip to the host; a window of several max_pages-sized
/// (1 MiB) READs keeps more than one in flight, so the host reads and sends
/// the next while the guest copies the last.
const FUSE_READAHEAD_KB: &[u8] = b"4096";

/// Opens the readahead knob (sysfs, of the backing device) of the
/// filesystem just mounted at `target`; the relay writes it once INIT is
/// answered (see [`relay_port_to_fuse`]). Opened now because the mount
/// moves, and /sys with it, before then. Best effort: None only costs
/// speed. The device number comes from /proc/self/mountinfo, not a stat: a
/// stat of a fresh FUSE mount waits for INIT and a GETATTR round trip to
/// the host, which the guest can overlap with the rest of its setup instead.
fn readahead_knob(tag: &str, target: &std::ffi::CStr) -> Option<c_int> {
    let mountinfo = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => text,
        Err(e) => {
            log!("{tag}: readahead: mountinfo: {e}");
            return None;
        }
    };
    let Some(dev) = mount_device(&mountinfo, &target.to_string_lossy()) else {
        log!(
            "{tag}: readahead: {} is not in mountinfo",
            target.to_string_lossy()
        );
        return None;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    sys::open_path(&knob, sys::O_WRONLY)
        .inspect_err(|e| log!("{tag}: readahead: {knob}: {}", sys::errno_text(*e)))
        .ok()
}

/// Sets the readahead through `knob` (see [`readahead_knob`]) and closes it.
fn raise_readahead(tag: &str, knob: c_int) {
    if let Err(e) = sys::write_all(knob, FUSE_READAHEAD_KB) {
        log!("{tag}: readahead: {}", sys::errno_text(e));
    }
    unsafe { sys::close(knob) };
}

/// The `major:minor` of the last mount at `target` in a mountinfo text
/// (fields: id, parent, major:minor, root, mount point, ...).
fn mount_device<'a>(mountinfo: &'a str, target: &str) -> Option<&'a str> {
    mountinfo.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let dev = fields.nth(2)?;
        let point = fields.nth(1)?;
        (unescape_mount(point) == target).then_some(dev)
    })
}

/// Kernel requests → host: one read is one whole request.
fn relay_fuse_to_port(tag: &str, fuse: c_int, port: c_int) {
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        match sys::read_some(fuse, &mut buf) {
            Ok(0) => continue,
            Ok(n) => {
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    match crate::write_port(port, rest) {
                        Ok(written) => rest = &rest[written..],
                        Err(e) => {
                            // The request is lost; the kernel's request times out or is interrupted.
                            log!("{tag}: port write: {}", sys::errno_text(e));
                            std::thread::sleep(Duration::from_millis(10));
                            break;
                        }
                    }
                }
            }
            Err(e) if e == sys::ENOENT || e == sys::EAGAIN => continue, // interrupted request
            Err(e) if e == sys::ENODEV => {
                log!("{tag}: unmounted");
                return;
            }
            Err(e) => {
                log!("{tag}: /dev/fuse read: {}", sys::errno_text(e));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Host replies → kernel: framed by fuse_out_header.len; one write per reply.
/// The first reply is INIT's (the kernel sends nothing else until INIT is
/// answered) and the kernel applies it within that write, lowering the
/// mount's readahead to at most 128 KiB: the readahead `knob` is written right
/// after it, so the raise sticks.
fn relay_port_to_fuse(tag: &str, port: c_int, fuse: c_int, mut knob: Option<c_int>) {
    let mut buf = vec![0u8; RELAY_BUF];
    let mut have = 0usize;
    loop {
        // The rest of the reply whose header is in, else what one buffer holds.
        let want = if have >= 4 {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            len.saturating_sub(have).clamp(1, RELAY_BUF - have)
        } else {
            crate::PORT_BUFFER
        };
        match crate::read_port(port, &mut buf[have..have + want]) {
            Ok(0) => {
                // host side not connected (yet / any more)
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Ok(n) => have += n,
            Err(e) => {
                log!("{tag}: port read: {}", sys::errno_text(e));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let mut start = 0;
        while have - start >= 16 {
            let len =
                u32::from_le_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]])
                    as usize;
            if !(16..=RELAY_BUF).contains(&len) {
                log!(
                    "{tag}: reply length {len} out of range: the FUSE relay cannot resynchronise and stops"
                );
                return;
            }
            if have - start < len {
                break;
            }
            let r = unsafe { sys::write(fuse, buf[start..].as_ptr() as *const _, len) };
            if r < 0 {
                let e = sys::errno();
                if e == sys::ENODEV {
                    log!("{tag}: unmounted");
                    return;
                }
                if e != sys::ENOENT {
                    log!("{tag}: /dev/fuse write: {}", sys::errno_text(e));
                }
            } else if let Some(fd) = knob.take() {
                raise_readahead(tag, fd);
            }
            start += len;
        }
        if start > 0 {
            buf.copy_within(start..have, 0);
            have -= start;
        }
    }
}

/// Kills every process, syncs, unmounts and powers off.
pub fn shutdown() {
    log!("shutdown");
    std::thread::sleep(Duration::from_millis(20)); // let the `ok` reach the host
    unsafe { sys::kill(-1, sys::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && user_processes() > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { sys::kill(-1, sys::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && user_processes() > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { sys::sync() };
    if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
        let targets: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1).map(unescape_mount))
            .collect();
        for t in targets.iter().rev() {
            if t == "/" {
                continue;
            }
            if let Ok(ct) = CString::new(t.as_bytes()) {
                unsafe { sys::umount2(ct.as_ptr(), 0) };
            }
        }
    }
    power_off();
}

pub fn power_off() -> ! {
    unsafe {
        sys::sync();
        sys::reboot(sys::RB_POWER_OFF);
        sys::_exit(0)
    }
}

/// /proc/mounts escapes space, tab, newline and backslash as \ooo.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes other than PID 1 and kernel threads.
fn user_processes() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        // kernel threads have an empty cmdline; zombies too, but the reaper takes those
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && !cmd.is_empty()
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::mount_device;

    const MOUNTINFO: &str = "22 1 0:21 / / rw - rootfs rootfs rw\n\
        30 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw\n\
        41 22 0:40 / /newroot rw - fuse root rw,user_id=0\n\
        43 41 0:42 / /new\\040dir rw - fuse vol rw\n\
        44 22 0:43 / /newroot rw - fuse again rw\n";

    #[test]
    fn finds_the_last_mount_at_a_target_with_escapes() {
        assert_eq!(mount_device(MOUNTINFO, "/newroot"), Some("0:43"));
        assert_eq!(mount_device(MOUNTINFO, "/new dir"), Some("0:42"));
        assert_eq!(mount_device(MOUNTINFO, "/dev"), Some("0:5"));
        assert_eq!(mount_device(MOUNTINFO, "/missing"), None);
    }
}
