import {
  Errno,
  FOPEN,
  FsError,
  O,
  WRITE,
  isDotOrDotDot,
  isPromiseLike,
  type Context,
  type CreateReply,
  type DirEntryPlus,
  type DynFileSystem,
  type Entry,
  type MaybePromise,
  type OpenReply,
} from "@msb/fs";
import { cacheSettings, type CacheSettings } from "./cache.js";
import {
  HeaderError,
  ProtocolError,
  decodeContext,
  decodeHeader,
  decodeRequest,
  type InitIn,
  type Request,
  type RequestHeader,
} from "./decode.js";
import {
  EncodeError,
  encodeAttr,
  encodeCreate,
  encodeDataHeader,
  encodeDirents,
  encodeEmpty,
  encodeEntry,
  encodeError,
  encodeInit,
  encodeInitMajorOnly,
  encodeInvalidateAttr,
  encodeNegativeEntry,
  encodeOpen,
  encodeStatfs,
  encodeU64,
  encodeWrite,
  encodeXattrSize,
  type ReplyTo,
} from "./encode.js";
import { LogLimiter, consoleLogger, describeError, type FuseLogger } from "./log.js";
import {
  FOPEN_PASSTHROUGH,
  FUSE_MAJOR,
  FUSE_MINOR,
  FUSE_MIN_MINOR,
  InitFlag,
  Op,
  PASSTHROUGH_STACK_DEPTH,
  initFlagNames,
  isNoReply,
  opName,
} from "./protocol.js";


/** How many read buffers a server keeps for reuse: enough for the reads a 2-core host has in flight at once. */
const READ_BUFFERS_KEPT = 8;
/** The largest copy_file_range the 32-bit reply of COPY_FILE_RANGE can report (page-aligned). */
const COPY_RANGE_MAX_32 = 0xffff_f000;

/** Options of a {@link FuseServer}. */
export interface FuseServerOptions {
  /** Largest WRITE (and READ) the kernel may send, in bytes: 4096 to 16 MiB. Default 1 MiB. */
  readonly maxWrite?: number;
  /** Largest readahead, in bytes; the kernel's offer caps it. Default: the kernel's offer. */
  readonly maxReadahead?: number;
  /** Asynchronous requests (readahead, writeback) the kernel may have in flight at once. Default 64. */
  readonly maxBackground?: number;
  /**
   * Let the kernel cache writes and send them later (FUSE_WRITEBACK_CACHE).
   * Faster small writes; the backend then sees reads on files opened
   * write-only and writes through any handle of the inode. Default false.
   */
  readonly writebackCache?: boolean;
  /**
   * The sink has written a reply's bytes out by the time it returns (as a
   * `writev` to /dev/fuse has), so the server may read into buffers it
   * reuses (a backend's `readInto`) instead of taking a fresh array per
   * READ. Leave it off for a sink that keeps the bytes (a stream). Default false.
   */
  readonly sinkConsumes?: boolean;
  /**
   * Registers host files with the kernel for FUSE passthrough; a `/dev/fuse`
   * connection has this ({@link mountFuse} sets it). With it, and when the
   * kernel grants FUSE_PASSTHROUGH (not with `writebackCache`), a file whose
   * backend names its host file (`passthroughFd`) is read (without
   * `O_DIRECT`) and mmapped by the kernel itself; writes still come to the
   * backend. Default: none, every read and write goes to the backend.
   */
  readonly backingFiles?: BackingFiles;
  /** Where log lines go. Default: the console (debug lines only with `debug`). */
  readonly logger?: FuseLogger;
  /** Log every request and reply at debug level. */
  readonly debug?: boolean;
}

/**
 * The kernel's registry of backing files of one FUSE connection
 * (`FUSE_DEV_IOC_BACKING_OPEN` / `_CLOSE` on its `/dev/fuse` descriptor).
 * Both may throw (an errno-coded error); `open` returns the backing id.
 */
export interface BackingFiles {
  open(fd: number): number;
  close(backingId: number): void;
}

/** What INIT negotiated with the kernel. */
export interface FuseConnectionInfo {
  /** The protocol minor the kernel offered. */
  readonly kernelMinor: number;
  /** The minor in use: the smaller of the kernel's and this server's. */
  readonly minor: number;
  /** The INIT flags in use, by name (`ASYNC_READ`, `MAX_PAGES`, ...). */
  readonly flags: readonly string[];
  readonly maxWrite: number;
  readonly maxReadahead: number;
  readonly maxPages: number;
}

/**
 * Where replies go: one FUSE message per call, `data` (when given) being
 * the tail of the same message, to be written right after `head` without
 * anything in between. Must not throw.
 */
export type ReplySink = (head: Uint8Array, data?: Uint8Array) => void;

type Reply = Uint8Array | readonly [Uint8Array, Uint8Array];

interface Pending {
  readonly header: RequestHeader;
  /** Answered already (by an INTERRUPT): the backend's late result is dropped. */
  replied: boolean;
}

/**
 * The open files of one inode, while the connection has passthrough: the
 * kernel takes passthrough opens of an inode only through one backing file
 * and never alongside other opens, so each inode has one mode at a time.
 */
interface InodeFiles {
  /** The backing id every open of the inode names, while they are passthrough. */
  backingId: number | undefined;
  /** Open handles, each with whether it is passthrough. */
  readonly handles: Map<number, boolean>;
}

interface Settings {
  readonly maxWrite: number;
  readonly maxReadahead: number | undefined;
  readonly maxBackground: number;
  readonly writebackCache: boolean;
  readonly backingFiles: BackingFiles | undefined;
}

type State = "new" | "initializing" | "ready" | "failed" | "destroyed" | "closed";

function checkOptions(options: FuseServerOptions): Settings {
  const int = (name: keyof FuseServerOptions, value: unknown, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value === "number" && Number.isInteger(value) && value >= min && value <= max) return value;
    throw new TypeError(`FuseServer: option ${name} must be an integer from ${min} to ${max}, got ${typeof value === "number" ? value : typeof value}`);
  };
  return {
    maxWrite: int("maxWrite", options.maxWrite, 4096, 16 << 20, 1 << 20),
    maxReadahead: options.maxReadahead === undefined ? undefined : int("maxReadahead", options.maxReadahead, 0, 0xffff_ffff, 0),
    maxBackground: int("maxBackground", options.maxBackground, 1, 0xffff, 64),
    writebackCache: options.writebackCache === true,
    backingFiles: options.backingFiles,
  };
}

/** The INIT flags this server asks for; the kernel grants those it offered. */
function wantedFlags(settings: Settings, cache: CacheSettings): bigint {
  let flags =
    InitFlag.ASYNC_READ |
    InitFlag.ATOMIC_O_TRUNC |
    InitFlag.BIG_WRITES |
    InitFlag.AUTO_INVAL_DATA |
    InitFlag.DO_READDIRPLUS |
    InitFlag.READDIRPLUS_AUTO |
    InitFlag.ASYNC_DIO |
    InitFlag.PARALLEL_DIROPS |
    InitFlag.HANDLE_KILLPRIV_V2 |
    InitFlag.MAX_PAGES |
    InitFlag.SETXATTR_EXT |
    InitFlag.INIT_EXT |
    InitFlag.CREATE_SUPP_GROUP |
    InitFlag.DIRECT_IO_ALLOW_MMAP |
    InitFlag.NO_EXPORT_SUPPORT;
  // Symlink targets are cached in the page cache, which DIRECT_IO-style "never" forbids.
  if (cache.timeouts.attr > 0) flags |= InitFlag.CACHE_SYMLINKS;
  if (settings.writebackCache) flags |= InitFlag.WRITEBACK_CACHE;
  // The kernel does not combine passthrough with the writeback cache.
  else if (settings.backingFiles !== undefined) flags |= InitFlag.PASSTHROUGH;
  return flags;
}

function isFsError(error: unknown): error is FsError {
  return FsError.isInstance(error);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/**
 * A FUSE server for one `DynFileSystem` on one connection: it decodes
 * each request message given to {@link FuseServer.handle}, calls the
 * backend, and hands the encoded reply to the {@link ReplySink}. It does not
 * care where the bytes come from: `/dev/fuse` ({@link mountFuse}), a guest's
 * byte stream ({@link serveStream}), or a test.
 *
 * Requests are served concurrently: a backend answering with a Promise holds
 * up nothing else, and replies go out in completion order. Nothing a peer
 * sends and nothing a backend throws escapes `handle`: a malformed request
 * is answered with EINVAL or EIO and logged, an `FsError` becomes its
 * errno, anything else EIO plus a log line.
 *
 * @example
 * ```ts
 * const server = new FuseServer(new MemFs(), (head, data) => {
 *   socket.write(head);
 *   if (data) socket.write(data);
 * });
 * socket.on("data", (message) => server.handle(message)); // one FUSE message per call
 * ```
 */
export class FuseServer {
  readonly #fs: DynFileSystem;
  readonly #sink: ReplySink;
  readonly #settings: Settings;
  /** Read buffers to reuse, when the sink consumes replies (see `sinkConsumes`). */
  readonly #readBuffers: Uint8Array[] | undefined;
  readonly #cache: CacheSettings;
  readonly #log: FuseLogger;
  readonly #debug: boolean;
  readonly #malformedLog: LogLimiter;
  readonly #failureLog: LogLimiter;
  readonly #pending = new Map<number, Pending>();
  /** The backing files, once INIT granted FUSE_PASSTHROUGH (until registering one is refused). */
  #backing: BackingFiles | undefined;
  /** Open files by inode, kept only while `#backing` is set. */
  readonly #openFiles = new Map<number, InodeFiles>();
  #state: State = "new";
  #setxattrExt = false;
  #info: FuseConnectionInfo | undefined;
  #running = 0;
  #drained: (() => void) | undefined;
  #destroying: Promise<void> | undefined;
  readonly #initialized: Promise<FuseConnectionInfo>;
  #resolveInit!: (info: FuseConnectionInfo) => void;
  #rejectInit!: (error: Error) => void;

  constructor(fs: DynFileSystem, sink: ReplySink, options: FuseServerOptions = {}) {
    this.#fs = fs;
    this.#sink = sink;
    this.#settings = checkOptions(options);
    this.#readBuffers = options.sinkConsumes === true ? [] : undefined;
    this.#cache = cacheSettings(fs.cachePolicy);
    this.#debug = options.debug === true;
    this.#log = options.logger ?? consoleLogger(this.#debug);
    this.#malformedLog = new LogLimiter((m) => this.#log.warn(m));
    this.#failureLog = new LogLimiter((m) => this.#log.error(m));
    this.#initialized = new Promise<FuseConnectionInfo>((resolve, reject) => {
      this.#resolveInit = resolve;
      this.#rejectInit = reject;
    });
    // Nobody need listen: a failed INIT is also logged and answered.
    this.#initialized.catch(() => {});
  }

  /** Resolves once INIT has been answered successfully; rejects if it failed. */
  get initialized(): Promise<FuseConnectionInfo> {
    return this.#initialized;
  }

  /** What INIT negotiated, once it has. */
  get connection(): FuseConnectionInfo | undefined {
    return this.#info;
  }

  /** Requests whose backend call has not settled yet. */
  get inflight(): number {
    return this.#running;
  }

  /** The max_write this server offers the kernel, in bytes. */
  get maxWrite(): number {
    return this.#settings.maxWrite;
  }

  /**
   * Serves one request message (exactly one FUSE message: its first u32 is
   * its length). Never throws; the reply, if the opcode has one, goes to the
   * sink now or when the backend's Promise settles.
   */
  handle(message: Uint8Array): void {
    this.#serve(message, false);
  }

  /**
   * Serves one request message whose bytes are only lent: valid until this
   * returns, as a read buffer the next request is read into. What the
   * request hands the backend (a name, write data, an xattr value) is
   * copied out of it; the rest is read in place, so a READ or GETATTR
   * costs no copy of its message. Otherwise as {@link FuseServer.handle}.
   */
  handleLent(message: Uint8Array): void {
    this.#serve(message, true);
  }

  #serve(message: Uint8Array, lent: boolean): void {
    if (this.#state === "closed") {
      if (this.#debug) this.#log.debug(`request after close dropped (${message.length} bytes)`);
      return;
    }
    try {
      this.#handle(message, lent);
    } catch (error) {
      // Only a bug of this server gets here; the peer still must not bring the process down.
      this.#log.error(`internal error serving a ${message.length}-byte request: ${describeError(error)}`);
    }
  }

  #handle(message: Uint8Array, lent: boolean): void {
    let header: RequestHeader | undefined;
    let request: Request;
    let ctx: Context;
    try {
      header = decodeHeader(message);
      ctx = decodeContext(message, header);
      request = decodeRequest(message, header, { setxattrExt: this.#setxattrExt, copyBytes: lent });
    } catch (error) {
      this.#malformed(message, error, header);
      return;
    }
    if (this.#debug) {
      this.#log.debug(`<- ${opName(header.opcode)} unique=${header.unique} nodeid=${header.nodeid} uid=${ctx.uid} gid=${ctx.gid} pid=${ctx.pid}`);
    }
    try {
      this.#dispatch(header, ctx, request);
    } catch (error) {
      this.#fail(header, request.kind, error);
    }
  }

  /**
   * Ends the connection: later messages are dropped, running backend calls
   * are waited for, and the backend's `destroy` is called unless DESTROY
   * already did. Idempotent.
   */
  async close(): Promise<void> {
    const wasReady = this.#state === "ready" || this.#state === "initializing";
    if (this.#state !== "closed") {
      this.#state = "closed";
      this.#rejectInit(new Error("the FUSE connection closed before INIT completed"));
    }
    if (this.#running > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    if (wasReady) await this.#destroy();
    else await this.#destroying;
  }

  // ---- dispatch ------------------------------------------------------------

  #dispatch(h: RequestHeader, ctx: Context, req: Request): void {
    if (req.kind === "init") return this.#init(h, req.init);
    if (this.#state !== "ready") {
      if (req.kind === "notifyReply" || isNoReply(h.opcode)) return;
      this.#malformedLog.log(`${opName(h.opcode)} (unique ${h.unique}) while the connection is ${this.#state === "new" ? "not initialized" : this.#state}: EIO`);
      return this.#send(h, encodeError(h, Errno.EIO));
    }
    if (this.#pending.has(h.unique) && !isNoReply(h.opcode)) {
      this.#malformedLog.log(`${opName(h.opcode)} reuses unique ${h.unique} of a request in flight: EIO`);
      return this.#send(h, encodeError(h, Errno.EIO));
    }
    const fs = this.#fs;
    const ino = h.nodeid;
    const t = this.#cache.timeouts;
    switch (req.kind) {
      case "destroy":
        this.#state = "destroyed";
        return void this.#destroy().then(() => this.#send(h, encodeEmpty(h)));
      case "interrupt":
        return this.#interrupt(req.target);
      case "notifyReply":
        if (this.#debug) this.#log.debug(`NOTIFY_REPLY ${h.unique} dropped: no notification was sent`);
        return;
      case "unsupported":
        return this.#send(h, encodeError(h, Errno.ENOSYS));
      case "forget":
        return this.#quietly("forget", () => fs.forget(ctx, ino, req.nlookup));
      case "batchForget":
        if (req.items.length !== req.declared) {
          this.#malformedLog.log(`BATCH_FORGET declares ${req.declared} items but carries ${req.items.length}`);
        }
        return this.#quietly("batchForget", () => fs.batchForget(ctx, req.items));
      case "lookup":
        return this.#settle(h, "lookup", fs.lookup(ctx, ino, req.name), (e) => encodeEntry(h, e, t), (e) => this.#forget(ctx, e));
      case "mknod":
        return this.#settle(h, "mknod", fs.mknod(ctx, ino, req.name, req.mode, req.rdev, req.umask), (e) => encodeEntry(h, e, t), (e) => this.#forget(ctx, e));
      case "mkdir":
        return this.#settle(h, "mkdir", fs.mkdir(ctx, ino, req.name, req.mode, req.umask), (e) => encodeEntry(h, e, t), (e) => this.#forget(ctx, e));
      case "symlink":
        return this.#settle(h, "symlink", fs.symlink(ctx, req.target, ino, req.name), (e) => encodeEntry(h, e, t), (e) => this.#forget(ctx, e));
      case "link":
        return this.#settle(h, "link", fs.link(ctx, req.ino, ino, req.newName), (e) => encodeEntry(h, e, t), (e) => this.#forget(ctx, e));
      case "getattr":
        return this.#settle(h, "getattr", fs.getattr(ctx, ino, req.fh), (a) => encodeAttr(h, a, t.attr));
      case "setattr":
        return this.#settle(h, "setattr", fs.setattr(ctx, ino, req.req), (a) => encodeAttr(h, a, t.attr));
      case "readlink":
        return this.#settle(h, "readlink", fs.readlink(ctx, ino), (target) => this.#data(h, target, Infinity, "readlink target"));
      case "unlink":
        return this.#settle(h, "unlink", fs.unlink(ctx, ino, req.name), () => encodeEmpty(h));
      case "rmdir":
        return this.#settle(h, "rmdir", fs.rmdir(ctx, ino, req.name), () => encodeEmpty(h));
      case "rename":
        return this.#settle(h, "rename", fs.rename(ctx, ino, req.name, req.newParent, req.newName, req.flags), () => encodeEmpty(h));
      case "open":
        return this.#settle(
          h,
          "open",
          fs.open(ctx, ino, req.flags),
          (r) => {
            const fh = openHandle(r);
            const [flags, backingId] = this.#openMode(ino, fh, req.flags, openFlags(r, this.#cache.fileFlags));
            const reply = encodeOpen(h, fh, flags, backingId);
            if (req.killSuidgid) this.#invalidateAttr(ino);
            return reply;
          },
          (r) => this.#release(ctx, ino, r, req.flags, false),
        );
      case "opendir":
        return this.#settle(
          h,
          "opendir",
          fs.opendir(ctx, ino, req.flags),
          (r) => encodeOpen(h, openHandle(r), openFlags(r, this.#cache.dirFlags)),
          (r) => this.#release(ctx, ino, r, req.flags, true),
        );
      case "create":
        return this.#settle(
          h,
          "create",
          fs.create(ctx, ino, req.name, req.mode, req.flags, req.umask),
          (r) => {
            const entry = createEntry(r);
            const fh = openHandle(r);
            const [flags, backingId] = this.#openMode(entry.ino, fh, req.flags, openFlags(r, this.#cache.fileFlags));
            return encodeCreate(h, entry, fh, flags, t, backingId);
          },
          (r) => {
            this.#release(ctx, isObject(r.entry) ? r.entry.ino : ino, r, req.flags, false);
            this.#forget(ctx, r.entry);
          },
        );
      case "read":
        if (this.#readBuffers !== undefined && fs.readInto !== undefined) return this.#readInto(h, ctx, ino, req.fh, req.size, req.offset);
        return this.#settle(h, "read", fs.read(ctx, ino, req.fh, req.size, req.offset), (data) => this.#data(h, data, req.size, "read data"));
      case "write": {
        const size = req.data.length;
        return this.#settle(h, "write", fs.write(ctx, ino, req.fh, req.data, req.offset, req.flags), (n) => {
          const reply = encodeWrite(h, count(n, size, "bytes written"));
          if ((req.flags & WRITE.KILL_SUIDGID) !== 0) this.#invalidateAttr(ino);
          return reply;
        });
      }
      case "statfs":
        return this.#settle(h, "statfs", fs.statfs(ctx, ino), (st) => encodeStatfs(h, st));
      case "release":
        this.#closed(ino, req.fh);
        return this.#settle(h, "release", fs.release(ctx, ino, req.fh, req.flags), () => encodeEmpty(h));
      case "releasedir":
        return this.#settle(h, "releasedir", fs.releasedir(ctx, ino, req.fh, req.flags), () => encodeEmpty(h));
      case "fsync":
        return this.#settle(h, "fsync", fs.fsync(ctx, ino, req.fh, req.datasync), () => encodeEmpty(h));
      case "fsyncdir":
        return this.#settle(h, "fsyncdir", fs.fsyncdir(ctx, ino, req.fh, req.datasync), () => encodeEmpty(h));
      case "flush":
        return this.#settle(h, "flush", fs.flush(ctx, ino, req.fh, req.lockOwner), () => encodeEmpty(h));
      case "setxattr":
        return this.#settle(h, "setxattr", fs.setxattr(ctx, ino, req.name, req.value, req.flags), () => encodeEmpty(h));
      case "getxattr":
        return this.#settle(h, "getxattr", fs.getxattr(ctx, ino, req.name), (value) => this.#sized(h, bytesOf(value), req.size));
      case "listxattr":
        return this.#settle(h, "listxattr", fs.listxattr(ctx, ino), (names) => this.#sized(h, joinNames(names), req.size));
      case "removexattr":
        return this.#settle(h, "removexattr", fs.removexattr(ctx, ino, req.name), () => encodeEmpty(h));
      case "access":
        return this.#settle(h, "access", fs.access(ctx, ino, req.mask), () => encodeEmpty(h));
      case "readdir":
        return this.#settle(h, "readdir", fs.readdir(ctx, ino, req.fh, req.offset, req.size), (list) => encodeDirents(h, list, req.size).bytes);
      case "readdirplus":
        return this.#settle(
          h,
          "readdirplus",
          fs.readdirplus(ctx, ino, req.fh, req.offset, req.size),
          (list) => {
            const { bytes, count: fitted } = encodeDirents(h, list, req.size, t);
            this.#forgetEntries(ctx, list, fitted);
            return bytes;
          },
          (list) => this.#forgetEntries(ctx, list, 0),
        );
      case "fallocate":
        return this.#settle(h, "fallocate", fs.fallocate(ctx, ino, req.fh, req.mode, req.offset, req.length), () => encodeEmpty(h));
      case "lseek":
        return this.#settle(h, "lseek", fs.lseek(ctx, ino, req.fh, req.offset, req.whence), (offset) => encodeU64(h, offset, "lseek offset"));
      case "copyFileRange": {
        const length = req.wide ? req.length : Math.min(req.length, COPY_RANGE_MAX_32);
        return this.#settle(
          h,
          "copyFileRange",
          fs.copyFileRange(ctx, ino, req.fhIn, req.offsetIn, req.inoOut, req.fhOut, req.offsetOut, length, req.flags),
          (n) => (req.wide ? encodeU64(h, count(n, length, "bytes copied"), "bytes copied") : encodeWrite(h, count(n, length, "bytes copied"))),
        );
      }
    }
  }

  // ---- INIT / DESTROY --------------------------------------------------------

  #init(h: RequestHeader, init: InitIn): void {
    if (this.#state !== "new") {
      this.#malformedLog.log(`INIT (unique ${h.unique}) on a connection that is ${this.#state}: EIO`);
      return this.#send(h, encodeError(h, Errno.EIO));
    }
    if (init.major > FUSE_MAJOR) {
      // The kernel retries with our major (fuse.h, "Version negotiation").
      this.#log.warn(`kernel offers FUSE ${init.major}.${init.minor}; answering with major ${FUSE_MAJOR}`);
      return this.#send(h, encodeInitMajorOnly(h, FUSE_MAJOR, FUSE_MINOR));
    }
    if (init.major < FUSE_MAJOR || init.minor < FUSE_MIN_MINOR) {
      this.#log.error(`kernel FUSE protocol ${init.major}.${init.minor} is too old (need ${FUSE_MAJOR}.${FUSE_MIN_MINOR} or newer)`);
      this.#state = "failed";
      this.#rejectInit(new Error(`kernel FUSE protocol ${init.major}.${init.minor} is too old`));
      return this.#send(h, encodeError(h, Errno.EPROTO));
    }
    const minor = Math.min(init.minor, FUSE_MINOR);
    const s = this.#settings;
    let flags = wantedFlags(s, this.#cache) & init.flags;
    // flags2 is only read by a kernel that offered FUSE_INIT_EXT and sees it back.
    if (flags >> 32n !== 0n) flags |= InitFlag.INIT_EXT;
    else flags &= ~InitFlag.INIT_EXT;
    const maxReadahead = Math.min(init.maxReadahead, s.maxReadahead ?? init.maxReadahead);
    const maxPages = Math.ceil(s.maxWrite / 4096);
    const info: FuseConnectionInfo = {
      kernelMinor: init.minor,
      minor,
      flags: initFlagNames(flags),
      maxWrite: s.maxWrite,
      maxReadahead,
      maxPages,
    };
    this.#state = "initializing";
    this.#track(
      h,
      "init",
      this.#call(() => this.#fs.init()),
      () => {
        this.#setxattrExt = (flags & InitFlag.SETXATTR_EXT) !== 0n;
        this.#info = info;
        const reply = encodeInit(h, {
          major: FUSE_MAJOR,
          minor,
          maxReadahead,
          flags,
          maxBackground: s.maxBackground,
          congestionThreshold: Math.max(1, Math.floor((s.maxBackground * 3) / 4)),
          maxWrite: s.maxWrite,
          timeGran: 1,
          maxPages,
          maxStackDepth: PASSTHROUGH_STACK_DEPTH,
        });
        if ((flags & InitFlag.PASSTHROUGH) !== 0n) this.#backing = s.backingFiles;
        if (this.#state === "initializing") this.#state = "ready";
        this.#resolveInit(info);
        return reply;
      },
      undefined,
      (error) => {
        if (this.#state === "initializing") this.#state = "failed";
        this.#rejectInit(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  /** Calls the backend's `destroy` once. */
  #destroy(): Promise<void> {
    this.#destroying ??= (async () => {
      try {
        await this.#fs.destroy();
      } catch (error) {
        this.#log.error(`destroy failed: ${describeError(error)}`);
      }
    })();
    return this.#destroying;
  }

  // ---- completion --------------------------------------------------------------

  /** Runs `fn`, turning a synchronous throw into a rejected Promise. */
  #call<T>(fn: () => MaybePromise<T>): MaybePromise<T> {
    try {
      return fn();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * Replies to `h` with `encode(value)` once the backend's `result` is in:
   * right away when it is a plain value, else when the Promise settles
   * (unless an INTERRUPT answered first, then `undo` releases what the
   * backend handed out for nobody).
   */
  #settle<T>(h: RequestHeader, op: string, result: MaybePromise<T>, encode: (value: T) => Reply, undo?: (value: T) => void): void {
    if (isPromiseLike(result)) this.#track(h, op, result, encode, undo);
    else this.#finish(h, op, result, encode, undo);
  }

  #track<T>(
    h: RequestHeader,
    op: string,
    result: MaybePromise<T>,
    encode: (value: T) => Reply,
    undo?: (value: T) => void,
    failed?: (error: unknown) => void,
  ): void {
    if (!isPromiseLike(result)) {
      this.#finish(h, op, result, encode, undo, failed);
      return;
    }
    const pending: Pending = { header: h, replied: false };
    this.#pending.set(h.unique, pending);
    this.#running++;
    const settled = (): boolean => {
      if (this.#pending.get(h.unique) === pending) this.#pending.delete(h.unique);
      if (--this.#running === 0 && this.#drained !== undefined) {
        this.#drained();
        this.#drained = undefined;
      }
      return pending.replied;
    };
    Promise.resolve(result).then(
      (value) => {
        if (settled()) {
          if (undo !== undefined) this.#quietly(`${op} undo`, () => undo(value));
        } else this.#finish(h, op, value, encode, undo, failed);
      },
      (error: unknown) => {
        if (!settled()) {
          failed?.(error);
          this.#fail(h, op, error);
        }
      },
    );
  }

  #finish<T>(h: RequestHeader, op: string, value: T, encode: (value: T) => Reply, undo?: (value: T) => void, failed?: (error: unknown) => void): void {
    let reply: Reply;
    try {
      reply = encode(value);
    } catch (error) {
      if (undo !== undefined) this.#quietly(`${op} undo`, () => undo(value));
      failed?.(error);
      this.#failureLog.log(`${op} (inode ${h.nodeid}): the backend's answer cannot be encoded: ${describeError(error)}`);
      this.#send(h, encodeError(h, Errno.EIO));
      return;
    }
    if (reply instanceof Uint8Array) this.#send(h, reply);
    else this.#send(h, reply[0], reply[1]);
  }

  /** Answers a failed backend call: an FsError's errno, else EIO and a log line. */
  #fail(h: RequestHeader, op: string, error: unknown): void {
    if (isFsError(error)) {
      if (op === "lookup" && error.errno === Errno.ENOENT && this.#cache.negativeTimeout > 0) {
        return this.#send(h, encodeNegativeEntry(h, this.#cache.negativeTimeout));
      }
      return this.#send(h, encodeError(h, error.errno));
    }
    this.#failureLog.log(`${op} (inode ${h.nodeid}) failed with a non-FsError, answered EIO: ${describeError(error)}`);
    this.#send(h, encodeError(h, Errno.EIO));
  }

  #interrupt(target: number): void {
    const pending = this.#pending.get(target);
    // Not pending: already answered (the kernel's INTERRUPT raced the reply) or never seen.
    // INIT is never interrupted by a kernel; answering it EINTR would leave the connection half set up.
    if (pending === undefined || pending.replied || pending.header.opcode === Op.INIT) return;
    pending.replied = true;
    this.#send(pending.header, encodeError(pending.header, Errno.EINTR));
  }

  /** Runs a call that gets no reply (forget, undo): failures are logged, never thrown. */
  #quietly(op: string, fn: () => MaybePromise<void>): void {
    const logFailure = (error: unknown): void => this.#failureLog.log(`${op} failed: ${describeError(error)}`);
    try {
      const result = fn();
      if (isPromiseLike(result)) Promise.resolve(result).catch(logFailure);
    } catch (error) {
      logFailure(error);
    }
  }

  /** Releases the lookup an entry handed out for nobody. */
  #forget(ctx: Context, entry: unknown): void {
    if (isObject(entry) && Number.isSafeInteger(entry.ino)) this.#quietly("forget", () => this.#fs.forget(ctx, entry.ino as number, 1));
  }

  /** Releases the lookups of the READDIRPLUS entries from `from` on (`.` and `..` count none). */
  #forgetEntries(ctx: Context, list: readonly DirEntryPlus[], from: number): void {
    for (let i = from; i < list.length; i++) {
      const item = list[i];
      if (isObject(item) && item.name instanceof Uint8Array && !isDotOrDotDot(item.name)) this.#forget(ctx, item.entry);
    }
  }

  /** Releases a handle opened for nobody. */
  #release(ctx: Context, ino: number, reply: OpenReply, flags: number, dir: boolean): void {
    if (!isObject(reply) || !Number.isSafeInteger(reply.fh)) return;
    const fs = this.#fs;
    if (!dir) this.#closed(ino, reply.fh);
    this.#quietly(dir ? "releasedir" : "release", () => (dir ? fs.releasedir(ctx, ino, reply.fh, flags) : fs.release(ctx, ino, reply.fh, flags)));
  }

  // ---- passthrough -------------------------------------------------------------

  /**
   * The FOPEN flags and backing id of the reply opening handle `fh` of
   * `ino` with `openFlags`: passthrough when the connection has it, the
   * backend names the handle's host file, and no other kind of open of the
   * inode is there; else `flags` as they are (a write-only handle of a
   * named host file gets FOPEN_DIRECT_IO and no backing file, unless the
   * inode is open with passthrough already). The first passthrough open of
   * an inode registers the host file; the others name the same backing id,
   * as the kernel requires. A handle open for writing or with O_DIRECT also
   * gets FOPEN_DIRECT_IO, which the kernel puts before passthrough for read
   * and write: writes still reach the backend, which clears suid/sgid bits
   * as a write must (the kernel's passthrough write would not), and
   * O_DIRECT reads are answered by the backend as without passthrough (the
   * kernel's would go to the host disk, O_DIRECT included).
   */
  #openMode(ino: number, fh: number, openFlags: number, flags: number): [flags: number, backingId: number] {
    const backing = this.#backing;
    if (backing === undefined) return [flags, 0];
    let fd: number | undefined;
    try {
      fd = this.#fs.passthroughFd?.(ino, fh);
    } catch (error) {
      this.#failureLog.log(`passthroughFd (inode ${ino}) failed, serving the file through the backend: ${describeError(error)}`);
    }
    let files = this.#openFiles.get(ino);
    // A write-only handle gains nothing from a backing file: its writes come to the backend
    // (FOPEN_DIRECT_IO) and it cannot be mmapped. Plain FOPEN_DIRECT_IO takes no inode I/O mode,
    // so later passthrough opens are not held up; only an inode open with passthrough already
    // needs every open to name its backing file.
    if (fd !== undefined && (openFlags & O.ACCMODE) === O.WRONLY && files?.backingId === undefined) return [FOPEN.DIRECT_IO | (flags & FOPEN.NOFLUSH), 0];
    if (files === undefined) {
      files = { backingId: undefined, handles: new Map() };
      this.#openFiles.set(ino, files);
    }
    if (fd !== undefined && files.backingId === undefined && files.handles.size === 0) {
      try {
        files.backingId = backing.open(fd);
      } catch (error) {
        // EPERM: no CAP_SYS_ADMIN; nothing registers on this connection then.
        if ((error as { code?: unknown }).code === "EPERM") this.#backing = undefined;
        this.#failureLog.log(`registering the host file of inode ${ino} for passthrough failed, serving it through the backend: ${describeError(error)}`);
      }
    } else if (fd === undefined && files.backingId !== undefined) {
      // The kernel refuses this open (EIO to the caller): the backend broke passthroughFd's rule.
      this.#failureLog.log(`inode ${ino} is open with passthrough, but the backend names no host file for handle ${fh}`);
    }
    const passthrough = fd !== undefined && files.backingId !== undefined;
    files.handles.set(fh, passthrough);
    if (!passthrough) return [flags, 0];
    // The kernel allows no caching flag besides FOPEN_PASSTHROUGH (the host's page cache serves).
    const direct = (openFlags & O.ACCMODE) === O.RDONLY && (openFlags & O.DIRECT) === 0 ? 0 : FOPEN.DIRECT_IO;
    return [FOPEN_PASSTHROUGH | direct | (flags & FOPEN.NOFLUSH), files.backingId!];
  }

  /** Handle `fh` of `ino` is released: the last open of an inode drops its backing file. */
  #closed(ino: number, fh: number): void {
    const files = this.#openFiles.get(ino);
    if (files === undefined || !files.handles.delete(fh) || files.handles.size > 0) return;
    this.#openFiles.delete(ino);
    if (files.backingId === undefined) return;
    try {
      this.#settings.backingFiles?.close(files.backingId);
    } catch (error) {
      this.#failureLog.log(`dropping backing file ${files.backingId} of inode ${ino} failed: ${describeError(error)}`);
    }
  }

  /**
   * Tells the kernel to drop its cached attributes of `ino`, ahead of the
   * reply to a write or truncating open that may have cleared suid/sgid
   * (HANDLE_KILLPRIV_V2: the backend clears them, but neither reply carries
   * attributes, and the kernel would go on trusting the old mode, also for
   * exec, until the attribute timeout).
   */
  #invalidateAttr(ino: number): void {
    if (this.#cache.timeouts.attr === 0) return;
    if (this.#debug) this.#log.debug(`-> NOTIFY_INVAL_INODE nodeid=${ino} (attributes)`);
    try {
      this.#sink(encodeInvalidateAttr(ino));
    } catch (error) {
      this.#log.warn(`NOTIFY_INVAL_INODE for inode ${ino} could not be sent: ${describeError(error)}`);
    }
  }

  /**
   * READ into a pooled buffer. The buffer goes back to the pool while the
   * reply is encoded, right before the sink writes it out: nothing else runs
   * in between, and the sink has consumed the bytes when it returns. A
   * buffer of a failed or interrupted read is left to the garbage collector.
   */
  #readInto(h: RequestHeader, ctx: Context, ino: number, fh: number, size: number, offset: number): void {
    const pool = this.#readBuffers!;
    const buffer = pool.pop() ?? new Uint8Array(this.#settings.maxWrite);
    const target = size <= buffer.length ? buffer.subarray(0, size) : new Uint8Array(size);
    this.#track(h, "read", this.#fs.readInto!(ctx, ino, fh, target, offset), (n) => {
      const length = count(n, size, "bytes read");
      if (pool.length < READ_BUFFERS_KEPT) pool.push(buffer);
      return [encodeDataHeader(h, length), target.subarray(0, length)];
    });
  }

  /** A reply carrying bytes: READ data, a READLINK target. */
  #data(h: ReplyTo, data: Uint8Array, max: number, field: string): Reply {
    const bytes = bytesOf(data, field);
    const body = bytes.length > max ? bytes.subarray(0, max) : bytes;
    return [encodeDataHeader(h, body.length), body];
  }

  /** xattr size semantics: size 0 asks for the length; a smaller buffer than the value is ERANGE. */
  #sized(h: ReplyTo, value: Uint8Array, size: number): Reply {
    if (size === 0) return encodeXattrSize(h, value.length);
    if (value.length > size) return encodeError(h, Errno.ERANGE);
    return [encodeDataHeader(h, value.length), value];
  }

  #send(h: RequestHeader, head: Uint8Array, data?: Uint8Array): void {
    if (this.#debug) {
      const error = new DataView(head.buffer, head.byteOffset).getInt32(4, true);
      this.#log.debug(`-> ${opName(h.opcode)} unique=${h.unique} ${error === 0 ? `ok ${head.length + (data?.length ?? 0)} bytes` : `errno ${-error}`}`);
    }
    try {
      this.#sink(head, data);
    } catch (error) {
      this.#log.warn(`reply to ${opName(h.opcode)} (unique ${h.unique}) could not be sent: ${describeError(error)}`);
    }
  }

  /** Logs a request that could not be decoded and answers it when it can be told apart. */
  #malformed(message: Uint8Array, error: unknown, header: RequestHeader | undefined): void {
    const reason = error instanceof ProtocolError ? error.message : describeError(error);
    const errno = error instanceof ProtocolError ? error.errno : Errno.EIO;
    if (error instanceof HeaderError) header = error.header;
    if (header === undefined) {
      // Shorter than fuse_in_header: answerable only when the opcode and unique are there.
      if (message.length < 16) {
        this.#malformedLog.log(`malformed request dropped (${message.length} bytes): ${reason}`);
        return;
      }
      const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
      header = { length: message.length, opcode: view.getUint32(4, true), unique: 0, uniqueLo: view.getUint32(8, true), uniqueHi: view.getUint32(12, true), nodeid: 0, uid: 0, gid: 0, pid: 0, extLength: 0 };
    }
    const op = opName(header.opcode);
    if (isNoReply(header.opcode)) {
      this.#malformedLog.log(`malformed ${op} dropped: ${reason}`);
      return;
    }
    this.#malformedLog.log(`malformed ${op} (unique ${header.uniqueLo + header.uniqueHi * 2 ** 32}) answered errno ${errno}: ${reason}`);
    this.#send(header, encodeError(header, errno));
  }
}

function bytesOf(value: unknown, field = "xattr value"): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new EncodeError(field, value);
  return value;
}

/** The NUL-terminated concatenation of xattr names, as listxattr(2) returns it. */
function joinNames(names: unknown): Uint8Array {
  if (!Array.isArray(names)) throw new EncodeError("xattr names", names);
  let size = 0;
  for (const name of names as unknown[]) {
    if (!(name instanceof Uint8Array) || name.length === 0 || name.includes(0)) throw new EncodeError("xattr name", name);
    size += name.length + 1;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const name of names as Uint8Array[]) {
    out.set(name, at);
    at += name.length + 1;
  }
  return out;
}

function count(n: unknown, max: number, field: string): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > max) throw new EncodeError(field, n);
  return n;
}

function openHandle(reply: OpenReply): number {
  if (!isObject(reply)) throw new EncodeError("open reply", reply);
  return reply.fh;
}

/** The backend's own FOPEN flags win; 0 or none lets the cache policy decide. */
function openFlags(reply: OpenReply, policy: number): number {
  return reply.flags === undefined || reply.flags === 0 ? policy : reply.flags;
}

function createEntry(reply: CreateReply): Entry {
  if (!isObject(reply) || !isObject(reply.entry)) throw new EncodeError("create reply", reply);
  return reply.entry;
}
