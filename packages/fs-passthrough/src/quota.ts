import { FsError } from "@msb/fs";
import { close, getdents, openat2 } from "@msb/native";
import { BENEATH, c, fstat, keyOf, lstatAt, type HostKey } from "./host.js";

/**
 * Allocated space under the root, against a byte limit. Usage is host
 * `st_blocks` × 512 of every inode (files, the host files behind special
 * files, directories, symlinks), each hard-linked inode once: measured once
 * when the filesystem is created, then kept current by the backend from the
 * `st_blocks` of each inode it changes.
 */
export class Quota {
  constructor(
    readonly limit: number,
    public used: number,
  ) {}

  /** Bytes that may still be allocated (negative when over the limit). */
  get room(): number {
    return this.limit - this.used;
  }

  charge(bytes: number): void {
    this.used = Math.max(0, this.used + bytes);
  }

  /** Throws `ENOSPC` when nothing more may be allocated. */
  checkRoom(op: string, ino?: number): void {
    if (this.room <= 0) throw new FsError("ENOSPC", { op, ino, detail: `quota of ${this.limit} bytes used up` });
  }
}

const isDots = (name: Uint8Array): boolean => name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e));

/** Bytes allocated by the tree under directory fd `rootFd`, the directory itself included. */
export function measureTree(rootFd: number): number {
  const home = fstat(rootFd);
  const linked = new Set<HostKey>();
  const walk = (dirFd: number): number => {
    let total = 0;
    const fd = openat2(dirFd, ".", { flags: c.O_RDONLY | c.O_DIRECTORY, resolve: BENEATH });
    try {
      for (let batch = getdents(fd); batch.length > 0; batch = getdents(fd)) {
        for (const entry of batch) {
          if (isDots(entry.name)) continue;
          const st = lstatAt(fd, entry.name);
          if (st === undefined) continue; // removed meanwhile
          const isDir = (st.mode & c.S_IFMT) === c.S_IFDIR;
          if (!isDir && st.nlink > 1) {
            const key = keyOf(home, st);
            if (linked.has(key)) continue;
            linked.add(key);
          }
          total += st.blocks * 512;
          if (isDir) {
            const sub = openat2(fd, entry.name, { flags: c.O_PATH | c.O_DIRECTORY | c.O_NOFOLLOW, resolve: BENEATH });
            try {
              total += walk(sub);
            } finally {
              close(sub);
            }
          }
        }
      }
    } finally {
      close(fd);
    }
    return total;
  };
  return home.blocks * 512 + walk(rootFd);
}
