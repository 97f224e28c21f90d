import {
  ACCESS,
  bytesEqual,
  bytesToString,
  checkAccess,
  checkXattrAccess,
  checkXattrValue,
  CompositeFs,
  CompositeNode,
  copyObject,
  discardCopy,
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
  OPAQUE_MARKER,
  openAccess,
  PathFs,
  planSetattr,
  RENAME,
  ROOT_CONTEXT,
  ROOT_INO,
  S,
  SetattrValid,
  WHITEOUT_PREFIX,
  whiteoutOf,
  xattrNamespace,
  type Attr,
  type BackendObject,
  type CachePolicy,
  type Context,
  type CreateReply,
  type DynFileSystem,
  type Entry,
  type MaybePromise,
  type MergedName,
  type OpenReply,
  type SetattrRequest,
  type StatFs,
} from "@msb/fs";
import { resolveOptions, type OverlayFsOptions } from "./options.js";

const UPPER = 0;

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

/** One merged directory entry and the layer object that shows. */
interface MergedEntry extends MergedName {
  readonly top: LayerRef;
}

/**
 * An overlay inode. It holds one lookup of each layer object it refers to,
 * given back when it goes (no kernel lookup, handle or live child left).
 */
class Node extends CompositeNode {
  /** The upper object, once there is one (created there or copied up). */
  upper: number | undefined;
  /** Directories: the lower directories merged below, top first. Others: the lower object while not copied up. */
  lowers: LayerRef[];
  /** A non-directory that is a lower inode with several names: that inode's `layer:ino`, its key in the overlay's hard-link table. */
  linkKey: string | undefined;

  constructor(ino: number, isDir: boolean, refs: LayerRef[], parent: Node | undefined, name: Uint8Array) {
    super(ino, isDir, parent, name);
    this.upper = refs[0]?.layer === UPPER ? refs[0].ino : undefined;
    this.lowers = refs[0]?.layer === UPPER ? refs.slice(1) : refs;
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

const refKey = (ref: LayerRef): string => `${ref.layer}:${ref.ino}`;

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
export class OverlayFs extends CompositeFs<Node> {
  readonly #layers: readonly DynFileSystem[];
  readonly #upper: DynFileSystem;
  readonly #stagingName: Uint8Array;
  readonly #cache: CachePolicy;
  #staging = 0;
  /** Lower inodes with several names the overlay changed, by `layer:ino`: other names are linked to their copy as they are found. */
  readonly #linkedLowers = new Map<string, LinkedLower>();
  /** The keys of {@link OverlayFs.#linkedLowers} by upper copy. */
  readonly #linkedByCopy = new Map<number, string>();
  #nextTemp = 1;

  constructor(options: OverlayFsOptions) {
    const resolved = resolveOptions(options);
    super({ whiteoutPrefix: WHITEOUT_PREFIX, stagingName: resolved.staging });
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
    const entry = await this.#upper.mkdir(ROOT_CONTEXT, ROOT_INO, this.#stagingName, S.IFDIR | 0o700, 0);
    this.#staging = entry.ino;
    const refs: LayerRef[] = [];
    for (let layer = 0; layer < this.#layers.length; layer++) {
      refs.push({ layer, ino: ROOT_INO });
      if (await hasEntry(this.#layers[layer]!, ROOT_INO, OPAQUE_MARKER)) break;
    }
    const root = new Node(ROOT_INO, true, refs, undefined, new Uint8Array(0));
    root.nlookup = 1;
    this.nodes.set(ROOT_INO, root);
    this.claimIno(refKey({ layer: UPPER, ino: ROOT_INO }), ROOT_INO);
  }

  /** Destroys every layer. */
  override async destroy(): Promise<void> {
    for (const layer of this.#layers) await layer.destroy();
  }

  // ---- attributes and names ------------------------------------------------

  override async setattr(ctx: Context, ino: number, req: SetattrRequest): Promise<Attr> {
    const op = "setattr";
    const node = this.node(ino, op);
    if (typeof req !== "object" || (req as unknown) === null || !Number.isInteger(req.valid)) throw new FsError("EINVAL", { op, ino, detail: "malformed request" });
    let layerReq = req;
    if ((req.valid & SetattrValid.FH) !== 0) {
      const handle = this.fileHandle(ino, req.fh, op);
      layerReq = handle.fs === this.#upper ? { ...req, fh: handle.fh } : { ...req, valid: req.valid & ~SetattrValid.FH };
    }
    // The caller's rights are checked before the copy-up it would cause.
    if (node.upper === undefined) planSetattr(await this.nodeAttr(node), ctx, layerReq, { now: nowTimespec() });
    await this.exclusive(() => this.#copyUp(node));
    return this.shownAttr(node, await this.#upper.setattr(ctx, node.upper!, layerReq));
  }

  override async readlink(ctx: Context, ino: number): Promise<Uint8Array> {
    const top = this.node(ino, "readlink").top;
    return this.#layers[top.layer]!.readlink(ctx, top.ino);
  }

  override symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Promise<Entry> {
    return this.exclusive(async () => this.#make(await this.checkNewName(ctx, parent, name, "symlink"), name, (dir) => this.#upper.symlink(ctx, target, dir, name)));
  }

  override mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<Entry> {
    return this.exclusive(async () => this.#make(await this.checkNewName(ctx, parent, name, "mknod"), name, (dir) => this.#upper.mknod(ctx, dir, name, mode, rdev, umask)));
  }

  override mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Promise<Entry> {
    return this.exclusive(async () => this.#make(await this.checkNewName(ctx, parent, name, "mkdir"), name, (dir) => this.#upper.mkdir(ctx, dir, name, mode, umask)));
  }

  override link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Promise<Entry> {
    const node = this.node(ino, "link");
    if (node.isDir) throw new FsError("EPERM", { op: "link", ino, detail: "hard link to a directory" });
    return this.exclusive(async () =>
      this.#make(await this.checkNewName(ctx, newParent, newName, "link"), newName, async (dir) => {
        await this.#copyUp(node);
        return this.#upper.link(ctx, node.upper!, dir, newName);
      }),
    );
  }

  // ---- files ------------------------------------------------------------

  override open(ctx: Context, ino: number, flags: number): Promise<OpenReply> {
    const node = this.node(ino, "open");
    // Only an open that copies up changes the namespace.
    if (node.upper === undefined && (openAccess(flags) & ACCESS.W_OK) !== 0) return this.exclusive(() => this.openNode(ctx, node, flags, "open"));
    return this.openNode(ctx, node, flags, "open");
  }

  override async statfs(ctx: Context, _ino: number): Promise<StatFs> {
    return this.#upper.statfs(ctx, ROOT_INO);
  }

  protected override async openNode(ctx: Context, node: Node, flags: number, op: string): Promise<OpenReply> {
    if (!Number.isInteger(flags)) throw new FsError("EINVAL", { op, ino: node.ino, detail: `flags ${String(flags)}` });
    const mask = openAccess(flags);
    if (node.upper === undefined && (mask & ACCESS.W_OK) !== 0) {
      this.checkOpenForWrite(await this.nodeAttr(node), ctx, mask, op);
      await this.#copyUp(node, (flags & O.TRUNC) !== 0);
    }
    const shown = this.shownObject(node);
    const reply = await shown.fs.open(ctx, shown.ino, flags);
    return { fh: this.addFile(node, shown, reply.fh, flags), flags: reply.flags };
  }

  protected override async createNew(ctx: Context, dir: Node, name: Uint8Array, mode: number, flags: number, umask: number): Promise<CreateReply> {
    let created: CreateReply | undefined;
    const entry = await this.#make(dir, name, async (upperDir) => {
      created = await this.#upper.create(ctx, upperDir, name, mode, flags, umask);
      return created.entry;
    });
    const node = this.node(entry.ino, "create");
    return { entry, fh: this.addFile(node, this.shownObject(node), created!.fh, flags), flags: created!.flags };
  }

  protected override shownObject(node: Node): BackendObject {
    const top = node.top;
    return { fs: this.#layers[top.layer]!, ino: top.ino };
  }

  // ---- xattrs -----------------------------------------------------------

  override async setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): Promise<void> {
    const op = "setxattr";
    const node = this.node(ino, op);
    if (!(name instanceof Uint8Array) || !(value instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name or value is not bytes" });
    if (node.upper === undefined) {
      checkXattrValue(value, op);
      checkXattrAccess(await this.nodeAttr(node), ctx, xattrNamespace(name, op), true, op);
    }
    await this.exclusive(() => this.#copyUp(node));
    await this.#upper.setxattr(ctx, node.upper!, name, value, flags);
  }

  override async getxattr(ctx: Context, ino: number, name: Uint8Array): Promise<Uint8Array> {
    const top = this.node(ino, "getxattr").top;
    return this.#layers[top.layer]!.getxattr(ctx, top.ino, name);
  }

  override async listxattr(ctx: Context, ino: number): Promise<Uint8Array[]> {
    const top = this.node(ino, "listxattr").top;
    return this.#layers[top.layer]!.listxattr(ctx, top.ino);
  }

  override async removexattr(ctx: Context, ino: number, name: Uint8Array): Promise<void> {
    const op = "removexattr";
    const node = this.node(ino, op);
    if (!(name instanceof Uint8Array)) throw new FsError("EINVAL", { op, ino, detail: "name is not bytes" });
    if (node.upper === undefined) {
      const top = node.top;
      // Refuses what the caller may not do, and ENODATA, before any copy-up.
      await this.#layers[top.layer]!.getxattr(ctx, top.ino, name);
      checkXattrAccess(await this.nodeAttr(node), ctx, xattrNamespace(name, op), true, op);
    }
    await this.exclusive(() => this.#copyUp(node));
    await this.#upper.removexattr(ctx, node.upper!, name);
  }

  // ---- directories ------------------------------------------------------

  override async fsyncdir(ctx: Context, ino: number, fh: number, datasync: boolean): Promise<void> {
    const node = this.dirHandleNode(ino, fh, "fsyncdir");
    // Only the upper changes; a lower-only directory has nothing to make durable.
    if (node.upper === undefined || node.removed) return;
    const upperDir = await this.#upper.opendir(ROOT_CONTEXT, node.upper, O.RDONLY | O.DIRECTORY);
    try {
      await this.#upper.fsyncdir(ctx, node.upper, upperDir.fh, datasync);
    } finally {
      await this.#upper.releasedir(ROOT_CONTEXT, node.upper, upperDir.fh, O.RDONLY);
    }
  }

  override async access(ctx: Context, ino: number, mask: number): Promise<void> {
    const node = this.node(ino, "access");
    if (node.upper !== undefined) {
      await this.#upper.access(ctx, node.upper, mask);
      return;
    }
    // A lower object is writable as far as its mode goes (a write copies it up), even on a read-only lower.
    if (!Number.isInteger(mask) || (mask & ~(ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK)) !== 0) {
      throw new FsError("EINVAL", { op: "access", ino, detail: `mask ${String(mask)}` });
    }
    checkAccess(await this.nodeAttr(node), ctx, mask, "access");
  }

  // ---- internals: nodes ---------------------------------------------------

  protected override async nodeAttr(node: Node): Promise<Attr> {
    const top = node.top;
    return this.shownAttr(node, await this.#layers[top.layer]!.getattr(ROOT_CONTEXT, top.ino));
  }

  /**
   * The attributes of layer object `attr` as `node` shows them: its overlay
   * inode number, and a link count that is 0 for a removed directory and
   * counts the lower names of a hard-linked lower inode. A merged directory
   * shows its top layer's count (see the README).
   */
  protected override shownAttr(node: Node, attr: Attr): Attr {
    let nlink = node.removed ? 0 : attr.nlink;
    const linked = node.linkKey === undefined ? undefined : this.#linkedLowers.get(node.linkKey);
    if (linked !== undefined) nlink = (node.upper !== undefined ? attr.nlink : 0) + linked.lowerNames;
    return { ...attr, ino: node.ino, nlink };
  }

  /** The overlay inode number of a layer object, allocated on first sight. */
  #inoFor(ref: LayerRef): number {
    return this.inoOf(refKey(ref));
  }

  /**
   * Finds `name` in `dir` across the layers and counts one lookup of its
   * node (the caller gives it back), with the attributes it shows, or
   * `undefined` when it does not exist.
   */
  protected override async lookupNode(dir: Node, name: Uint8Array): Promise<{ node: Node; attr: Attr } | undefined> {
    const found = await this.#resolve(dir, name);
    if (found === undefined) return undefined;
    const top = found.refs[0]!;
    const ino = this.#inoFor(top);
    let node = this.nodes.get(ino);
    if (node !== undefined) {
      await this.#forgetRefs(found.refs);
      await this.relocate(node, dir, name);
    } else {
      node = new Node(ino, isDirectory(found.attr.mode), found.refs, dir, name);
      if (!node.isDir) node.linkKey = top.layer === UPPER ? this.#linkedByCopy.get(top.ino) : found.attr.nlink > 1 ? refKey(top) : undefined;
      this.adopt(node, dir);
    }
    node.nlookup++;
    if (!node.isDir && top.layer !== UPPER) {
      // Another name of a lower inode already copied up: link this name to the copy too.
      const linked = node.linkKey === undefined ? undefined : this.#linkedLowers.get(node.linkKey);
      if (linked?.copy !== undefined) await this.#linkUp(node, dir, name, linked);
    }
    return { node, attr: node.upper !== undefined ? await this.nodeAttr(node) : this.shownAttr(node, found.attr) };
  }

  async #linkUp(node: Node, dir: Node, name: Uint8Array, linked: LinkedLower): Promise<void> {
    await this.#copyUp(dir);
    const entry = await this.#linkCopy(node.linkKey!, linked, dir.upper!, name);
    linked.lowerNames--;
    if (node.upper === undefined) {
      node.upper = entry.ino;
      this.claimIno(refKey({ layer: UPPER, ino: entry.ino }), node.ino);
      await this.#forgetRefs(node.lowers);
      node.lowers = [];
    } else {
      await this.#upper.forget(ROOT_CONTEXT, entry.ino, 1);
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
        const hit = await lookupIfExists(fs, layerDir.ino, name);
        if (hit !== undefined) {
          const ref = { layer: layerDir.layer, ino: hit.ino };
          const hitIsDir = isDirectory(hit.attr.mode);
          if (attr === undefined) {
            attr = hit.attr;
            refs.push(ref);
            if (!hitIsDir) break;
          } else if (!hitIsDir) {
            // A non-directory below a directory ends the merge.
            await fs.forget(ROOT_CONTEXT, hit.ino, 1);
            break;
          } else {
            refs.push(ref);
          }
          if (isLast || (await hasEntry(fs, hit.ino, OPAQUE_MARKER))) break;
        }
        if (isLast || (whiteout !== undefined && (await hasEntry(fs, layerDir.ino, whiteout)))) break;
      }
    } catch (error) {
      await this.#forgetRefs(refs);
      throw error;
    }
    return attr === undefined ? undefined : { refs, attr };
  }

  /** True when a lower layer of `dir` shows `name`, so removing it from the overlay needs a whiteout. */
  async #lowerHas(dir: Node, name: Uint8Array): Promise<boolean> {
    const whiteout = whiteoutOf(name);
    for (const ref of dir.lowers) {
      if (await hasEntry(this.#layers[ref.layer]!, ref.ino, name)) return true;
      if (whiteout !== undefined && (await hasEntry(this.#layers[ref.layer]!, ref.ino, whiteout))) return false;
    }
    return false;
  }

  async #forgetRefs(refs: readonly LayerRef[]): Promise<void> {
    for (const ref of refs) await this.#layers[ref.layer]!.forget(ROOT_CONTEXT, ref.ino, 1);
  }

  protected override async dropRefs(node: Node): Promise<void> {
    await this.#forgetRefs(node.refs);
  }

  // ---- internals: directories --------------------------------------------

  protected override mergedNames(node: Node): Promise<MergedName[]> {
    return this.#merged(node);
  }

  /** The merged entries of directory `node`, without `.`, `..`, whiteouts, what they hide, and the staging directory. */
  async #merged(node: Node): Promise<MergedEntry[]> {
    const seen = new Set<string>();
    const hidden = new Set<string>();
    const out: MergedEntry[] = [];
    for (const ref of node.refs) {
      const whiteouts: string[] = [];
      for (const e of await listEntries(this.#layers[ref.layer]!, ref.ino)) {
        if (node.ino === ROOT_INO && ref.layer === UPPER && bytesEqual(e.name, this.#stagingName)) continue;
        if (isWhiteoutName(e.name)) {
          if (!bytesEqual(e.name, OPAQUE_MARKER)) whiteouts.push(nameKey(e.name.subarray(WHITEOUT_PREFIX.length)));
          continue;
        }
        const key = nameKey(e.name);
        if (seen.has(key) || hidden.has(key)) continue;
        seen.add(key);
        const top = { layer: ref.layer, ino: e.ino };
        out.push({ name: e.name, key, top, ino: this.#inoFor(top), type: e.type });
      }
      for (const key of whiteouts) hidden.add(key);
    }
    return out;
  }

  // ---- internals: changes -------------------------------------------------

  /**
   * Creates a name in `dir` (the checks a new name needs passed) with
   * `make`, given the upper directory, after the parent's copy-up; a whiteout
   * of the name goes, and a directory made over one becomes opaque.
   */
  async #make(dir: Node, name: Uint8Array, make: (upperDir: number) => MaybePromise<Entry>): Promise<Entry> {
    await this.#copyUp(dir);
    const whiteout = whiteoutOf(name);
    const whitedOut = whiteout !== undefined && (await hasEntry(this.#upper, dir.upper!, whiteout));
    const made = await make(dir.upper!);
    const upperIno = made.ino;
    if (whitedOut) {
      if (isDirectory(made.attr.mode)) await ensureMarker(this.#upper, upperIno, OPAQUE_MARKER);
      await this.#upper.unlink(ROOT_CONTEXT, dir.upper!, whiteout);
    }
    const ino = this.#inoFor({ layer: UPPER, ino: upperIno });
    let node = this.nodes.get(ino);
    if (node === undefined) {
      node = new Node(ino, isDirectory(made.attr.mode), [{ layer: UPPER, ino: upperIno }], dir, name);
      this.adopt(node, dir);
    } else {
      // A new name of a node the overlay knows (link): its upper lookup is held once already.
      await this.#upper.forget(ROOT_CONTEXT, upperIno, 1);
    }
    node.nlookup++;
    return this.entryOf(node, this.shownAttr(node, made.attr));
  }

  async #whiteout(dir: Node, name: Uint8Array, op: string): Promise<void> {
    const whiteout = whiteoutOf(name);
    if (whiteout === undefined) {
      throw new FsError("ENAMETOOLONG", { op, path: bytesToString(name), detail: "a whiteout of a name longer than 251 bytes cannot be written" });
    }
    await ensureMarker(this.#upper, dir.upper!, whiteout);
  }

  /** Makes a directory (already complete in the upper) opaque and stops merging it. */
  async #makeOpaque(node: Node): Promise<void> {
    await ensureMarker(this.#upper, node.upper!, OPAQUE_MARKER);
    await this.#dropLowers(node);
  }

  async #dropLowers(node: Node): Promise<void> {
    const lowers = node.lowers;
    node.lowers = [];
    await this.#forgetRefs(lowers);
  }

  /** The removal itself: whiteout where a lower shows the name, then the upper's entry. */
  protected override async removeChecked(ctx: Context, dir: Node, name: Uint8Array, node: Node, attr: Attr, isRmdir: boolean): Promise<void> {
    const op = isRmdir ? "rmdir" : "unlink";
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
    if (!isRmdir) this.#lowerNameGone(node, attr);
  }

  /** Counts a name removed from a hard-linked lower inode (`attr`, its lower attributes) that is still only in the lower. */
  #lowerNameGone(node: Node, attr: Attr): void {
    if (node.upper === undefined && node.linkKey !== undefined) this.#linkedLower(node.linkKey, attr).lowerNames--;
  }

  /** Removes every whiteout (and the opaque marker) from upper directory `ino`. */
  async #clearWhiteouts(ino: number): Promise<void> {
    for (const e of await listEntries(this.#upper, ino)) {
      if (isWhiteoutName(e.name)) await this.#upper.unlink(ROOT_CONTEXT, ino, e.name);
    }
  }

  /** The rename itself, once checked: everything involved copied up, renamed in the upper, then whiteouts and opaque markers. */
  protected override async renameChecked(
    ctx: Context,
    sdir: Node,
    name: Uint8Array,
    src: Node,
    ddir: Node,
    newName: Uint8Array,
    replaced: { readonly node: Node; readonly attr: Attr } | undefined,
    flags: number,
  ): Promise<void> {
    const exchange = (flags & RENAME.EXCHANGE) !== 0;
    const dst = replaced?.node;
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
    const dstWhitedOut = dstWhiteout !== undefined && (await hasEntry(this.#upper, ddir.upper!, dstWhiteout));
    // The old name's whiteout comes first: until the rename, the upper object still hides it.
    const needsWhiteout = srcBelow && !exchange && (flags & RENAME.WHITEOUT) === 0;
    if (needsWhiteout) await this.#whiteout(sdir, name, "rename");
    try {
      await this.#upper.rename(ctx, sdir.upper!, name, ddir.upper!, newName, flags);
    } catch (error) {
      if (needsWhiteout) await this.#upper.unlink(ROOT_CONTEXT, sdir.upper!, whiteoutOf(name)!);
      throw error;
    }
    if (src.isDir && (dstBelow || dstWhitedOut)) await this.#makeOpaque(src);
    else if (src.isDir) await this.#dropLowers(src);
    if (exchange && dst!.isDir) {
      if (srcBelow) await this.#makeOpaque(dst!);
      else await this.#dropLowers(dst!);
    }
    if (dstWhitedOut && !exchange) await this.#upper.unlink(ROOT_CONTEXT, ddir.upper!, dstWhiteout);
    if (replaced !== undefined && !exchange) this.#lowerNameGone(replaced.node, replaced.attr);
  }

  /** Links `name` in `dir` to the copy of `node` when it is a hard-linked lower file copied up under another name and this one is not in the upper yet. */
  async #linkName(node: Node, dir: Node, name: Uint8Array): Promise<void> {
    const linked = node.isDir || node.linkKey === undefined ? undefined : this.#linkedLowers.get(node.linkKey);
    if (linked?.copy === undefined || (await hasEntry(this.#upper, dir.upper!, name))) return;
    const entry = await this.#linkCopy(node.linkKey!, linked, dir.upper!, name);
    linked.lowerNames--;
    await this.#upper.forget(ROOT_CONTEXT, entry.ino, 1);
  }

  // ---- internals: copy-up -------------------------------------------------

  /** Copies `node` and what is below it (its merged contents, for a directory) into the upper. */
  async #copyUpTree(node: Node): Promise<void> {
    await this.#copyUp(node);
    if (!node.isDir || node.lowers.length === 0) return;
    for (const e of await this.#merged(node)) {
      const child = await this.lookupNode(node, e.name);
      if (child === undefined) continue;
      try {
        await this.#copyUpTree(child.node);
      } finally {
        await this.releaseNode(child.node, 1);
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
      void this.maybeFree(node);
    });
    return node.copying;
  }

  async #doCopyUp(node: Node, skipData: boolean): Promise<void> {
    const parent = node.parent!;
    await this.#copyUp(parent);
    const src = node.lowers[0]!;
    const lower = this.#layers[src.layer]!;
    const attr = await lower.getattr(ROOT_CONTEXT, src.ino);
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
    this.claimIno(refKey({ layer: UPPER, ino: entry.ino }), node.ino);
    if (!node.isDir) await this.#dropLowers(node);
  }

  /** Copies object `ino` of `from` (a lower, or the upper) to `name` in upper directory `dir` through the staging directory; the returned entry counts one upper lookup. */
  async #place(from: DynFileSystem, ino: number, attr: Attr, dir: number, name: Uint8Array, skipData: boolean): Promise<Entry> {
    const target = { fs: this.#upper, stagingDir: this.#staging, tempName: new TextEncoder().encode(`copyup-${this.#nextTemp++}`) };
    const entry = await copyObject(from, ino, attr, target, skipData);
    try {
      await this.#upper.rename(ROOT_CONTEXT, this.#staging, target.tempName, dir, name, 0);
    } catch (error) {
      await discardCopy(target, entry);
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
    const held = await this.#upper.lookup(ROOT_CONTEXT, dir, name);
    const previous = linked.copy;
    linked.copy = held.ino;
    this.#linkedByCopy.set(held.ino, key);
    if (previous !== undefined) {
      this.#linkedByCopy.delete(previous);
      await this.#upper.forget(ROOT_CONTEXT, previous, 1);
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
      return await this.#upper.link(ROOT_CONTEXT, copy, dir, name);
    } catch (error) {
      if (!isNoEntry(error)) throw error;
    }
    const entry = await this.#place(this.#upper, copy, await this.#upper.getattr(ROOT_CONTEXT, copy), dir, name, false);
    await this.#holdCopy(key, linked, dir, name);
    return entry;
  }
}
