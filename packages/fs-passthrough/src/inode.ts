import { O } from "@msb/fs";
import type { OverrideStat } from "@msb/fs";
import type { HostDevice, HostKey } from "./host.js";

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
    /** Host device and inode number (see `HostKey`). */
    readonly key: HostKey,
    readonly dev: HostDevice,
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
  /** Host position of each guest cookie from 3 on (index = cookie - 3). */
  readonly #positions: bigint[] = [];
  /**
   * Host position → cookie, made on the first listing that does not go on
   * from the last cookie (the only way a position can come again): a plain
   * front-to-back listing needs no lookups.
   */
  #cookies: Map<bigint, number> | undefined;
  /** Where the host fd stands, when known: a listing that goes on from there needs no seek. */
  at: bigint | undefined = 0n;

  constructor(
    readonly inode: Inode,
    readonly fd: number,
  ) {}

  /** The guest cookie of host position `off`. */
  cookie(off: bigint): number {
    const cookies = this.#cookies;
    const known = cookies?.get(off);
    if (known !== undefined) return known;
    const cookie = this.#positions.push(off) + 2;
    cookies?.set(off, cookie);
    return cookie;
  }

  /** The host position to resume at after guest cookie `cookie`, `undefined` for one never given out. */
  position(cookie: number): bigint | undefined {
    const positions = this.#positions;
    if (this.#cookies === undefined && positions.length > 0 && cookie < positions.length + 2) {
      this.#cookies = new Map(positions.map((off, i) => [off, i + 3]));
    }
    return cookie <= 2 ? 0n : positions[cookie - 3];
  }
}
