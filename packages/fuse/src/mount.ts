import { closeSync, constants as fsConstants, openSync, writevSync, type Stats } from "node:fs";
import { mkdir, realpath, stat, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { DynFileSystem } from "@msb/fs";
import { constants, fuseBackingClose, fuseBackingOpen, fuseDevClone, mount, umount2 } from "@msb/native";
import { FuseError } from "./errors.js";
import { consoleLogger, describeError } from "./log.js";
import { mountsAt } from "./mountinfo.js";
import { isNoReply, maxRequestSize } from "./protocol.js";
import { startReader, type Reader } from "./reader.js";
import { FuseServer, type FuseConnectionInfo, type FuseServerOptions } from "./server.js";

/** Options of {@link mountFuse}. */
export interface FuseMountOptions extends FuseServerOptions {
  /** Let users other than the mounting one in (`allow_other`); the backend checks permissions either way. */
  readonly allowOther?: boolean;
  /**
   * Have the kernel check permissions from the attributes too
   * (`default_permissions`), besides the backend's own checks. On by default:
   * without it the kernel never checks search permission of a directory
   * itself, so a path whose dentries are cached (cache policy `auto` or
   * `always`) is walked by any user without asking the backend. Turn it off
   * only for a single-user mount; see the README.
   */
  readonly defaultPermissions?: boolean;
  /**
   * Let the kernel itself read (without `O_DIRECT`) and mmap files of a
   * backend that names their host files (`passthroughFd`, as PassthroughFs
   * does), with FUSE passthrough (Linux 6.9+, CAP_SYS_ADMIN, not with
   * `writebackCache`); writes still go to the backend. Where the kernel or
   * the backend cannot, files are served through the backend as usual.
   * Default true; see the README.
   */
  readonly passthrough?: boolean;
  /** Mount read-only (`MS_RDONLY`). */
  readonly readOnly?: boolean;
  /** The source shown in /proc/mounts. Default `"msb"`. */
  readonly source?: string;
  /** How long to wait for the kernel's INIT after mounting, in ms. Default 10 000. */
  readonly initTimeoutMs?: number;
  /**
   * Descriptors requests are read from, 1 to 16: each past the first is
   * cloned from the mount's (`FUSE_DEV_IOC_CLONE`). All are read and served
   * on this thread, so more than one only spreads the kernel's queues.
   * Default 1; see the README.
   */
  readonly readers?: number;
  /**
   * After answering every queued request, keep polling /dev/fuse this many
   * microseconds for the next one (while no backend call is pending) before
   * going back to the event loop: it saves a thread wake-up per request on a
   * busy mount, at the cost of up to this much CPU each time the mount goes
   * quiet. 0 to 1000; default 50; 0 turns it off. Not used with several
   * `readers`. See the README.
   */
  readonly spinMicros?: number;
}

/** Options of {@link FuseMount.unmount}. */
export interface UnmountOptions {
  /**
   * How long open files may keep the detached mount alive, in ms, before the
   * connection is aborted (their I/O then fails with ENOTCONN). Default 5000; 0 aborts at once.
   */
  readonly timeoutMs?: number;
}

/** A filesystem mounted by {@link mountFuse}. */
export interface FuseMount extends AsyncDisposable {
  /** The absolute mountpoint. */
  readonly mountpoint: string;
  /** What INIT negotiated. */
  readonly connection: FuseConnectionInfo;
  /** Resolves when the connection has ended (unmounted here or elsewhere) and the backend is destroyed. */
  readonly closed: Promise<void>;
  /** Detaches the mount (`umount2(MNT_DETACH)`), waits for the connection to end, destroys the backend. Idempotent. */
  unmount(options?: UnmountOptions): Promise<void>;
}

const FUSECTL = "/sys/fs/fuse/connections";

/** See {@link FuseMountOptions.spinMicros}: about the gap between a reply and the same caller's next request here. */
const DEFAULT_SPIN_MICROS = 50;

// One exit hook for every mount of this process: a process that exits
// without unmounting would otherwise leave dead mounts behind.
const detachOnExit = new Set<() => void>();
let exitHooked = false;
function onExit(detach: () => void): void {
  detachOnExit.add(detach);
  if (!exitHooked) {
    exitHooked = true;
    process.on("exit", () => detachOnExit.forEach((d) => d()));
  }
}

/** The `unique` of a FUSE request or reply: both headers carry it at byte 8. */
function uniqueOf(message: Uint8Array): number {
  const view = new DataView(message.buffer, message.byteOffset, 16);
  return view.getUint32(8, true) + view.getUint32(12, true) * 2 ** 32;
}

/** A timer that does not keep the process alive. */
function delay(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms).unref());
}

/** stat(2) of the mountpoint on the threadpool, so a mount served by this very process can still answer. */
async function statWithin(path: string, ms: number): Promise<Stats> {
  const timeout = delay(ms).then(() => {
    throw new FuseError("ERR_FUSE_MOUNT", `mountpoint ${path} does not respond to stat within ${ms} ms`, { path });
  });
  return Promise.race([stat(path), timeout]);
}

/**
 * Lazily unmounts what a crashed server left on `mountpoint` (stat fails
 * with ENOTCONN), then returns the mountpoint's stat.
 */
async function clearStaleMounts(mountpoint: string, log: (m: string) => void): Promise<Stats> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await statWithin(mountpoint, 5000);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code !== "ENOTCONN" || attempt >= 16) {
        if (FuseError.isInstance(error)) throw error;
        throw new FuseError("ERR_FUSE_MOUNT", `cannot mount on ${mountpoint}: ${describeError(error)}`, { path: mountpoint, cause: error });
      }
      log(`mountpoint ${mountpoint} holds a stale FUSE mount (ENOTCONN): detaching it`);
      try {
        umount2(mountpoint, constants.MNT_DETACH);
      } catch (cause) {
        throw new FuseError("ERR_FUSE_MOUNT", `cannot detach the stale mount on ${mountpoint}: ${describeError(cause)}`, { path: mountpoint, cause });
      }
    }
  }
}

/** Aborts a FUSE connection through fusectl (mounted on /sys/fs/fuse/connections if it is not). */
async function abortConnection(minor: number): Promise<void> {
  const abort = `${FUSECTL}/${minor}/abort`;
  try {
    await writeFile(abort, "1");
  } catch (error) {
    if ((error as { code?: unknown }).code !== "ENOENT") throw error;
    if ((await mountsAt(FUSECTL)).some((m) => m.fstype === "fusectl")) return; // the connection is gone already
    await mkdir(FUSECTL, { recursive: true });
    mount("fusectl", FUSECTL, "fusectl", 0, null);
    await writeFile(abort, "1").catch(() => {});
  }
}

/**
 * Mounts `fs` on `mountpoint` through the host's `/dev/fuse` and serves it
 * until {@link FuseMount.unmount} (needs root or CAP_SYS_ADMIN). A stale
 * mount left there by a crashed server is detached first.
 *
 * Requests are read and served on this thread: when /dev/fuse is readable
 * (a poll on Node's event loop), every queued request is read without
 * blocking, served, and its reply written, with no thread in between.
 * Never touch the mount with synchronous `fs` calls from this process:
 * this thread would wait for itself.
 *
 * @example
 * ```ts
 * const mounted = await mountFuse(new MemFs(), "/mnt/scratch", { allowOther: true });
 * // ... other processes use /mnt/scratch ...
 * await mounted.unmount();
 * ```
 */
export async function mountFuse(fs: DynFileSystem, mountpoint: string, options: FuseMountOptions = {}): Promise<FuseMount> {
  if (typeof mountpoint !== "string" || mountpoint === "") throw new TypeError(`mountFuse: mountpoint must be a non-empty path, got ${String(mountpoint)}`);
  const log = options.logger ?? consoleLogger(options.debug === true);
  const spinMicros = options.spinMicros ?? DEFAULT_SPIN_MICROS;
  if (!Number.isInteger(spinMicros) || spinMicros < 0 || spinMicros > 1000) {
    throw new TypeError(`mountFuse: option spinMicros must be an integer from 0 to 1000, got ${String(spinMicros)}`);
  }
  const readerCount = options.readers ?? 1;
  if (!Number.isInteger(readerCount) || readerCount < 1 || readerCount > 16) {
    throw new TypeError(`mountFuse: option readers must be an integer from 1 to 16, got ${String(readerCount)}`);
  }
  const root = await clearStaleMounts(resolve(mountpoint), (m) => log.warn(m));
  // mountinfo names mounts by their canonical path.
  const target = await realpath(resolve(mountpoint)).catch((cause: unknown) => {
    throw new FuseError("ERR_FUSE_MOUNT", `cannot resolve the mountpoint ${mountpoint}: ${describeError(cause)}`, { path: mountpoint, cause });
  });

  // Non-blocking: requests are read on this thread only when there are some.
  const deviceFlags = fsConstants.O_RDWR | fsConstants.O_NONBLOCK;
  let fd: number;
  try {
    fd = openSync("/dev/fuse", deviceFlags);
  } catch (error) {
    throw new FuseError("ERR_FUSE_DEVICE", `cannot open /dev/fuse: ${describeError(error)} (is the fuse module loaded, and are we root?)`, {
      path: "/dev/fuse",
      cause: error,
    });
  }
  // The mount's descriptor first, then its clones (one per extra reader).
  const fds = [fd];
  let fdsOpen = true;
  const closeFds = (): void => {
    if (fdsOpen) fds.forEach((f) => closeSync(f));
    fdsOpen = false;
  };

  // A reply must go to the descriptor its request was read from: with
  // several readers, the descriptor of each request awaiting a reply, by unique.
  const replyFds = new Map<number, number>();
  const writeReply = (head: Uint8Array, data: Uint8Array | undefined): void => {
    let target = fd;
    if (fds.length > 1 && head.length >= 16) {
      const unique = uniqueOf(head);
      target = replyFds.get(unique) ?? fd; // notifications (unique 0) may use any descriptor
      replyFds.delete(unique);
    }
    try {
      writevSync(target, data === undefined ? [head] : [head, data]);
    } catch (error) {
      // ENOENT: the request was interrupted or aborted meanwhile; ENODEV: the connection is gone.
      const code = (error as { code?: unknown }).code;
      if (code === "ENOENT" || code === "ENODEV") log.debug(`reply dropped by the kernel (${String(code)})`);
      else log.warn(`writing a reply to /dev/fuse failed: ${describeError(error)}`);
    }
  };
  // writevSync has written the reply when it returns: read buffers can be reused.
  const backingFiles = options.passthrough === false ? undefined : { open: (hostFd: number) => fuseBackingOpen(fd, hostFd), close: (id: number) => fuseBackingClose(fd, id) };
  const server = new FuseServer(fs, writeReply, { ...options, logger: log, sinkConsumes: true, backingFiles });

  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  let data = `fd=${fd},rootmode=${(root.mode & constants.S_IFMT).toString(8)},user_id=${uid},group_id=${gid}`;
  if (options.allowOther === true) data += ",allow_other";
  if (options.defaultPermissions !== false) data += ",default_permissions";
  const flags = constants.MS_NOSUID | constants.MS_NODEV | (options.readOnly === true ? constants.MS_RDONLY : 0);
  try {
    mount(options.source ?? "msb", target, "fuse.msb", flags, data);
  } catch (error) {
    closeFds();
    throw new FuseError("ERR_FUSE_MOUNT", `mount of ${target} failed: ${describeError(error)}`, { path: target, cause: error });
  }
  const detach = (): void => {
    try {
      umount2(target, constants.MNT_DETACH);
    } catch {
      // Unmounted elsewhere already.
    }
  };
  onExit(detach);

  // Clones attach to the connection mount(2) made; a kernel without them leaves fewer readers.
  for (let i = 1; i < readerCount; i++) {
    let clone: number | undefined;
    try {
      clone = openSync("/dev/fuse", deviceFlags);
      fuseDevClone(clone, fd);
      fds.push(clone);
    } catch (error) {
      if (clone !== undefined) closeSync(clone);
      log.warn(`cannot clone the /dev/fuse descriptor for reader ${i + 1} of ${readerCount}, serving with ${fds.length}: ${describeError(error)}`);
      break;
    }
  }

  let resolveClosed!: () => void;
  const closed = new Promise<void>((done) => (resolveClosed = done));
  let ended = false;
  const onMessage =
    fds.length === 1
      ? (message: Uint8Array): void => server.handleLent(message)
      : (message: Uint8Array, from: number): void => {
          if (message.length >= 16 && !isNoReply(new DataView(message.buffer, message.byteOffset, 8).getUint32(4, true))) {
            replyFds.set(uniqueOf(message), from);
          }
          server.handleLent(message);
        };
  // Messages are lent to the server, which copies what it keeps: one read buffer serves every descriptor.
  const readBuffer = new Uint8Array(maxRequestSize(server.maxWrite));
  // Polling one descriptor would hold up requests queued on the others: several readers never poll.
  const spin = { micros: fds.length === 1 ? spinMicros : 0, idle: () => server.inflight === 0 };
  // The connection ends for every reader at once (ENODEV); the first to see it ends the mount.
  const readers: Reader[] = fds.map((readFd) =>
    startReader(readFd, readBuffer, onMessage, (why) => {
      if (ended) return;
      ended = true;
      if (why !== undefined) log.warn(`FUSE connection of ${target} ended: ${why}`);
      // No poll may outlive the descriptors closed below.
      readers.forEach((reader) => reader.stop());
      detachOnExit.delete(detach);
      void server.close().then(() => {
        closeFds();
        resolveClosed();
      });
    }, spin),
  );

  const minor = (await mountsAt(target)).filter((m) => m.fstype === "fuse.msb").at(-1)?.minor;
  const initTimeout = options.initTimeoutMs ?? 10_000;
  let connection: FuseConnectionInfo;
  try {
    connection = await Promise.race([
      server.initialized,
      delay(initTimeout).then(() => {
        throw new Error(`no INIT from the kernel within ${initTimeout} ms`);
      }),
    ]);
  } catch (error) {
    detach();
    if (minor !== undefined && !ended) await abortConnection(minor).catch(() => {});
    throw new FuseError("ERR_FUSE_INIT", `FUSE INIT on ${target} failed: ${describeError(error)}`, { path: target, cause: error });
  }

  let unmounting: Promise<void> | undefined;
  const unmount = (opts: UnmountOptions = {}): Promise<void> =>
    (unmounting ??= (async () => {
      detach();
      const timeoutMs = opts.timeoutMs ?? 5000;
      const ok = await Promise.race([closed.then(() => true), delay(timeoutMs).then(() => false)]);
      if (ok) return;
      log.warn(`${target} still in use ${timeoutMs} ms after unmounting: aborting the FUSE connection`);
      if (minor !== undefined) {
        await abortConnection(minor).catch((error: unknown) => log.warn(`aborting the FUSE connection failed: ${describeError(error)}`));
      }
      if (!(await Promise.race([closed.then(() => true), delay(5000).then(() => false)]))) {
        // Without fusectl the connection lives until the last user leaves; do not hold the process for it.
        log.warn(`the FUSE connection of ${target} could not be aborted; it ends when its last user closes it`);
        readers.forEach((reader) => reader.unref());
      }
    })());

  return {
    mountpoint: target,
    connection,
    closed,
    unmount,
    [Symbol.asyncDispose]: () => unmount(),
  };
}
