import { S, type Attr, type Entry, type Timespec } from "@msb/fs";
import type { Directory } from "./directory.js";
import { GRAIN, type FileData } from "./file-data.js";

/** What the kernel reports as a tmpfs directory's size per entry (`BOGO_DIRENT_SIZE`). */
const DIRENT_SIZE = 20;
const BLKSIZE = 4096;

/**
 * One inode. Fields change in place; `attr()` and `entry()` hand out
 * snapshots, rebuilt only after `changed()`, so repeated getattr and lookup
 * calls allocate nothing.
 */
export class Inode {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev = 0;
  /** Bytes, for regular files and symlinks; directories report a size from their entry count. */
  size = 0;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Entries handed to the kernel and not yet forgotten. */
  lookups = 0;
  /** Open file and directory handles. */
  opens = 0;
  /** The containing directory's inode, for directories (`..`). */
  parent = 0;
  readonly data: FileData | undefined;
  readonly dir: Directory | undefined;
  /** The target of a symlink. */
  target: Uint8Array | undefined;
  /** Extended attributes: name key (`bytesKey`) → the value's own copy. */
  xattrs: Map<string, Uint8Array> | undefined;
  /** Bytes charged to the capacity for this inode besides its file data (inode, target, xattrs). */
  charged = 0;
  #attr: Attr | undefined;
  #entry: Entry | undefined;

  constructor(
    readonly ino: number,
    owner: { readonly uid: number; readonly gid: number; readonly mode: number },
    now: Timespec,
    contents: { data?: FileData; dir?: Directory },
  ) {
    this.mode = owner.mode;
    this.uid = owner.uid;
    this.gid = owner.gid;
    // Names add links as they are made; a directory starts with its own ".".
    this.nlink = contents.dir === undefined ? 0 : 1;
    this.atime = this.mtime = this.ctime = now;
    this.data = contents.data;
    this.dir = contents.dir;
  }

  get type(): number {
    return this.mode & S.IFMT;
  }

  /** Drops the cached snapshots: call after changing any field that `attr()` shows. */
  changed(): void {
    this.#attr = undefined;
    this.#entry = undefined;
  }

  /** Sets mtime and ctime to `now` (data or entries changed). */
  modified(now: Timespec): void {
    this.mtime = this.ctime = now;
    this.changed();
  }

  attr(): Attr {
    if (this.#attr !== undefined) return this.#attr;
    const allocated = this.data?.allocated ?? 0;
    this.#attr = {
      ino: this.ino,
      size: this.dir === undefined ? this.size : (this.dir.size + 2) * DIRENT_SIZE,
      blocks: allocated / GRAIN,
      atime: this.atime,
      mtime: this.mtime,
      ctime: this.ctime,
      mode: this.mode,
      nlink: this.nlink,
      uid: this.uid,
      gid: this.gid,
      rdev: this.rdev,
      blksize: BLKSIZE,
    };
    return this.#attr;
  }

  entry(): Entry {
    const attr = this.attr();
    if (this.#entry === undefined) this.#entry = { ino: this.ino, generation: 0, attr };
    return this.#entry;
  }
}
