import {
  ACCESS,
  bytesToString,
  checkAccess,
  checkCount,
  checkXattrAccess,
  checkXattrValue,
  DT,
  dtFromMode,
  FALLOC,
  FOPEN,
  FsBackend,
  FsError,
  hasAccess,
  isCount,
  isDotOrDotDot,
  isTimespec,
  isU32,
  modeAfterWrite,
  NAME_MAX,
  newInodeOwnership,
  nowTimespec,
  O,
  openAccess,
  PATH_MAX,
  planSetattr,
  RENAME,
  ROOT_INO,
  S,
  SEEK,
  SetattrValid,
  stickyAllows,
  validateEntryName,
  validateName,
  WRITE,
  XATTR,
  xattrNamespace,
  xattrVisible,
  type Attr,
  type CachePolicy,
  type Context,
  type CreateReply,
  type DirEntry,
  type DirEntryPlus,
  type Entry,
  type OpenReply,
  type SetattrRequest,
  type StatFs,
  type Timespec,
} from "@msb/fs";
import {
  UTIME_NOW,
  UTIME_OMIT,
  close,
  copyFileRange,
  fallocate,
  fchownat,
  fstatfs,
  getdentsRaw,
  getxattr,
  getxattrat,
  linkat,
  listxattr,
  lseek,
  mkdirat,
  openat,
  openat2,
  readlinkat,
  removexattr,
  renameat2,
  setxattr,
  symlinkat,
  unlinkat,
  unpin,
  utimensat,
  parseDirents,
  type Dirent,
  type TimeArg,
} from "@msb/native";
import { fdatasyncSync, fsyncSync, ftruncateSync, readSync, writeSync } from "node:fs";
import {
  BENEATH,
  NO_LINKS,
  PIN_ENTRY,
  PROC_SUPER_MAGIC,
  ROOT_VIEW,
  c,
  createFile,
  describeHost,
  direntKey,
  fstat,
  hostView,
  keyOf,
  lstatAt,
  pin,
  procPath,
  readOverride,
  type HostKey,
  type HostStat,
} from "./host.js";
import { DirHandle, FileHandle, Inode } from "./inode.js";
import { resolveOptions, type PassthroughFsOptions, type ResolvedOptions } from "./options.js";
import { OVERRIDE_STAT_XATTR, encodeOverrideStat, type OverrideStat } from "@msb/fs";
import { Quota, measureTree } from "./quota.js";
import { guestXattrName, hostXattrName } from "./xattr-names.js";

/** Linux caps one read or write at this many bytes (`MAX_RW_COUNT`). */
const MAX_RW = 0x7fff_f000;
/** Allocation unit assumed when predicting how much a write may allocate. */
const BLOCK = 4096;
/** Size of a FUSE dirent (24 bytes + name, 8-aligned) and of a direntplus (128 bytes more). */
const DIRENT_HEADER = 24;
const DIRENTPLUS_HEADER = 152;
/** Host modes of what the backend creates: private to the host user, never setuid or executable on the host. */
const HOST_FILE_MODE = 0o600;
const HOST_DIR_MODE = 0o700;
/** Open flags passed on to the host; the rest (O_CREAT, O_DIRECT, O_NOATIME, ...) are the backend's or irrelevant. */
const HOST_OPEN_FLAGS = O.ACCMODE | O.APPEND | O.TRUNC | O.SYNC | O.DSYNC;
const RENAME_FLAGS = RENAME.NOREPLACE | RENAME.EXCHANGE | RENAME.WHITEOUT;
const FALLOC_KNOWN =
  FALLOC.KEEP_SIZE | FALLOC.PUNCH_HOLE | FALLOC.NO_HIDE_STALE | FALLOC.COLLAPSE_RANGE | FALLOC.ZERO_RANGE | FALLOC.INSERT_RANGE | FALLOC.UNSHARE_RANGE;
/** fallocate modes that only free or move space, so the quota need not be checked first. */
const FALLOC_FREES = FALLOC.PUNCH_HOLE | FALLOC.COLLAPSE_RANGE;
const OVERRIDE = OVERRIDE_STAT_XATTR;
/** Reads longer than this are first clamped to the file's size, so a huge request allocates nothing huge. */
const READ_PROBE = 1 << 16;
const EMPTY = new Uint8Array(0);
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

/** An inode with the host stat just taken of it. */
interface Loaded {
  readonly inode: Inode;
  readonly st: HostStat;
}

/** A directory entry about to be removed or renamed: its host stat and its inode if known. */
interface Peeked {
  readonly st: HostStat;
  readonly known: Inode | undefined;
}

/** What is kept of a host inode not known now: its guest number and, once seen, its guest d_type. */
interface Reserved {
  readonly ino: number;
  type: number | undefined;
}

const isDot = (name: Uint8Array): boolean => name.length === 1 && name[0] === 0x2e;
const code = (error: unknown): string | undefined => (error as { code?: string } | null)?.code;
/** A guest name for an error message; whatever the guest sent, describing it never throws. */
const shown = (name: unknown): string | undefined => (name instanceof Uint8Array ? bytesToString(name) : undefined);
/**
 * Anything thrown, as the FsError to answer with. The inode, name and
 * destination are named only when they are what the contract says (a hostile
 * caller may pass anything, and describing it must not throw).
 */
function failed(error: unknown, op: string, ino?: unknown, path?: unknown, dest?: unknown): FsError {
  return FsError.from(error, { op, ino: number(ino), path: shown(path), dest: shown(dest) });
}

const number = (ino: unknown): number | undefined => (typeof ino === "number" ? ino : undefined);

/** A Buffer of @msb/native as the plain Uint8Array the contract promises (same memory). */
const plain = (buffer: Uint8Array): Uint8Array => new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);

/** Entry `name` of directory fd `dirFd`, not followed; ENOENT when there is none. */
function statAt(dirFd: number, name: Uint8Array): HostStat {
  const st = lstatAt(dirFd, name);
  if (st === undefined) throw new FsError("ENOENT", { path: bytesToString(name) });
  return st;
}

function invalid(op: string, detail: string, ino?: number): FsError {
  return new FsError("EINVAL", { op, ino, detail });
}

function checkBytes(value: unknown, what: string, op: string, ino: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(op, `${what} is not bytes`, ino);
}

const timeArg = (set: boolean, now: boolean, time: Timespec | undefined): TimeArg =>
  !set || time === undefined ? UTIME_OMIT : now ? UTIME_NOW : { sec: time.sec, nsec: time.nsec };

/** Blocks of `BLOCK` bytes a write of `length` bytes at `offset` may newly allocate, in bytes. */
const worstCase = (offset: number, length: number): number =>
  (Math.ceil((offset + length) / BLOCK) - Math.floor(offset / BLOCK)) * BLOCK;

const sameTime = (st: HostStat): boolean =>
  st.ctimeSec === st.mtimeSec && st.ctimeNsec === st.mtimeNsec && st.atimeSec === st.mtimeSec && st.atimeNsec === st.mtimeNsec;

/**
 * A host directory served to a guest as a `DynFileSystem`, answering
 * every call synchronously.
 *
 * - **Confinement.** Every host access is relative to an fd the backend holds:
 *   names are resolved one component at a time with `openat2(RESOLVE_BENEATH |
 *   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` and `O_NOFOLLOW`, so no name
 *   or symlink reaches outside `rootDir` and no symlink is ever followed on the host.
 * - **Inodes.** Each known host inode is pinned by an `O_PATH` fd and keyed by
 *   host (device, inode), so one host file is one guest inode number while it
 *   is known; numbers come from a counter and are never reused (root is 1).
 * - **Ownership.** The guest's uid, gid, mode and device number live in the
 *   xattr `user.msb.override_stat` (see `encodeOverrideStat` of `@msb/fs`); host
 *   permissions are left alone, so the backend runs unprivileged. Special
 *   files are host regular files with their type in that xattr.
 * - **Permissions** are checked for the caller's `Context` against the
 *   guest view, as the kernel would.
 *
 * @example
 * ```ts
 * const fs = new PassthroughFs({ rootDir: "/srv/volume", quota: 1 << 30 });
 * const files = new PathFs(fs);
 * await files.writeFile("/hello.txt", "hi");
 * ```
 */
export class PassthroughFs extends FsBackend {
  readonly #options: ResolvedOptions;
  readonly #fileOpenFlags: number;
  readonly #dirOpenFlags: number;
  /**
   * The known inodes by guest number and by host key. A forgotten inode's
   * entries stay, holding `undefined`, until they outnumber the known ones
   * (see {@link #compact}): a V8 Map keeps a deleted entry in its bucket's
   * chain until it rehashes, so deleting a key and adding it again (an inode
   * forgotten and looked up again) made every such add walk a longer chain;
   * with 15 000 inodes known, a lookup took over 100 µs.
   */
  #byIno = new Map<number, Inode | undefined>();
  #byKey = new Map<HostKey, Inode | undefined>();
  /** How many inodes are known (the maps' entries that are not `undefined`). */
  #known = 0;
  /**
   * Guest numbers of host inodes: given out by readdir before any lookup, or
   * kept from an inode the kernel forgot, so a later lookup gives the same
   * number. A reservation stays while its inode is known again, so forgetting
   * it again rewrites the entry in place: deleting and re-adding one key makes
   * a V8 Map walk a chain of the deleted entries on every miss (tens of µs
   * per lookup once thousands of numbers are kept).
   */
  readonly #reserved = new Map<HostKey, Reserved>();
  readonly #handles = new Map<number, FileHandle | DirHandle>();
  #root: Inode | undefined;
  #procFd = -1;
  #quota: Quota | undefined;
  #nextIno = ROOT_INO + 1;
  #nextFh = 1;

  /** The most numbers kept reserved; beyond it the oldest sixteenth go (those host inodes then get fresh numbers). */
  static readonly MAX_RESERVED = 1 << 16;

  /**
   * Opens `rootDir`. Throws a `TypeError` naming a bad option, and an
   * `FsError` (`ENOENT`, `ENOTDIR`, ...) when `rootDir` is no
   * directory or `/proc` is not procfs.
   */
  constructor(options: PassthroughFsOptions) {
    super();
    this.#options = resolveOptions(options);
    const { cache } = this.#options;
    this.#fileOpenFlags = { never: FOPEN.DIRECT_IO, auto: 0, always: FOPEN.KEEP_CACHE }[cache];
    this.#dirOpenFlags = cache === "always" ? FOPEN.CACHE_DIR | FOPEN.KEEP_CACHE : 0;
    this.#mount();
  }

  override get cachePolicy(): CachePolicy {
    return this.#options.cache;
  }

  /** Bytes counted against the quota now, and the limit (`Infinity` without one). */
  get usage(): { readonly used: number; readonly quota: number } {
    return { used: this.#quota?.used ?? 0, quota: this.#options.quota };
  }

  #mount(): void {
    const { rootDir, quota } = this.#options;
    const op = "PassthroughFs";
    let rootFd: number;
    try {
      rootFd = openat(c.AT_FDCWD, rootDir, c.O_PATH | c.O_DIRECTORY);
    } catch (error) {
      throw FsError.from(error, { op, path: rootDir, detail: "rootDir must be an existing directory" });
    }
    try {
      this.#procFd = openat(c.AT_FDCWD, "/proc/self/fd", c.O_PATH | c.O_DIRECTORY);
      if (fstatfs(this.#procFd).type !== PROC_SUPER_MAGIC) throw new FsError("EOPNOTSUPP", { op, path: "/proc", detail: "procfs is not mounted on /proc" });
      const st = fstat(rootFd);
      const root = new Inode(ROOT_INO, keyOf(st, st), st, rootFd, S.IFDIR);
      this.#loadView(root, st);
      if (quota !== Infinity) this.#quota = new Quota(quota, measureTree(rootFd));
      this.#root = root;
      this.#register(root);
    } catch (error) {
      this.#unmount();
      close(rootFd);
      throw FsError.from(error, { op, path: rootDir });
    }
  }

  #unmount(): void {
    for (const handle of this.#handles.values()) close(handle.fd);
    for (const inode of this.#byIno.values()) if (inode !== undefined) close(inode.fd);
    if (this.#procFd >= 0) close(this.#procFd);
    this.#handles.clear();
    this.#byIno.clear();
    this.#byKey.clear();
    this.#known = 0;
    this.#reserved.clear();
    this.#procFd = -1;
    this.#root = undefined;
  }

  /** Opens the root again after {@link destroy}, so one object can serve several mounts in turn. */
  override init(): void {
    if (this.#root === undefined) this.#mount();
  }

  /** Closes every host fd: handles, inodes, the root. */
  override destroy(): void {
    this.#unmount();
  }

  // ---- the inode table ----------------------------------------------------

  #register(inode: Inode): void {
    this.#byIno.set(inode.ino, inode);
    this.#byKey.set(inode.key, inode);
    this.#known++;
  }

  #unregister(inode: Inode): void {
    this.#byIno.set(inode.ino, undefined);
    this.#byKey.set(inode.key, undefined);
    this.#known--;
    const forgotten = Math.max(this.#byIno.size, this.#byKey.size) - this.#known;
    if (forgotten > 1024 && forgotten > this.#known) this.#compact();
  }

  /** New maps of the known inodes alone (fresh tables: no deleted entries either). */
  #compact(): void {
    const known = [...this.#byIno.values()].filter((inode) => inode !== undefined);
    this.#byIno = new Map(known.map((inode) => [inode.ino, inode]));
    this.#byKey = new Map(known.map((inode) => [inode.key, inode]));
  }

  #inode(ino: number, op: string): Inode {
    const inode = this.#byIno.get(ino);
    if (inode === undefined) throw new FsError("ENOENT", { op, ino: number(ino), detail: "unknown inode" });
    return inode;
  }

  #dir(ino: number, op: string): Inode {
    const inode = this.#inode(ino, op);
    if ((inode.mode & S.IFMT) !== S.IFDIR) throw new FsError("ENOTDIR", { op, ino });
    return inode;
  }

  #isRoot(inode: Inode): boolean {
    return inode === this.#root;
  }

  /** The key of the host inode `st` describes, in this tree (see {@link HostKey}). */
  #keyOf(st: HostStat): HostKey {
    return keyOf(this.#root!.dev, st);
  }

  /**
   * Sets the guest view of `inode` from its override (read with `get`, by
   * default through /proc/self/fd/<fd>: from this very inode, as the kernel
   * refuses O_PATH fds to getxattrat's AT_EMPTY_PATH), or from the host stat `st`.
   */
  #loadView(inode: Inode, st: HostStat, get = (): Uint8Array | undefined => getxattrat(this.#procFd, String(inode.fd), OVERRIDE)): void {
    const view = this.#override(get, inode.hostType, () => `inode ${inode.ino} (host ${describeHost(st)})`);
    if (view !== undefined) inode.setView(view, true);
    else inode.setView(inode.ino === ROOT_INO ? ROOT_VIEW : hostView(st), false);
  }

  /**
   * The override `get` reads from a host inode of type `hostType`; a corrupt
   * one is logged (naming the inode as `what` says, only then) and ignored.
   */
  #override(get: () => Uint8Array | undefined, hostType: number, what: () => string): OverrideStat | undefined {
    return readOverride(get, hostType, (reason) =>
      this.#options.logger(`PassthroughFs: ignoring the ${OVERRIDE} xattr of ${what()}, showing host metadata: ${reason}`),
    );
  }

  /** Brings a view that mirrors the host up to date with `st`. */
  #refresh(inode: Inode, st: HostStat): Inode {
    if (!inode.overridden && !this.#isRoot(inode)) inode.setView(hostView(st), false);
    return inode;
  }

  #stat(inode: Inode): HostStat {
    const st = fstat(inode.fd);
    this.#refresh(inode, st);
    return st;
  }

  /**
   * The inode `fd` (an `O_PATH` fd this call now owns) refers to: the known
   * one (and `fd` is closed) or a new one. `view` is its override when the
   * caller just wrote it, or how to read it; `stat` a stat of it the caller just took.
   */
  #adopt(fd: number, view?: OverrideStat | (() => Uint8Array | undefined), stat?: HostStat): Loaded {
    let st: HostStat;
    let known: Inode | undefined;
    let inode: Inode | undefined;
    try {
      st = stat ?? fstat(fd);
      const key = this.#keyOf(st);
      known = this.#byKey.get(key);
      if (known === undefined) {
        const reserved = this.#reserved.get(key);
        inode = new Inode(reserved?.ino ?? this.#nextIno++, key, st, fd, st.mode & S.IFMT);
        if (typeof view === "object") inode.setView(view, true);
        else this.#loadView(inode, st, view);
      }
    } catch (error) {
      close(fd);
      throw error;
    }
    if (inode === undefined) {
      close(fd);
      return { inode: this.#refresh(known!, st), st };
    }
    inode.charged = st.blocks * 512;
    this.#register(inode);
    return { inode, st };
  }

  /** Entry `name` of directory fd `dirFd`, looked up without following anything. */
  #child(dirFd: number, name: Uint8Array): Loaded {
    const st = statAt(dirFd, name);
    const known = this.#byKey.get(this.#keyOf(st));
    if (known !== undefined) return { inode: this.#refresh(known, st), st };
    const pinned = pin(dirFd, name, PIN_ENTRY, BENEATH, this.#procFd);
    return this.#adopt(pinned.fd, pinned.override, pinned.st);
  }

  /** `name` in `dir`, `.` and `..` included; `..` of the root is the root. */
  #resolve(dir: Inode, name: Uint8Array): Loaded {
    if (isDot(name)) return { inode: dir, st: this.#stat(dir) };
    if (!isDotOrDotDot(name)) return this.#child(dir.fd, name);
    const root = this.#root!;
    if (dir === root) return { inode: root, st: this.#stat(root) };
    const st = statAt(dir.fd, DOTDOT);
    const known = this.#byKey.get(this.#keyOf(st));
    if (known !== undefined) return { inode: this.#refresh(known, st), st };
    const fd = openat2(dir.fd, "..", { flags: c.O_PATH | c.O_DIRECTORY, resolve: NO_LINKS });
    if (!this.#beneathRoot(fd)) {
      close(fd);
      throw new FsError("ENOENT", { op: "lookup", ino: dir.ino, detail: "the parent was moved outside the root" });
    }
    return this.#adopt(fd);
  }

  /**
   * True when directory fd `fd` is the root or below it. Only a host process
   * can move a known directory out of the tree; this keeps `..` from
   * following it there.
   */
  #beneathRoot(fd: number): boolean {
    const rootKey = this.#root!.key;
    let key = this.#keyOf(fstat(fd));
    let cur = fd;
    try {
      for (let depth = 0; depth <= PATH_MAX; depth++) {
        if (key === rootKey) return true;
        const up = openat2(cur, "..", { flags: c.O_PATH | c.O_DIRECTORY, resolve: NO_LINKS });
        if (cur !== fd) close(cur);
        cur = up;
        const upKey = this.#keyOf(fstat(up));
        if (upKey === key) return false;
        key = upKey;
      }
      return false;
    } finally {
      if (cur !== fd) close(cur);
    }
  }

  /** The reservation of host inode `key`, which is not known: made now if there is none. */
  #reservation(key: HostKey): Reserved {
    return this.#reserved.get(key) ?? this.#reserve(key, { ino: this.#nextIno++, type: undefined });
  }

  #reserve(key: HostKey, reserved: Reserved): Reserved {
    const kept = this.#reserved;
    if (kept.size >= PassthroughFs.MAX_RESERVED && !kept.has(key)) {
      // The oldest sixteenth goes at once: each iteration of a V8 Map walks past the entries
      // deleted at its front, so taking the oldest one at a time would cost more each time.
      let left = PassthroughFs.MAX_RESERVED >> 4;
      for (const old of kept.keys()) {
        kept.delete(old);
        if (--left === 0) break;
      }
    }
    kept.set(key, reserved);
    return reserved;
  }

  /**
   * Closes an inode's fd once neither the kernel nor a handle holds it. Its
   * number stays reserved for the host inode, so looking it up again gives
   * the same number, unless the host inode is gone (its host number may then
   * come back as another file).
   */
  #maybeDrop(inode: Inode): void {
    if (inode.nlookup > 0 || inode.opens > 0 || this.#isRoot(inode)) return;
    this.#unregister(inode);
    if (unpin(inode.fd) > 0) {
      const kept = this.#reserved.get(inode.key);
      if (kept?.ino === inode.ino) kept.type = dtFromMode(inode.mode);
      else this.#reserve(inode.key, { ino: inode.ino, type: dtFromMode(inode.mode) });
      return;
    }
    this.#reserved.delete(inode.key);
    // The space of an unlinked inode is freed when its last fd goes: this one.
    this.#quota?.charge(-inode.charged);
  }

  /** Entry `name` of `dir`, known inode or not, before it is removed or renamed. */
  #peek(dir: Inode, name: Uint8Array): Peeked {
    const st = statAt(dir.fd, name);
    return { st, known: this.#byKey.get(this.#keyOf(st)) };
  }

  /** The guest owner and mode of a peeked entry: its inode's, else read from the host. */
  #viewOf(dir: Inode, name: Uint8Array, { st, known }: Peeked): Pick<Attr, "ino" | "uid" | "gid" | "mode"> {
    if (known !== undefined) return known;
    const what = (): string => `'${bytesToString(name)}' in inode ${dir.ino}`;
    const view = this.#override(() => getxattrat(dir.fd, name, OVERRIDE, c.AT_SYMLINK_NOFOLLOW), st.mode & S.IFMT, what) ?? hostView(st);
    return { ino: 0, uid: view.uid, gid: view.gid, mode: view.mode };
  }

  /** True when `name` exists in `dir`. */
  #exists(dir: Inode, name: Uint8Array): boolean {
    return lstatAt(dir.fd, name) !== undefined;
  }

  // ---- attributes -----------------------------------------------------------

  #attr(inode: Inode, st: HostStat): Attr {
    return {
      ino: inode.ino,
      size: st.size,
      blocks: st.blocks,
      atime: { sec: st.atimeSec, nsec: st.atimeNsec },
      mtime: { sec: st.mtimeSec, nsec: st.mtimeNsec },
      ctime: { sec: st.ctimeSec, nsec: st.ctimeNsec },
      mode: inode.mode,
      nlink: st.nlink,
      uid: inode.uid,
      gid: inode.gid,
      rdev: inode.rdev,
      blksize: st.blksize,
    };
  }

  /** The entry of a loaded inode, counting one lookup. */
  #entry({ inode, st }: Loaded): Entry {
    inode.nlookup++;
    return { ino: inode.ino, generation: 0, attr: this.#attr(inode, st) };
  }

  /**
   * Stores a new guest view: in the override xattr, or for a symlink (which
   * cannot carry user xattrs) as the real host owner, which only a privileged
   * backend may change.
   */
  #storeView(inode: Inode, view: OverrideStat, op: string): void {
    if (inode.hostType === S.IFLNK) {
      fchownat(inode.fd, "", view.uid, view.gid, c.AT_EMPTY_PATH | c.AT_SYMLINK_NOFOLLOW);
      this.#stat(inode);
      return;
    }
    if (inode.hostType !== S.IFREG && inode.hostType !== S.IFDIR) {
      throw new FsError("EPERM", { op, ino: inode.ino, detail: "the host special file cannot carry a guest owner or mode" });
    }
    setxattr(procPath(inode.fd), OVERRIDE, encodeOverrideStat(view));
    inode.setView(view, true);
  }

  /** A guest-side mode change after data was written (setuid/setgid dropped), stored if anything changed. */
  #afterWrite(inode: Inode, ctx: Context, kill: boolean, op: string): void {
    if ((inode.mode & (S.ISUID | S.ISGID)) === 0) return;
    const mode = modeAfterWrite(inode, ctx, kill);
    if (mode !== inode.mode) this.#storeView(inode, { ...inode.view, mode }, op);
  }

  // ---- creating -------------------------------------------------------------

  #writable(op: string, ino?: number): void {
    if (this.#options.readOnly) throw new FsError("EROFS", { op, ino });
  }

  /**
   * The kernel's checks before creating `name` in `dir`, in its order: search
   * permission, an existing name (EEXIST), write permission, space.
   */
  #checkCreate(ctx: Context, dir: Inode, name: Uint8Array, op: string): void {
    checkAccess(dir, ctx, ACCESS.X_OK, op);
    const full = this.#quota !== undefined && this.#quota.room <= 0;
    if (!hasAccess(dir, ctx, ACCESS.W_OK | ACCESS.X_OK) || full) {
      if (this.#exists(dir, name)) throw new FsError("EEXIST", { op, ino: dir.ino, path: bytesToString(name) });
      checkAccess(dir, ctx, ACCESS.W_OK | ACCESS.X_OK, op);
      this.#quota?.checkRoom(op, dir.ino);
    }
  }

  /** Counts a new inode's blocks and its directory's growth against the quota. */
  #chargeNew(dir: Inode, loaded: Loaded): void {
    if (this.#quota === undefined) return;
    this.#quota.charge(loaded.inode.charged);
    this.#recharge(dir, dir.fd);
  }

  /** Brings the quota's count of `inode` up to date, from `fd` (any fd of it). */
  #recharge(inode: Inode, fd: number): void {
    if (this.#quota === undefined) return;
    const now = fstat(fd).blocks * 512;
    this.#quota.charge(now - inode.charged);
    inode.charged = now;
  }

  /**
   * Creation leaves atime = mtime = ctime on the host, but writing the
   * override moves ctime; when that crossed a clock tick, all three are set
   * to one "now" again (`utimensat` with UTIME_NOW sets them from one clock
   * reading), as the kernel gives a new inode.
   */
  #sameTimes(fd: number, path: string | null, st = fstat(fd)): HostStat {
    if (sameTime(st)) return st;
    utimensat(path === null ? fd : c.AT_FDCWD, path, UTIME_NOW, UTIME_NOW);
    return fstat(fd);
  }

  /**
   * Creates host regular file `name` in `dir` carrying guest view `view`
   * (a regular file, or a FIFO, socket or device node) and returns it with a
   * read-write host fd the caller owns. `O_CREAT | O_EXCL` never follows a
   * symlink; if the override cannot be written the file is removed again.
   */
  #makeFile(dir: Inode, name: Uint8Array, view: OverrideStat): { loaded: Loaded; fd: number } {
    const { fd, pinFd: pathFd, st: created } = createFile(dir.fd, name, HOST_FILE_MODE, BENEATH, this.#procFd, encodeOverrideStat(view));
    let st: HostStat;
    try {
      st = this.#sameTimes(fd, null, created);
    } catch (error) {
      close(fd);
      close(pathFd);
      this.#undo(dir, name, 0);
      throw error;
    }
    const loaded = this.#adopt(pathFd, view, st);
    this.#chargeNew(dir, loaded);
    return { loaded, fd };
  }

  /** Removes what a failed creation left, keeping the first error. */
  #undo(dir: Inode, name: Uint8Array, flags: number): void {
    try {
      unlinkat(dir.fd, name, flags);
    } catch {
      // The creation's own error is the one to report.
    }
  }

  #makeDir(dir: Inode, name: Uint8Array, view: OverrideStat): Loaded {
    mkdirat(dir.fd, name, HOST_DIR_MODE);
    let fd = -1;
    let st: HostStat;
    try {
      fd = openat2(dir.fd, name, { flags: c.O_PATH | c.O_NOFOLLOW | c.O_DIRECTORY, resolve: BENEATH });
      setxattr(procPath(fd), OVERRIDE, encodeOverrideStat(view));
      st = this.#sameTimes(fd, procPath(fd));
    } catch (error) {
      if (fd >= 0) close(fd);
      this.#undo(dir, name, c.AT_REMOVEDIR);
      throw error;
    }
    const loaded = this.#adopt(fd, view, st);
    this.#chargeNew(dir, loaded);
    return loaded;
  }

  // ---- names ----------------------------------------------------------------

  override lookup(ctx: Context, parent: number, name: Uint8Array): Entry {
    const op = "lookup";
    try {
      const dir = this.#dir(parent, op);
      checkBytes(name, "name", op, parent);
      validateName(name, op, true);
      checkAccess(dir, ctx, ACCESS.X_OK, op);
      return this.#entry(this.#resolve(dir, name));
    } catch (error) {
      throw failed(error, op, parent);
    }
  }

  override forget(_ctx: Context, ino: number, nlookup: number): void {
    const inode = this.#byIno.get(ino);
    if (inode === undefined || !isCount(nlookup)) return;
    inode.nlookup = Math.max(0, inode.nlookup - nlookup);
    try {
      this.#maybeDrop(inode);
    } catch (error) {
      throw failed(error, "forget", ino);
    }
  }

  /** `forget` per item; synchronous like every call here. */
  override batchForget(ctx: Context, items: readonly (readonly [number, number])[]): void {
    try {
      for (const [ino, nlookup] of items) this.forget(ctx, ino, nlookup);
    } catch (error) {
      throw failed(error, "batchForget");
    }
  }

  override getattr(_ctx: Context, ino: number, fh?: number): Attr {
    const op = "getattr";
    try {
      const inode = fh === undefined ? this.#inode(ino, op) : this.#anyHandle(ino, fh, op).inode;
      return this.#attr(inode, this.#stat(inode));
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override setattr(ctx: Context, ino: number, req: SetattrRequest): Attr {
    const op = "setattr";
    try {
      const inode = this.#inode(ino, op);
      if (typeof req !== "object" || req === null || !Number.isInteger(req.valid)) throw invalid(op, "malformed request", ino);
      const { valid } = req;
      if (((valid & SetattrValid.UID) !== 0 && !isU32(req.uid)) || ((valid & SetattrValid.GID) !== 0 && !isU32(req.gid))) {
        throw invalid(op, "uid or gid out of range", ino);
      }
      const badTime =
        ((valid & (SetattrValid.ATIME | SetattrValid.ATIME_NOW)) === SetattrValid.ATIME && !isTimespec(req.atime)) ||
        ((valid & (SetattrValid.MTIME | SetattrValid.MTIME_NOW)) === SetattrValid.MTIME && !isTimespec(req.mtime));
      if (badTime) throw invalid(op, "malformed time", ino);
      this.#writable(op, ino);
      const handle = (valid & SetattrValid.FH) !== 0 ? this.#fileHandle(ino, req.fh, op) : undefined;
      this.#stat(inode);
      // Linux has no chmod of a symlink itself (fchmodat2 with AT_SYMLINK_NOFOLLOW answers this).
      if (inode.hostType === S.IFLNK && (valid & SetattrValid.MODE) !== 0) {
        throw new FsError("EOPNOTSUPP", { op, ino, detail: "a symlink has no mode of its own" });
      }
      const plan = planSetattr(inode, ctx, req, { now: nowTimespec(), openForWrite: handle?.canWrite === true });
      if (plan.size !== undefined) this.#truncate(inode, plan.size, handle);
      const atime = timeArg((valid & SetattrValid.ATIME) !== 0, (valid & SetattrValid.ATIME_NOW) !== 0, plan.atime);
      const mtime = timeArg((valid & SetattrValid.MTIME) !== 0, (valid & SetattrValid.MTIME_NOW) !== 0, plan.mtime);
      if (atime !== UTIME_OMIT || mtime !== UTIME_OMIT) utimensat(c.AT_FDCWD, procPath(inode.fd), atime, mtime);
      if ((valid & (SetattrValid.MODE | SetattrValid.UID | SetattrValid.GID)) !== 0 || plan.mode !== undefined) {
        this.#storeView(inode, { uid: plan.uid ?? inode.uid, gid: plan.gid ?? inode.gid, mode: plan.mode ?? inode.mode, rdev: inode.rdev }, op);
      }
      return this.#attr(inode, this.#stat(inode));
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  #truncate(inode: Inode, size: number, handle: FileHandle | undefined): void {
    if (handle?.canWrite === true) {
      ftruncateSync(handle.fd, size);
      this.#recharge(inode, handle.fd);
      return;
    }
    const fd = this.#reopen(inode, O.WRONLY);
    try {
      ftruncateSync(fd, size);
      this.#recharge(inode, fd);
    } finally {
      close(fd);
    }
  }

  override readlink(_ctx: Context, ino: number): Uint8Array {
    const op = "readlink";
    try {
      const inode = this.#inode(ino, op);
      if (inode.hostType !== S.IFLNK) throw invalid(op, "not a symlink", ino);
      return plain(readlinkat(inode.fd, ""));
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Entry {
    const op = "symlink";
    try {
      const dir = this.#dir(parent, op);
      validateEntryName(name, op, "EEXIST", parent);
      checkBytes(target, "target", op, parent);
      if (target.length === 0) throw new FsError("ENOENT", { op, ino: parent, detail: "empty symlink target" });
      if (target.length >= PATH_MAX) throw new FsError("ENAMETOOLONG", { op, ino: parent, detail: `target of ${target.length} bytes` });
      if (target.includes(0)) throw invalid(op, "symlink target holds a NUL byte", parent);
      this.#writable(op, parent);
      this.#checkCreate(ctx, dir, name, op);
      const own = newInodeOwnership(ctx, dir, S.IFLNK | 0o777, 0);
      symlinkat(target, dir.fd, name);
      let fd: number;
      try {
        fd = openat2(dir.fd, name, { flags: c.O_PATH | c.O_NOFOLLOW, resolve: BENEATH });
      } catch (error) {
        this.#undo(dir, name, 0);
        throw error;
      }
      try {
        // Symlinks carry no user xattrs: their guest owner is the real one, which only a privileged backend can set.
        fchownat(fd, "", own.uid, own.gid, c.AT_EMPTY_PATH | c.AT_SYMLINK_NOFOLLOW);
      } catch (error) {
        if (code(error) !== "EPERM") {
          close(fd);
          this.#undo(dir, name, 0);
          throw error;
        }
      }
      const loaded = this.#adopt(fd);
      this.#chargeNew(dir, loaded);
      return this.#entry(loaded);
    } catch (error) {
      throw failed(error, op, parent, name);
    }
  }

  override mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Entry {
    const op = "mknod";
    try {
      const dir = this.#dir(parent, op);
      validateEntryName(name, op, "EEXIST", parent);
      if (!Number.isInteger(mode) || !Number.isInteger(umask)) throw invalid(op, "mode or umask is not an integer", parent);
      const type = (mode & S.IFMT) === 0 ? S.IFREG : mode & S.IFMT;
      const device = type === S.IFCHR || type === S.IFBLK;
      if (type === S.IFDIR) throw new FsError("EPERM", { op, ino: parent, detail: "mknod cannot make directories" });
      if (!device && type !== S.IFREG && type !== S.IFIFO && type !== S.IFSOCK) throw invalid(op, `file type 0o${type.toString(8)}`, parent);
      if (device && !isU32(rdev)) throw invalid(op, `device ${String(rdev)}`, parent);
      this.#writable(op, parent);
      this.#checkCreate(ctx, dir, name, op);
      // CAP_MKNOD: root only, except the 0:0 character device (a whiteout), as Linux allows since 5.8.
      if (device && ctx.uid !== 0 && !(type === S.IFCHR && rdev === 0)) {
        throw new FsError("EPERM", { op, ino: parent, detail: "only root creates device nodes" });
      }
      const own = newInodeOwnership(ctx, dir, type | (mode & S.IALLUGO), umask);
      const { loaded, fd } = this.#makeFile(dir, name, { ...own, rdev: device ? rdev : 0 });
      close(fd);
      return this.#entry(loaded);
    } catch (error) {
      throw failed(error, op, parent, name);
    }
  }

  override mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Entry {
    const op = "mkdir";
    try {
      const dir = this.#dir(parent, op);
      validateEntryName(name, op, "EEXIST", parent);
      if (!Number.isInteger(mode) || !Number.isInteger(umask)) throw invalid(op, "mode or umask is not an integer", parent);
      this.#writable(op, parent);
      this.#checkCreate(ctx, dir, name, op);
      const own = newInodeOwnership(ctx, dir, S.IFDIR | (mode & S.IALLUGO), umask);
      return this.#entry(this.#makeDir(dir, name, { ...own, rdev: 0 }));
    } catch (error) {
      throw failed(error, op, parent, name);
    }
  }

  /**
   * The kernel's `may_delete` for entry `name` of `dir`: the entry exists
   * (ENOENT), the caller may write and search `dir` (EACCES), and in a sticky
   * directory owns the entry or the directory (EPERM). Returns the entry's view.
   */
  #checkDelete(ctx: Context, dir: Inode, name: Uint8Array, op: string, entry = this.#peek(dir, name)): Peeked {
    checkAccess(dir, ctx, ACCESS.W_OK | ACCESS.X_OK, op);
    // The entry's owner (maybe a host read) is needed only in a sticky directory. Not an
    // object literal with a lazy getter: V8 makes each on a slow path whose allocations
    // outlive minor GCs (measured: 20× more promoted per scavenge, each ~10× slower).
    if ((dir.mode & S.ISVTX) !== 0 && !stickyAllows(dir, this.#viewOf(dir, name, entry), ctx)) {
      throw new FsError("EPERM", { op, ino: dir.ino, path: bytesToString(name), detail: "sticky directory" });
    }
    return entry;
  }

  /** Counts the space of an entry whose name just went: freed now unless a known inode or another link keeps it. */
  #removed(entry: Peeked): void {
    const key = this.#keyOf(entry.st);
    if (this.#byKey.get(key) !== undefined || ((entry.st.mode & S.IFMT) !== S.IFDIR && entry.st.nlink > 1)) return;
    // Gone for good: its host number may come back as another file, which must not inherit its guest number.
    this.#reserved.delete(key);
    this.#quota?.charge(-entry.st.blocks * 512);
  }

  #remove(ctx: Context, parent: number, name: Uint8Array, op: "unlink" | "rmdir"): void {
    try {
      const dir = this.#dir(parent, op);
      if (op === "rmdir" && isDot(name)) throw invalid(op, "cannot remove '.'", parent);
      validateEntryName(name, op, op === "rmdir" ? "ENOTEMPTY" : "EISDIR", parent);
      this.#writable(op, parent);
      checkAccess(dir, ctx, ACCESS.X_OK, op);
      const entry = this.#checkDelete(ctx, dir, name, op);
      unlinkat(dir.fd, name, op === "rmdir" ? c.AT_REMOVEDIR : 0);
      this.#removed(entry);
      this.#recharge(dir, dir.fd);
    } catch (error) {
      throw failed(error, op, parent, name);
    }
  }

  override unlink(ctx: Context, parent: number, name: Uint8Array): void {
    this.#remove(ctx, parent, name, "unlink");
  }

  override rmdir(ctx: Context, parent: number, name: Uint8Array): void {
    this.#remove(ctx, parent, name, "rmdir");
  }

  override rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): void {
    const op = "rename";
    try {
      const from = this.#dir(parent, op);
      const to = this.#dir(newParent, op);
      validateEntryName(name, op, "EBUSY", parent);
      validateEntryName(newName, op, "EBUSY", newParent);
      if (!Number.isInteger(flags) || (flags & ~RENAME_FLAGS) !== 0) throw invalid(op, `flags ${String(flags)}`, parent);
      const exchange = (flags & RENAME.EXCHANGE) !== 0;
      if (exchange && (flags & (RENAME.NOREPLACE | RENAME.WHITEOUT)) !== 0) throw invalid(op, `flags ${flags}`, parent);
      this.#writable(op, parent);
      checkAccess(from, ctx, ACCESS.X_OK, op);
      checkAccess(to, ctx, ACCESS.X_OK, op);
      const source = this.#peek(from, name);
      let target: Peeked | undefined;
      try {
        target = this.#peek(to, newName);
      } catch (error) {
        if (code(error) !== "ENOENT") throw error;
      }
      if (exchange && target === undefined) throw new FsError("ENOENT", { op, ino: newParent, path: bytesToString(newName) });
      if (target !== undefined && (flags & RENAME.NOREPLACE) !== 0) throw new FsError("EEXIST", { op, ino: newParent, path: bytesToString(newName) });
      if (target !== undefined && this.#keyOf(target.st) === this.#keyOf(source.st)) return;
      const whiteout = (flags & RENAME.WHITEOUT) !== 0;
      if (whiteout && ctx.uid !== 0) throw new FsError("EPERM", { op, ino: parent, detail: "RENAME_WHITEOUT needs CAP_MKNOD" });
      this.#checkDelete(ctx, from, name, op, source);
      if (target !== undefined) this.#checkDelete(ctx, to, newName, op, target);
      else checkAccess(to, ctx, ACCESS.W_OK | ACCESS.X_OK, op);
      // A directory moving to another parent gets a new `..`: that needs write permission on it.
      const isDir = (entry: Peeked): boolean => (entry.st.mode & S.IFMT) === S.IFDIR;
      if (from !== to) {
        if (isDir(source)) checkAccess(this.#viewOf(from, name, source), ctx, ACCESS.W_OK, op);
        if (exchange && target !== undefined && isDir(target)) checkAccess(this.#viewOf(to, newName, target), ctx, ACCESS.W_OK, op);
      }
      renameat2(from.fd, name, to.fd, newName, flags & ~RENAME.WHITEOUT);
      if (target !== undefined && !exchange) this.#removed(target);
      if (whiteout) {
        const own = newInodeOwnership(ctx, from, S.IFCHR, 0);
        const { loaded, fd } = this.#makeFile(from, name, { ...own, rdev: 0 });
        close(fd);
        this.#maybeDrop(loaded.inode);
      }
      this.#recharge(from, from.fd);
      if (to !== from) this.#recharge(to, to.fd);
    } catch (error) {
      throw failed(error, op, parent, name, newName);
    }
  }

  override link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Entry {
    const op = "link";
    try {
      const inode = this.#inode(ino, op);
      const dir = this.#dir(newParent, op);
      validateEntryName(newName, op, "EEXIST", newParent);
      this.#writable(op, newParent);
      this.#checkCreate(ctx, dir, newName, op);
      if ((inode.mode & S.IFMT) === S.IFDIR) throw new FsError("EPERM", { op, ino, detail: "directories cannot be hard-linked" });
      // The magic link leads to exactly this inode; even a symlink is linked itself, not followed.
      linkat(c.AT_FDCWD, procPath(inode.fd), dir.fd, newName, c.AT_SYMLINK_FOLLOW);
      this.#recharge(dir, dir.fd);
      return this.#entry({ inode, st: this.#stat(inode) });
    } catch (error) {
      throw failed(error, op, ino, newName);
    }
  }

  // ---- files ----------------------------------------------------------------

  /** The kernel's checks before opening `inode` with `flags`, in its order. */
  #checkOpen(ctx: Context, inode: Inode, flags: number, op: string): void {
    if (!Number.isInteger(flags) || (flags & O.ACCMODE) === O.ACCMODE) throw invalid(op, `flags ${String(flags)}`, inode.ino);
    const type = inode.mode & S.IFMT;
    const writes = (flags & O.ACCMODE) !== O.RDONLY || (flags & O.TRUNC) !== 0;
    if (type === S.IFLNK) throw new FsError("ELOOP", { op, ino: inode.ino, detail: "a symlink is not opened itself" });
    if (type === S.IFDIR) {
      if (writes) throw new FsError("EISDIR", { op, ino: inode.ino });
    } else if ((flags & O.DIRECTORY) !== 0) {
      throw new FsError("ENOTDIR", { op, ino: inode.ino });
    }
    // The guest kernel serves FIFOs, sockets and devices itself; their data never reaches a backend.
    if (type !== S.IFREG && type !== S.IFDIR) throw new FsError("ENXIO", { op, ino: inode.ino, detail: "special files have no data here" });
    if (writes) this.#writable(op, inode.ino);
    checkAccess(inode, ctx, openAccess(flags), op);
  }

  /**
   * A real host fd for `inode`, which the backend holds as `O_PATH`: a
   * directory by opening `.` beneath itself, a regular file through its
   * /proc/self/fd magic link (which leads to that very inode and nowhere
   * else; the host type was checked, so no symlink is followed and no device opened).
   */
  #reopen(inode: Inode, flags: number): number {
    if (inode.hostType === S.IFDIR) return openat2(inode.fd, ".", { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: BENEATH });
    if (inode.hostType !== S.IFREG) throw new FsError("ENXIO", { op: "open", ino: inode.ino });
    return openat(this.#procFd, String(inode.fd), flags & HOST_OPEN_FLAGS);
  }

  #addHandle(handle: FileHandle | DirHandle): number {
    const fh = this.#nextFh++;
    handle.inode.opens++;
    this.#handles.set(fh, handle);
    return fh;
  }

  #openFile(ctx: Context, inode: Inode, flags: number, op: string): OpenReply {
    const fd = this.#reopen(inode, flags);
    try {
      if ((flags & O.TRUNC) !== 0 && inode.hostType === S.IFREG) {
        this.#recharge(inode, fd);
        this.#afterWrite(inode, ctx, false, op);
      }
    } catch (error) {
      close(fd);
      throw error;
    }
    return { fh: this.#addHandle(new FileHandle(inode, fd, flags)), flags: this.#fileOpenFlags };
  }

  override open(ctx: Context, ino: number, flags: number): OpenReply {
    const op = "open";
    try {
      const inode = this.#inode(ino, op);
      this.#checkOpen(ctx, inode, flags, op);
      return this.#openFile(ctx, inode, flags, op);
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override create(ctx: Context, parent: number, name: Uint8Array, mode: number, flags: number, umask: number): CreateReply {
    const op = "create";
    try {
      const dir = this.#dir(parent, op);
      validateEntryName(name, op, "EISDIR", parent);
      if (!Number.isInteger(mode) || !Number.isInteger(flags) || !Number.isInteger(umask)) throw invalid(op, "mode, flags or umask is not an integer", parent);
      if ((flags & O.ACCMODE) === O.ACCMODE) throw invalid(op, `flags ${flags}`, parent);
      this.#writable(op, parent);
      checkAccess(dir, ctx, ACCESS.X_OK, op);
      // Without O_EXCL an existing name is opened. Creating first and opening on
      // EEXIST is the cheap order (the kernel calls create for names it found
      // missing), unless creating is refused anyway.
      const exclusive = (flags & O.EXCL) !== 0;
      const full = this.#quota !== undefined && this.#quota.room <= 0;
      if (!exclusive && (full || !hasAccess(dir, ctx, ACCESS.W_OK | ACCESS.X_OK))) {
        const existing = this.#existing(dir, name);
        if (existing !== undefined) return this.#openExisting(ctx, existing.inode, flags, op);
      }
      this.#checkCreate(ctx, dir, name, op);
      const own = newInodeOwnership(ctx, dir, S.IFREG | (mode & S.IALLUGO), umask);
      let made: { loaded: Loaded; fd: number };
      try {
        made = this.#makeFile(dir, name, { ...own, rdev: 0 });
      } catch (error) {
        const existing = !exclusive && code(error) === "EEXIST" ? this.#existing(dir, name) : undefined;
        if (existing === undefined) throw error;
        return this.#openExisting(ctx, existing.inode, flags, op);
      }
      const { loaded, fd } = made;
      // A file this call created opens with the access asked for, whatever its mode says (FMODE_CREATED).
      let handleFd = fd;
      if ((flags & (O.APPEND | O.SYNC | O.DSYNC)) !== 0) {
        try {
          handleFd = openat(this.#procFd, String(fd), (flags & HOST_OPEN_FLAGS & ~(O.TRUNC | O.ACCMODE)) | O.RDWR);
        } catch (error) {
          this.#maybeDrop(loaded.inode);
          throw error;
        } finally {
          close(fd);
        }
      }
      const fh = this.#addHandle(new FileHandle(loaded.inode, handleFd, flags));
      return { entry: this.#entry(loaded), fh, flags: this.#fileOpenFlags };
    } catch (error) {
      throw failed(error, op, parent, name);
    }
  }

  /** `create` of a name that exists: opened as `open` would, counted as a lookup. */
  #openExisting(ctx: Context, inode: Inode, flags: number, op: string): CreateReply {
    let reply: OpenReply;
    try {
      if ((inode.mode & S.IFMT) === S.IFDIR) throw new FsError("EISDIR", { op, ino: inode.ino });
      this.#checkOpen(ctx, inode, flags & ~O.CREAT, op);
      reply = this.#openFile(ctx, inode, flags, op);
    } catch (error) {
      this.#maybeDrop(inode);
      throw error;
    }
    return { entry: this.#entry({ inode, st: this.#stat(inode) }), fh: reply.fh, flags: reply.flags };
  }

  /** `name` in `dir` if it exists, `undefined` if not. */
  #existing(dir: Inode, name: Uint8Array): Loaded | undefined {
    try {
      return this.#child(dir.fd, name);
    } catch (error) {
      if (code(error) === "ENOENT") return undefined;
      throw error;
    }
  }

  #anyHandle(ino: number, fh: number, op: string): FileHandle | DirHandle {
    const handle = this.#handles.get(fh);
    if (handle === undefined || handle.inode.ino !== ino) throw new FsError("EBADF", { op, ino: number(ino), detail: `unknown handle ${String(fh)}` });
    return handle;
  }

  /** File handle `fh` of `ino`, open for reading and/or writing as `access` (`ACCESS.R_OK | W_OK`) asks. */
  #fileHandle(ino: number, fh: number, op: string, access = 0): FileHandle {
    const handle = this.#anyHandle(ino, fh, op);
    if (!(handle instanceof FileHandle)) throw new FsError("EBADF", { op, ino, detail: `handle ${fh} is a directory's` });
    if (((access & ACCESS.R_OK) !== 0 && !handle.canRead) || ((access & ACCESS.W_OK) !== 0 && !handle.canWrite)) {
      throw new FsError("EBADF", { op, ino, detail: `handle ${fh} is not open for ${(access & ACCESS.W_OK) !== 0 ? "writing" : "reading"}` });
    }
    return handle;
  }

  #dirHandle(ino: number, fh: number, op: string): DirHandle {
    const handle = this.#anyHandle(ino, fh, op);
    if (!(handle instanceof DirHandle)) throw new FsError("EBADF", { op, ino, detail: `handle ${fh} is a file's` });
    return handle;
  }

  override read(_ctx: Context, ino: number, fh: number, size: number, offset: number): Uint8Array {
    const op = "read";
    try {
      const handle = this.#readHandle(ino, fh, size, offset, op);
      let length = Math.min(size, MAX_RW);
      if (length > READ_PROBE) length = Math.min(length, Math.max(0, fstat(handle.fd).size - offset));
      if (length === 0) return EMPTY;
      const buffer = Buffer.allocUnsafeSlow(length);
      const n = readSync(handle.fd, buffer, 0, length, offset);
      // The bytes past what was read are uninitialised memory: never hand them out, even behind a view.
      if (n < length) buffer.fill(0, n);
      return plain(buffer.subarray(0, n));
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  /** `read` into the caller's `target`, so no array is made (the optional `readInto` of the contract). */
  readInto(_ctx: Context, ino: number, fh: number, target: Uint8Array, offset: number): number {
    const op = "read";
    try {
      checkBytes(target, "target", op, ino);
      const handle = this.#readHandle(ino, fh, target.length, offset, op);
      const length = Math.min(target.length, MAX_RW);
      return length === 0 ? 0 : readSync(handle.fd, target, 0, length, offset);
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  /**
   * The host fd of file handle `fh` (the optional `passthroughFd` of the
   * contract), opened through the inode's confined `O_PATH` fd, so a kernel
   * reading it reaches this file and nothing else. None with a quota: a
   * shared writable mapping of a passthrough file would change it without
   * the write calls the quota is charged from.
   */
  passthroughFd(ino: number, fh: number): number | undefined {
    const handle = this.#handles.get(fh);
    if (!(handle instanceof FileHandle) || handle.inode.ino !== ino || this.#quota !== undefined) return undefined;
    return handle.fd;
  }

  /** The handle a read of `size` bytes at `offset` goes through, or the kernel's error. */
  #readHandle(ino: number, fh: number, size: number, offset: number, op: string): FileHandle {
    const handle = this.#fileHandle(ino, fh, op, ACCESS.R_OK);
    checkCount(size, "size", op, ino);
    checkCount(offset, "offset", op, ino);
    return handle;
  }

  override write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): number {
    const op = "write";
    try {
      const handle = this.#fileHandle(ino, fh, op, ACCESS.W_OK);
      checkBytes(data, "data", op, ino);
      checkCount(offset, "offset", op, ino);
      if (!Number.isInteger(flags)) throw invalid(op, `flags ${String(flags)}`, ino);
      const length = this.#allowance(handle, offset, Math.min(data.length, MAX_RW), op);
      // pwrite on an O_APPEND fd appends on Linux, whatever the offset: exactly O_APPEND's meaning.
      const n = length === 0 ? 0 : writeSync(handle.fd, data, 0, length, offset);
      this.#recharge(handle.inode, handle.fd);
      this.#afterWrite(handle.inode, ctx, (flags & WRITE.KILL_SUIDGID) !== 0, op);
      return n;
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  /**
   * How many of `length` bytes at `offset` may be written under the quota:
   * all when the blocks they could newly allocate fit, or when they only
   * overwrite allocated data; else the longest prefix that fits (ENOSPC when none).
   */
  #allowance(handle: FileHandle, offset: number, length: number, op: string): number {
    const quota = this.#quota;
    if (quota === undefined || length === 0) return length;
    const st = fstat(handle.fd);
    const start = handle.append ? st.size : offset;
    if (worstCase(start, length) <= quota.room) return length;
    if (start + length <= st.size && this.#allocated(handle.fd, start, length)) return length;
    const fit = Math.floor(Math.max(0, quota.room) / BLOCK) * BLOCK - (start % BLOCK);
    if (fit <= 0) throw new FsError("ENOSPC", { op, ino: handle.inode.ino, detail: `quota of ${quota.limit} bytes used up` });
    return Math.min(length, fit);
  }

  /** True when `[offset, offset + length)` of `fd` holds no hole. */
  #allocated(fd: number, offset: number, length: number): boolean {
    try {
      return lseek(fd, offset, SEEK.HOLE) >= offset + length;
    } catch {
      return false;
    }
  }

  override flush(_ctx: Context, ino: number, fh: number, _lockOwner: number): void {
    try {
      this.#fileHandle(ino, fh, "flush");
    } catch (error) {
      throw failed(error, "flush", ino);
    }
  }

  override fsync(_ctx: Context, ino: number, fh: number, datasync: boolean): void {
    this.#sync(ino, fh, datasync, "fsync", false);
  }

  override fsyncdir(_ctx: Context, ino: number, fh: number, datasync: boolean): void {
    this.#sync(ino, fh, datasync, "fsyncdir", true);
  }

  #sync(ino: number, fh: number, datasync: boolean, op: string, dir: boolean): void {
    try {
      const { fd } = dir ? this.#dirHandle(ino, fh, op) : this.#fileHandle(ino, fh, op);
      if (datasync) fdatasyncSync(fd);
      else fsyncSync(fd);
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override fallocate(ctx: Context, ino: number, fh: number, mode: number, offset: number, length: number): void {
    const op = "fallocate";
    try {
      const handle = this.#fileHandle(ino, fh, op, ACCESS.W_OK);
      if (!Number.isInteger(mode) || (mode & ~FALLOC_KNOWN) !== 0) throw new FsError("EOPNOTSUPP", { op, ino, detail: `mode ${String(mode)}` });
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0) {
        throw invalid(op, `offset ${String(offset)}, length ${String(length)}`, ino);
      }
      if (this.#quota !== undefined && (mode & FALLOC_FREES) === 0 && worstCase(offset, length) > this.#quota.room) {
        if (!this.#allocated(handle.fd, offset, length)) throw new FsError("ENOSPC", { op, ino, detail: `quota of ${this.#quota.limit} bytes` });
      }
      try {
        fallocate(handle.fd, mode, offset, length);
      } catch (error) {
        if ((mode & FALLOC.ZERO_RANGE) === 0 || code(error) !== "ENOTSUP") throw error;
        this.#zeroRange(handle.fd, mode, offset, length);
      }
      this.#recharge(handle.inode, handle.fd);
      this.#afterWrite(handle.inode, ctx, false, op);
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  /**
   * FALLOC_FL_ZERO_RANGE where the host lacks it (tmpfs): punch the range,
   * then allocate it again (growing the file unless KEEP_SIZE). Same result
   * for a reader; not atomic, which a synchronous backend does not need.
   */
  #zeroRange(fd: number, mode: number, offset: number, length: number): void {
    fallocate(fd, FALLOC.PUNCH_HOLE | FALLOC.KEEP_SIZE, offset, length);
    fallocate(fd, mode & FALLOC.KEEP_SIZE, offset, length);
  }

  override release(_ctx: Context, ino: number, fh: number, _flags: number): void {
    this.#close(ino, fh, "release", false);
  }

  override releasedir(_ctx: Context, ino: number, fh: number, _flags: number): void {
    this.#close(ino, fh, "releasedir", true);
  }

  #close(ino: number, fh: number, op: string, dir: boolean): void {
    try {
      const handle = dir ? this.#dirHandle(ino, fh, op) : this.#fileHandle(ino, fh, op);
      this.#handles.delete(fh);
      close(handle.fd);
      handle.inode.opens--;
      this.#maybeDrop(handle.inode);
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override statfs(_ctx: Context, _ino: number): StatFs {
    const op = "statfs";
    try {
      const st = fstatfs(this.#root!.fd);
      const quota = this.#quota;
      const frsize = st.frsize > 0 ? st.frsize : st.bsize;
      const blocks = quota === undefined ? st.blocks : Math.min(st.blocks, Math.floor(quota.limit / frsize));
      const room = quota === undefined ? Infinity : Math.max(0, Math.floor(quota.room / frsize));
      return {
        blocks,
        bfree: Math.min(st.bfree, room, blocks),
        bavail: Math.min(st.bavail, room, blocks),
        files: st.files,
        ffree: Math.min(st.ffree, st.files),
        bsize: st.bsize,
        namelen: Math.min(st.namelen, NAME_MAX),
        frsize,
      };
    } catch (error) {
      throw failed(error, op);
    }
  }

  override lseek(_ctx: Context, ino: number, fh: number, offset: number, whence: number): number {
    const op = "lseek";
    try {
      const handle = this.#fileHandle(ino, fh, op);
      if (!Number.isSafeInteger(offset)) throw invalid(op, `offset ${String(offset)}`, ino);
      switch (whence) {
        case SEEK.SET:
        case SEEK.CUR:
        case SEEK.END: {
          // Handles have no position of their own (every read and write names its offset).
          const pos = whence === SEEK.END ? fstat(handle.fd).size + offset : offset;
          if (pos < 0) throw invalid(op, `offset ${pos}`, ino);
          return pos;
        }
        case SEEK.DATA:
        case SEEK.HOLE:
          if (offset < 0) throw new FsError("ENXIO", { op, ino, detail: `offset ${offset}` });
          return lseek(handle.fd, offset, whence);
        default:
          throw invalid(op, `whence ${String(whence)}`, ino);
      }
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override copyFileRange(
    ctx: Context,
    inoIn: number,
    fhIn: number,
    offsetIn: number,
    inoOut: number,
    fhOut: number,
    offsetOut: number,
    length: number,
    flags: number,
  ): number {
    const op = "copy_file_range";
    try {
      const from = this.#fileHandle(inoIn, fhIn, op, ACCESS.R_OK);
      const to = this.#fileHandle(inoOut, fhOut, op, ACCESS.W_OK);
      if (to.append) throw new FsError("EBADF", { op, ino: inoOut, detail: "copy_file_range cannot append" });
      if (flags !== 0) throw invalid(op, `flags ${String(flags)}`, inoIn);
      checkCount(offsetIn, "offset", op, inoIn);
      checkCount(offsetOut, "offset", op, inoOut);
      checkCount(length, "length", op, inoIn);
      const allowed = this.#allowance(to, offsetOut, Math.min(length, MAX_RW), op);
      if (allowed === 0) return 0;
      let n: number;
      try {
        n = copyFileRange(from.fd, offsetIn, to.fd, offsetOut, allowed, 0);
      } catch (error) {
        if (code(error) !== "EXDEV") throw error;
        n = this.#copyByHand(from.fd, offsetIn, to.fd, offsetOut, allowed);
      }
      this.#recharge(to.inode, to.fd);
      this.#afterWrite(to.inode, ctx, false, op);
      return n;
    } catch (error) {
      throw failed(error, op, inoIn);
    }
  }

  /** copy_file_range between host filesystems that cannot do it themselves (EXDEV). */
  #copyByHand(fdIn: number, offsetIn: number, fdOut: number, offsetOut: number, length: number): number {
    const buffer = Buffer.allocUnsafeSlow(Math.min(length, 1 << 20));
    let done = 0;
    while (done < length) {
      const got = readSync(fdIn, buffer, 0, Math.min(buffer.length, length - done), offsetIn + done);
      if (got === 0) break;
      done += writeSync(fdOut, buffer, 0, got, offsetOut + done);
    }
    return done;
  }

  // ---- extended attributes -------------------------------------------------

  /**
   * The host name and path for guest xattr `name` of `inode`, after the
   * kernel's checks, or `undefined` when the name cannot exist on it (reserved
   * `user.msb.*`, or a namespace kept in host `user.*` on a symlink).
   */
  #xattr(ctx: Context, inode: Inode, name: Uint8Array, write: boolean, op: string): Uint8Array | undefined {
    checkBytes(name, "name", op, inode.ino);
    const ns = xattrNamespace(name, op);
    checkXattrAccess(inode, ctx, ns, write, op);
    // security.* is the LSMs' and needs CAP_SYS_ADMIN to change, as Linux's commoncap says.
    if (write && ns === "security" && ctx.uid !== 0) throw new FsError("EPERM", { op, ino: inode.ino, path: bytesToString(name) });
    if (inode.hostType !== S.IFREG && inode.hostType !== S.IFDIR) return undefined;
    return hostXattrName(name, ns);
  }

  override setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): void {
    const op = "setxattr";
    try {
      const inode = this.#inode(ino, op);
      // Both flags at once are allowed and can never succeed, as on Linux: EEXIST or ENODATA.
      if (!Number.isInteger(flags) || (flags & ~(XATTR.CREATE | XATTR.REPLACE)) !== 0) throw invalid(op, `flags ${String(flags)}`, ino);
      checkBytes(value, "value", op, ino);
      checkXattrValue(value, op);
      this.#writable(op, ino);
      const hostName = this.#xattr(ctx, inode, name, true, op);
      if (hostName === undefined) throw new FsError("EPERM", { op, ino, path: bytesToString(name), detail: "reserved or unsupported here" });
      setxattr(procPath(inode.fd), hostName, value, flags);
    } catch (error) {
      throw failed(error, op, ino, name);
    }
  }

  override getxattr(ctx: Context, ino: number, name: Uint8Array): Uint8Array {
    const op = "getxattr";
    try {
      const inode = this.#inode(ino, op);
      const hostName = this.#xattr(ctx, inode, name, false, op);
      if (hostName === undefined) throw new FsError("ENODATA", { op, ino, path: bytesToString(name) });
      return plain(getxattr(procPath(inode.fd), hostName));
    } catch (error) {
      throw failed(error, op, ino, name);
    }
  }

  override listxattr(ctx: Context, ino: number): Uint8Array[] {
    const op = "listxattr";
    try {
      const inode = this.#inode(ino, op);
      if (inode.hostType !== S.IFREG && inode.hostType !== S.IFDIR) return [];
      const names: Uint8Array[] = [];
      for (const hostName of listxattr(procPath(inode.fd))) {
        const name = guestXattrName(hostName);
        if (name !== undefined && xattrVisible(name, ctx)) names.push(plain(name));
      }
      return names;
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override removexattr(ctx: Context, ino: number, name: Uint8Array): void {
    const op = "removexattr";
    try {
      const inode = this.#inode(ino, op);
      this.#writable(op, ino);
      const hostName = this.#xattr(ctx, inode, name, true, op);
      if (hostName === undefined) throw new FsError("ENODATA", { op, ino, path: bytesToString(name) });
      removexattr(procPath(inode.fd), hostName);
    } catch (error) {
      throw failed(error, op, ino, name);
    }
  }

  // ---- directories ----------------------------------------------------------

  override opendir(ctx: Context, ino: number, flags: number): OpenReply {
    const op = "opendir";
    try {
      const inode = this.#dir(ino, op);
      if (!Number.isInteger(flags)) throw invalid(op, `flags ${String(flags)}`, ino);
      if ((flags & O.ACCMODE) !== O.RDONLY) throw new FsError("EISDIR", { op, ino });
      checkAccess(inode, ctx, ACCESS.R_OK, op);
      const fd = this.#reopen(inode, O.RDONLY);
      return { fh: this.#addHandle(new DirHandle(inode, fd)), flags: this.#dirOpenFlags };
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  override readdir(_ctx: Context, ino: number, fh: number, offset: number, size: number): DirEntry[] {
    return this.#list(ino, fh, offset, size, false, "readdir");
  }

  override readdirplus(_ctx: Context, ino: number, fh: number, offset: number, size: number): DirEntryPlus[] {
    return this.#list(ino, fh, offset, size, true, "readdirplus") as DirEntryPlus[];
  }

  /**
   * Entries after guest cookie `offset` that fit in `size` bytes of FUSE
   * dirents: `.` and `..` first (the guest's: `..` of the root is the root),
   * then the host's, read fresh from the host position the cookie maps to, so
   * names removed meanwhile are not listed and names that stayed are not missed.
   */
  #list(ino: number, fh: number, offset: number, size: number, plus: boolean, op: string): (DirEntry | DirEntryPlus)[] {
    try {
      const handle = this.#dirHandle(ino, fh, op);
      checkCount(offset, "offset", op, ino);
      checkCount(size, "size", op, ino);
      const out: (DirEntry | DirEntryPlus)[] = [];
      const header = plus ? DIRENTPLUS_HEADER : DIRENT_HEADER;
      let room = offset < 1 ? size - ((header + 1 + 7) & ~7) : size;
      // At least one entry goes out whatever the size, so a listing always moves on.
      const fits = (name: Uint8Array): boolean => {
        const record = (header + name.length + 7) & ~7;
        if (out.length > 0 && record > room) return false;
        room -= record;
        return true;
      };
      if (offset < 1) out.push(this.#dotEntry(handle.inode, 1, plus));
      if (offset < 2) {
        if (!fits(DOTDOT)) return out;
        out.push(this.#dotDotEntry(handle, plus));
      }
      const start = handle.position(offset);
      if (start === undefined) throw invalid(op, `unknown offset ${offset}`, ino);
      if (handle.at !== start) lseek(handle.fd, start, SEEK.SET);
      handle.at = start;
      for (;;) {
        const records = getdentsRaw(handle.fd, Math.max(size, 4096));
        if (records.length === 0) return out;
        // Past this batch now; known again only once all of it is taken.
        handle.at = undefined;
        // Names as plain Uint8Array views: what the guest gets, and cheaper to make than Buffers.
        const batch = parseDirents(new Uint8Array(records.buffer, records.byteOffset, records.length));
        for (const dirent of batch) {
          if (isDotOrDotDot(dirent.name)) continue;
          if (!fits(dirent.name)) return out;
          const entry = plus ? this.#plusEntry(handle, dirent) : this.#plainEntry(handle, dirent);
          if (entry !== undefined) out.push(entry);
        }
        handle.at = batch[batch.length - 1]!.off;
        // A batch is a fair answer (the kernel asks again until one is empty); the next getdents may well find the end.
        if (out.length > 0) return out;
      }
    } catch (error) {
      throw failed(error, op, ino);
    }
  }

  /** `.`: never counted as a lookup (the kernel does not forget it). */
  #dotEntry(inode: Inode, cookie: number, plus: boolean): DirEntry | DirEntryPlus {
    const base = { ino: inode.ino, offset: cookie, type: DT.DIR, name: new Uint8Array([0x2e]) };
    return plus ? { ...base, entry: { ino: inode.ino, generation: 0, attr: this.#attr(inode, this.#stat(inode)) } } : base;
  }

  /**
   * `..`, the guest's: the root's is the root. Not counted either; a parent
   * loaded only for its attributes goes again (its number stays reserved).
   */
  #dotDotEntry(handle: DirHandle, plus: boolean): DirEntry | DirEntryPlus {
    const dir = handle.inode;
    if (dir === this.#root) return { ...this.#dotEntry(dir, 2, plus), name: DOTDOT.slice() };
    if (!plus) return { ino: this.#inoOf(this.#keyOf(statAt(handle.fd, DOTDOT))), offset: 2, type: DT.DIR, name: DOTDOT.slice() };
    const { inode, st } = this.#resolve(dir, DOTDOT);
    const entry = { ino: inode.ino, offset: 2, type: DT.DIR, name: DOTDOT.slice(), entry: { ino: inode.ino, generation: 0, attr: this.#attr(inode, st) } };
    this.#maybeDrop(inode);
    return entry;
  }

  /** The guest number of host inode `key`, known or not. */
  #inoOf(key: HostKey): number {
    return this.#byKey.get(key)?.ino ?? this.#reservation(key).ino;
  }

  /**
   * A readdir entry with the guest's number and d_type. A host regular file
   * may be a guest FIFO, socket or device, which only its override says: that
   * is read once per host inode and kept with its reserved number.
   */
  #plainEntry(handle: DirHandle, dirent: Dirent<Uint8Array>): DirEntry {
    const key = direntKey(this.#root!.dev, handle.inode.dev, dirent.ino);
    const offset = handle.cookie(dirent.off);
    const name = dirent.name;
    const known = this.#byKey.get(key);
    if (known !== undefined) return { ino: known.ino, offset, type: dtFromMode(known.mode), name };
    const reserved = this.#reservation(key);
    if (reserved.type === undefined) {
      const what = (): string => `'${bytesToString(name)}' in inode ${handle.inode.ino}`;
      const view = dirent.type === DT.REG ? this.#override(() => getxattrat(handle.fd, name, OVERRIDE, c.AT_SYMLINK_NOFOLLOW), S.IFREG, what) : undefined;
      reserved.type = view === undefined ? dirent.type : dtFromMode(view.mode);
    }
    return { ino: reserved.ino, offset, type: reserved.type, name };
  }

  /** A readdirplus entry, looked up (and counted); `undefined` when the name went meanwhile. */
  #plusEntry(handle: DirHandle, dirent: Dirent<Uint8Array>): DirEntryPlus | undefined {
    let loaded: Loaded;
    try {
      loaded = this.#child(handle.fd, dirent.name);
    } catch (error) {
      if (code(error) === "ENOENT") return undefined;
      throw error;
    }
    const entry = this.#entry(loaded);
    return { ino: entry.ino, offset: handle.cookie(dirent.off), type: dtFromMode(loaded.inode.mode), name: dirent.name, entry };
  }

  override access(ctx: Context, ino: number, mask: number): void {
    const op = "access";
    try {
      const inode = this.#inode(ino, op);
      if (!Number.isInteger(mask) || (mask & ~(ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK)) !== 0) throw invalid(op, `mask ${String(mask)}`, ino);
      const type = inode.mode & S.IFMT;
      if ((mask & ACCESS.W_OK) !== 0 && (type === S.IFREG || type === S.IFDIR || type === S.IFLNK)) this.#writable(op, ino);
      checkAccess(inode, ctx, mask, op);
    } catch (error) {
      throw failed(error, op, ino);
    }
  }
}
