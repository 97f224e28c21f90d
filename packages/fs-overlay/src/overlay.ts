import {
  ACCESS,
  bytesEqual,
  bytesToString,
  checkAccess,
  checkXattrAccess,
  checkXattrValue,
  dtFromMode,
  FsBackend,
  FsError,
  isDirectory,
  isDotOrDotDot,
  nowTimespec,
  O,
  openAccess,
  PathFs,
  planSetattr,
  RENAME,
  ROOT_INO,
  S,
  setattrRequest,
  SetattrValid,
  stickyAllows,
  validateEntryName,
  validateName,
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
import { resolveOptions, type OverlayFsOptions } from "./options.js";
import { OPAQUE_MARKER, isWhiteoutName, nameKey, whiteoutOf } from "./whiteout.js";

/** The overlay's own work (copy-up, whiteouts, merging) runs as root on the layers. */
const ROOT_CTX: Context = Object.freeze({ uid: 0, gid: 0, pid: 0 });
const UPPER = 0;
const CHUNK = 1 << 20;
const DIR_READ_BYTES = 64 * 1024;
const DIRENT_HEADER = 24;
const DIRENTPLUS_HEADER = 152;
const RENAME_FLAGS = RENAME.NOREPLACE | RENAME.EXCHANGE | RENAME.WHITEOUT;

/** One object in one layer: the layer's index (0 = upper) and its inode there. */
interface LayerRef {
  readonly layer: number;
  readonly ino: number;
}

/** What a merged lookup found: the objects it holds one lookup each of, topmost first, and the top one's attributes. */
interface Found {
  readonly refs: LayerRef[];
  readonly attr: Attr;
}

/** One merged directory entry. */
interface MergedEntry {
  readonly name: Uint8Array;
  readonly key: string;
  readonly top: LayerRef;
  readonly type: number;
}

/**
 * An overlay inode. It holds one lookup of each layer object it refers to,
 * given back when it goes (no kernel lookup, handle or live child left).
 */
class Node {
  /** The upper object, once there is one (created there or copied up). */
  upper: number | undefined;
  /** Directories: the lower directories merged below, top first. Others: the lower object while not copied up. */
  lowers: LayerRef[];
  /** The directory it was last found in (its only one, for a directory); `undefined` for the root. */
  parent: Node | undefined;
  name: Uint8Array;
  nlookup = 0;
  opens = 0;
  children = 0;
  /** A directory removed through the overlay: it answers nlink 0 and holds nothing. */
  removed = false;
  /** A non-directory that is a lower inode with several names: that inode's `layer:ino`, its key in the overlay's hard-link table. */
  linkKey: string | undefined;
  copying: Promise<void> | undefined;

  constructor(
    readonly ino: number,
    readonly isDir: boolean,
    refs: LayerRef[],
    parent: Node | undefined,
    name: Uint8Array,
  ) {
    this.upper = refs[0]?.layer === UPPER ? refs[0].ino : undefined;
    this.lowers = refs[0]?.layer === UPPER ? refs.slice(1) : refs;
    this.parent = parent;
    this.name = name;
  }

  /** The layer object whose attributes and data the overlay shows. */
  get top(): LayerRef {
    return this.upper !== undefined ? { layer: UPPER, ino: this.upper } : this.lowers[0]!;
  }

  /** Every layer object, top first. */
  get refs(): LayerRef[] {
    return this.upper !== undefined ? [{ layer: UPPER, ino: this.upper }, ...this.lowers] : this.lowers;
  }
}

/**
 * A lower inode with several names, once the overlay changed one of them.
 * The link count it shows is its copy's upper count plus `lowerNames`, as the
 * kernel's overlayfs (index=on) counts it.
 */
interface LinkedLower {
  /** The upper copy its names are linked to, held by one upper lookup; `undefined` until a name is copied up. */
  copy: number | undefined;
  /** Its names neither copied up nor removed yet. */
  lowerNames: number;
}

/** An open file: the layer object and that layer's handle (moved to the upper copy after a copy-up). */
interface FileHandle {
  readonly node: Node;
  layer: number;
  ino: number;
  fh: number;
  /** The open flags, without those that only act at open (`O_CREAT`, `O_EXCL`, `O_TRUNC`). */
  readonly flags: number;
  moving: Promise<void> | undefined;
}

const OPEN_ONLY_FLAGS = O.CREAT | O.EXCL | O.TRUNC;

/** An open directory: the merged listing as it was at opendir, `.` and `..` first. */
interface DirHandle {
  readonly node: Node;
  readonly entries: { readonly name: Uint8Array; readonly key: string; readonly ino: number; readonly type: number }[];
  /** Names removed through the overlay since opendir: later batches leave them out. */
  readonly gone: Set<string>;
}

const isNoEntry = (error: unknown): boolean => FsError.isInstance(error) && error.code === "ENOENT";
const refKey = (ref: LayerRef): string => `${ref.layer}:${ref.ino}`;

/** A name from the caller: bytes, not empty, no `/` or NUL, at most 255 bytes (`.` and `..` allowed). */
function checkName(name: Uint8Array, op: string): void {
  if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, detail: "name is not bytes" });
  validateName(name, op, true);
}

/**
 * An overlay filesystem: read-only `lowers` (bottom first) merged under a
 * writable `upper`, in the OCI layer format, so the upper is at any time the
 * diff layer of what changed.
 *
 * - Lookups go top-down; a whiteout `.wh.<name>` or an opaque directory
 *   (`.wh..wh..opq`) stops the descent, a non-directory hides everything
 *   below, directories merge. Whiteouts never show.
 * - Changing a lower object copies it up first: built under a temp name in
 *   the staging directory at the upper's root (data in 1 MiB chunks, owner,
 *   mode, times, xattrs), then renamed into place, so a crash leaves either
 *   the old view or the whole copy. The overlay inode number stays the same.
 * - Removing a name a lower has writes a whiteout; a directory made where
 *   one was removed is opaque; a lower directory renamed is copied up whole.
 *
 * @example
 * ```ts
 * const base = new MemFs();
 * await new PathFs(base).writeFile("/etc/motd", "hello");
 * const upper = new MemFs();
 * const fs = new OverlayFs({ lowers: [base], upper });
 * await fs.init();
 * await new PathFs(fs).rm("/etc/motd");
 * console.log(await new PathFs(upper).exists("/etc/.wh.motd")); // true
 * ```
 */
export class OverlayFs extends FsBackend {
  readonly #layers: readonly DynFileSystem[];
  readonly #upper: DynFileSystem;
  readonly #stagingName: Uint8Array;
  readonly #cache: CachePolicy;
  #staging = 0;
  readonly #nodes = new Map<number, Node>();
  /** Overlay inode numbers by layer object (`layer:ino`); numbers are never reused. */
  readonly #inoByKey = new Map<string, number>();
  /** Lower inodes with several names the overlay changed, by `layer:ino`: other names are linked to their copy as they are found. */
  readonly #linkedLowers = new Map<string, LinkedLower>();
  /** The keys of {@link OverlayFs.#linkedLowers} by upper copy. */
  readonly #linkedByCopy = new Map<number, string>();
  readonly #files = new Map<number, FileHandle>();
  readonly #dirs = new Map<number, DirHandle>();
  #nextIno = ROOT_INO + 1;
  #nextFh = 1;
  #nextTemp = 1;
  /** The end of the queue of namespace changes, run one at a time. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: OverlayFsOptions) {
    super();
    const resolved = resolveOptions(options);
    this.#layers = resolved.layers;
    this.#upper = resolved.layers[UPPER]!;
    this.#stagingName = resolved.staging;
    this.#cache = resolved.cache;
  }

  override get cachePolicy(): CachePolicy {
    return this.#cache;
  }

  /** Initialises every layer, merges the roots, and prepares an empty staging directory. */
  override async init(): Promise<void> {
    for (const layer of this.#layers) await layer.init();
    const upperFiles = new PathFs(this.#upper);
    const staging = new Uint8Array([0x2f, ...this.#stagingName]);
    await upperFiles.rm(staging, { recursive: true, force: true });
    const entry = await this.#upper.mkdir(ROOT_CTX, ROOT_INO, this.#stagingName, S.IFDIR | 0o700, 0);
    this.#staging = entry.ino;
    const refs: LayerRef[] = [];
    for (let layer = 0; layer < this.#layers.length; layer++) {
      refs.push({ layer, ino: ROOT_INO });
      if (await this.#hasChild(layer, ROOT_INO, OPAQUE_MARKER)) break;
    }
    const root = new Node(ROOT_INO, true, refs, undefined, new Uint8Array(0));
    root.nlookup = 1;
    this.#nodes.set(ROOT_INO, root);
    this.#inoByKey.set(refKey({ layer: UPPER, ino: ROOT_INO }), ROOT_INO);
  }

  /** Destroys every layer. */
  override async destroy(): Promise<void> {
    for (const layer of this.#layers) await layer.destroy();
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
    const handle = fh === undefined || this.#files.get(fh)?.node !== node ? undefined : await this.#liveHandle(ino, fh, "getattr");
    if (handle !== undefined) {
      return this.#shown(node, await this.#layers[handle.layer]!.getattr(ctx, handle.ino, handle.fh));
    }
    return this.#attr(node);
  }

  override async setattr(ctx: Context, ino: number, req: SetattrRequest): Promise<Attr> {
    const op = "setattr";
    const node = this.#node(ino, op);
    if (typeof req !== "object" || (req as unknown) === null || !Number.isInteger(req.valid)) throw new FsError("EINVAL", { op, ino, detail: "malformed request" });
    let layerReq = req;
    if ((req.valid & SetattrValid.FH) !== 0) {
      const handle = this.#fileHandle(ino, req.fh, op);
      layerReq = handle.layer === UPPER ? { ...req, fh: handle.fh } : { ...req, valid: req.valid & ~SetattrValid.FH };
    }
    // The caller's rights are checked before the copy-up it would cause.
    if (node.upper === undefined) planSetattr(await this.#attr(node), ctx, layerReq, { now: nowTimespec() });
    await this.#exclusive(() => this.#copyUp(node));
    return this.#shown(node, await this.#upper.setattr(ctx, node.upper!, layerReq));
  }

  override async readlink(ctx: Context, ino: number): Promise<Uint8Array> {
    const top = this.#node(ino, "readlink").top;
    return this.#layers[top.layer]!.readlink(ctx, top.ino);
  }

  override symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Promise<Entry> {
    return this.#exclusive(() => this.#make(ctx, parent, name, "symlink", async (dir) => ({ entry: await this.#upper.symlink(ctx, target, dir, name), extra: undefined }))
      .then((r) => r.entry));
  }

  override mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<Entry> {
    return this.#exclusive(() =>
      this.#make(ctx, parent, name, "mknod", async (dir) => ({ entry: await this.#upper.mknod(ctx, dir, name, mode, rdev, umask), extra: undefined })),
    ).then((r) => r.entry);
  }

  override mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Promise<Entry> {
    return this.#exclusive(() => this.#make(ctx, parent, name, "mkdir", async (dir) => ({ entry: await this.#upper.mkdir(ctx, dir, name, mode, umask), extra: undefined }))
      .then((r) => r.entry));
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

  override link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Promise<Entry> {
    return this.#exclusive(() => this.#link(ctx, ino, newParent, newName));
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
      if (!exchange && dst?.node.isDir === true && (await this.#merged(dst.node)).length > 0) throw new FsError("ENOTEMPTY", { op, path, dest });
      await this.#moveUp(ctx, sdir, name, src.node, ddir, newName, dst?.node, flags);
      if (dst !== undefined && !exchange) this.#lowerNameGone(dst.node, dst.attr);
    } finally {
      await this.#release(src.node, 1);
      if (dst !== undefined) await this.#release(dst.node, 1);
    }
  }

  async #link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Promise<Entry> {
    const node = this.#node(ino, "link");
    if (node.isDir) throw new FsError("EPERM", { op: "link", ino, detail: "hard link to a directory" });
    const made = await this.#make(ctx, newParent, newName, "link", async (dir) => {
      await this.#copyUp(node);
      return { entry: await this.#upper.link(ctx, node.upper!, dir, newName), extra: undefined };
    });
    return made.entry;
  }

  // ---- files ------------------------------------------------------------

  override open(ctx: Context, ino: number, flags: number): Promise<OpenReply> {
    const node = this.#node(ino, "open");
    // Only an open that copies up changes the namespace.
    if (node.upper === undefined && (openAccess(flags) & ACCESS.W_OK) !== 0) return this.#exclusive(() => this.#open(ctx, node, flags, "open"));
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
    const made = await this.#make(ctx, parent, name, op, async (upperDir) => {
      const reply = await this.#upper.create(ctx, upperDir, name, mode, flags, umask);
      return { entry: reply.entry, extra: reply };
    });
    const node = this.#node(made.entry.ino, op);
    const fh = this.#addFile({ node, layer: UPPER, ino: node.upper!, fh: made.extra.fh, flags: flags & ~OPEN_ONLY_FLAGS, moving: undefined });
    return { entry: made.entry, fh, flags: made.extra.flags };
  }

  override async read(ctx: Context, ino: number, fh: number, size: number, offset: number): Promise<Uint8Array> {
    const h = await this.#liveHandle(ino, fh, "read");
    return this.#layers[h.layer]!.read(ctx, h.ino, h.fh, size, offset);
  }

  override write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): Promise<number> {
    const h = this.#fileHandle(ino, fh, "write");
    return Promise.resolve(this.#layers[h.layer]!.write(ctx, h.ino, h.fh, data, offset, flags));
  }

  override async flush(ctx: Context, ino: number, fh: number, lockOwner: number): Promise<void> {
    const h = this.#fileHandle(ino, fh, "flush");
    await this.#layers[h.layer]!.flush(ctx, h.ino, h.fh, lockOwner);
  }

  override async fsync(ctx: Context, ino: number, fh: number, datasync: boolean): Promise<void> {
    const h = this.#fileHandle(ino, fh, "fsync");
    await this.#layers[h.layer]!.fsync(ctx, h.ino, h.fh, datasync);
  }

  override async fallocate(ctx: Context, ino: number, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = this.#fileHandle(ino, fh, "fallocate");
    await this.#layers[h.layer]!.fallocate(ctx, h.ino, h.fh, mode, offset, length);
  }

  override async release(ctx: Context, ino: number, fh: number, flags: number): Promise<void> {
    const h = this.#fileHandle(ino, fh, "release");
    this.#files.delete(fh);
    await h.moving;
    try {
      await this.#layers[h.layer]!.release(ctx, h.ino, h.fh, flags);
    } finally {
      h.node.opens--;
      await this.#maybeFree(h.node);
    }
  }

  override async statfs(ctx: Context, _ino: number): Promise<StatFs> {
    return this.#upper.statfs(ctx, ROOT_INO);
  }

  override async lseek(ctx: Context, ino: number, fh: number, offset: number, whence: number): Promise<number> {
    const h = await this.#liveHandle(ino, fh, "lseek");
    return this.#layers[h.layer]!.lseek(ctx, h.ino, h.fh, offset, whence);
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
    const from = await this.#liveHandle(inoIn, fhIn, "copyFileRange");
    const to = this.#fileHandle(inoOut, fhOut, "copyFileRange");
    if (from.layer === to.layer) {
      return this.#layers[to.layer]!.copyFileRange(ctx, from.ino, from.fh, offsetIn, to.ino, to.fh, offsetOut, length, flags);
    }
    // Across layers (a lower file into an upper one): read and write, as the kernel's fallback does.
    if (flags !== 0) throw new FsError("EINVAL", { op: "copyFileRange", detail: `flags ${flags}` });
    let done = 0;
    while (done < length) {
      const data = await this.#layers[from.layer]!.read(ctx, from.ino, from.fh, Math.min(CHUNK, length - done), offsetIn + done);
      if (data.length === 0) break;
      const written = await this.#upper.write(ctx, to.ino, to.fh, data, offsetOut + done, 0);
      done += written;
      if (written < data.length) break;
    }
    return done;
  }

  // ---- xattrs -----------------------------------------------------------

  override async setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): Promise<void> {
    const op = "setxattr";
    const node = this.#node(ino, op);
    if (!(name instanceof Uint8Array) || !(value instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name or value is not bytes" });
    if (node.upper === undefined) {
      checkXattrValue(value, op);
      checkXattrAccess(await this.#attr(node), ctx, xattrNamespace(name, op), true, op);
    }
    await this.#exclusive(() => this.#copyUp(node));
    await this.#upper.setxattr(ctx, node.upper!, name, value, flags);
  }

  override async getxattr(ctx: Context, ino: number, name: Uint8Array): Promise<Uint8Array> {
    const top = this.#node(ino, "getxattr").top;
    return this.#layers[top.layer]!.getxattr(ctx, top.ino, name);
  }

  override async listxattr(ctx: Context, ino: number): Promise<Uint8Array[]> {
    const top = this.#node(ino, "listxattr").top;
    return this.#layers[top.layer]!.listxattr(ctx, top.ino);
  }

  override async removexattr(ctx: Context, ino: number, name: Uint8Array): Promise<void> {
    const op = "removexattr";
    const node = this.#node(ino, op);
    if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name is not bytes" });
    if (node.upper === undefined) {
      const top = node.top;
      // Refuses what the caller may not do, and ENODATA, before any copy-up.
      await this.#layers[top.layer]!.getxattr(ctx, top.ino, name);
      checkXattrAccess(await this.#attr(node), ctx, xattrNamespace(name, op), true, op);
    }
    await this.#exclusive(() => this.#copyUp(node));
    await this.#upper.removexattr(ctx, node.upper!, name);
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
      for (const e of await this.#merged(node)) entries.push({ name: e.name, key: e.key, ino: this.#inoFor(e.top), type: e.type });
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

  override async readdirplus(ctx: Context, ino: number, fh: number, offset: number, size: number): Promise<DirEntryPlus[]> {
    const out: DirEntryPlus[] = [];
    const dir = this.#dirHandle(ino, fh, "readdirplus").node;
    await this.#list(ino, fh, offset, size, DIRENTPLUS_HEADER, async (e, cookie) => {
      let entry: Entry;
      if (isDotOrDotDot(e.name)) {
        const node = e.name.length === 1 ? dir : (dir.parent ?? dir);
        entry = { ino: node.ino, generation: 0, attr: await this.#attr(node) };
      } else {
        const found = await this.#lookupNode(dir, e.name);
        if (found === undefined) return false;
        entry = this.#entry(found.node, found.attr);
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
    // Only the upper changes; a lower-only directory has nothing to make durable.
    if (node.upper === undefined || node.removed) return;
    const upperDir = await this.#upper.opendir(ROOT_CTX, node.upper, O.RDONLY | O.DIRECTORY);
    try {
      await this.#upper.fsyncdir(ctx, node.upper, upperDir.fh, datasync);
    } finally {
      await this.#upper.releasedir(ROOT_CTX, node.upper, upperDir.fh, O.RDONLY);
    }
  }

  override async access(ctx: Context, ino: number, mask: number): Promise<void> {
    const node = this.#node(ino, "access");
    if (node.upper !== undefined) {
      await this.#upper.access(ctx, node.upper, mask);
      return;
    }
    // A lower object is writable as far as its mode goes (a write copies it up), even on a read-only lower.
    if (!Number.isInteger(mask) || (mask & ~(ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK)) !== 0) {
      throw new FsError("EINVAL", { op: "access", ino, detail: `mask ${String(mask)}` });
    }
    checkAccess(await this.#attr(node), ctx, mask, "access");
  }

  // ---- internals: nodes ---------------------------------------------------

  /**
   * Runs `change` after every change queued before it. Changes of the
   * namespace (create, remove, rename, copy-up) span many layer calls and
   * node updates; one at a time, a guest racing them cannot interleave two.
   * Reads, writes through open handles and lookups stay concurrent.
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
    const top = node.top;
    return this.#shown(node, await this.#layers[top.layer]!.getattr(ROOT_CTX, top.ino));
  }

  /**
   * The attributes of layer object `attr` as `node` shows them: its overlay
   * inode number, and a link count that is 0 for a removed directory and
   * counts the lower names of a hard-linked lower inode. A merged directory
   * shows its top layer's count (see the README).
   */
  #shown(node: Node, attr: Attr): Attr {
    let nlink = node.removed ? 0 : attr.nlink;
    const linked = node.linkKey === undefined ? undefined : this.#linkedLowers.get(node.linkKey);
    if (linked !== undefined) nlink = (node.upper !== undefined ? attr.nlink : 0) + linked.lowerNames;
    return { ...attr, ino: node.ino, nlink };
  }

  /** `node` as an Entry, with the attributes it shows (its lookup already counted). */
  #entry(node: Node, attr: Attr): Entry {
    return { ino: node.ino, generation: 0, attr };
  }

  /** The overlay inode number of a layer object, allocated on first sight. */
  #inoFor(ref: LayerRef): number {
    const key = refKey(ref);
    let ino = this.#inoByKey.get(key);
    if (ino === undefined) {
      ino = this.#nextIno++;
      this.#inoByKey.set(key, ino);
    }
    return ino;
  }

  /** Names the guest never sees: whiteouts, and the staging directory at the root. */
  #hidden(dir: Node, name: Uint8Array): boolean {
    return isWhiteoutName(name) || (dir.ino === ROOT_INO && bytesEqual(name, this.#stagingName));
  }

  /** Refuses a new guest name in the whiteout namespace (EINVAL) or the staging name (EPERM). */
  #checkGuestName(dir: Node, name: Uint8Array, op: string): void {
    if (isWhiteoutName(name)) throw new FsError("EINVAL", { op, path: bytesToString(name), detail: "names starting with .wh. are reserved for whiteouts" });
    if (dir.ino === ROOT_INO && bytesEqual(name, this.#stagingName)) {
      throw new FsError("EPERM", { op, path: bytesToString(name), detail: "reserved for the overlay's staging directory" });
    }
  }

  /**
   * Finds `name` in `dir` across the layers and counts one lookup of its
   * node (the caller gives it back), with the attributes it shows, or
   * `undefined` when it does not exist.
   */
  async #lookupNode(dir: Node, name: Uint8Array): Promise<{ node: Node; attr: Attr } | undefined> {
    if (dir.removed || this.#hidden(dir, name)) return undefined;
    const found = await this.#resolve(dir, name);
    if (found === undefined) return undefined;
    const top = found.refs[0]!;
    const ino = this.#inoFor(top);
    let node = this.#nodes.get(ino);
    if (node !== undefined) {
      await this.#forgetRefs(found.refs);
      if (node.parent !== dir) {
        if (node.parent !== undefined) node.parent.children--;
        dir.children++;
        const old = node.parent;
        node.parent = dir;
        if (old !== undefined) await this.#maybeFree(old);
      }
      node.name = name;
    } else {
      node = new Node(ino, isDirectory(found.attr.mode), found.refs, dir, name);
      if (!node.isDir) node.linkKey = top.layer === UPPER ? this.#linkedByCopy.get(top.ino) : found.attr.nlink > 1 ? refKey(top) : undefined;
      this.#nodes.set(ino, node);
      dir.children++;
    }
    node.nlookup++;
    if (!node.isDir && top.layer !== UPPER) {
      // Another name of a lower inode already copied up: link this name to the copy too.
      const linked = node.linkKey === undefined ? undefined : this.#linkedLowers.get(node.linkKey);
      if (linked?.copy !== undefined) await this.#linkUp(node, dir, name, linked);
    }
    return { node, attr: node.upper !== undefined ? await this.#attr(node) : this.#shown(node, found.attr) };
  }

  async #linkUp(node: Node, dir: Node, name: Uint8Array, linked: LinkedLower): Promise<void> {
    await this.#copyUp(dir);
    const entry = await this.#linkCopy(node.linkKey!, linked, dir.upper!, name);
    linked.lowerNames--;
    if (node.upper === undefined) {
      node.upper = entry.ino;
      this.#inoByKey.set(refKey({ layer: UPPER, ino: entry.ino }), node.ino);
      await this.#forgetRefs(node.lowers);
      node.lowers = [];
    } else {
      await this.#upper.forget(ROOT_CTX, entry.ino, 1);
    }
  }

  /** Merged lookup: the objects named `name` under `dir`, top first, each counted once on its layer. */
  async #resolve(dir: Node, name: Uint8Array): Promise<Found | undefined> {
    const refs: LayerRef[] = [];
    let attr: Attr | undefined;
    const whiteout = whiteoutOf(name);
    const layerDirs = dir.refs;
    try {
      for (const [i, layerDir] of layerDirs.entries()) {
        const fs = this.#layers[layerDir.layer]!;
        // Opaque markers and whiteouts in the last layer hide nothing: not looked for.
        const isLast = i === layerDirs.length - 1;
        let hit: Entry | undefined;
        try {
          hit = await fs.lookup(ROOT_CTX, layerDir.ino, name);
        } catch (error) {
          if (!isNoEntry(error)) throw error;
        }
        if (hit !== undefined) {
          const ref = { layer: layerDir.layer, ino: hit.ino };
          const hitIsDir = isDirectory(hit.attr.mode);
          if (attr === undefined) {
            attr = hit.attr;
            refs.push(ref);
            if (!hitIsDir) break;
          } else if (!hitIsDir) {
            // A non-directory below a directory ends the merge.
            await fs.forget(ROOT_CTX, hit.ino, 1);
            break;
          } else {
            refs.push(ref);
          }
          if (isLast || (await this.#hasChild(layerDir.layer, hit.ino, OPAQUE_MARKER))) break;
        }
        if (isLast || (whiteout !== undefined && (await this.#hasChild(layerDir.layer, layerDir.ino, whiteout)))) break;
      }
    } catch (error) {
      await this.#forgetRefs(refs);
      throw error;
    }
    return attr === undefined ? undefined : { refs, attr };
  }

  /** True when `name` exists in directory `ino` of `layer` (nothing stays counted). */
  async #hasChild(layer: number, ino: number, name: Uint8Array): Promise<boolean> {
    const fs = this.#layers[layer]!;
    try {
      const entry = await fs.lookup(ROOT_CTX, ino, name);
      await fs.forget(ROOT_CTX, entry.ino, 1);
      return true;
    } catch (error) {
      if (isNoEntry(error)) return false;
      throw error;
    }
  }

  /** True when a lower layer of `dir` shows `name`, so removing it from the overlay needs a whiteout. */
  async #lowerHas(dir: Node, name: Uint8Array): Promise<boolean> {
    const whiteout = whiteoutOf(name);
    for (const ref of dir.lowers) {
      if (await this.#hasChild(ref.layer, ref.ino, name)) return true;
      if (whiteout !== undefined && (await this.#hasChild(ref.layer, ref.ino, whiteout))) return false;
    }
    return false;
  }

  async #forgetRefs(refs: readonly LayerRef[]): Promise<void> {
    for (const ref of refs) await this.#layers[ref.layer]!.forget(ROOT_CTX, ref.ino, 1);
  }

  async #release(node: Node, count: number): Promise<void> {
    if (node.ino === ROOT_INO) return;
    node.nlookup = Math.max(0, node.nlookup - count);
    await this.#maybeFree(node);
  }

  /** Drops a node nothing holds any more, giving its layer lookups back. */
  async #maybeFree(node: Node): Promise<void> {
    if (node.nlookup > 0 || node.opens > 0 || node.children > 0 || node.ino === ROOT_INO || node.copying !== undefined) return;
    if (this.#nodes.get(node.ino) !== node) return;
    this.#nodes.delete(node.ino);
    await this.#forgetRefs(node.refs);
    const parent = node.parent;
    if (parent !== undefined) {
      parent.children--;
      await this.#maybeFree(parent);
    }
  }

  /** True when `node` is `dir` or one of its ancestors. */
  #isAncestor(node: Node, dir: Node): boolean {
    for (let at: Node | undefined = dir; at !== undefined; at = at.parent) if (at === node) return true;
    return false;
  }

  // ---- internals: directories --------------------------------------------

  /** The merged entries of directory `node`, without `.`, `..`, whiteouts, what they hide, and the staging directory. */
  async #merged(node: Node): Promise<MergedEntry[]> {
    const seen = new Set<string>();
    const hidden = new Set<string>();
    const out: MergedEntry[] = [];
    for (const ref of node.refs) {
      const whiteouts: string[] = [];
      for (const e of await this.#listLayer(ref)) {
        if (node.ino === ROOT_INO && ref.layer === UPPER && bytesEqual(e.name, this.#stagingName)) continue;
        if (isWhiteoutName(e.name)) {
          if (!bytesEqual(e.name, OPAQUE_MARKER)) whiteouts.push(nameKey(e.name.subarray(4)));
          continue;
        }
        const key = nameKey(e.name);
        if (seen.has(key) || hidden.has(key)) continue;
        seen.add(key);
        out.push({ name: e.name, key, top: { layer: ref.layer, ino: e.ino }, type: e.type });
      }
      for (const key of whiteouts) hidden.add(key);
    }
    return out;
  }

  /** Every entry of one layer directory but `.` and `..`. */
  async #listLayer(ref: LayerRef): Promise<DirEntry[]> {
    const fs = this.#layers[ref.layer]!;
    const { fh } = await fs.opendir(ROOT_CTX, ref.ino, O.RDONLY | O.DIRECTORY);
    try {
      const entries: DirEntry[] = [];
      let offset = 0;
      for (;;) {
        const batch = await fs.readdir(ROOT_CTX, ref.ino, fh, offset, DIR_READ_BYTES);
        if (batch.length === 0) return entries;
        for (const e of batch) if (!isDotOrDotDot(e.name)) entries.push(e);
        offset = batch[batch.length - 1]!.offset;
      }
    } finally {
      await fs.releasedir(ROOT_CTX, ref.ino, fh, O.RDONLY);
    }
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

  /**
   * Handle `fh` of `ino`, first moved to the upper copy when it was opened on
   * a lower object copied up since: as with the kernel's overlayfs, a handle
   * opened before a copy-up reads the copy after it.
   */
  #liveHandle(ino: number, fh: number, op: string): FileHandle | Promise<FileHandle> {
    const handle = this.#fileHandle(ino, fh, op);
    if (handle.layer === UPPER || handle.node.upper === undefined) return handle;
    handle.moving ??= this.#moveToCopy(handle).finally(() => {
      handle.moving = undefined;
    });
    return handle.moving.then(() => handle);
  }

  async #moveToCopy(handle: FileHandle): Promise<void> {
    const copy = handle.node.upper!;
    const reply = await this.#upper.open(ROOT_CTX, copy, handle.flags);
    const { layer, ino, fh } = handle;
    handle.layer = UPPER;
    handle.ino = copy;
    handle.fh = reply.fh;
    await this.#layers[layer]!.release(ROOT_CTX, ino, fh, handle.flags);
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
    if (node.upper === undefined && (mask & ACCESS.W_OK) !== 0) {
      const attr = await this.#attr(node);
      const type = attr.mode & S.IFMT;
      // The checks open would make, before the copy-up they would otherwise follow.
      if (type === S.IFLNK) throw new FsError("ELOOP", { op, ino: node.ino, detail: "a symlink" });
      if (type === S.IFDIR) throw new FsError("EISDIR", { op, ino: node.ino });
      checkAccess(attr, ctx, mask, op);
      await this.#copyUp(node, (flags & O.TRUNC) !== 0);
    }
    const top = node.top;
    const reply = await this.#layers[top.layer]!.open(ctx, top.ino, flags);
    return { fh: this.#addFile({ node, layer: top.layer, ino: top.ino, fh: reply.fh, flags: flags & ~OPEN_ONLY_FLAGS, moving: undefined }), flags: reply.flags };
  }

  // ---- internals: changes -------------------------------------------------

  /**
   * Creates a name in the upper with `make` (given the upper directory),
   * after the overlay's checks and the parent's copy-up; a whiteout of the
   * name goes, and a directory made over one becomes opaque.
   */
  async #make<T>(
    ctx: Context,
    parent: number,
    name: Uint8Array,
    op: string,
    make: (upperDir: number) => Promise<{ entry: Entry; extra: T }>,
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
    await this.#copyUp(dir);
    const whiteout = whiteoutOf(name);
    const whitedOut = whiteout !== undefined && (await this.#hasChild(UPPER, dir.upper!, whiteout));
    const made = await make(dir.upper!);
    const upperIno = made.entry.ino;
    if (whitedOut) {
      if (isDirectory(made.entry.attr.mode)) await this.#mark(upperIno, OPAQUE_MARKER);
      await this.#upper.unlink(ROOT_CTX, dir.upper!, whiteout);
    }
    const ino = this.#inoFor({ layer: UPPER, ino: upperIno });
    let node = this.#nodes.get(ino);
    if (node === undefined) {
      node = new Node(ino, isDirectory(made.entry.attr.mode), [{ layer: UPPER, ino: upperIno }], dir, name);
      this.#nodes.set(ino, node);
      dir.children++;
    } else {
      // A new name of a node the overlay knows (link): its upper lookup is held once already.
      await this.#upper.forget(ROOT_CTX, upperIno, 1);
    }
    node.nlookup++;
    return { entry: this.#entry(node, this.#shown(node, made.entry.attr)), extra: made.extra };
  }

  /** Creates the empty file `name` (a whiteout or the opaque marker) in upper directory `dir`. */
  async #mark(dir: number, name: Uint8Array): Promise<void> {
    const entry = await this.#upper.mknod(ROOT_CTX, dir, name, S.IFREG | 0o644, 0, 0);
    await this.#upper.forget(ROOT_CTX, entry.ino, 1);
  }

  async #whiteout(dir: Node, name: Uint8Array, op: string): Promise<void> {
    const whiteout = whiteoutOf(name);
    if (whiteout === undefined) {
      throw new FsError("ENAMETOOLONG", { op, path: bytesToString(name), detail: "a whiteout of a name longer than 251 bytes cannot be written" });
    }
    if (!(await this.#hasChild(UPPER, dir.upper!, whiteout))) await this.#mark(dir.upper!, whiteout);
  }

  /** Makes a directory (already complete in the upper) opaque and stops merging it. */
  async #makeOpaque(node: Node): Promise<void> {
    if (!(await this.#hasChild(UPPER, node.upper!, OPAQUE_MARKER))) await this.#mark(node.upper!, OPAQUE_MARKER);
    await this.#dropLowers(node);
  }

  async #dropLowers(node: Node): Promise<void> {
    const lowers = node.lowers;
    node.lowers = [];
    await this.#forgetRefs(lowers);
  }

  /** unlink and rmdir: the overlay's checks on the merged view, then whiteout and upper removal. */
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
      if (isRmdir && (await this.#merged(node)).length > 0) throw new FsError("ENOTEMPTY", { op, path: bytesToString(name), ino: parent });
      const below = node.upper === undefined || (await this.#lowerHas(dir, name));
      if (below) {
        await this.#copyUp(dir);
        await this.#whiteout(dir, name, op);
      }
      if (node.upper !== undefined) {
        // Whiteouts inside an upper directory that is empty in the merged view would keep the upper's rmdir from working.
        if (isRmdir) await this.#clearWhiteouts(node.upper);
        await (isRmdir ? this.#upper.rmdir(ctx, dir.upper!, name) : this.#upper.unlink(ctx, dir.upper!, name));
      }
      if (isRmdir) node.removed = true;
      else this.#lowerNameGone(node, attr);
      this.#gone(dir, name);
    } finally {
      await this.#release(node, 1);
    }
  }

  /** Counts a name removed from a hard-linked lower inode (`attr`, its lower attributes) that is still only in the lower. */
  #lowerNameGone(node: Node, attr: Attr): void {
    if (node.upper === undefined && node.linkKey !== undefined) this.#linkedLower(node.linkKey, attr).lowerNames--;
  }

  /** Removes every whiteout (and the opaque marker) from upper directory `ino`. */
  async #clearWhiteouts(ino: number): Promise<void> {
    for (const e of await this.#listLayer({ layer: UPPER, ino })) {
      if (isWhiteoutName(e.name)) await this.#upper.unlink(ROOT_CTX, ino, e.name);
    }
  }

  /** The rename itself, once checked: everything involved copied up, renamed in the upper, then whiteouts and opaque markers. */
  async #moveUp(ctx: Context, sdir: Node, name: Uint8Array, src: Node, ddir: Node, newName: Uint8Array, dst: Node | undefined, flags: number): Promise<void> {
    const exchange = (flags & RENAME.EXCHANGE) !== 0;
    await this.#copyUp(sdir);
    await this.#copyUp(ddir);
    await this.#copyUpTree(src);
    if (exchange) await this.#copyUpTree(dst!);
    // A hard-linked lower file may have just been copied up under another of its names (inside a moved directory).
    await this.#linkName(src, sdir, name);
    if (dst !== undefined) await this.#linkName(dst, ddir, newName);
    if (!exchange && dst?.isDir === true && dst.upper !== undefined) await this.#clearWhiteouts(dst.upper);
    const srcBelow = await this.#lowerHas(sdir, name);
    const dstBelow = await this.#lowerHas(ddir, newName);
    const dstWhiteout = whiteoutOf(newName);
    const dstWhitedOut = dstWhiteout !== undefined && (await this.#hasChild(UPPER, ddir.upper!, dstWhiteout));
    // The old name's whiteout comes first: until the rename, the upper object still hides it.
    const needsWhiteout = srcBelow && !exchange && (flags & RENAME.WHITEOUT) === 0;
    if (needsWhiteout) await this.#whiteout(sdir, name, "rename");
    try {
      await this.#upper.rename(ctx, sdir.upper!, name, ddir.upper!, newName, flags);
    } catch (error) {
      if (needsWhiteout) await this.#upper.unlink(ROOT_CTX, sdir.upper!, whiteoutOf(name)!);
      throw error;
    }
    if (src.isDir && (dstBelow || dstWhitedOut)) await this.#makeOpaque(src);
    else if (src.isDir) await this.#dropLowers(src);
    if (exchange && dst!.isDir) {
      if (srcBelow) await this.#makeOpaque(dst!);
      else await this.#dropLowers(dst!);
    }
    if (dstWhitedOut && !exchange) await this.#upper.unlink(ROOT_CTX, ddir.upper!, dstWhiteout);
    this.#reparent(src, ddir, newName);
    if (exchange) this.#reparent(dst!, sdir, name);
    else if (dst?.isDir === true) dst.removed = true;
    if (!exchange) this.#gone(sdir, name);
  }

  /** Links `name` in `dir` to the copy of `node` when it is a hard-linked lower file copied up under another name and this one is not in the upper yet. */
  async #linkName(node: Node, dir: Node, name: Uint8Array): Promise<void> {
    const linked = node.isDir || node.linkKey === undefined ? undefined : this.#linkedLowers.get(node.linkKey);
    if (linked?.copy === undefined || (await this.#hasChild(UPPER, dir.upper!, name))) return;
    const entry = await this.#linkCopy(node.linkKey!, linked, dir.upper!, name);
    linked.lowerNames--;
    await this.#upper.forget(ROOT_CTX, entry.ino, 1);
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

  // ---- internals: copy-up -------------------------------------------------

  /** Copies `node` and what is below it (its merged contents, for a directory) into the upper. */
  async #copyUpTree(node: Node): Promise<void> {
    await this.#copyUp(node);
    if (!node.isDir || node.lowers.length === 0) return;
    for (const e of await this.#merged(node)) {
      const child = await this.#lookupNode(node, e.name);
      if (child === undefined) continue;
      try {
        await this.#copyUpTree(child.node);
      } finally {
        await this.#release(child.node, 1);
      }
    }
  }

  /**
   * Gives `node` an upper object, its parents first: built in the staging
   * directory as root, with the lower's owner, mode, times and xattrs, then
   * renamed into place. `skipData` leaves a regular file empty (open with
   * `O_TRUNC` would cut it anyway).
   */
  #copyUp(node: Node, skipData = false): Promise<void> {
    if (node.upper !== undefined) return Promise.resolve();
    node.copying ??= this.#doCopyUp(node, skipData).finally(() => {
      node.copying = undefined;
      // Released while copying: the node may go now.
      void this.#maybeFree(node);
    });
    return node.copying;
  }

  async #doCopyUp(node: Node, skipData: boolean): Promise<void> {
    const parent = node.parent!;
    await this.#copyUp(parent);
    const src = node.lowers[0]!;
    const lower = this.#layers[src.layer]!;
    const attr = await lower.getattr(ROOT_CTX, src.ino);
    const key = node.linkKey;
    const linked = key === undefined ? undefined : this.#linkedLower(key, attr);
    let entry: Entry;
    if (linked?.copy !== undefined) {
      entry = await this.#linkCopy(key!, linked, parent.upper!, node.name);
    } else {
      entry = await this.#place(lower, src.ino, attr, parent.upper!, node.name, skipData);
      if (linked !== undefined) await this.#holdCopy(key!, linked, parent.upper!, node.name);
    }
    if (linked !== undefined) linked.lowerNames--;
    node.upper = entry.ino;
    this.#inoByKey.set(refKey({ layer: UPPER, ino: entry.ino }), node.ino);
    if (!node.isDir) await this.#dropLowers(node);
  }

  /** Copies object `ino` of `from` (a lower, or the upper) to `name` in upper directory `dir` through the staging directory; the returned entry counts one upper lookup. */
  async #place(from: DynFileSystem, ino: number, attr: Attr, dir: number, name: Uint8Array, skipData: boolean): Promise<Entry> {
    const temp = new TextEncoder().encode(`copyup-${this.#nextTemp++}`);
    const entry = await this.#build(from, ino, attr, temp, skipData);
    try {
      await this.#upper.rename(ROOT_CTX, this.#staging, temp, dir, name, 0);
    } catch (error) {
      await this.#discard(temp, entry);
      throw error;
    }
    return entry;
  }

  /** The hard-link table entry of lower inode `key` (attributes `attr`), made on first use. */
  #linkedLower(key: string, attr: Attr): LinkedLower {
    let linked = this.#linkedLowers.get(key);
    if (linked === undefined) {
      linked = { copy: undefined, lowerNames: attr.nlink };
      this.#linkedLowers.set(key, linked);
    }
    return linked;
  }

  /** Makes the upper object just placed at `name` in `dir` the copy the other names of lower inode `key` are linked to, holding one lookup of it. */
  async #holdCopy(key: string, linked: LinkedLower, dir: number, name: Uint8Array): Promise<void> {
    const held = await this.#upper.lookup(ROOT_CTX, dir, name);
    const previous = linked.copy;
    linked.copy = held.ino;
    this.#linkedByCopy.set(held.ino, key);
    if (previous !== undefined) {
      this.#linkedByCopy.delete(previous);
      await this.#upper.forget(ROOT_CTX, previous, 1);
    }
  }

  /**
   * Gives `name` in upper directory `dir` the copy of hard-linked lower inode
   * `key` (`linked`): a link to it, or, when every upper name of the copy has been
   * removed, a new copy of it (it holds what the other names show), which
   * becomes the copy. The returned entry counts one upper lookup.
   */
  async #linkCopy(key: string, linked: LinkedLower, dir: number, name: Uint8Array): Promise<Entry> {
    const copy = linked.copy!;
    try {
      return await this.#upper.link(ROOT_CTX, copy, dir, name);
    } catch (error) {
      if (!isNoEntry(error)) throw error;
    }
    const entry = await this.#place(this.#upper, copy, await this.#upper.getattr(ROOT_CTX, copy), dir, name, false);
    await this.#holdCopy(key, linked, dir, name);
    return entry;
  }

  /** Builds a copy of object `ino` of `from` as `temp` in the staging directory; the returned entry counts one upper lookup. */
  async #build(from: DynFileSystem, ino: number, attr: Attr, temp: Uint8Array, skipData: boolean): Promise<Entry> {
    const upper = this.#upper;
    const type = attr.mode & S.IFMT;
    let entry: Entry;
    if (type === S.IFREG) {
      const reply = await upper.create(ROOT_CTX, this.#staging, temp, S.IFREG | 0o600, O.WRONLY, 0);
      entry = reply.entry;
      try {
        if (!skipData) await this.#copyData(from, ino, entry.ino, reply.fh);
        // Durable before the rename makes it visible: a crash never shows a renamed but empty copy.
        await upper.fsync(ROOT_CTX, entry.ino, reply.fh, true);
      } catch (error) {
        await upper.release(ROOT_CTX, entry.ino, reply.fh, O.WRONLY);
        await this.#discard(temp, entry);
        throw error;
      }
      await upper.release(ROOT_CTX, entry.ino, reply.fh, O.WRONLY);
    } else if (type === S.IFDIR) {
      entry = await upper.mkdir(ROOT_CTX, this.#staging, temp, S.IFDIR | 0o700, 0);
    } else if (type === S.IFLNK) {
      entry = await upper.symlink(ROOT_CTX, await from.readlink(ROOT_CTX, ino), this.#staging, temp);
    } else {
      entry = await upper.mknod(ROOT_CTX, this.#staging, temp, type | 0o600, attr.rdev, 0);
    }
    try {
      for (const name of await from.listxattr(ROOT_CTX, ino)) {
        await upper.setxattr(ROOT_CTX, entry.ino, name, await from.getxattr(ROOT_CTX, ino, name), 0);
      }
      // Owner before mode (a chown drops setuid), times last.
      const req = setattrRequest({ uid: attr.uid, gid: attr.gid, atime: attr.atime, mtime: attr.mtime });
      await upper.setattr(ROOT_CTX, entry.ino, type === S.IFLNK ? req : { ...req, valid: req.valid | SetattrValid.MODE, mode: attr.mode & S.IALLUGO });
    } catch (error) {
      await this.#discard(temp, entry);
      throw error;
    }
    return entry;
  }

  async #copyData(from: DynFileSystem, ino: number, upperIno: number, upperFh: number): Promise<void> {
    const { fh } = await from.open(ROOT_CTX, ino, O.RDONLY);
    try {
      for (let offset = 0; ; ) {
        const data = await from.read(ROOT_CTX, ino, fh, CHUNK, offset);
        if (data.length === 0) return;
        for (let done = 0; done < data.length; ) {
          done += await this.#upper.write(ROOT_CTX, upperIno, upperFh, data.subarray(done), offset + done, 0);
        }
        offset += data.length;
      }
    } finally {
      await from.release(ROOT_CTX, ino, fh, O.RDONLY);
    }
  }

  /** Removes a half-built copy from the staging directory. */
  async #discard(temp: Uint8Array, entry: Entry): Promise<void> {
    try {
      await (isDirectory(entry.attr.mode) ? this.#upper.rmdir(ROOT_CTX, this.#staging, temp) : this.#upper.unlink(ROOT_CTX, this.#staging, temp));
    } catch {
      // Left for the next init, which empties the staging directory.
    }
    await this.#upper.forget(ROOT_CTX, entry.ino, 1);
  }
}
