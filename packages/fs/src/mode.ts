import { DT, S } from "./constants.js";

/** The kind of an inode, derived from the type bits of its mode. */
export type FileKind = "file" | "directory" | "symlink" | "fifo" | "socket" | "char-device" | "block-device";

/** The kind of inode a mode describes; `undefined` for an invalid type. */
export function fileKind(mode: number): FileKind | undefined {
  switch (mode & S.IFMT) {
    case S.IFREG:
      return "file";
    case S.IFDIR:
      return "directory";
    case S.IFLNK:
      return "symlink";
    case S.IFIFO:
      return "fifo";
    case S.IFSOCK:
      return "socket";
    case S.IFCHR:
      return "char-device";
    case S.IFBLK:
      return "block-device";
    default:
      return undefined;
  }
}

/** True for a directory mode. */
export const isDirectory = (mode: number): boolean => (mode & S.IFMT) === S.IFDIR;
/** True for a regular file mode. */
export const isRegularFile = (mode: number): boolean => (mode & S.IFMT) === S.IFREG;
/** True for a symlink mode. */
export const isSymlink = (mode: number): boolean => (mode & S.IFMT) === S.IFLNK;

/** The `d_type` of a mode, as readdir reports it (`DT.UNKNOWN` for an invalid type). */
export function dtFromMode(mode: number): number {
  // S_IFMT >> 12 is d_type for every valid type: Linux defines DT_* that way.
  const dt = (mode & S.IFMT) >>> 12;
  return fileKind(mode) === undefined ? DT.UNKNOWN : dt;
}

/** The device number Linux encodes for `major:minor` (`makedev`), as `Attr.rdev` holds it. */
export function makedev(major: number, minor: number): number {
  // The kernel's 32-bit new_encode_dev layout (FUSE carries rdev as u32):
  // 12 bits of major, 20 bits of minor.
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & 0xfff00) << 12)) >>> 0;
}

/** The major number of a `makedev`-encoded device. */
export function major(dev: number): number {
  return (dev >>> 8) & 0xfff;
}

/** The minor number of a `makedev`-encoded device. */
export function minor(dev: number): number {
  return (dev & 0xff) | ((dev >>> 12) & 0xfff00);
}
