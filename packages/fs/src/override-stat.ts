// The on-disk form of guest ownership for host-backed trees: PassthroughFs
// reads and writes it, OCI layer unpacking writes it (DESIGN §3).
import { S } from "./constants.js";
import { fileKind } from "./mode.js";

/** The host xattr that holds a file's guest-visible owner, group, mode and device number. */
export const OVERRIDE_STAT_XATTR = "user.msb.override_stat";

/** Size in bytes of an {@link OVERRIDE_STAT_XATTR} value. */
export const OVERRIDE_STAT_SIZE = 20;

/** The only format version there is: the first byte of the value. */
export const OVERRIDE_STAT_VERSION = 1;

const U32_MAX = 0xffff_ffff;

/**
 * The guest's view of a host file's metadata, as stored in
 * {@link OVERRIDE_STAT_XATTR}: `mode` includes the file type bits, `rdev` is
 * the kernel's 32-bit `new_encode_dev` device number (as {@link makedev}
 * builds it).
 */
export interface OverrideStat {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
  readonly rdev: number;
}

/**
 * Why an {@link OVERRIDE_STAT_XATTR} value could not be read or written.
 * `code` is always `"ERR_MSB_OVERRIDE_STAT"`.
 */
export class OverrideStatError extends Error {
  readonly code = "ERR_MSB_OVERRIDE_STAT";

  constructor(message: string) {
    super(message);
    this.name = "OverrideStatError";
  }
}

function checkMode(mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o177777 || fileKind(mode) === undefined) {
    throw new OverrideStatError(`mode 0o${mode.toString(8)} is not a file type with permission bits`);
  }
}

/**
 * The 20-byte value of {@link OVERRIDE_STAT_XATTR}: u8 version (1), three
 * zero bytes, then u32 uid, gid, mode and rdev, little endian.
 *
 * @throws {@link OverrideStatError} when an id or `rdev` is not a u32, or `mode` has no valid file type.
 */
export function encodeOverrideStat(stat: OverrideStat): Uint8Array {
  for (const key of ["uid", "gid", "rdev"] as const) {
    const value = stat[key];
    if (!Number.isInteger(value) || value < 0 || value > U32_MAX) throw new OverrideStatError(`${key} ${String(value)} is not a u32`);
  }
  checkMode(stat.mode);
  const bytes = new Uint8Array(OVERRIDE_STAT_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, OVERRIDE_STAT_VERSION);
  view.setUint32(4, stat.uid, true);
  view.setUint32(8, stat.gid, true);
  view.setUint32(12, stat.mode, true);
  view.setUint32(16, stat.rdev, true);
  return bytes;
}

/**
 * Reads an {@link OVERRIDE_STAT_XATTR} value.
 *
 * @throws {@link OverrideStatError} for a wrong length, an unknown version,
 *   non-zero padding, or a mode without a valid file type.
 */
export function decodeOverrideStat(bytes: Uint8Array): OverrideStat {
  if (bytes.length !== OVERRIDE_STAT_SIZE) throw new OverrideStatError(`${bytes.length} bytes, expected ${OVERRIDE_STAT_SIZE}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(0);
  if (version !== OVERRIDE_STAT_VERSION) throw new OverrideStatError(`version ${version}, expected ${OVERRIDE_STAT_VERSION}`);
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) throw new OverrideStatError("padding bytes are not zero");
  const mode = view.getUint32(12, true);
  checkMode(mode);
  return { uid: view.getUint32(4, true), gid: view.getUint32(8, true), mode, rdev: view.getUint32(16, true) };
}

/**
 * True when a guest file type may be stored on a host inode of type
 * `hostType`: directories only on directories, every non-directory type
 * (regular, FIFO, socket, device) on regular files. Nothing else carries
 * `user.*` xattrs.
 */
export function typeFitsHost(guestMode: number, hostType: number): boolean {
  const guestType = guestMode & S.IFMT;
  if (hostType === S.IFDIR) return guestType === S.IFDIR;
  return hostType === S.IFREG && guestType !== S.IFDIR && guestType !== S.IFLNK;
}
