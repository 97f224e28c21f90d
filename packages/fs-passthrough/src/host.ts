// The host side: how a path, an fd or a stat of @msb/native becomes what the
// guest sees, and the one rule for reading the override xattr.
import { constants } from "node:os";
import { FsError, S, errnoName, makedev } from "@msb/fs";
import { STATX_FIELDS, constants as c, createPinned, getxattrat, pinAt, statxInto } from "@msb/native";
import { OVERRIDE_STAT_XATTR, OverrideStatError, decodeOverrideStat, typeFitsHost, type OverrideStat } from "@msb/fs";

export { c };

/**
 * How every name inside the tree is resolved: never above the directory fd
 * (`..`, absolute paths), never through a symlink or a /proc magic link. With
 * `O_PATH | O_NOFOLLOW` a symlink as the last (only) component is returned
 * itself rather than refused.
 */
export const BENEATH = c.RESOLVE_BENEATH | c.RESOLVE_NO_MAGICLINKS | c.RESOLVE_NO_SYMLINKS;

/** How a directory entry is pinned (with `O_PATH`): the entry itself, never what a symlink names. */
export const PIN_ENTRY = c.O_NOFOLLOW;

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

/** A host inode's metadata, as `statx` gives it, in exact numbers. */
export interface HostStat {
  readonly devMajor: number;
  readonly devMinor: number;
  /** The inode number's upper and lower 32 bits (host inode numbers may use all 64). */
  readonly inoHigh: number;
  readonly inoLow: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly size: number;
  readonly blksize: number;
  readonly blocks: number;
  readonly atimeSec: number;
  readonly atimeNsec: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly ctimeSec: number;
  readonly ctimeNsec: number;
}

const F = STATX_FIELDS;
/** Where `pinAt` and `createPinned` put the number they add after the stat. */
const EXTRA = F.length;
/** Where `statxInto`, `pinAt` and `createPinned` write; read back at once, so one array serves every call. */
const fields = new Float64Array(F.length + 1);
/** Where `pinAt` reads an override: far more than a valid one holds, so only a corrupt value is longer. */
const pinnedOverride = new Uint8Array(256);
const { ENODATA, ERANGE } = constants.errno;

function hostStat(): HostStat {
  const f = fields;
  return {
    devMajor: f[F.devMajor]!,
    devMinor: f[F.devMinor]!,
    inoHigh: f[F.inoHigh]!,
    inoLow: f[F.inoLow]!,
    mode: f[F.mode]!,
    nlink: f[F.nlink]!,
    uid: f[F.uid]!,
    gid: f[F.gid]!,
    rdevMajor: f[F.rdevMajor]!,
    rdevMinor: f[F.rdevMinor]!,
    size: f[F.size]!,
    blksize: f[F.blksize]!,
    blocks: f[F.blocks]!,
    atimeSec: f[F.atimeSec]!,
    atimeNsec: f[F.atimeNsec]!,
    mtimeSec: f[F.mtimeSec]!,
    mtimeNsec: f[F.mtimeNsec]!,
    ctimeSec: f[F.ctimeSec]!,
    ctimeNsec: f[F.ctimeNsec]!,
  };
}

/**
 * `statx` flags of {@link fstat} and {@link lstatAt}, read once: @msb/native's
 * `constants` object has too many properties for V8 to keep it fast to read.
 */
const FSTAT = c.AT_EMPTY_PATH | c.AT_NO_AUTOMOUNT;
const LSTAT = c.AT_SYMLINK_NOFOLLOW | c.AT_NO_AUTOMOUNT;

/** `fstat` of any fd, `O_PATH` ones included. */
export function fstat(fd: number): HostStat {
  statxInto(fd, "", FSTAT, fields);
  return hostStat();
}

/**
 * `fstatat(dirFd, name, AT_SYMLINK_NOFOLLOW)` for one entry name (no `/`, not
 * `.` or `..` unless meant), or `undefined` when there is no such entry. Like
 * lstat(2), it never triggers an automount.
 */
export function lstatAt(dirFd: number, name: Uint8Array | string): HostStat | undefined {
  return statxInto(dirFd, name, LSTAT, fields) ? hostStat() : undefined;
}

/** A host inode just pinned by an `O_PATH` fd, with its stat and what reading its override found. */
export interface Pin {
  /** The `O_PATH` fd, which the caller now owns. */
  readonly fd: number;
  readonly st: HostStat;
  /**
   * The override as read through the pin: its bytes (valid until the next
   * `pin`), `undefined` when there is none; throws the host's error (a
   * `readOverride` getter).
   */
  readonly override: () => Uint8Array | undefined;
}

/**
 * Entry `name` of directory fd `dirFd` pinned `O_PATH` (openat2 with `flags`
 * and `resolve`), stat'ed and its override read from that very inode, in one
 * native call. `procFd` is the backend's fd of `/proc/self/fd`.
 */
export function pin(dirFd: number, name: Uint8Array | string, flags: number, resolve: number, procFd: number): Pin {
  const fd = pinAt(dirFd, name, flags, resolve, procFd, OVERRIDE_STAT_XATTR, fields, pinnedOverride);
  const length = fields[EXTRA]!;
  const override = (): Uint8Array | undefined => {
    if (length >= 0) return pinnedOverride.subarray(0, length);
    if (length === -ENODATA) return undefined;
    // Longer than any valid value: read it whole, so the log says what it is.
    if (length === -ERANGE) return getxattrat(procFd, String(fd), OVERRIDE_STAT_XATTR);
    throw new FsError(errnoName(-length) ?? "EIO", { op: "getxattr", detail: OVERRIDE_STAT_XATTR });
  };
  return { fd, st: hostStat(), override };
}

/**
 * Regular file `name` created in directory fd `dirFd` (openat2 `O_CREAT |
 * O_EXCL | O_NOFOLLOW`, host mode `mode`, resolved as `resolve` says) with
 * override `view`, stat'ed and pinned `O_PATH`, in one native call. Returns
 * the read-write fd and the pin, both the caller's; on failure nothing is left.
 */
export function createFile(dirFd: number, name: Uint8Array, mode: number, resolve: number, procFd: number, view: Uint8Array): { fd: number; pinFd: number; st: HostStat } {
  const fd = createPinned(dirFd, name, mode, resolve, procFd, OVERRIDE_STAT_XATTR, view, fields);
  return { fd, pinFd: fields[EXTRA]!, st: hostStat() };
}

/**
 * The identity of a host inode as a Map key: its inode number alone when it
 * lives on the `home` device (the root's) and is below 2^53, as almost every
 * one does; else a string of device and inode number. A number and a string
 * never collide, and each inode has exactly one key.
 */
export type HostKey = number | string;

/** A host device as statx reports it. */
export interface HostDevice {
  readonly devMajor: number;
  readonly devMinor: number;
}

const TWO_32 = 2 ** 32;
/** Inode numbers whose upper half is below this are safe integers. */
const SAFE_HIGH = 2 ** 21;
const SAFE_INO = 2n ** 53n;

/** The key of inode `inoHigh:inoLow` on device `dev`, for a tree whose root is on `home`. */
export function hostKey(home: HostDevice, dev: HostDevice, inoHigh: number, inoLow: number): HostKey {
  if (dev.devMajor === home.devMajor && dev.devMinor === home.devMinor && inoHigh < SAFE_HIGH) return inoHigh * TWO_32 + inoLow;
  return `${dev.devMajor}:${dev.devMinor}:${inoHigh}:${inoLow}`;
}

/** The key of the inode `st` describes, in a tree whose root is on `home`. */
export const keyOf = (home: HostDevice, st: HostStat): HostKey => hostKey(home, st, st.inoHigh, st.inoLow);

/** The key of a directory entry's inode number (a getdents bigint) in directory `dir`. */
export function direntKey(home: HostDevice, dir: HostDevice, ino: bigint): HostKey {
  if (ino < SAFE_INO && dir.devMajor === home.devMajor && dir.devMinor === home.devMinor) return Number(ino);
  return hostKey(home, dir, Number(ino >> 32n), Number(ino & 0xffffffffn));
}

/** `major:minor/ino` of a host inode, for messages. */
export const describeHost = (st: HostStat): string => `${st.devMajor}:${st.devMinor}/${st.inoHigh * TWO_32 + st.inoLow}`;

/** What the guest sees of a host inode without an override (its device number in the guest's 32-bit `new_encode_dev` form). */
export const hostView = (st: HostStat): OverrideStat => ({ uid: st.uid, gid: st.gid, mode: st.mode, rdev: makedev(st.rdevMajor, st.rdevMinor) });

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
  get: () => Uint8Array | undefined,
  hostType: number,
  log: (reason: string) => void,
): OverrideStat | undefined {
  if (hostType !== S.IFREG && hostType !== S.IFDIR) return undefined;
  let bytes: Uint8Array | undefined;
  try {
    bytes = get();
  } catch (error) {
    if (NO_OVERRIDE.has((error as { code?: string }).code ?? "")) return undefined;
    throw error;
  }
  if (bytes === undefined) return undefined;
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
