import {
  ACCESS,
  bytesToString,
  checkAccess,
  checkXattrAccess,
  checkXattrValue,
  CompositeFs,
  CompositeNode,
  copyObject,
  discardCopy,
  DT,
  ensureMarker,
  FsError,
  hasEntry,
  isDirectory,
  isNoEntry,
  isWhiteoutName,
  listEntries,
  lookupIfExists,
  nameKey,
  nowTimespec,
  O,
  openAccess,
  PathFs,
  RENAME,
  planSetattr,
  ROOT_CONTEXT,
  ROOT_INO,
  S,
  SetattrValid,
  whiteoutOf,
  xattrNamespace,
  type Attr,
  type CachePolicy,
  type BackendObject,
  type Context,
  type CreateReply,
  type DirEntry,
  type DynFileSystem,
  type Entry,
  type MaybePromise,
  type MergedName,
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

/**
 * A DualFs inode: the object on each backend it is made of (one lookup held
 * on each). A non-directory lives on one backend; a directory may exist on
 * both, and then lists and looks up names in both.
 */
class Node extends CompositeNode {
  readonly objs: [number | undefined, number | undefined] = [undefined, undefined];

  constructor(
    ino: number,
    isDir: boolean,
    /** The backend whose object shows: attributes, data, link target, xattrs. */
    public home: Side,
    parent: Node | undefined,
    name: Uint8Array,
  ) {
    super(ino, isDir, parent, name);
  }

  get homeIno(): number {
    return this.objs[this.home]!;
  }
}

/** One entry of a merged listing and the backend whose entry shows. */
interface SideEntry extends MergedName {
  readonly side: Side;
  readonly entry: DirEntry;
}

const objKey = (side: Side, ino: number): string => `${side}:${ino}`;

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
export class DualFs extends CompositeFs<Node> {
  readonly #backends: readonly [DynFileSystem, DynFileSystem];
  readonly #policy: DualPolicyFunction;
  /** A built-in policy's answers, which do not depend on the path: no path is built for them. */
  readonly #fixed: Readonly<Record<DualOperationKind, readonly Side[]>> | undefined;
  readonly #stagingName: Uint8Array;
  readonly #cache: CachePolicy;
  /** Each backend's staging directory, made on its first copy. */
  readonly #staging: [Promise<number> | undefined, Promise<number> | undefined] = [undefined, undefined];
  /** Objects with several names already copied across (`side:ino` → the copy on the other side), so their other names link to the copy. */
  readonly #copied = new Map<string, number>();
  #nextTemp = 1;

  constructor(options: DualFsOptions) {
    const resolved = resolveDualOptions(options);
    super({ whiteoutPrefix: DUAL_WHITEOUT_PREFIX, stagingName: resolved.staging });
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
    this.nodes.set(ROOT_INO, root);
    this.claimIno(objKey(0, ROOT_INO), ROOT_INO);
    this.claimIno(objKey(1, ROOT_INO), ROOT_INO);
  }

  /** Destroys both backends. */
  override async destroy(): Promise<void> {
    await this.#backends[0].destroy();
    await this.#backends[1].destroy();
  }

  // ---- attributes and names ------------------------------------------------

  override async setattr(ctx: Context, ino: number, req: SetattrRequest): Promise<Attr> {
    const op = "setattr";
    const node = this.node(ino, op);
    if (typeof req !== "object" || (req as unknown) === null || !Number.isInteger(req.valid)) throw new FsError("EINVAL", { op, ino, detail: "malformed request" });
    const side = this.#target("write", node);
    let sideReq = req;
    if ((req.valid & SetattrValid.FH) !== 0) {
      const handle = this.fileHandle(ino, req.fh, op);
      sideReq = handle.fs === this.#backends[side] && node.home === side ? { ...req, fh: handle.fh } : { ...req, valid: req.valid & ~SetattrValid.FH };
    }
    if (!this.#livesOn(node, side)) {
      // The caller's rights are checked before the copy they would cause.
      planSetattr(await this.nodeAttr(node), ctx, sideReq, { now: nowTimespec() });
      await this.exclusive(() => this.#copyAcross(node, side));
    }
    return this.shownAttr(node, await this.#backends[side].setattr(ctx, node.objs[side]!, sideReq));
  }

  override async readlink(ctx: Context, ino: number): Promise<Uint8Array> {
    const node = this.node(ino, "readlink");
    return this.#backends[node.home].readlink(ctx, node.homeIno);
  }

  override symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Promise<Entry> {
    return this.exclusive(async () => this.#make(await this.checkNewName(ctx, parent, name, "symlink"), name, (fs, dir) => fs.symlink(ctx, target, dir, name)));
  }

  override mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<Entry> {
    return this.exclusive(async () => this.#make(await this.checkNewName(ctx, parent, name, "mknod"), name, (fs, dir) => fs.mknod(ctx, dir, name, mode, rdev, umask)));
  }

  override mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Promise<Entry> {
    return this.exclusive(async () => this.#make(await this.checkNewName(ctx, parent, name, "mkdir"), name, (fs, dir) => fs.mkdir(ctx, dir, name, mode, umask)));
  }

  override link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Promise<Entry> {
    const node = this.node(ino, "link");
    if (node.isDir) throw new FsError("EPERM", { op: "link", ino, detail: "hard link to a directory" });
    return this.exclusive(async () =>
      this.#make(await this.checkNewName(ctx, newParent, newName, "link"), newName, async (fs, dir, side) => {
        this.#checkSameSide(node, side, "link", newName);
        await this.#copyAcross(node, side);
        return fs.link(ctx, node.objs[side]!, dir, newName);
      }),
    );
  }

  // ---- files ------------------------------------------------------------

  override open(ctx: Context, ino: number, flags: number): Promise<OpenReply> {
    const node = this.node(ino, "open");
    // Only an open that copies across changes the namespace.
    if ((openAccess(flags) & ACCESS.W_OK) !== 0 && !this.#livesOn(node, this.#target("write", node))) {
      return this.exclusive(() => this.openNode(ctx, node, flags, "open"));
    }
    return this.openNode(ctx, node, flags, "open");
  }

  override async statfs(ctx: Context, _ino: number): Promise<StatFs> {
    return this.#backends[this.#target("write", this.node(ROOT_INO, "statfs"))].statfs(ctx, ROOT_INO);
  }

  protected override async openNode(ctx: Context, node: Node, flags: number, op: string): Promise<OpenReply> {
    if (!Number.isInteger(flags)) throw new FsError("EINVAL", { op, ino: node.ino, detail: `flags ${String(flags)}` });
    const mask = openAccess(flags);
    if ((mask & ACCESS.W_OK) !== 0) {
      const side = this.#target("write", node);
      if (!this.#livesOn(node, side)) {
        this.checkOpenForWrite(await this.nodeAttr(node), ctx, mask, op);
        await this.#copyAcross(node, side, (flags & O.TRUNC) !== 0);
      }
    }
    const reply = await this.#backends[node.home].open(ctx, node.homeIno, flags);
    return { fh: this.addFile(node, this.shownObject(node), reply.fh, flags), flags: reply.flags };
  }

  protected override async createNew(ctx: Context, dir: Node, name: Uint8Array, mode: number, flags: number, umask: number): Promise<CreateReply> {
    let created: CreateReply | undefined;
    const entry = await this.#make(dir, name, async (fs, dirIno) => {
      created = await fs.create(ctx, dirIno, name, mode, flags, umask);
      return created.entry;
    });
    const node = this.node(entry.ino, "create");
    return { entry, fh: this.addFile(node, this.shownObject(node), created!.fh, flags), flags: created!.flags };
  }

  protected override shownObject(node: Node): BackendObject {
    return { fs: this.#backends[node.home], ino: node.homeIno };
  }

  // ---- xattrs -----------------------------------------------------------

  override async setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): Promise<void> {
    const op = "setxattr";
    const node = this.node(ino, op);
    if (!(name instanceof Uint8Array) || !(value instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name or value is not bytes" });
    const side = await this.#prepareChange(node, async () => {
      checkXattrValue(value, op);
      checkXattrAccess(await this.nodeAttr(node), ctx, xattrNamespace(name, op), true, op);
    });
    await this.#backends[side].setxattr(ctx, node.objs[side]!, name, value, flags);
  }

  override async getxattr(ctx: Context, ino: number, name: Uint8Array): Promise<Uint8Array> {
    const node = this.node(ino, "getxattr");
    return this.#backends[node.home].getxattr(ctx, node.homeIno, name);
  }

  override async listxattr(ctx: Context, ino: number): Promise<Uint8Array[]> {
    const node = this.node(ino, "listxattr");
    return this.#backends[node.home].listxattr(ctx, node.homeIno);
  }

  override async removexattr(ctx: Context, ino: number, name: Uint8Array): Promise<void> {
    const op = "removexattr";
    const node = this.node(ino, op);
    if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name is not bytes" });
    const side = await this.#prepareChange(node, async () => {
      // Refuses what the caller may not do, and ENODATA, before any copy.
      await this.#backends[node.home].getxattr(ctx, node.homeIno, name);
      checkXattrAccess(await this.nodeAttr(node), ctx, xattrNamespace(name, op), true, op);
    });
    await this.#backends[side].removexattr(ctx, node.objs[side]!, name);
  }

  /** The backend a change to `node` goes to, after `check` and the copy across it may need. */
  async #prepareChange(node: Node, check: () => Promise<void>): Promise<Side> {
    const side = this.#target("write", node);
    if (!this.#livesOn(node, side)) {
      await check();
      await this.exclusive(() => this.#copyAcross(node, side));
    }
    return side;
  }

  // ---- directories ------------------------------------------------------

  override async fsyncdir(ctx: Context, ino: number, fh: number, datasync: boolean): Promise<void> {
    const node = this.dirHandleNode(ino, fh, "fsyncdir");
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
    const node = this.node(ino, "access");
    if (node.home === this.#target("write", node)) {
      await this.#backends[node.home].access(ctx, node.homeIno, mask);
      return;
    }
    // An object on the backend that takes no changes is writable as far as its mode goes (a write copies it across).
    if (!Number.isInteger(mask) || (mask & ~(ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK)) !== 0) {
      throw new FsError("EINVAL", { op: "access", ino, detail: `mask ${String(mask)}` });
    }
    checkAccess(await this.nodeAttr(node), ctx, mask, "access");
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

  protected override async nodeAttr(node: Node): Promise<Attr> {
    return this.shownAttr(node, await this.#backends[node.home].getattr(ROOT_CONTEXT, node.homeIno));
  }

  /** The DualFs inode number of a backend object, allocated on first sight. */
  #inoFor(side: Side, ino: number): number {
    return this.inoOf(objKey(side, ino));
  }

  /** True when a whiteout in the other backend's copy of `dir` hides `name` of `side`. */
  async #whitedOut(dir: Node, side: Side, name: Uint8Array): Promise<boolean> {
    const otherDir = dir.objs[other(side)];
    const whiteout = whiteoutOf(name, DUAL_WHITEOUT_PREFIX);
    return otherDir !== undefined && whiteout !== undefined && hasEntry(this.#backends[other(side)], otherDir, whiteout);
  }

  /** Finds `name` in `dir` on the backends the policy names, in its order. */
  protected override async lookupNode(dir: Node, name: Uint8Array): Promise<{ node: Node; attr: Attr } | undefined> {
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
    let node = this.nodes.get(ino);
    if (node !== undefined) {
      for (const f of found) await this.#backends[f.side].forget(ROOT_CONTEXT, f.entry.ino, 1);
      await this.relocate(node, dir, name);
    } else {
      const isDir = isDirectory(top.entry.attr.mode);
      node = new Node(ino, isDir, top.side, dir, name);
      for (const f of found) {
        node.objs[f.side] = f.entry.ino;
        this.claimIno(objKey(f.side, f.entry.ino), ino);
      }
      if (isDir) {
        const writeSide = this.#target("write", dir, name);
        if (node.objs[writeSide] !== undefined) node.home = writeSide;
      }
      this.adopt(node, dir);
    }
    node.nlookup++;
    if (!node.isDir && node.home !== top.side) {
      // Another name of an object already copied across: link this name to the copy too.
      await this.#linkAcross(dir, name, node.homeIno, node.home);
    } else if (!node.isDir) {
      const copy = this.#copied.get(objKey(top.side, top.entry.ino));
      if (copy !== undefined) await this.#linkAcross(dir, name, copy, other(top.side), node);
    }
    // The lookup's own attributes serve unless the node shows another object (a copy, or a directory's write side).
    const shown = node.home === top.side && node.homeIno === top.entry.ino;
    return { node, attr: shown ? this.shownAttr(node, top.entry.attr) : await this.nodeAttr(node) };
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
    this.claimIno(objKey(side, entry.ino), node.ino);
    await this.#dropSide(node, old);
  }

  protected override async dropRefs(node: Node): Promise<void> {
    await this.#dropSide(node, 0);
    await this.#dropSide(node, 1);
  }

  /** Gives back the lookup `node` holds on `side`. */
  async #dropSide(node: Node, side: Side): Promise<void> {
    const ino = node.objs[side];
    if (ino === undefined) return;
    node.objs[side] = undefined;
    await this.#backends[side].forget(ROOT_CONTEXT, ino, 1);
  }

  // ---- internals: directories --------------------------------------------

  protected override async mergedNames(node: Node, all: boolean): Promise<MergedName[]> {
    return this.#merged(node, all ? "lookup" : "readdir");
  }

  /**
   * The visible entries of directory `node`: for `readdir`, those of the
   * backends the policy lists; for `lookup`, those of every backend the
   * directory is on (what lookups can reach). Without `.`, `..`, whiteouts,
   * what they hide, and the staging directories.
   */
  async #merged(node: Node, kind: "readdir" | "lookup"): Promise<SideEntry[]> {
    const listed: (DirEntry[] | undefined)[] = [undefined, undefined];
    const whiteouts: [Set<string>, Set<string>] = [new Set(), new Set()];
    for (const side of [0, 1] as const) {
      const dirIno = node.objs[side];
      if (dirIno === undefined) continue;
      const entries = await listEntries(this.#backends[side], dirIno);
      listed[side] = entries;
      for (const e of entries) if (isWhiteoutName(e.name, DUAL_WHITEOUT_PREFIX)) whiteouts[side].add(nameKey(e.name.subarray(DUAL_WHITEOUT_PREFIX.length)));
    }
    const seen = new Set<string>();
    const out: SideEntry[] = [];
    for (const side of this.#order(kind, node)) {
      for (const e of listed[side] ?? []) {
        if (this.isHidden(node, e.name)) continue;
        const key = nameKey(e.name);
        if (seen.has(key) || whiteouts[other(side)].has(key)) continue;
        seen.add(key);
        out.push({ name: e.name, key, ino: this.#inoFor(side, e.ino), type: e.type, side, entry: e });
      }
    }
    return out;
  }

  // ---- internals: changes -------------------------------------------------

  /**
   * Creates a name in `dir` (the checks a new name needs passed) with `make`,
   * given the backend the policy creates in and the directory there, after
   * the directory's copy to that backend.
   */
  async #make(dir: Node, name: Uint8Array, make: (fs: DynFileSystem, dirIno: number, side: Side) => MaybePromise<Entry>): Promise<Entry> {
    const side = this.#target("create", dir, name);
    await this.#ensureDir(dir, side);
    const made = await make(this.#backends[side], dir.objs[side]!, side);
    const ino = this.#inoFor(side, made.ino);
    let node = this.nodes.get(ino);
    if (node === undefined) {
      node = new Node(ino, isDirectory(made.attr.mode), side, dir, name);
      node.objs[side] = made.ino;
      this.adopt(node, dir);
    } else {
      // A new name of a node DualFs knows (link): its lookup on the backend is held once already.
      await this.#backends[side].forget(ROOT_CONTEXT, made.ino, 1);
    }
    node.nlookup++;
    return this.entryOf(node, made.attr);
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

  /** The removal itself: the whiteout that hides the other backend's entry, then the entry on the backend that takes the change. */
  protected override async removeChecked(ctx: Context, dir: Node, name: Uint8Array, node: Node, _attr: Attr, isRmdir: boolean): Promise<void> {
    const side = this.#target("write", dir, name);
    // The whiteout comes first: until the removal the name's own object still shows.
    await this.#hideOther(dir, name, side);
    const objIno = node.objs[side];
    if (objIno === undefined) return;
    const fs = this.#backends[side];
    if (isRmdir) {
      // Whiteouts inside a directory that is empty in the merged view would keep the backend's rmdir from working.
      await this.#clearWhiteouts(side, objIno);
      await fs.rmdir(ctx, dir.objs[side]!, name);
    } else {
      await fs.unlink(ctx, dir.objs[side]!, name);
    }
  }

  /** Removes every whiteout from directory `ino` of `side`. */
  async #clearWhiteouts(side: Side, ino: number): Promise<void> {
    const fs = this.#backends[side];
    for (const e of await listEntries(fs, ino)) if (isWhiteoutName(e.name, DUAL_WHITEOUT_PREFIX)) await fs.unlink(ROOT_CONTEXT, ino, e.name);
  }

  /** The rename itself: everything involved copied to the backend the destination is created on, renamed there, then whiteouts. */
  protected override async renameChecked(
    ctx: Context,
    sdir: Node,
    name: Uint8Array,
    src: Node,
    ddir: Node,
    newName: Uint8Array,
    replaced: { readonly node: Node } | undefined,
    flags: number,
  ): Promise<void> {
    const dst = replaced?.node;
    const exchange = (flags & RENAME.EXCHANGE) !== 0;
    const side = this.#target("create", ddir, newName);
    this.#checkSameSide(src, side, "rename", newName);
    if (exchange) this.#checkSameSide(dst!, side, "rename", name);
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
  }

  /** Gives back what `node` and every known node below it hold on `side`. */
  async #dropSubtree(node: Node, side: Side): Promise<void> {
    const below = [...this.nodes.values()].filter((n) => this.isAncestor(node, n));
    for (const n of below) await this.#dropSide(n, side);
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
      const child = await this.lookupNode(node, e.name);
      if (child === undefined) continue;
      try {
        await this.#copyTree(child.node, side);
      } finally {
        await this.releaseNode(child.node, 1);
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
      void this.maybeFree(node);
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
    node.home = side;
    this.claimIno(objKey(side, entry.ino), node.ino);
    if (node.isDir) return;
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
