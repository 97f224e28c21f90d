// The machinery every filesystem made of other filesystems needs (OverlayFs,
// DualFs): its own inodes over the objects of its backends, with lookup
// counts and parents; open files and directories; merged listings with
// stable cookies; namespace changes one at a time; and the checks the
// kernel makes on the merged view before any backend is touched.
import { checkAccess, openAccess, stickyAllows } from "./access.js";
import { FsBackend } from "./backend.js";
import { ACCESS, O, RENAME, ROOT_INO, S } from "./constants.js";
import { FsError } from "./errno.js";
import { dtFromMode } from "./mode.js";
import { bytesEqual, bytesToString, isDotOrDotDot, validateEntryName, validateName } from "./names.js";
import { mapMaybe } from "./maybe.js";
import type { Attr, Context, CreateReply, DirEntry, DirEntryPlus, DynFileSystem, Entry, MaybePromise, OpenReply } from "./types.js";
import { ROOT_CONTEXT, copyRangeAcross, isWhiteoutName, nameKey } from "./union.js";

const DIRENT_HEADER = 24;
const DIRENTPLUS_HEADER = 152;
const RENAME_FLAGS = RENAME.NOREPLACE | RENAME.EXCHANGE | RENAME.WHITEOUT;

/**
 * An inode of a composite filesystem. It is kept while the kernel holds
 * lookups of it, a handle is open, a child is known, or a copy runs; then
 * the subclass gives back what it holds on its backends.
 */
export class CompositeNode {
  nlookup = 0;
  opens = 0;
  children = 0;
  /** A directory removed through this filesystem: it answers nlink 0 and holds nothing. */
  removed = false;
  /** A copy of this node between backends, while it runs. */
  copying: Promise<void> | undefined;

  /** The directory it was last found in; `undefined` for the root. */
  parent: this | undefined;

  constructor(
    readonly ino: number,
    readonly isDir: boolean,
    parent: CompositeNode | undefined,
    public name: Uint8Array,
  ) {
    // Nodes of one filesystem are all of its node class.
    this.parent = parent as this | undefined;
  }
}

/** An open file: the backend object it was opened on and that backend's handle. */
export interface CompositeFile<N extends CompositeNode> {
  readonly node: N;
  fs: DynFileSystem;
  ino: number;
  fh: number;
  /** The open flags, without those that act only at open (`O_CREAT`, `O_EXCL`, `O_TRUNC`). */
  readonly flags: number;
  /** The move over to a copy of the file, while it runs (concurrent calls share it). */
  moving?: Promise<void>;
}

/** One backend object: where a node's data and attributes come from. */
export interface BackendObject {
  readonly fs: DynFileSystem;
  readonly ino: number;
}

const OPEN_ONLY_FLAGS = O.CREAT | O.EXCL | O.TRUNC;

/** One name of a merged directory, as a listing shows it. */
export interface MergedName {
  readonly name: Uint8Array;
  /** {@link nameKey} of the name. */
  readonly key: string;
  readonly ino: number;
  /** A `DT` value. */
  readonly type: number;
}

/** An open directory: its names as they were at opendir, `.` and `..` first. */
interface DirHandle<N extends CompositeNode> {
  readonly node: N;
  readonly entries: MergedName[];
  /** Names removed since opendir: later batches leave them out. */
  readonly gone: Set<string>;
}

/** What a subclass reserves: its whiteout prefix, and the staging directory at the root. */
export interface CompositeNames {
  readonly whiteoutPrefix: Uint8Array;
  readonly stagingName: Uint8Array;
}


/**
 * The base of filesystems composed of others. It implements lookup of `.`
 * and `..`, forget, the data calls on open files, listings, and the checks
 * of create, remove and rename on the merged view; a subclass says how names
 * are found on its backends (`lookupNode`), what a
 * directory lists (`mergedNames`) and how changes land.
 */
export abstract class CompositeFs<N extends CompositeNode> extends FsBackend {
  protected readonly nodes = new Map<number, N>();
  readonly #files = new Map<number, CompositeFile<N>>();
  readonly #dirs = new Map<number, DirHandle<N>>();
  readonly #names: CompositeNames;
  /** Inode numbers by backend object key (a subclass's `backend:ino`); numbers are never reused. */
  readonly #inoByKey = new Map<string, number>();
  #nextIno = ROOT_INO + 1;
  #nextFh = 1;
  /** The end of the queue of namespace changes, run one at a time. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(names: CompositeNames) {
    super();
    this.#names = names;
  }

  // ---- what a subclass provides --------------------------------------------

  /**
   * Finds `name` in `dir` across the backends and counts one lookup of its
   * node (the caller gives it back), or `undefined` when it does not exist.
   */
  protected abstract lookupNode(dir: N, name: Uint8Array): Promise<{ node: N; attr: Attr } | undefined>;

  /** {@link CompositeFs.lookupNode}, except that hidden names and names in removed directories do not exist. */
  protected findNode(dir: N, name: Uint8Array): Promise<{ node: N; attr: Attr } | undefined> {
    return dir.removed || this.isHidden(dir, name) ? Promise.resolve(undefined) : this.lookupNode(dir, name);
  }

  /** The attributes `node` shows, from the backend object it shows. */
  protected abstract nodeAttr(node: N): Promise<Attr>;

  /**
   * The visible names of directory `node` (no `.`, `..`, whiteouts or staging
   * directory): what a listing shows, or with `all`, every name a lookup can
   * reach (for emptiness and whole-tree copies).
   */
  protected abstract mergedNames(node: N, all: boolean): Promise<MergedName[]>;

  /** Gives back what a node nothing holds any more holds on the backends. */
  protected abstract dropRefs(node: N): Promise<void>;

  /** The backend object whose data `node` shows: where reads go, and where handles opened elsewhere move to. */
  protected abstract shownObject(node: N): BackendObject;

  /** Removes `name` (node `node`, attributes `attr` as found) from `dir`, once every check passed. */
  protected abstract removeChecked(ctx: Context, dir: N, name: Uint8Array, node: N, attr: Attr, isRmdir: boolean): Promise<void>;

  /** Renames, once every check passed: `dst` is the node replaced or exchanged, with its attributes as found. */
  protected abstract renameChecked(
    ctx: Context,
    sdir: N,
    name: Uint8Array,
    src: N,
    ddir: N,
    newName: Uint8Array,
    dst: { readonly node: N; readonly attr: Attr } | undefined,
    flags: number,
  ): Promise<void>;

  /** Opens `node` (copying it first where a write needs that). */
  protected abstract openNode(ctx: Context, node: N, flags: number, op: string): Promise<OpenReply>;

  /** Creates and opens the new file `name` in `dir`; the checks a new name needs have passed. */
  protected abstract createNew(ctx: Context, dir: N, name: Uint8Array, mode: number, flags: number, umask: number): Promise<CreateReply>;

  // ---- names ------------------------------------------------------------

  override async lookup(ctx: Context, parent: number, name: Uint8Array): Promise<Entry> {
    const op = "lookup";
    const dir = this.dirNode(parent, op);
    if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, detail: "name is not bytes" });
    validateName(name, op, true);
    checkAccess(await this.nodeAttr(dir), ctx, ACCESS.X_OK, op);
    if (isDotOrDotDot(name)) {
      if (dir.removed && name.length === 2) throw new FsError("ENOENT", { op, path: "..", ino: parent });
      const node = name.length === 1 ? dir : (dir.parent ?? dir);
      node.nlookup++;
      return this.entryOf(node, await this.nodeAttr(node));
    }
    const found = await this.findNode(dir, name);
    if (found === undefined) throw new FsError("ENOENT", { op, path: bytesToString(name), ino: parent });
    return this.entryOf(found.node, found.attr);
  }

  override async forget(_ctx: Context, ino: number, nlookup: number): Promise<void> {
    if (!Number.isSafeInteger(nlookup) || nlookup < 0) throw new FsError("EINVAL", { op: "forget", ino, detail: `nlookup ${String(nlookup)}` });
    const node = this.nodes.get(ino);
    if (node === undefined || ino === ROOT_INO) return;
    node.nlookup = Math.max(0, node.nlookup - nlookup);
    await this.maybeFree(node);
  }

  override async unlink(ctx: Context, parent: number, name: Uint8Array): Promise<void> {
    await this.exclusive(() => this.#remove(ctx, parent, name, false));
  }

  override async rmdir(ctx: Context, parent: number, name: Uint8Array): Promise<void> {
    await this.exclusive(() => this.#remove(ctx, parent, name, true));
  }

  override rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
    return this.exclusive(() => this.#rename(ctx, parent, name, newParent, newName, flags));
  }

  override create(ctx: Context, parent: number, name: Uint8Array, mode: number, flags: number, umask: number): Promise<CreateReply> {
    return this.exclusive(async () => {
      const op = "create";
      const dir = this.dirNode(parent, op);
      validateEntryName(name, op, "EISDIR");
      this.checkGuestName(dir, name, op);
      const attr = await this.nodeAttr(dir);
      checkAccess(attr, ctx, ACCESS.X_OK, op);
      const existing = await this.findNode(dir, name);
      if (existing === undefined) {
        this.#checkWritable(ctx, dir, attr, op);
        return this.createNew(ctx, dir, name, mode, flags, umask);
      }
      try {
        if ((flags & O.EXCL) !== 0) throw new FsError("EEXIST", { op, path: bytesToString(name), ino: parent });
        if (existing.node.isDir) throw new FsError("EISDIR", { op, path: bytesToString(name), ino: parent });
        const reply = await this.openNode(ctx, existing.node, flags, op);
        return { ...reply, entry: this.entryOf(existing.node, await this.nodeAttr(existing.node)) };
      } catch (error) {
        await this.releaseNode(existing.node, 1);
        throw error;
      }
    });
  }

  // ---- open files ----------------------------------------------------------

  override async getattr(ctx: Context, ino: number, fh?: number): Promise<Attr> {
    const node = this.node(ino, "getattr");
    if (fh === undefined || this.#files.get(fh)?.node !== node) return this.nodeAttr(node);
    const h = await this.readHandle(ino, fh, "getattr");
    return this.shownAttr(node, await h.fs.getattr(ctx, h.ino, h.fh));
  }

  override read(ctx: Context, ino: number, fh: number, size: number, offset: number): Promise<Uint8Array> {
    return Promise.resolve(mapMaybe(this.readHandle(ino, fh, "read"), (h) => h.fs.read(ctx, h.ino, h.fh, size, offset)));
  }

  /** `read` into the caller's buffer: the backend's own `readInto` where it has one, else its `read` copied. */
  readInto(ctx: Context, ino: number, fh: number, target: Uint8Array, offset: number): Promise<number> {
    if (!(target instanceof Uint8Array)) return Promise.reject(new FsError("EINVAL", { op: "readInto", ino, detail: "the target is not a Uint8Array" }));
    return Promise.resolve(
      mapMaybe(this.readHandle(ino, fh, "readInto"), (h) => {
        if (h.fs.readInto !== undefined) return h.fs.readInto(ctx, h.ino, h.fh, target, offset);
        return mapMaybe(h.fs.read(ctx, h.ino, h.fh, target.length, offset), (data) => {
          target.set(data);
          return data.length;
        });
      }),
    );
  }

  /**
   * Handle `fh` of `ino` for a read, lseek or getattr, first moved to the
   * object the node shows when it was opened on another one since copied
   * (up or across): as with Linux's overlayfs since 4.19, a handle opened
   * before a copy reads the copy after it. The caller's rights were checked
   * when it opened the file.
   */
  protected readHandle(ino: number, fh: number, op: string): MaybePromise<CompositeFile<N>> {
    const h = this.fileHandle(ino, fh, op);
    const shown = this.shownObject(h.node);
    if (h.node.isDir || (shown.fs === h.fs && shown.ino === h.ino)) return h;
    h.moving ??= this.#moveHandle(h, shown).finally(() => (h.moving = undefined));
    return h.moving.then(() => h);
  }

  async #moveHandle(h: CompositeFile<N>, to: BackendObject): Promise<void> {
    const reply = await to.fs.open(ROOT_CONTEXT, to.ino, h.flags);
    const old = { fs: h.fs, ino: h.ino, fh: h.fh };
    h.fs = to.fs;
    h.ino = to.ino;
    h.fh = reply.fh;
    await old.fs.release(ROOT_CONTEXT, old.ino, old.fh, h.flags);
  }

  override write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): Promise<number> {
    const h = this.fileHandle(ino, fh, "write");
    return Promise.resolve(h.fs.write(ctx, h.ino, h.fh, data, offset, flags));
  }

  override async flush(ctx: Context, ino: number, fh: number, lockOwner: number): Promise<void> {
    const h = this.fileHandle(ino, fh, "flush");
    await h.fs.flush(ctx, h.ino, h.fh, lockOwner);
  }

  override async fsync(ctx: Context, ino: number, fh: number, datasync: boolean): Promise<void> {
    const h = this.fileHandle(ino, fh, "fsync");
    await h.fs.fsync(ctx, h.ino, h.fh, datasync);
  }

  override async fallocate(ctx: Context, ino: number, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = this.fileHandle(ino, fh, "fallocate");
    await h.fs.fallocate(ctx, h.ino, h.fh, mode, offset, length);
  }

  override async lseek(ctx: Context, ino: number, fh: number, offset: number, whence: number): Promise<number> {
    const h = await this.readHandle(ino, fh, "lseek");
    return h.fs.lseek(ctx, h.ino, h.fh, offset, whence);
  }

  override async release(ctx: Context, ino: number, fh: number, flags: number): Promise<void> {
    const h = this.fileHandle(ino, fh, "release");
    this.#files.delete(fh);
    await h.moving;
    try {
      await h.fs.release(ctx, h.ino, h.fh, flags);
    } finally {
      h.node.opens--;
      await this.maybeFree(h.node);
    }
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
    const from = await this.readHandle(inoIn, fhIn, "copyFileRange");
    const to = this.fileHandle(inoOut, fhOut, "copyFileRange");
    if (from.fs === to.fs) return to.fs.copyFileRange(ctx, from.ino, from.fh, offsetIn, to.ino, to.fh, offsetOut, length, flags);
    // Across backends: read and write, as the kernel's fallback does.
    if (flags !== 0) throw new FsError("EINVAL", { op: "copyFileRange", detail: `flags ${flags}` });
    return copyRangeAcross(ctx, from, offsetIn, to, offsetOut, length);
  }

  // ---- directories ------------------------------------------------------

  override async opendir(ctx: Context, ino: number, flags: number): Promise<OpenReply> {
    const op = "opendir";
    const node = this.node(ino, op);
    if (!node.isDir) throw new FsError("ENOTDIR", { op, ino });
    const mask = openAccess(flags);
    if ((mask & ACCESS.W_OK) !== 0) throw new FsError("EISDIR", { op, ino });
    checkAccess(await this.nodeAttr(node), ctx, mask, op);
    const entries: MergedName[] = [
      { name: new Uint8Array([0x2e]), key: ".", ino, type: dtFromMode(S.IFDIR) },
      { name: new Uint8Array([0x2e, 0x2e]), key: "..", ino: (node.parent ?? node).ino, type: dtFromMode(S.IFDIR) },
    ];
    if (!node.removed) entries.push(...(await this.mergedNames(node, false)));
    const fh = this.#nextFh++;
    this.#dirs.set(fh, { node, entries, gone: new Set() });
    node.opens++;
    return { fh, flags: 0 };
  }

  override async readdir(_ctx: Context, ino: number, fh: number, offset: number, size: number): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    await this.#page(ino, fh, offset, size, DIRENT_HEADER, (e, cookie) => {
      out.push({ ino: e.ino, offset: cookie, type: e.type, name: e.name });
      return Promise.resolve(true);
    });
    return out;
  }

  override async readdirplus(_ctx: Context, ino: number, fh: number, offset: number, size: number): Promise<DirEntryPlus[]> {
    const out: DirEntryPlus[] = [];
    const dir = this.#dirHandle(ino, fh, "readdirplus").node;
    await this.#page(ino, fh, offset, size, DIRENTPLUS_HEADER, async (e, cookie) => {
      let entry: Entry;
      if (isDotOrDotDot(e.name)) {
        // Not counted: the kernel never forgets `.` and `..`.
        const node = e.name.length === 1 ? dir : (dir.parent ?? dir);
        entry = { ino: node.ino, generation: 0, attr: await this.nodeAttr(node) };
      } else {
        const found = await this.findNode(dir, e.name);
        if (found === undefined) return false;
        entry = this.entryOf(found.node, found.attr);
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
    await this.maybeFree(handle.node);
  }

  /** The node of an open directory handle (`EBADF` when `fh` is not one of `ino`). */
  protected dirHandleNode(ino: number, fh: number, op: string): N {
    return this.#dirHandle(ino, fh, op).node;
  }

  // ---- helpers for subclasses ------------------------------------------------

  /**
   * Runs `change` after every change queued before it. Namespace changes
   * (create, remove, rename, copies) span many backend calls and node
   * updates; one at a time, a guest racing them cannot interleave two.
   * Reads, writes through open handles and lookups stay concurrent.
   */
  protected exclusive<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(change, change);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  protected node(ino: number, op: string): N {
    const node = this.nodes.get(ino);
    if (node === undefined) throw new FsError("ENOENT", { op, ino });
    return node;
  }

  protected dirNode(ino: number, op: string): N {
    const node = this.node(ino, op);
    if (!node.isDir) throw new FsError("ENOTDIR", { op, ino });
    return node;
  }

  /** `node` as an Entry, with attributes it shows already (its lookup already counted). */
  protected entryOf(node: N, attr: Attr): Entry {
    return { ino: node.ino, generation: 0, attr };
  }

  /**
   * Attributes of a backend object as node `node` shows them: its own inode
   * number, and no links once removed. A subclass may count links its own way.
   */
  protected shownAttr(node: N, attr: Attr): Attr {
    return { ...attr, ino: node.ino, nlink: node.removed ? 0 : attr.nlink };
  }

  protected fileHandle(ino: number, fh: number, op: string): CompositeFile<N> {
    const handle = this.#files.get(fh);
    if (handle?.node.ino !== ino) throw new FsError("EBADF", { op, ino, detail: `handle ${String(fh)}` });
    return handle;
  }

  /** Registers a file opened on backend object `on` as handle `fh` there; returns this filesystem's handle. */
  protected addFile(node: N, on: BackendObject, fh: number, flags: number): number {
    const handle: CompositeFile<N> = { node, fs: on.fs, ino: on.ino, fh, flags: flags & ~OPEN_ONLY_FLAGS };
    const ours = this.#nextFh++;
    this.#files.set(ours, handle);
    node.opens++;
    return ours;
  }

  /** The inode number of the backend object with key `key`, allocated on first sight. */
  protected inoOf(key: string): number {
    let ino = this.#inoByKey.get(key);
    if (ino === undefined) {
      ino = this.#nextIno++;
      this.#inoByKey.set(key, ino);
    }
    return ino;
  }

  /** Gives the backend object with key `key` inode number `ino` (a copy keeps its original's number). */
  protected claimIno(key: string, ino: number): void {
    this.#inoByKey.set(key, ino);
  }

  /** Registers a node met for the first time under `dir`. */
  protected adopt(node: N, dir: N): void {
    this.nodes.set(node.ino, node);
    dir.children++;
  }

  /** Moves a known node under `dir` as `name` (the last name it was found by). */
  protected async relocate(node: N, dir: N, name: Uint8Array): Promise<void> {
    node.name = name;
    if (node.parent === dir) return;
    const old = node.parent;
    node.parent = dir;
    dir.children++;
    if (old !== undefined) {
      old.children--;
      await this.maybeFree(old);
    }
  }

  protected async releaseNode(node: N, count: number): Promise<void> {
    if (node.ino === ROOT_INO) return;
    node.nlookup = Math.max(0, node.nlookup - count);
    await this.maybeFree(node);
  }

  /** Drops a node nothing holds any more, and then its parent if that was its last hold. */
  protected async maybeFree(node: N): Promise<void> {
    if (node.nlookup > 0 || node.opens > 0 || node.children > 0 || node.ino === ROOT_INO || node.copying !== undefined) return;
    if (this.nodes.get(node.ino) !== node) return;
    this.nodes.delete(node.ino);
    await this.dropRefs(node);
    const parent = node.parent;
    if (parent !== undefined) {
      parent.children--;
      await this.maybeFree(parent);
    }
  }

  /** True when `node` is `dir` or one of its ancestors. */
  protected isAncestor(node: N, dir: N): boolean {
    for (let at: N | undefined = dir; at !== undefined; at = at.parent) if (at === node) return true;
    return false;
  }

  /** Names the guest never sees: whiteouts, and the staging directory at the root. */
  protected isHidden(dir: N, name: Uint8Array): boolean {
    return isWhiteoutName(name, this.#names.whiteoutPrefix) || (dir.ino === ROOT_INO && bytesEqual(name, this.#names.stagingName));
  }

  /** Refuses a new guest name in the whiteout namespace (EINVAL) or the staging name (EPERM). */
  protected checkGuestName(dir: N, name: Uint8Array, op: string): void {
    if (isWhiteoutName(name, this.#names.whiteoutPrefix)) {
      throw new FsError("EINVAL", { op, path: bytesToString(name), detail: `names starting with ${bytesToString(this.#names.whiteoutPrefix)} are reserved for whiteouts` });
    }
    if (dir.ino === ROOT_INO && bytesEqual(name, this.#names.stagingName)) {
      throw new FsError("EPERM", { op, path: bytesToString(name), detail: "reserved for the staging directory" });
    }
  }

  /**
   * The checks before a new name is made in `parent`: a directory that
   * exists, a name that is valid, free and not reserved, search and write
   * permission. Returns the directory.
   */
  protected async checkNewName(ctx: Context, parent: number, name: Uint8Array, op: string): Promise<N> {
    const dir = this.dirNode(parent, op);
    validateEntryName(name, op, "EEXIST");
    this.checkGuestName(dir, name, op);
    const attr = await this.nodeAttr(dir);
    checkAccess(attr, ctx, ACCESS.X_OK, op);
    if (dir.removed) throw new FsError("ENOENT", { op, ino: parent, detail: "the directory was removed" });
    const existing = await this.findNode(dir, name);
    if (existing !== undefined) {
      await this.releaseNode(existing.node, 1);
      throw new FsError("EEXIST", { op, path: bytesToString(name), ino: parent });
    }
    this.#checkWritable(ctx, dir, attr, op);
    return dir;
  }

  /** A new name may go in `dir` (attributes `attr`): it was not removed, and the caller may write it. */
  #checkWritable(ctx: Context, dir: N, attr: Attr, op: string): void {
    if (dir.removed) throw new FsError("ENOENT", { op, ino: dir.ino, detail: "the directory was removed" });
    checkAccess(attr, ctx, ACCESS.W_OK, op);
  }

  /** The checks an open for writing makes before the copy it would cause: not a symlink, not a directory, permitted. */
  protected checkOpenForWrite(attr: Attr, ctx: Context, mask: number, op: string): void {
    const type = attr.mode & S.IFMT;
    if (type === S.IFLNK) throw new FsError("ELOOP", { op, ino: attr.ino, detail: "a symlink" });
    if (type === S.IFDIR) throw new FsError("EISDIR", { op, ino: attr.ino });
    checkAccess(attr, ctx, mask, op);
  }

  /** Tells the open listings of `dir` that `name` went. */
  protected gone(dir: N, name: Uint8Array): void {
    if (dir.opens === 0) return;
    const key = nameKey(name);
    for (const handle of this.#dirs.values()) if (handle.node === dir) handle.gone.add(key);
  }

  /** After a rename: `node` is `name` in `dir` now. */
  protected reparent(node: N, dir: N, name: Uint8Array): void {
    if (node.parent !== dir) {
      node.parent!.children--;
      dir.children++;
      node.parent = dir;
    }
    node.name = name;
  }

  // ---- internals ------------------------------------------------------------

  /** unlink and rmdir: the checks on the merged view, then the subclass's removal. */
  async #remove(ctx: Context, parent: number, name: Uint8Array, isRmdir: boolean): Promise<void> {
    const op = isRmdir ? "rmdir" : "unlink";
    const dir = this.dirNode(parent, op);
    if (isRmdir && name.length === 2 && isDotOrDotDot(name)) throw new FsError("ENOTEMPTY", { op, path: "..", ino: parent });
    validateEntryName(name, op, isRmdir ? "EINVAL" : "EISDIR");
    const dattr = await this.nodeAttr(dir);
    checkAccess(dattr, ctx, ACCESS.X_OK, op);
    const found = await this.findNode(dir, name);
    if (found === undefined) throw new FsError("ENOENT", { op, path: bytesToString(name), ino: parent });
    const { node, attr } = found;
    try {
      const path = bytesToString(name);
      checkAccess(dattr, ctx, ACCESS.W_OK, op);
      if (!stickyAllows(dattr, attr, ctx)) throw new FsError("EPERM", { op, path, ino: parent, detail: "sticky directory" });
      if (!isRmdir && node.isDir) throw new FsError("EISDIR", { op, path, ino: parent });
      if (isRmdir && !node.isDir) throw new FsError("ENOTDIR", { op, path, ino: parent });
      if (isRmdir && (await this.mergedNames(node, true)).length > 0) throw new FsError("ENOTEMPTY", { op, path, ino: parent });
      await this.removeChecked(ctx, dir, name, node, attr, isRmdir);
      if (isRmdir) node.removed = true;
      this.gone(dir, name);
    } finally {
      await this.releaseNode(node, 1);
    }
  }

  /** rename: the flags, then the kernel's checks on the merged view, then the subclass's move. */
  async #rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
    const op = "rename";
    if (!Number.isInteger(flags) || flags < 0 || (flags & ~RENAME_FLAGS) !== 0) throw new FsError("EINVAL", { op, detail: `flags ${String(flags)}` });
    const exchange = (flags & RENAME.EXCHANGE) !== 0;
    if (exchange && (flags & (RENAME.NOREPLACE | RENAME.WHITEOUT)) !== 0) throw new FsError("EINVAL", { op, detail: "RENAME_EXCHANGE with other flags" });
    if ((flags & RENAME.WHITEOUT) !== 0 && ctx.uid !== 0) throw new FsError("EPERM", { op, detail: "RENAME_WHITEOUT needs root" });
    const sdir = this.dirNode(parent, op);
    const ddir = this.dirNode(newParent, op);
    validateEntryName(name, op, "EBUSY");
    validateEntryName(newName, op, (flags & RENAME.NOREPLACE) !== 0 ? "EEXIST" : "EBUSY");
    const path = bytesToString(name);
    const dest = bytesToString(newName);
    this.checkGuestName(ddir, newName, op);
    const sattr = await this.nodeAttr(sdir);
    const dattr = ddir === sdir ? sattr : await this.nodeAttr(ddir);
    checkAccess(sattr, ctx, ACCESS.X_OK, op);
    checkAccess(dattr, ctx, ACCESS.X_OK, op);
    const src = await this.findNode(sdir, name);
    if (src === undefined) throw new FsError("ENOENT", { op, path, ino: parent });
    const dst = await this.findNode(ddir, newName);
    try {
      if (dst !== undefined && (flags & RENAME.NOREPLACE) !== 0) throw new FsError("EEXIST", { op, path, dest });
      if (dst === undefined && exchange) throw new FsError("ENOENT", { op, path, dest });
      if (ddir.removed) throw new FsError("ENOENT", { op, path, dest, detail: "the directory was removed" });
      if (src.node.isDir && this.isAncestor(src.node, ddir)) throw new FsError("EINVAL", { op, path, dest, detail: "into its own subtree" });
      if (dst?.node.isDir === true && this.isAncestor(dst.node, sdir)) throw new FsError(exchange ? "EINVAL" : "ENOTEMPTY", { op, path, dest });
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
      if (!exchange && dst?.node.isDir === true && (await this.mergedNames(dst.node, true)).length > 0) throw new FsError("ENOTEMPTY", { op, path, dest });
      await this.renameChecked(ctx, sdir, name, src.node, ddir, newName, dst, flags);
      this.reparent(src.node, ddir, newName);
      if (exchange) this.reparent(dst!.node, sdir, name);
      else if (dst?.node.isDir === true) dst.node.removed = true;
      if (!exchange) this.gone(sdir, name);
    } finally {
      await this.releaseNode(src.node, 1);
      if (dst !== undefined) await this.releaseNode(dst.node, 1);
    }
  }

  #dirHandle(ino: number, fh: number, op: string): DirHandle<N> {
    const handle = this.#dirs.get(fh);
    if (handle?.node.ino !== ino) throw new FsError("EBADF", { op, ino, detail: `handle ${String(fh)}` });
    return handle;
  }

  /**
   * Calls `add` for the entries of an open listing from cookie `offset`, as
   * many as fit in `size` bytes of dirents of `header` bytes each; `add`
   * answers false to skip one (a name gone since opendir).
   */
  async #page(ino: number, fh: number, offset: number, size: number, header: number, add: (e: MergedName, cookie: number) => Promise<boolean>): Promise<void> {
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
}
