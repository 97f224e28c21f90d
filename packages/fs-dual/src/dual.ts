import {
  ACCESS,
  bytesEqual,
  bytesToString,
  checkAccess,
  checkXattrAccess,
  checkXattrValue,
  copyObject,
  copyRangeAcross,
  discardCopy,
  DT,
  dtFromMode,
  ensureMarker,
  FsBackend,
  FsError,
  hasEntry,
  isDirectory,
  isDotOrDotDot,
  isWhiteoutName,
  listEntries,
  lookupIfExists,
  nameKey,
  nowTimespec,
  O,
  openAccess,
  PathFs,
  planSetattr,
  RENAME,
  ROOT_CONTEXT,
  ROOT_INO,
  S,
  SetattrValid,
  stickyAllows,
  validateEntryName,
  validateName,
  whiteoutOf,
  xattrNamespace,
  type Attr,
  type CachePolicy,
  type Context,
  type CreateReply,
  type DirEntry,
  type DirEntryPlus,
  type DynFileSystem,
  type Entry,
  type OpenReply,
  type SetattrRequest,
  type StatFs,
} from "@msb/fs";
import { DUAL_WHITEOUT_PREFIX, resolveDualOptions, type DualFsOptions } from "./options.js";
import { DUAL_POLICIES, type DualBackendId, type DualOperationKind, type DualPolicyFunction } from "./policy.js";

/** A backend by index: 0 is backend A, 1 is backend B. */
type Side = 0 | 1;
const SIDE_IDS: readonly DualBackendId[] = ["a", "b"];
const other = (side: Side): Side => (side === 0 ? 1 : 0);
const DIRENT_HEADER = 24;
const DIRENTPLUS_HEADER = 152;
const RENAME_FLAGS = RENAME.NOREPLACE | RENAME.EXCHANGE | RENAME.WHITEOUT;

/**
 * A DualFs inode: the object on each backend it is made of (one lookup held
 * on each). A non-directory lives on one backend; a directory may exist on
 * both, and then lists and looks up names in both.
 */
class Node {
  readonly objs: [number | undefined, number | undefined] = [undefined, undefined];
  nlookup = 0;
  opens = 0;
  children = 0;
  /** A directory removed through the DualFs: it answers nlink 0 and holds nothing. */
  removed = false;
  copying: Promise<void> | undefined;

  constructor(
    readonly ino: number,
    readonly isDir: boolean,
    /** The backend whose object shows: attributes, data, link target, xattrs. */
    public home: Side,
    public parent: Node | undefined,
    public name: Uint8Array,
  ) {}

  get homeIno(): number {
    return this.objs[this.home]!;
  }
}

/** An open file: the backend object and that backend's handle. */
interface FileHandle {
  readonly node: Node;
  side: Side;
  ino: number;
  fh: number;
  /** The open flags, to reopen a read handle on the copy once its file was copied across. */
  readonly flags: number;
  /** The move over to the copy, while it runs (concurrent reads share it). */
  following?: Promise<void>;
}

/** An open directory: the merged listing as it was at opendir, `.` and `..` first. */
interface DirHandle {
  readonly node: Node;
  readonly entries: { readonly name: Uint8Array; readonly key: string; readonly ino: number; readonly type: number }[];
  /** Names removed through the DualFs since opendir: later batches leave them out. */
  readonly gone: Set<string>;
}

/** One entry of a merged listing: the name, the backend whose entry shows, and that entry. */
interface MergedEntry {
  readonly name: Uint8Array;
  readonly key: string;
  readonly side: Side;
  readonly entry: DirEntry;
}

const withIno = (attr: Attr, ino: number, removed = false): Attr => ({ ...attr, ino, nlink: removed ? 0 : attr.nlink });
const objKey = (side: Side, ino: number): string => `${side}:${ino}`;
const isNoEntry = (error: unknown): boolean => FsError.isInstance(error) && error.code === "ENOENT";

/** A name from the caller: bytes, not empty, no `/` or NUL, at most 255 bytes (`.` and `..` allowed). */
function checkName(name: Uint8Array, op: string): void {
  if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, detail: "name is not bytes" });
  validateName(name, op, true);
}

/**
 * Two filesystems under one root, with a policy that routes each operation:
 * which backend a name is looked up in first, which backends a listing
 * shows, where new names are made and where changes go.
 *
 * - A change to an object that lives on the other backend copies it across
 *   first: built under a temp name in a staging directory of the target
 *   backend (data in 1 MiB chunks, owner, mode, times, xattrs), then renamed
 *   into place, so a crash leaves either the old view or the whole copy. The
 *   DualFs inode number stays the same.
 * - Removing a name the other backend also shows writes a whiteout
 *   (`.msb-wh.<name>`) next to it in the backend that takes changes: a
 *   whiteout in one backend hides the name in the other one.
 *   Whiteouts and the staging directories never show.
 * - Inode numbers are DualFs's own, so the backends' numbers never collide.
 * - A directory's attributes come from the backend that takes changes to it
 *   when it exists there (it has the newest), else from the lookup winner.
 *
 * @example
 * ```ts
 * const project = new PassthroughFs({ rootDir: "/srv/project", readOnly: true });
 * const scratch = new MemFs();
 * // Reads fall through to the project; every change lands in memory.
 * const fs = new DualFs({ backendA: scratch, backendB: project, policy: "ReadBackendBWriteBackendA" });
 * await fs.init();
 * await new PathFs(fs).writeFile("/README.md", "changed"); // copied into scratch, then changed
 * ```
 */
export class DualFs extends FsBackend {
  readonly #backends: readonly [DynFileSystem, DynFileSystem];
  readonly #policy: DualPolicyFunction;
  /** A built-in policy's answers, which do not depend on the path: no path is built for them. */
  readonly #fixed: Readonly<Record<DualOperationKind, readonly Side[]>> | undefined;
  readonly #stagingName: Uint8Array;
  readonly #cache: CachePolicy;
  /** Each backend's staging directory, made on its first copy. */
  readonly #staging: [Promise<number> | undefined, Promise<number> | undefined] = [undefined, undefined];
  readonly #nodes = new Map<number, Node>();
  /** DualFs inode numbers by backend object (`side:ino`); numbers are never reused. */
  readonly #inoByKey = new Map<string, number>();
  /** Objects with several names already copied across (`side:ino` → the copy on the other side), so their other names link to the copy. */
  readonly #copied = new Map<string, number>();
  readonly #files = new Map<number, FileHandle>();
  readonly #dirs = new Map<number, DirHandle>();
  #nextIno = ROOT_INO + 1;
  #nextFh = 1;
  #nextTemp = 1;
  /** The end of the queue of namespace changes, run one at a time. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: DualFsOptions) {
    super();
    const resolved = resolveDualOptions(options);
    this.#backends = resolved.backends;
    this.#policy = resolved.policy;
    if (Object.values(DUAL_POLICIES).includes(resolved.policy)) {
      const answers = (kind: DualOperationKind): readonly Side[] => this.#checkOrder(kind, "/", resolved.policy(kind, "/"));
      this.#fixed = { lookup: answers("lookup"), readdir: answers("readdir"), create: answers("create"), write: answers("write") };
    }
    this.#stagingName = resolved.staging;
    this.#cache = resolved.cache;
  }

  override get cachePolicy(): CachePolicy {
    return this.#cache;
  }

  /** Initialises both backends and joins their roots. */
  override async init(): Promise<void> {
    await this.#backends[0].init();
    await this.#backends[1].init();
    const root = new Node(ROOT_INO, true, 0, undefined, new Uint8Array(0));
    root.objs[0] = ROOT_INO;
    root.objs[1] = ROOT_INO;
    root.home = this.#target("write", root);
    root.nlookup = 1;
    this.#nodes.set(ROOT_INO, root);
    this.#inoByKey.set(objKey(0, ROOT_INO), ROOT_INO);
    this.#inoByKey.set(objKey(1, ROOT_INO), ROOT_INO);
  }

  /** Destroys both backends. */
  override async destroy(): Promise<void> {
    await this.#backends[0].destroy();
    await this.#backends[1].destroy();
  }

  // ---- names ------------------------------------------------------------

  override async lookup(ctx: Context, parent: number, name: Uint8Array): Promise<Entry> {
    const op = "lookup";
    const dir = this.#dirNode(parent, op);
    checkName(name, op);
    checkAccess(await this.#attr(dir), ctx, ACCESS.X_OK, op);
    if (isDotOrDotDot(name)) {
      if (dir.removed && name.length === 2) throw new FsError("ENOENT", { op, path: "..", ino: parent });
      const node = name.length === 1 ? dir : (dir.parent ?? dir);
      node.nlookup++;
      return this.#entry(node, await this.#attr(node));
    }
    const found = await this.#lookupNode(dir, name);
    if (found === undefined) throw new FsError("ENOENT", { op, path: bytesToString(name), ino: parent });
    return this.#entry(found.node, found.attr);
  }

  override async forget(_ctx: Context, ino: number, nlookup: number): Promise<void> {
    if (!Number.isSafeInteger(nlookup) || nlookup < 0) throw new FsError("EINVAL", { op: "forget", ino, detail: `nlookup ${String(nlookup)}` });
    const node = this.#nodes.get(ino);
    if (node === undefined || ino === ROOT_INO) return;
    node.nlookup = Math.max(0, node.nlookup - nlookup);
    await this.#maybeFree(node);
  }

  override async getattr(ctx: Context, ino: number, fh?: number): Promise<Attr> {
    const node = this.#node(ino, "getattr");
    const handle = fh === undefined ? undefined : this.#files.get(fh);
    if (handle !== undefined && handle.node === node) {
      return withIno(await this.#backends[handle.side].getattr(ctx, handle.ino, handle.fh), ino);
    }
    return this.#attr(node);
  }

  override async setattr(ctx: Context, ino: number, req: SetattrRequest): Promise<Attr> {
    const op = "setattr";
    const node = this.#node(ino, op);
    if (typeof req !== "object" || (req as unknown) === null || !Number.isInteger(req.valid)) throw new FsError("EINVAL", { op, ino, detail: "malformed request" });
    const side = this.#target("write", node);
    let sideReq = req;
    if ((req.valid & SetattrValid.FH) !== 0) {
      const handle = this.#fileHandle(ino, req.fh, op);
      sideReq = handle.side === side && node.home === side ? { ...req, fh: handle.fh } : { ...req, valid: req.valid & ~SetattrValid.FH };
    }
    if (!this.#livesOn(node, side)) {
      // The caller's rights are checked before the copy they would cause.
      planSetattr(await this.#attr(node), ctx, sideReq, { now: nowTimespec() });
      await this.#exclusive(() => this.#copyAcross(node, side));
    }
    return withIno(await this.#backends[side].setattr(ctx, node.objs[side]!, sideReq), ino);
  }

  override async readlink(ctx: Context, ino: number): Promise<Uint8Array> {
    const node = this.#node(ino, "readlink");
    return this.#backends[node.home].readlink(ctx, node.homeIno);
  }

  override async symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Promise<Entry> {
    const made = await this.#exclusive(() =>
      this.#make(ctx, parent, name, "symlink", async (fs, dir) => ({ entry: await fs.symlink(ctx, target, dir, name), extra: undefined })),
    );
    return made.entry;
  }

  override async mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<Entry> {
    const made = await this.#exclusive(() =>
      this.#make(ctx, parent, name, "mknod", async (fs, dir) => ({ entry: await fs.mknod(ctx, dir, name, mode, rdev, umask), extra: undefined })),
    );
    return made.entry;
  }

  override async mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Promise<Entry> {
    const made = await this.#exclusive(() =>
      this.#make(ctx, parent, name, "mkdir", async (fs, dir) => ({ entry: await fs.mkdir(ctx, dir, name, mode, umask), extra: undefined })),
    );
    return made.entry;
  }

  override async unlink(ctx: Context, parent: number, name: Uint8Array): Promise<void> {
    await this.#exclusive(() => this.#remove(ctx, parent, name, false));
  }

  override async rmdir(ctx: Context, parent: number, name: Uint8Array): Promise<void> {
    await this.#exclusive(() => this.#remove(ctx, parent, name, true));
  }

  override rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
    return this.#exclusive(() => this.#rename(ctx, parent, name, newParent, newName, flags));
  }

  override async link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Promise<Entry> {
    const node = this.#node(ino, "link");
    if (node.isDir) throw new FsError("EPERM", { op: "link", ino, detail: "hard link to a directory" });
    const made = await this.#exclusive(() =>
      this.#make(ctx, newParent, newName, "link", async (fs, dir, side) => {
        this.#checkSameSide(node, side, "link", newName);
        await this.#copyAcross(node, side);
        return { entry: await fs.link(ctx, node.objs[side]!, dir, newName), extra: undefined };
      }),
    );
    return made.entry;
  }

  async #rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
    const op = "rename";
    if (!Number.isInteger(flags) || flags < 0 || (flags & ~RENAME_FLAGS) !== 0) throw new FsError("EINVAL", { op, detail: `flags ${String(flags)}` });
    const exchange = (flags & RENAME.EXCHANGE) !== 0;
    if (exchange && (flags & (RENAME.NOREPLACE | RENAME.WHITEOUT)) !== 0) throw new FsError("EINVAL", { op, detail: "RENAME_EXCHANGE with other flags" });
    if ((flags & RENAME.WHITEOUT) !== 0 && ctx.uid !== 0) throw new FsError("EPERM", { op, detail: "RENAME_WHITEOUT needs root" });
    const sdir = this.#dirNode(parent, op);
    const ddir = this.#dirNode(newParent, op);
    validateEntryName(name, op, "EBUSY");
    validateEntryName(newName, op, (flags & RENAME.NOREPLACE) !== 0 ? "EEXIST" : "EBUSY");
    const path = bytesToString(name);
    const dest = bytesToString(newName);
    this.#checkGuestName(ddir, newName, op);
    const sattr = await this.#attr(sdir);
    const dattr = ddir === sdir ? sattr : await this.#attr(ddir);
    checkAccess(sattr, ctx, ACCESS.X_OK, op);
    checkAccess(dattr, ctx, ACCESS.X_OK, op);
    const src = this.#hidden(sdir, name) ? undefined : await this.#lookupNode(sdir, name);
    if (src === undefined) throw new FsError("ENOENT", { op, path, ino: parent });
    const dst = await this.#lookupNode(ddir, newName);
    try {
      if (dst !== undefined && (flags & RENAME.NOREPLACE) !== 0) throw new FsError("EEXIST", { op, path, dest });
      if (dst === undefined && exchange) throw new FsError("ENOENT", { op, path, dest });
      if (ddir.removed) throw new FsError("ENOENT", { op, path, dest, detail: "the directory was removed" });
      if (src.node.isDir && this.#isAncestor(src.node, ddir)) throw new FsError("EINVAL", { op, path, dest, detail: "into its own subtree" });
      if (dst?.node.isDir === true && this.#isAncestor(dst.node, sdir)) throw new FsError(exchange ? "EINVAL" : "ENOTEMPTY", { op, path, dest });
      if (src.node === dst?.node) return;
      checkAccess(sattr, ctx, ACCESS.W_OK, op);
      if (!stickyAllows(sattr, src.attr, ctx)) throw new FsError("EPERM", { op, path, dest, detail: "sticky directory" });
      if (ddir !== sdir) checkAccess(dattr, ctx, ACCESS.W_OK, op);
      if (dst !== undefined && !stickyAllows(dattr, dst.attr, ctx)) throw new FsError("EPERM", { op, path, dest, detail: "sticky directory" });
      if (dst !== undefined && !exchange) {
        if (src.node.isDir && !dst.node.isDir) throw new FsError("ENOTDIR", { op, path, dest });
        if (!src.node.isDir && dst.node.isDir) throw new FsError("EISDIR", { op, path, dest });
      }
      if (ddir !== sdir) {
        if (src.node.isDir) checkAccess(src.attr, ctx, ACCESS.W_OK, op);
        if (exchange && dst?.node.isDir === true) checkAccess(dst.attr, ctx, ACCESS.W_OK, op);
      }
      if (!exchange && dst?.node.isDir === true && (await this.#merged(dst.node, "lookup")).length > 0) throw new FsError("ENOTEMPTY", { op, path, dest });
      const side = this.#target("create", ddir, newName);
      this.#checkSameSide(src.node, side, op, newName);
      if (exchange) this.#checkSameSide(dst!.node, side, op, name);
      await this.#move(ctx, sdir, name, src.node, ddir, newName, dst?.node, flags, side);
    } finally {
      await this.#release(src.node, 1);
      if (dst !== undefined) await this.#release(dst.node, 1);
    }
  }

  // ---- files ------------------------------------------------------------

  override open(ctx: Context, ino: number, flags: number): Promise<OpenReply> {
    const node = this.#node(ino, "open");
    // Only an open that copies across changes the namespace.
    if ((openAccess(flags) & ACCESS.W_OK) !== 0 && !this.#livesOn(node, this.#target("write", node))) {
      return this.#exclusive(() => this.#open(ctx, node, flags, "open"));
    }
    return this.#open(ctx, node, flags, "open");
  }

  override create(ctx: Context, parent: number, name: Uint8Array, mode: number, flags: number, umask: number): Promise<CreateReply> {
    return this.#exclusive(() => this.#create(ctx, parent, name, mode, flags, umask));
  }

  async #create(ctx: Context, parent: number, name: Uint8Array, mode: number, flags: number, umask: number): Promise<CreateReply> {
    const op = "create";
    const dir = this.#dirNode(parent, op);
    validateEntryName(name, op, "EISDIR");
    this.#checkGuestName(dir, name, op);
    checkAccess(await this.#attr(dir), ctx, ACCESS.X_OK, op);
    const existing = dir.removed ? undefined : await this.#lookupNode(dir, name);
    if (existing !== undefined) {
      try {
        if ((flags & O.EXCL) !== 0) throw new FsError("EEXIST", { op, path: bytesToString(name), ino: parent });
        if (existing.node.isDir) throw new FsError("EISDIR", { op, path: bytesToString(name), ino: parent });
        const reply = await this.#open(ctx, existing.node, flags, op);
        return { ...reply, entry: this.#entry(existing.node, await this.#attr(existing.node)) };
      } catch (error) {
        await this.#release(existing.node, 1);
        throw error;
      }
    }
    const made = await this.#make(ctx, parent, name, op, async (fs, dirIno) => {
      const reply = await fs.create(ctx, dirIno, name, mode, flags, umask);
      return { entry: reply.entry, extra: reply };
    });
    const node = this.#node(made.entry.ino, op);
    const fh = this.#addFile({ node, side: node.home, ino: node.homeIno, fh: made.extra.fh, flags });
    return { entry: made.entry, fh, flags: made.extra.flags };
  }

  override read(ctx: Context, ino: number, fh: number, size: number, offset: number): Promise<Uint8Array> {
    const h = this.#fileHandle(ino, fh, "read");
    if (h.side !== h.node.home) {
      h.following ??= this.#follow(h).finally(() => (h.following = undefined));
      return h.following.then(() => this.#backends[h.side].read(ctx, h.ino, h.fh, size, offset));
    }
    return Promise.resolve(this.#backends[h.side].read(ctx, h.ino, h.fh, size, offset));
  }

  /**
   * Moves a read handle opened before its file was copied across over to the
   * copy, so it reads what later writes wrote (as overlayfs does since Linux
   * 4.19). The caller's rights were checked when it opened the file.
   */
  async #follow(h: FileHandle): Promise<void> {
    const { node } = h;
    const flags = h.flags & ~(O.CREAT | O.EXCL | O.TRUNC);
    const reply = await this.#backends[node.home].open(ROOT_CONTEXT, node.homeIno, flags);
    const old = { side: h.side, ino: h.ino, fh: h.fh };
    h.side = node.home;
    h.ino = node.homeIno;
    h.fh = reply.fh;
    await this.#backends[old.side].release(ROOT_CONTEXT, old.ino, old.fh, flags);
  }

  override write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): Promise<number> {
    const h = this.#fileHandle(ino, fh, "write");
    return Promise.resolve(this.#backends[h.side].write(ctx, h.ino, h.fh, data, offset, flags));
  }

  override async flush(ctx: Context, ino: number, fh: number, lockOwner: number): Promise<void> {
    const h = this.#fileHandle(ino, fh, "flush");
    await this.#backends[h.side].flush(ctx, h.ino, h.fh, lockOwner);
  }

  override async fsync(ctx: Context, ino: number, fh: number, datasync: boolean): Promise<void> {
    const h = this.#fileHandle(ino, fh, "fsync");
    await this.#backends[h.side].fsync(ctx, h.ino, h.fh, datasync);
  }

  override async fallocate(ctx: Context, ino: number, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = this.#fileHandle(ino, fh, "fallocate");
    await this.#backends[h.side].fallocate(ctx, h.ino, h.fh, mode, offset, length);
  }

  override async release(ctx: Context, ino: number, fh: number, flags: number): Promise<void> {
    const h = this.#fileHandle(ino, fh, "release");
    this.#files.delete(fh);
    try {
      await this.#backends[h.side].release(ctx, h.ino, h.fh, flags);
    } finally {
      h.node.opens--;
      await this.#maybeFree(h.node);
    }
  }

  override async statfs(ctx: Context, _ino: number): Promise<StatFs> {
    return this.#backends[this.#target("write", this.#nodes.get(ROOT_INO)!)].statfs(ctx, ROOT_INO);
  }

  override async lseek(ctx: Context, ino: number, fh: number, offset: number, whence: number): Promise<number> {
    const h = this.#fileHandle(ino, fh, "lseek");
    return this.#backends[h.side].lseek(ctx, h.ino, h.fh, offset, whence);
  }

  override async copyFileRange(
    ctx: Context,
    inoIn: number,
    fhIn: number,
    offsetIn: number,
    inoOut: number,
    fhOut: number,
    offsetOut: number,
    length: number,
    flags: number,
  ): Promise<number> {
    const from = this.#fileHandle(inoIn, fhIn, "copyFileRange");
    const to = this.#fileHandle(inoOut, fhOut, "copyFileRange");
    if (from.side === to.side) {
      return this.#backends[to.side].copyFileRange(ctx, from.ino, from.fh, offsetIn, to.ino, to.fh, offsetOut, length, flags);
    }
    if (flags !== 0) throw new FsError("EINVAL", { op: "copyFileRange", detail: `flags ${flags}` });
    const fs = (h: FileHandle) => ({ fs: this.#backends[h.side], ino: h.ino, fh: h.fh });
    return copyRangeAcross(ctx, fs(from), offsetIn, fs(to), offsetOut, length);
  }

  // ---- xattrs -----------------------------------------------------------

  override async setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): Promise<void> {
    const op = "setxattr";
    const node = this.#node(ino, op);
    if (!(name instanceof Uint8Array) || !(value instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name or value is not bytes" });
    const side = await this.#prepareChange(node, async () => {
      checkXattrValue(value, op);
      checkXattrAccess(await this.#attr(node), ctx, xattrNamespace(name, op), true, op);
    });
    await this.#backends[side].setxattr(ctx, node.objs[side]!, name, value, flags);
  }

  override async getxattr(ctx: Context, ino: number, name: Uint8Array): Promise<Uint8Array> {
    const node = this.#node(ino, "getxattr");
    return this.#backends[node.home].getxattr(ctx, node.homeIno, name);
  }

  override async listxattr(ctx: Context, ino: number): Promise<Uint8Array[]> {
    const node = this.#node(ino, "listxattr");
    return this.#backends[node.home].listxattr(ctx, node.homeIno);
  }

  override async removexattr(ctx: Context, ino: number, name: Uint8Array): Promise<void> {
    const op = "removexattr";
    const node = this.#node(ino, op);
    if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name is not bytes" });
    const side = await this.#prepareChange(node, async () => {
      // Refuses what the caller may not do, and ENODATA, before any copy.
      await this.#backends[node.home].getxattr(ctx, node.homeIno, name);
      checkXattrAccess(await this.#attr(node), ctx, xattrNamespace(name, op), true, op);
    });
    await this.#backends[side].removexattr(ctx, node.objs[side]!, name);
  }

  /** The backend a change to `node` goes to, after `check` and the copy across it may need. */
  async #prepareChange(node: Node, check: () => Promise<void>): Promise<Side> {
    const side = this.#target("write", node);
    if (!this.#livesOn(node, side)) {
      await check();
      await this.#exclusive(() => this.#copyAcross(node, side));
    }
    return side;
  }

  // ---- directories ------------------------------------------------------

  override async opendir(ctx: Context, ino: number, flags: number): Promise<OpenReply> {
    const op = "opendir";
    const node = this.#node(ino, op);
    if (!node.isDir) throw new FsError("ENOTDIR", { op, ino });
    const mask = openAccess(flags);
    if ((mask & ACCESS.W_OK) !== 0) throw new FsError("EISDIR", { op, ino });
    checkAccess(await this.#attr(node), ctx, mask, op);
    const entries: DirHandle["entries"] = [
      { name: new Uint8Array([0x2e]), key: ".", ino, type: dtFromMode(S.IFDIR) },
      { name: new Uint8Array([0x2e, 0x2e]), key: "..", ino: (node.parent ?? node).ino, type: dtFromMode(S.IFDIR) },
    ];
    if (!node.removed) {
      for (const e of await this.#merged(node, "readdir")) entries.push({ name: e.name, key: e.key, ino: this.#inoFor(e.side, e.entry.ino), type: e.entry.type });
    }
    const fh = this.#nextFh++;
    this.#dirs.set(fh, { node, entries, gone: new Set() });
    node.opens++;
    return { fh, flags: 0 };
  }

  override async readdir(_ctx: Context, ino: number, fh: number, offset: number, size: number): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    await this.#list(ino, fh, offset, size, DIRENT_HEADER, (e, cookie) => {
      out.push({ ino: e.ino, offset: cookie, type: e.type, name: e.name });
      return Promise.resolve(true);
    });
    return out;
  }

  override async readdirplus(_ctx: Context, ino: number, fh: number, offset: number, size: number): Promise<DirEntryPlus[]> {
    const out: DirEntryPlus[] = [];
    const dir = this.#dirHandle(ino, fh, "readdirplus").node;
    await this.#list(ino, fh, offset, size, DIRENTPLUS_HEADER, async (e, cookie) => {
      let entry: Entry;
      if (isDotOrDotDot(e.name)) {
        const node = e.name.length === 1 ? dir : (dir.parent ?? dir);
        entry = { ino: node.ino, generation: 0, attr: withIno(await this.#attr(node), node.ino, node.removed) };
      } else {
        const found = await this.#lookupNode(dir, e.name);
        if (found === undefined) return false;
        entry = { ino: found.node.ino, generation: 0, attr: withIno(found.attr, found.node.ino) };
      }
      out.push({ ino: entry.ino, offset: cookie, type: e.type, name: e.name, entry });
      return true;
    });
    return out;
  }

  override async releasedir(_ctx: Context, ino: number, fh: number, _flags: number): Promise<void> {
    const handle = this.#dirHandle(ino, fh, "releasedir");
    this.#dirs.delete(fh);
    handle.node.opens--;
    await this.#maybeFree(handle.node);
  }

  override async fsyncdir(ctx: Context, ino: number, fh: number, datasync: boolean): Promise<void> {
    const { node } = this.#dirHandle(ino, fh, "fsyncdir");
    if (node.removed) return;
    for (const side of [0, 1] as const) {
      const dirIno = node.objs[side];
      if (dirIno === undefined) continue;
      const fs = this.#backends[side];
      const handle = await fs.opendir(ROOT_CONTEXT, dirIno, O.RDONLY | O.DIRECTORY);
      try {
        await fs.fsyncdir(ctx, dirIno, handle.fh, datasync);
      } finally {
        await fs.releasedir(ROOT_CONTEXT, dirIno, handle.fh, O.RDONLY);
      }
    }
  }

  override async access(ctx: Context, ino: number, mask: number): Promise<void> {
    const node = this.#node(ino, "access");
    if (node.home === this.#target("write", node)) {
      await this.#backends[node.home].access(ctx, node.homeIno, mask);
      return;
    }
    // An object on the backend that takes no changes is writable as far as its mode goes (a write copies it across).
    if (!Number.isInteger(mask) || (mask & ~(ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK)) !== 0) {
      throw new FsError("EINVAL", { op: "access", ino, detail: `mask ${String(mask)}` });
    }
    checkAccess(await this.#attr(node), ctx, mask, "access");
  }

  // ---- internals: policy ------------------------------------------------

  /**
   * The backends the policy names for `kind` at `name` in `dir` (at `dir`
   * itself without a name), in order of precedence, checked.
   */
  #order(kind: DualOperationKind, dir: Node, name?: Uint8Array): readonly Side[] {
    const fixed = this.#fixed?.[kind];
    if (fixed !== undefined) return fixed;
    const path = name === undefined ? this.#path(dir) : this.#childPath(dir, name);
    return this.#checkOrder(kind, path, this.#ask(kind, path));
  }

  /** The one backend the policy names for `kind` at `name` in `dir` (at `dir` itself without a name). */
  #target(kind: DualOperationKind, dir: Node, name?: Uint8Array): Side {
    const fixed = this.#fixed?.[kind];
    if (fixed !== undefined) return fixed[0]!;
    const path = name === undefined ? this.#path(dir) : this.#childPath(dir, name);
    const answer = this.#ask(kind, path);
    const side = SIDE_IDS.indexOf(answer as DualBackendId);
    return side < 0 ? this.#badPolicy(kind, path, answer) : (side as Side);
  }

  #checkOrder(kind: DualOperationKind, path: string, answer: unknown): readonly Side[] {
    const list = typeof answer === "string" ? [answer] : answer;
    const sides: Side[] = [];
    if (Array.isArray(list)) {
      for (const id of list as readonly unknown[]) {
        const side = SIDE_IDS.indexOf(id as DualBackendId);
        if (side < 0 || sides.includes(side as Side)) return this.#badPolicy(kind, path, answer);
        sides.push(side as Side);
      }
    }
    if (sides.length === 0) return this.#badPolicy(kind, path, answer);
    return sides;
  }

  #ask(kind: DualOperationKind, path: string): unknown {
    try {
      return this.#policy(kind, path);
    } catch (error) {
      throw new FsError("EIO", { op: "policy", path, detail: `the DualFs policy threw for ${kind}`, cause: error });
    }
  }

  #badPolicy(kind: DualOperationKind, path: string, answer: unknown): never {
    throw new FsError("EIO", { op: "policy", path, detail: `the DualFs policy answered ${JSON.stringify(answer)} for ${kind}; expected "a", "b" or a list of them` });
  }

  /** The path of `node` from the root, for the policy. */
  #path(node: Node): string {
    if (node.parent === undefined) return "/";
    const names: string[] = [];
    for (let at: Node | undefined = node; at?.parent !== undefined; at = at.parent) names.push(bytesToString(at.name));
    return `/${names.reverse().join("/")}`;
  }

  #childPath(dir: Node, name: Uint8Array): string {
    const base = this.#path(dir);
    return `${base === "/" ? "" : base}/${bytesToString(name)}`;
  }

  /**
   * Refuses with `EXDEV` a new name on `side` for `node` (link, rename) when
   * the policy sends changes at the node's own path to the other backend: a
   * name cannot span two backends, as it cannot span two filesystems
   * (`mv` then copies and removes).
   */
  #checkSameSide(node: Node, side: Side, op: string, newName: Uint8Array): void {
    if (this.#target("write", node) !== side) {
      throw new FsError("EXDEV", { op, path: this.#path(node), dest: bytesToString(newName), detail: "the policy puts the two names on different backends" });
    }
  }

  /** True when changes to `node` can go to `side` without copying: its shown object (a directory: an object) is there. */
  #livesOn(node: Node, side: Side): boolean {
    return node.isDir ? node.objs[side] !== undefined && node.home === side : node.home === side;
  }

  // ---- internals: nodes ---------------------------------------------------

  /**
   * Runs `change` after every change queued before it. Namespace changes
   * (create, remove, rename, copies across) span many backend calls and node
   * updates; one at a time, a guest racing them cannot interleave two.
   */
  #exclusive<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(change, change);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  #node(ino: number, op: string): Node {
    const node = this.#nodes.get(ino);
    if (node === undefined) throw new FsError("ENOENT", { op, ino });
    return node;
  }

  #dirNode(ino: number, op: string): Node {
    const node = this.#node(ino, op);
    if (!node.isDir) throw new FsError("ENOTDIR", { op, ino });
    return node;
  }

  async #attr(node: Node): Promise<Attr> {
    return withIno(await this.#backends[node.home].getattr(ROOT_CONTEXT, node.homeIno), node.ino, node.removed);
  }

  /** `node` as an Entry (its lookup already counted). */
  #entry(node: Node, attr: Attr): Entry {
    return { ino: node.ino, generation: 0, attr: withIno(attr, node.ino, node.removed) };
  }

  /** The DualFs inode number of a backend object, allocated on first sight. */
  #inoFor(side: Side, ino: number): number {
    const key = objKey(side, ino);
    let dualIno = this.#inoByKey.get(key);
    if (dualIno === undefined) {
      dualIno = this.#nextIno++;
      this.#inoByKey.set(key, dualIno);
    }
    return dualIno;
  }

  /** Names the guest never sees: whiteouts, and the staging directories at the root. */
  #hidden(dir: Node, name: Uint8Array): boolean {
    return isWhiteoutName(name, DUAL_WHITEOUT_PREFIX) || (dir.ino === ROOT_INO && bytesEqual(name, this.#stagingName));
  }

  /** Refuses a new guest name in the whiteout namespace (EINVAL) or the staging name (EPERM). */
  #checkGuestName(dir: Node, name: Uint8Array, op: string): void {
    if (isWhiteoutName(name, DUAL_WHITEOUT_PREFIX)) throw new FsError("EINVAL", { op, path: bytesToString(name), detail: "names starting with .msb-wh. are reserved for DualFs whiteouts" });
    if (dir.ino === ROOT_INO && bytesEqual(name, this.#stagingName)) {
      throw new FsError("EPERM", { op, path: bytesToString(name), detail: "reserved for the DualFs staging directory" });
    }
  }

  /** True when a whiteout in the other backend's copy of `dir` hides `name` of `side`. */
  async #whitedOut(dir: Node, side: Side, name: Uint8Array): Promise<boolean> {
    const otherDir = dir.objs[other(side)];
    const whiteout = whiteoutOf(name, DUAL_WHITEOUT_PREFIX);
    return otherDir !== undefined && whiteout !== undefined && hasEntry(this.#backends[other(side)], otherDir, whiteout);
  }

  /**
   * Finds `name` in `dir` on the backends the policy names, in its order,
   * and counts one lookup of its node (the caller gives it back), or
   * `undefined` when it does not exist.
   */
  async #lookupNode(dir: Node, name: Uint8Array): Promise<{ node: Node; attr: Attr } | undefined> {
    if (dir.removed || this.#hidden(dir, name)) return undefined;
    const found: { side: Side; entry: Entry }[] = [];
    try {
      for (const side of this.#order("lookup", dir, name)) {
        const dirIno = dir.objs[side];
        if (dirIno === undefined) continue;
        const entry = await lookupIfExists(this.#backends[side], dirIno, name);
        if (entry === undefined) continue;
        // Checked only for a hit: a miss costs a backend error, and most names are on one backend.
        if (await this.#whitedOut(dir, side, name)) {
          await this.#backends[side].forget(ROOT_CONTEXT, entry.ino, 1);
          continue;
        }
        const isDir = isDirectory(entry.attr.mode);
        if (found.length === 0 || (isDir && isDirectory(found[0]!.entry.attr.mode))) {
          found.push({ side, entry });
          if (!isDir) break;
        } else {
          // A non-directory under a name the winner has as a directory (or the reverse) stays hidden.
          await this.#backends[side].forget(ROOT_CONTEXT, entry.ino, 1);
          break;
        }
      }
    } catch (error) {
      for (const f of found) await this.#backends[f.side].forget(ROOT_CONTEXT, f.entry.ino, 1);
      throw error;
    }
    const top = found[0];
    if (top === undefined) return undefined;
    const ino = this.#inoFor(top.side, top.entry.ino);
    let node = this.#nodes.get(ino);
    if (node !== undefined) {
      for (const f of found) await this.#backends[f.side].forget(ROOT_CONTEXT, f.entry.ino, 1);
      if (node.parent !== dir) {
        dir.children++;
        const old = node.parent;
        node.parent = dir;
        if (old !== undefined) {
          old.children--;
          await this.#maybeFree(old);
        }
      }
      node.name = name;
    } else {
      const isDir = isDirectory(top.entry.attr.mode);
      node = new Node(ino, isDir, top.side, dir, name);
      for (const f of found) {
        node.objs[f.side] = f.entry.ino;
        this.#inoByKey.set(objKey(f.side, f.entry.ino), ino);
      }
      if (isDir) {
        const writeSide = this.#target("write", dir, name);
        if (node.objs[writeSide] !== undefined) node.home = writeSide;
      }
      this.#nodes.set(ino, node);
      dir.children++;
    }
    node.nlookup++;
    if (!node.isDir && node.home !== top.side) {
      // Another name of an object already copied across: link this name to the copy too.
      await this.#linkAcross(dir, name, node.homeIno, node.home);
    } else if (!node.isDir) {
      const copy = this.#copied.get(objKey(top.side, top.entry.ino));
      if (copy !== undefined) await this.#linkAcross(dir, name, copy, other(top.side), node);
    }
    return { node, attr: await this.#attr(node) };
  }

  /**
   * Gives name `name` in `dir` a hard link on `side` to `copy` (the object
   * another name was copied to), hiding the old object. With `node`, the
   * node moves over to the copy; a copy since removed leaves the name as it is.
   */
  async #linkAcross(dir: Node, name: Uint8Array, copy: number, side: Side, node?: Node): Promise<void> {
    await this.#ensureDir(dir, side);
    const fs = this.#backends[side];
    let entry: Entry;
    try {
      entry = await fs.link(ROOT_CONTEXT, copy, dir.objs[side]!, name);
    } catch (error) {
      if (!isNoEntry(error)) throw error;
      for (const [key, value] of this.#copied) if (value === copy) this.#copied.delete(key);
      return;
    }
    await this.#hideOther(dir, name, side);
    if (node === undefined || node.home === side) {
      await fs.forget(ROOT_CONTEXT, entry.ino, 1);
      return;
    }
    const old = node.home;
    node.objs[side] = entry.ino;
    node.home = side;
    this.#inoByKey.set(objKey(side, entry.ino), node.ino);
    await this.#dropSide(node, old);
  }

  async #release(node: Node, count: number): Promise<void> {
    if (node.ino === ROOT_INO) return;
    node.nlookup = Math.max(0, node.nlookup - count);
    await this.#maybeFree(node);
  }

  /** Drops a node nothing holds any more, giving its backend lookups back. */
  async #maybeFree(node: Node): Promise<void> {
    if (node.nlookup > 0 || node.opens > 0 || node.children > 0 || node.ino === ROOT_INO || node.copying !== undefined) return;
    if (this.#nodes.get(node.ino) !== node) return;
    this.#nodes.delete(node.ino);
    await this.#dropSide(node, 0);
    await this.#dropSide(node, 1);
    const parent = node.parent;
    if (parent !== undefined) {
      parent.children--;
      await this.#maybeFree(parent);
    }
  }

  /** Gives back the lookup `node` holds on `side`. */
  async #dropSide(node: Node, side: Side): Promise<void> {
    const ino = node.objs[side];
    if (ino === undefined) return;
    node.objs[side] = undefined;
    await this.#backends[side].forget(ROOT_CONTEXT, ino, 1);
  }

  /** True when `node` is `dir` or one of its ancestors. */
  #isAncestor(node: Node, dir: Node): boolean {
    for (let at: Node | undefined = dir; at !== undefined; at = at.parent) if (at === node) return true;
    return false;
  }

  // ---- internals: directories --------------------------------------------

  /**
   * The visible entries of directory `node`: for `readdir`, those of the
   * backends the policy lists; for `lookup`, those of every backend the
   * directory is on (what lookups can reach). Without `.`, `..`, whiteouts,
   * what they hide, and the staging directories.
   */
  async #merged(node: Node, kind: "readdir" | "lookup"): Promise<MergedEntry[]> {
    const listed: (DirEntry[] | undefined)[] = [undefined, undefined];
    const whiteouts: [Set<string>, Set<string>] = [new Set(), new Set()];
    for (const side of [0, 1] as const) {
      const dirIno = node.objs[side];
      if (dirIno === undefined) continue;
      const entries = await listEntries(this.#backends[side], dirIno);
      listed[side] = entries;
      for (const e of entries) if (isWhiteoutName(e.name, DUAL_WHITEOUT_PREFIX)) whiteouts[side].add(nameKey(e.name.subarray(DUAL_WHITEOUT_PREFIX.length)));
    }
    const order = this.#order(kind, node);
    const seen = new Set<string>();
    const out: MergedEntry[] = [];
    for (const side of order) {
      for (const e of listed[side] ?? []) {
        if (this.#hidden(node, e.name)) continue;
        const key = nameKey(e.name);
        if (seen.has(key) || whiteouts[other(side)].has(key)) continue;
        seen.add(key);
        out.push({ name: e.name, key, side, entry: e });
      }
    }
    return out;
  }

  async #list(
    ino: number,
    fh: number,
    offset: number,
    size: number,
    header: number,
    add: (e: DirHandle["entries"][number], cookie: number) => Promise<boolean>,
  ): Promise<void> {
    const op = "readdir";
    const handle = this.#dirHandle(ino, fh, op);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(size) || size < 0) {
      throw new FsError("EINVAL", { op, ino, detail: `offset ${offset}, size ${size}` });
    }
    // Entries removed since opendir are not listed any more; new ones are not added (POSIX allows either).
    const removed = handle.node.removed;
    let used = 0;
    let added = 0;
    for (let i = offset; i < handle.entries.length; i++) {
      const e = handle.entries[i]!;
      if (i >= 2 && (removed || handle.gone.has(e.key))) continue;
      const bytes = (header + e.name.length + 7) & ~7;
      if (added > 0 && used + bytes > size) return;
      if (!(await add(e, i + 1))) continue;
      used += bytes;
      added++;
    }
  }

  #dirHandle(ino: number, fh: number, op: string): DirHandle {
    const handle = this.#dirs.get(fh);
    if (handle?.node.ino !== ino) throw new FsError("EBADF", { op, ino, detail: `handle ${String(fh)}` });
    return handle;
  }

  #fileHandle(ino: number, fh: number, op: string): FileHandle {
    const handle = this.#files.get(fh);
    if (handle?.node.ino !== ino) throw new FsError("EBADF", { op, ino, detail: `handle ${String(fh)}` });
    return handle;
  }

  #addFile(handle: FileHandle): number {
    const fh = this.#nextFh++;
    this.#files.set(fh, handle);
    handle.node.opens++;
    return fh;
  }

  async #open(ctx: Context, node: Node, flags: number, op: string): Promise<OpenReply> {
    if (!Number.isInteger(flags)) throw new FsError("EINVAL", { op, ino: node.ino, detail: `flags ${String(flags)}` });
    const mask = openAccess(flags);
    if ((mask & ACCESS.W_OK) !== 0) {
      const side = this.#target("write", node);
      if (!this.#livesOn(node, side)) {
        const attr = await this.#attr(node);
        const type = attr.mode & S.IFMT;
        // The checks open would make, before the copy they would otherwise follow.
        if (type === S.IFLNK) throw new FsError("ELOOP", { op, ino: node.ino, detail: "a symlink" });
        if (type === S.IFDIR) throw new FsError("EISDIR", { op, ino: node.ino });
        checkAccess(attr, ctx, mask, op);
        await this.#copyAcross(node, side, (flags & O.TRUNC) !== 0);
      }
    }
    const reply = await this.#backends[node.home].open(ctx, node.homeIno, flags);
    return { fh: this.#addFile({ node, side: node.home, ino: node.homeIno, fh: reply.fh, flags }), flags: reply.flags };
  }

  // ---- internals: changes -------------------------------------------------

  /**
   * Creates a name with `make` (given the backend the policy creates in and
   * the directory there), after DualFs's checks and the directory's copy
   * to that backend.
   */
  async #make<T>(
    ctx: Context,
    parent: number,
    name: Uint8Array,
    op: string,
    make: (fs: DynFileSystem, dirIno: number, side: Side) => Promise<{ entry: Entry; extra: T }>,
  ): Promise<{ entry: Entry; extra: T }> {
    const dir = this.#dirNode(parent, op);
    validateEntryName(name, op, "EEXIST");
    this.#checkGuestName(dir, name, op);
    const attr = await this.#attr(dir);
    checkAccess(attr, ctx, ACCESS.X_OK, op);
    if (dir.removed) throw new FsError("ENOENT", { op, ino: parent, detail: "the directory was removed" });
    const existing = await this.#lookupNode(dir, name);
    if (existing !== undefined) {
      await this.#release(existing.node, 1);
      throw new FsError("EEXIST", { op, path: bytesToString(name), ino: parent });
    }
    checkAccess(attr, ctx, ACCESS.W_OK, op);
    const side = this.#target("create", dir, name);
    await this.#ensureDir(dir, side);
    const made = await make(this.#backends[side], dir.objs[side]!, side);
    const objIno = made.entry.ino;
    const ino = this.#inoFor(side, objIno);
    let node = this.#nodes.get(ino);
    if (node === undefined) {
      node = new Node(ino, isDirectory(made.entry.attr.mode), side, dir, name);
      node.objs[side] = objIno;
      this.#nodes.set(ino, node);
      dir.children++;
    } else {
      // A new name of a node DualFs knows (link): its lookup on the backend is held once already.
      await this.#backends[side].forget(ROOT_CONTEXT, objIno, 1);
    }
    node.nlookup++;
    return { entry: this.#entry(node, made.entry.attr), extra: made.extra };
  }

  /** Writes a whiteout of `name` in `dir` on `side` when the other backend still shows it there. */
  async #hideOther(dir: Node, name: Uint8Array, side: Side): Promise<void> {
    const otherSide = other(side);
    const otherDir = dir.objs[otherSide];
    if (otherDir === undefined || !this.#order("lookup", dir, name).includes(otherSide)) return;
    if (!(await hasEntry(this.#backends[otherSide], otherDir, name))) return;
    const whiteout = whiteoutOf(name, DUAL_WHITEOUT_PREFIX);
    if (whiteout === undefined) {
      throw new FsError("ENAMETOOLONG", { path: bytesToString(name), detail: `a whiteout of a name longer than ${255 - DUAL_WHITEOUT_PREFIX.length} bytes cannot be written` });
    }
    await this.#ensureDir(dir, side);
    await ensureMarker(this.#backends[side], dir.objs[side]!, whiteout);
  }

  /** unlink and rmdir: DualFs's checks on the merged view, then the removal and the whiteout that hides the other backend's entry. */
  async #remove(ctx: Context, parent: number, name: Uint8Array, isRmdir: boolean): Promise<void> {
    const op = isRmdir ? "rmdir" : "unlink";
    const dir = this.#dirNode(parent, op);
    if (isRmdir && name.length === 2 && isDotOrDotDot(name)) throw new FsError("ENOTEMPTY", { op, path: "..", ino: parent });
    validateEntryName(name, op, isRmdir ? "EINVAL" : "EISDIR");
    const dattr = await this.#attr(dir);
    checkAccess(dattr, ctx, ACCESS.X_OK, op);
    const found = await this.#lookupNode(dir, name);
    if (found === undefined) throw new FsError("ENOENT", { op, path: bytesToString(name), ino: parent });
    const { node, attr } = found;
    try {
      checkAccess(dattr, ctx, ACCESS.W_OK, op);
      if (!stickyAllows(dattr, attr, ctx)) throw new FsError("EPERM", { op, path: bytesToString(name), ino: parent, detail: "sticky directory" });
      if (!isRmdir && node.isDir) throw new FsError("EISDIR", { op, path: bytesToString(name), ino: parent });
      if (isRmdir && !node.isDir) throw new FsError("ENOTDIR", { op, path: bytesToString(name), ino: parent });
      if (isRmdir && (await this.#merged(node, "lookup")).length > 0) throw new FsError("ENOTEMPTY", { op, path: bytesToString(name), ino: parent });
      const side = this.#target("write", dir, name);
      // The whiteout comes first: until the removal the name's own object still shows.
      await this.#hideOther(dir, name, side);
      if (node.objs[side] !== undefined) {
        // Whiteouts inside a directory that is empty in the merged view would keep the backend's rmdir from working.
        if (isRmdir) await this.#clearWhiteouts(side, node.objs[side]);
        const fs = this.#backends[side];
        await (isRmdir ? fs.rmdir(ctx, dir.objs[side]!, name) : fs.unlink(ctx, dir.objs[side]!, name));
      }
      if (isRmdir) node.removed = true;
      this.#gone(dir, name);
    } finally {
      await this.#release(node, 1);
    }
  }

  /** Removes every whiteout from directory `ino` of `side`. */
  async #clearWhiteouts(side: Side, ino: number): Promise<void> {
    const fs = this.#backends[side];
    for (const e of await listEntries(fs, ino)) if (isWhiteoutName(e.name, DUAL_WHITEOUT_PREFIX)) await fs.unlink(ROOT_CONTEXT, ino, e.name);
  }

  /** The rename itself, once checked: everything involved copied to the backend the destination is created on, renamed there, then whiteouts. */
  async #move(ctx: Context, sdir: Node, name: Uint8Array, src: Node, ddir: Node, newName: Uint8Array, dst: Node | undefined, flags: number, side: Side): Promise<void> {
    const exchange = (flags & RENAME.EXCHANGE) !== 0;
    const otherSide = other(side);
    await this.#ensureDir(sdir, side);
    await this.#ensureDir(ddir, side);
    await this.#copyTree(src, side);
    if (exchange) await this.#copyTree(dst!, side);
    if (!exchange && dst?.isDir === true && dst.objs[side] !== undefined) await this.#clearWhiteouts(side, dst.objs[side]);
    const fs = this.#backends[side];
    // The old name's whiteout comes first: until the rename, the moved object still hides it.
    const srcWhiteout = exchange ? undefined : whiteoutOf(name, DUAL_WHITEOUT_PREFIX);
    const srcHidden = srcWhiteout !== undefined && (await hasEntry(fs, sdir.objs[side]!, srcWhiteout));
    if (!exchange) await this.#hideOther(sdir, name, side);
    try {
      await fs.rename(ctx, sdir.objs[side]!, name, ddir.objs[side]!, newName, flags);
    } catch (error) {
      if (srcWhiteout !== undefined && !srcHidden && (await hasEntry(fs, sdir.objs[side]!, srcWhiteout))) await fs.unlink(ROOT_CONTEXT, sdir.objs[side]!, srcWhiteout);
      throw error;
    }
    await this.#hideOther(ddir, newName, side);
    if (exchange) await this.#hideOther(sdir, name, side);
    // The moved trees now live whole on `side`; what the other backend has under the old names is hidden.
    await this.#dropSubtree(src, otherSide);
    if (exchange) await this.#dropSubtree(dst!, otherSide);
    this.#reparent(src, ddir, newName);
    if (exchange) this.#reparent(dst!, sdir, name);
    else if (dst?.isDir === true) dst.removed = true;
    if (!exchange) this.#gone(sdir, name);
  }

  /** Gives back what `node` and every known node below it hold on `side`. */
  async #dropSubtree(node: Node, side: Side): Promise<void> {
    const below = [...this.#nodes.values()].filter((n) => this.#isAncestor(node, n));
    for (const n of below) await this.#dropSide(n, side);
  }

  /** Tells the open listings of `dir` that `name` went. */
  #gone(dir: Node, name: Uint8Array): void {
    if (dir.opens === 0) return;
    const key = nameKey(name);
    for (const handle of this.#dirs.values()) if (handle.node === dir) handle.gone.add(key);
  }

  #reparent(node: Node, dir: Node, name: Uint8Array): void {
    if (node.parent !== dir) {
      node.parent!.children--;
      dir.children++;
      node.parent = dir;
    }
    node.name = name;
  }

  // ---- internals: copies across --------------------------------------------

  /** Makes sure directory `dir` (and its parents) exist on `side`. */
  async #ensureDir(dir: Node, side: Side): Promise<void> {
    if (dir.objs[side] !== undefined) return;
    await this.#copyAcross(dir, side);
  }

  /** Copies `node` to `side` and, for a directory, everything it shows below. */
  async #copyTree(node: Node, side: Side): Promise<void> {
    await this.#copyAcross(node, side);
    if (!node.isDir) return;
    for (const e of await this.#merged(node, "lookup")) {
      if (e.side === side && e.entry.type !== DT.DIR) continue;
      const child = await this.#lookupNode(node, e.name);
      if (child === undefined) continue;
      try {
        await this.#copyTree(child.node, side);
      } finally {
        await this.#release(child.node, 1);
      }
    }
  }

  /**
   * Gives `node` its object on `side`, its parents first: built in the
   * staging directory of `side` as root, with the shown object's owner,
   * mode, times and xattrs, then renamed into place. A directory keeps its
   * object on the other backend (the two stay merged); a non-directory moves
   * over, and a whiteout hides the old object where it would still show.
   * `skipData` leaves a regular file empty (open with `O_TRUNC` would cut it anyway).
   */
  #copyAcross(node: Node, side: Side, skipData = false): Promise<void> {
    if (this.#livesOn(node, side)) return Promise.resolve();
    if (node.isDir && node.objs[side] !== undefined) {
      node.home = side;
      return Promise.resolve();
    }
    node.copying ??= this.#doCopyAcross(node, side, skipData).finally(() => {
      node.copying = undefined;
      // Released while copying: the node may go now.
      void this.#maybeFree(node);
    });
    return node.copying;
  }

  async #doCopyAcross(node: Node, side: Side, skipData: boolean): Promise<void> {
    const parent = node.parent!;
    await this.#ensureDir(parent, side);
    const from = node.home;
    const source = this.#backends[from];
    const fs = this.#backends[side];
    const attr = await source.getattr(ROOT_CONTEXT, node.homeIno);
    const key = objKey(from, node.homeIno);
    const linked = node.isDir ? undefined : this.#copied.get(key);
    let entry: Entry | undefined;
    if (linked !== undefined) {
      try {
        entry = await fs.link(ROOT_CONTEXT, linked, parent.objs[side]!, node.name);
      } catch (error) {
        if (!isNoEntry(error)) throw error;
        this.#copied.delete(key);
      }
    }
    if (entry === undefined) {
      const target = { fs, stagingDir: await this.#stagingDir(side), tempName: new TextEncoder().encode(`copy-${this.#nextTemp++}`) };
      entry = await copyObject(source, node.homeIno, attr, target, skipData);
      try {
        await fs.rename(ROOT_CONTEXT, target.stagingDir, target.tempName, parent.objs[side]!, node.name, 0);
      } catch (error) {
        await discardCopy(target, entry);
        throw error;
      }
      if (!node.isDir && attr.nlink > 1) this.#copied.set(key, entry.ino);
    }
    node.objs[side] = entry.ino;
    this.#inoByKey.set(objKey(side, entry.ino), node.ino);
    if (node.isDir) {
      node.home = side;
      return;
    }
    node.home = side;
    await this.#hideOther(parent, node.name, side);
    await this.#dropSide(node, from);
  }

  /** The staging directory of `side`, emptied and made on first use. */
  #stagingDir(side: Side): Promise<number> {
    this.#staging[side] ??= (async () => {
      const fs = this.#backends[side];
      await new PathFs(fs).rm(new Uint8Array([0x2f, ...this.#stagingName]), { recursive: true, force: true });
      const entry = await fs.mkdir(ROOT_CONTEXT, ROOT_INO, this.#stagingName, S.IFDIR | 0o700, 0);
      return entry.ino;
    })().catch((error: unknown) => {
      this.#staging[side] = undefined;
      throw error;
    });
    return this.#staging[side];
  }
}
