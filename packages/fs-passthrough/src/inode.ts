import { O } from "@msb/fs";
import type { OverrideStat } from "@msb/fs";

/**
 * A host inode the guest knows: an `O_PATH | O_NOFOLLOW` fd that pins it,
 * its guest inode number, and its guest view (owner, group, mode with type,
 * device), which comes from the override xattr or mirrors the host.
 */
export class Inode {
  /** Lookups the kernel holds (each Entry returned counts one). */
  nlookup = 0;
  /** Open file and directory handles. */
  opens = 0;
  /** Bytes of this inode counted in the quota's usage. */
  charged = 0;
  uid = 0;
  gid = 0;
  mode = 0;
  rdev = 0;
  /** True when the view comes from the override xattr, false when it mirrors the host. */
  overridden = false;

  constructor(
    readonly ino: number,
    /** Host device and inode number (see `keyOf`). */
    readonly key: bigint,
    readonly dev: bigint,
    readonly fd: number,
    /** The host file type (`S.IFMT` bits), which never changes for an inode. */
    readonly hostType: number,
  ) {}

  setView(view: OverrideStat, overridden: boolean): void {
    this.uid = view.uid;
    this.gid = view.gid;
    this.mode = view.mode;
    this.rdev = view.rdev;
    this.overridden = overridden;
  }

  get view(): OverrideStat {
    return { uid: this.uid, gid: this.gid, mode: this.mode, rdev: this.rdev };
  }
}

/** An open regular file: a real host fd with the guest's access mode. */
export class FileHandle {
  readonly canRead: boolean;
  readonly canWrite: boolean;
  readonly append: boolean;

  constructor(
    readonly inode: Inode,
    readonly fd: number,
    flags: number,
  ) {
    const access = flags & O.ACCMODE;
    this.canRead = access !== O.WRONLY;
    this.canWrite = access !== O.RDONLY;
    this.append = (flags & O.APPEND) !== 0;
  }
}

/**
 * An open directory: a real host fd for getdents, and the mapping of the
 * guest's numeric readdir cookies to the host's 63-bit positions (ext4 hashes
 * do not fit a JS number). Cookie 1 is after `.`, 2 after `..` (the host
 * listing's start); each host position gets the next number once and keeps it
 * for the handle's life, so reading from one cookie twice gives the same entries.
 */
export class DirHandle {
  readonly #positions = new Map<number, bigint>();
  readonly #cookies = new Map<bigint, number>();
  #next = 3;

  constructor(
    readonly inode: Inode,
    readonly fd: number,
  ) {}

  /** The guest cookie of host position `off`. */
  cookie(off: bigint): number {
    let cookie = this.#cookies.get(off);
    if (cookie === undefined) {
      cookie = this.#next++;
      this.#cookies.set(off, cookie);
      this.#positions.set(cookie, off);
    }
    return cookie;
  }

  /** The host position to resume at after guest cookie `cookie`, `undefined` for one never given out. */
  position(cookie: number): bigint | undefined {
    return cookie <= 2 ? 0n : this.#positions.get(cookie);
  }
}
