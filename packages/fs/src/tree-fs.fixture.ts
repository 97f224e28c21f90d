// A deliberately small in-memory DynFileSystem for this package's own tests:
// enough semantics to drive PathFs, FsBackend delegation and withHooks, plus
// the lookup bookkeeping the tests assert on. Real backends live in their own
// packages and run the conformance kit.
import { FsBackend } from "./backend.js";
import { DT, ROOT_INO, S, SetattrValid } from "./constants.js";
import { FsError } from "./errno.js";
import { dtFromMode, isDirectory } from "./mode.js";
import { bytesToString } from "./names.js";
import type { Attr, Context, CreateReply, DirEntry, Entry, OpenReply, SetattrRequest } from "./types.js";

interface Node {
  attr: Attr;
  parent: number;
  children: Map<string, { name: Uint8Array; ino: number }>;
  data: Uint8Array;
  target: Uint8Array;
}

const key = (name: Uint8Array): string => Buffer.from(name).toString("hex");
const T0 = { sec: 1_700_000_000, nsec: 0 };

export class TreeFs extends FsBackend {
  readonly nodes = new Map<number, Node>();
  /** Outstanding lookups per inode: what PathFs must give back. */
  readonly lookups = new Map<number, number>();
  readonly calls: string[] = [];
  #nextIno = ROOT_INO + 1;
  #nextFh = 1;

  constructor() {
    super();
    this.nodes.set(ROOT_INO, this.#node(ROOT_INO, ROOT_INO, S.IFDIR | 0o755));
  }

  outstandingLookups(): number {
    let total = 0;
    for (const n of this.lookups.values()) total += n;
    return total;
  }

  #node(ino: number, parent: number, mode: number): Node {
    const attr: Attr = { ino, size: 0, blocks: 0, atime: T0, mtime: T0, ctime: T0, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: 4096 };
    return { attr, parent, children: new Map(), data: new Uint8Array(0), target: new Uint8Array(0) };
  }

  #get(ino: number): Node {
    const node = this.nodes.get(ino);
    if (node === undefined) throw new FsError("ENOENT", { op: "get", ino });
    return node;
  }

  #dir(ino: number): Node {
    const node = this.#get(ino);
    if (!isDirectory(node.attr.mode)) throw new FsError("ENOTDIR", { ino });
    return node;
  }

  #entry(ino: number): Entry {
    this.lookups.set(ino, (this.lookups.get(ino) ?? 0) + 1);
    return { ino, generation: 0, attr: this.#get(ino).attr };
  }

  #add(parent: number, name: Uint8Array, mode: number): Node {
    const dir = this.#dir(parent);
    if (dir.children.has(key(name))) throw new FsError("EEXIST", { path: bytesToString(name) });
    const node = this.#node(this.#nextIno++, parent, mode);
    this.nodes.set(node.attr.ino, node);
    dir.children.set(key(name), { name, ino: node.attr.ino });
    return node;
  }

  override lookup(_ctx: Context, parent: number, name: Uint8Array): Entry {
    this.calls.push(`lookup ${bytesToString(name)}`);
    const child = this.#dir(parent).children.get(key(name));
    if (child === undefined) throw new FsError("ENOENT", { op: "lookup", path: bytesToString(name) });
    return this.#entry(child.ino);
  }

  override forget(_ctx: Context, ino: number, nlookup: number): void {
    const left = (this.lookups.get(ino) ?? 0) - nlookup;
    if (left < 0) throw new Error(`forget of inode ${ino} below zero`);
    if (left === 0) this.lookups.delete(ino);
    else this.lookups.set(ino, left);
  }

  override getattr(_ctx: Context, ino: number): Attr {
    return this.#get(ino).attr;
  }

  override setattr(_ctx: Context, ino: number, req: SetattrRequest): Attr {
    const node = this.#get(ino);
    const a = node.attr;
    if ((req.valid & SetattrValid.SIZE) !== 0) {
      const data = new Uint8Array(req.size);
      data.set(node.data.subarray(0, req.size));
      node.data = data;
    }
    node.attr = {
      ...a,
      mode: (req.valid & SetattrValid.MODE) !== 0 ? (a.mode & S.IFMT) | req.mode : a.mode,
      uid: (req.valid & SetattrValid.UID) !== 0 ? req.uid : a.uid,
      gid: (req.valid & SetattrValid.GID) !== 0 ? req.gid : a.gid,
      size: node.data.length,
      atime: (req.valid & SetattrValid.ATIME) !== 0 ? req.atime : a.atime,
      mtime: (req.valid & SetattrValid.MTIME) !== 0 ? req.mtime : a.mtime,
    };
    return node.attr;
  }

  override mkdir(_ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Entry {
    return this.#entry(this.#add(parent, name, S.IFDIR | (mode & ~umask & 0o7777)).attr.ino);
  }

  override symlink(_ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Entry {
    const node = this.#add(parent, name, S.IFLNK | 0o777);
    node.target = target;
    return this.#entry(node.attr.ino);
  }

  override readlink(_ctx: Context, ino: number): Uint8Array {
    return this.#get(ino).target;
  }

  override link(_ctx: Context, ino: number, newParent: number, newName: Uint8Array): Entry {
    const dir = this.#dir(newParent);
    if (dir.children.has(key(newName))) throw new FsError("EEXIST", { op: "link" });
    dir.children.set(key(newName), { name: newName, ino });
    const node = this.#get(ino);
    node.attr = { ...node.attr, nlink: node.attr.nlink + 1 };
    return this.#entry(ino);
  }

  override create(_ctx: Context, parent: number, name: Uint8Array, mode: number, _flags: number, umask: number): CreateReply {
    const node = this.#add(parent, name, S.IFREG | (mode & ~umask & 0o7777));
    return { entry: this.#entry(node.attr.ino), fh: this.#nextFh++ };
  }

  override open(_ctx: Context, ino: number, flags: number): OpenReply {
    this.calls.push(`open ${ino} ${flags}`);
    if ((flags & 0o1000) !== 0) this.#setData(this.#get(ino), new Uint8Array(0));
    return { fh: this.#nextFh++ };
  }

  override read(_ctx: Context, ino: number, _fh: number, size: number, offset: number): Uint8Array {
    return this.#get(ino).data.slice(offset, offset + size);
  }

  override write(_ctx: Context, ino: number, _fh: number, data: Uint8Array, offset: number): number {
    const node = this.#get(ino);
    const end = Math.max(node.data.length, offset + data.length);
    const grown = new Uint8Array(end);
    grown.set(node.data);
    grown.set(data, offset);
    this.#setData(node, grown);
    return data.length;
  }

  #setData(node: Node, data: Uint8Array): void {
    node.data = data;
    node.attr = { ...node.attr, size: data.length };
  }

  override flush(): void {}

  override release(): void {}

  override unlink(_ctx: Context, parent: number, name: Uint8Array): void {
    const dir = this.#dir(parent);
    const child = dir.children.get(key(name));
    if (child === undefined) throw new FsError("ENOENT", { op: "unlink" });
    if (isDirectory(this.#get(child.ino).attr.mode)) throw new FsError("EISDIR", { op: "unlink" });
    dir.children.delete(key(name));
  }

  override rmdir(_ctx: Context, parent: number, name: Uint8Array): void {
    const dir = this.#dir(parent);
    const child = dir.children.get(key(name));
    if (child === undefined) throw new FsError("ENOENT", { op: "rmdir" });
    if (this.#dir(child.ino).children.size > 0) throw new FsError("ENOTEMPTY", { op: "rmdir" });
    dir.children.delete(key(name));
  }

  override rename(_ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array): void {
    const from = this.#dir(parent);
    const child = from.children.get(key(name));
    if (child === undefined) throw new FsError("ENOENT", { op: "rename" });
    from.children.delete(key(name));
    this.#dir(newParent).children.set(key(newName), { name: newName, ino: child.ino });
    this.#get(child.ino).parent = newParent;
  }

  override opendir(_ctx: Context, ino: number): OpenReply {
    this.#dir(ino);
    return { fh: this.#nextFh++ };
  }

  /** Offsets are positions + 1; two entries per call, to exercise resumption. */
  override readdir(_ctx: Context, ino: number, _fh: number, offset: number): DirEntry[] {
    const node = this.#dir(ino);
    const all: DirEntry[] = [
      { ino, offset: 1, type: DT.DIR, name: new Uint8Array([0x2e]) },
      { ino: node.parent, offset: 2, type: DT.DIR, name: new Uint8Array([0x2e, 0x2e]) },
      ...[...node.children.values()].map((c, i) => ({
        ino: c.ino,
        offset: i + 3,
        type: dtFromMode(this.#get(c.ino).attr.mode),
        name: c.name,
      })),
    ];
    return all.slice(offset, offset + 2);
  }

  override releasedir(): void {}
}
