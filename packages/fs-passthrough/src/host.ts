// The host side: how a path, an fd or a stat of @msb/native becomes what the
// guest sees, and the one rule for reading the override xattr.
import { S, makedev } from "@msb/fs";
import { constants as c, major, minor, type Stat } from "@msb/native";
import { fstatSync, lstatSync, type BigIntStats } from "node:fs";
import { OverrideStatError, decodeOverrideStat, typeFitsHost, type OverrideStat } from "@msb/fs";

export { c };

/**
 * How every name inside the tree is resolved: never above the directory fd
 * (`..`, absolute paths), never through a symlink or a /proc magic link. With
 * `O_PATH | O_NOFOLLOW` a symlink as the last (only) component is returned
 * itself rather than refused.
 */
export const BENEATH = c.RESOLVE_BENEATH | c.RESOLVE_NO_MAGICLINKS | c.RESOLVE_NO_SYMLINKS;

/** For `..` alone, which RESOLVE_BENEATH refuses: still no symlinks or magic links. */
export const NO_LINKS = c.RESOLVE_NO_MAGICLINKS | c.RESOLVE_NO_SYMLINKS;

/** `statfs` type of procfs. */
export const PROC_SUPER_MAGIC = 0x9fa0;

/**
 * The path of the inode our own fd `fd` holds. Resolving it jumps straight to
 * that inode (the kernel's magic link); nothing the guest named is resolved,
 * and the inode reached is not followed further even when it is a symlink.
 */
export const procPath = (fd: number): string => `/proc/self/fd/${fd}`;

const encoder = new TextEncoder();

/** `/proc/self/fd/<dirFd>/<name>` as bytes (names need not be UTF-8), for l*xattr and lstat of an entry. */
export function procEntryPath(dirFd: number, name: Uint8Array): Buffer {
  const prefix = `/proc/self/fd/${dirFd}/`;
  const path = Buffer.allocUnsafe(prefix.length + name.length);
  path.write(prefix, 0, "latin1");
  path.set(name, prefix.length);
  return path;
}

const NS = 1_000_000_000n;

/**
 * `fstat` of any fd, `O_PATH` ones included, in @msb/native's `Stat` shape.
 * Node's own bigint `fstatSync` is used: exact (64-bit inode numbers,
 * nanoseconds) and about three times cheaper than building the addon's object.
 */
export const fstat = (fd: number): Stat => toStat(fstatSync(fd, { bigint: true }));

/**
 * `fstatat(dirFd, name, AT_SYMLINK_NOFOLLOW)` for one entry name (no `/`, not
 * `.` or `..` unless meant), or `undefined` when there is no such entry. Node's
 * lstat of `/proc/self/fd/<dirFd>/<name>` resolves exactly that: the magic
 * link to our own directory fd, then the name, not following it. It costs
 * less than the addon's call, and a missing name throws nothing.
 */
export function lstatAt(dirFd: number, name: Uint8Array | string): Stat | undefined {
  const st = lstatSync(procEntryPath(dirFd, typeof name === "string" ? encoder.encode(name) : name), { bigint: true, throwIfNoEntry: false });
  return st === undefined ? undefined : toStat(st);
}

function toStat(st: BigIntStats): Stat {
  const [atimeSec, atimeNsec] = split(st.atimeNs);
  const [mtimeSec, mtimeNsec] = split(st.mtimeNs);
  const [ctimeSec, ctimeNsec] = split(st.ctimeNs);
  return {
    dev: st.dev,
    ino: st.ino,
    mode: Number(st.mode),
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    rdev: st.rdev,
    size: Number(st.size),
    blksize: Number(st.blksize),
    blocks: Number(st.blocks),
    atimeSec,
    atimeNsec,
    mtimeSec,
    mtimeNsec,
    ctimeSec,
    ctimeNsec,
  };
}

/** Nanoseconds since the epoch as whole seconds (rounded down, also before 1970) and the nanoseconds within. */
function split(ns: bigint): [number, number] {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  return [Number(sec), Number(nsec)];
}

/** The identity of a host inode: device and inode number in one bigint. */
export const keyOf = (st: Pick<Stat, "dev" | "ino">): bigint => (st.dev << 64n) | st.ino;

/** A host device number (glibc `makedev`, 64-bit) in the guest's 32-bit `new_encode_dev` form. */
export const guestDev = (rdev: bigint): number => (rdev === 0n ? 0 : makedev(major(rdev), minor(rdev)));

/** What the guest sees of a host inode without an override. */
export const hostView = (st: Stat): OverrideStat => ({ uid: st.uid, gid: st.gid, mode: st.mode, rdev: guestDev(st.rdev) });

/** The root directory's guest view when it carries no override: root's, searchable by all, like a fresh filesystem. */
export const ROOT_VIEW: OverrideStat = Object.freeze({ uid: 0, gid: 0, mode: S.IFDIR | 0o755, rdev: 0 });

/** Host errnos that mean "this inode carries no readable override": show host metadata. */
const NO_OVERRIDE = new Set(["ENODATA", "ENOTSUP", "EOPNOTSUPP", "EACCES", "EPERM"]);

/**
 * The override of a host inode of type `hostType`, read with `get`, or
 * `undefined` when it has none. A value that does not decode, or whose type
 * cannot live on that host inode, is reported to `log` and ignored: the host
 * metadata shows instead. Only other host errors (EIO, ...) throw.
 */
export function readOverride(
  get: () => Uint8Array,
  hostType: number,
  log: (reason: string) => void,
): OverrideStat | undefined {
  if (hostType !== S.IFREG && hostType !== S.IFDIR) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = get();
  } catch (error) {
    if (NO_OVERRIDE.has((error as { code?: string }).code ?? "")) return undefined;
    throw error;
  }
  try {
    const view = decodeOverrideStat(bytes);
    if (!typeFitsHost(view.mode, hostType)) {
      throw new OverrideStatError(`type 0o${(view.mode & S.IFMT).toString(8)} cannot be stored on a host inode of type 0o${hostType.toString(8)}`);
    }
    return view;
  } catch (error) {
    log((error as Error).message);
    return undefined;
  }
}
