// Encoding of FUSE replies, byte-exact: fuse_out_header + the opcode's
// struct, zero-filled so padding never carries stale memory to the other
// side. A value a backend returned that does not fit its field (NaN, a
// negative size, a name with '/') is an EncodeError, answered as EIO.
import type { Attr, DirEntry, DirEntryPlus, Entry, StatFs } from "@msb/fs";
import type { RequestHeader } from "./decode.js";
import { FUSE_NAME_MAX, NOTIFY_INVAL_INODE, Size } from "./protocol.js";

const TWO_32 = 2 ** 32;
const U32_MAX = 0xffff_ffff;

/** A backend value that cannot be put on the wire. */
export class EncodeError extends Error {
  constructor(field: string, value: unknown) {
    super(`${field} = ${typeof value === "bigint" ? `${value}n` : String(value)} does not fit its FUSE field`);
    this.name = "EncodeError";
  }
}

/** Seconds the kernel may cache a name and its attributes. */
export interface Timeouts {
  readonly entry: number;
  readonly attr: number;
}

/** The echo of a request that a reply needs: its unique id. */
export type ReplyTo = Pick<RequestHeader, "uniqueLo" | "uniqueHi">;

function u32(view: DataView, at: number, value: number, field: string): void {
  if (!(Number.isInteger(value) && value >= 0 && value <= U32_MAX)) throw new EncodeError(field, value);
  view.setUint32(at, value, true);
}

function u64(view: DataView, at: number, value: number, field: string): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new EncodeError(field, value);
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / TWO_32), true);
}

/** Signed 64-bit seconds: times before 1970 are negative. */
function s64(view: DataView, at: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value)) throw new EncodeError(field, value);
  view.setUint32(at, value >>> 0, true);
  view.setInt32(at + 4, Math.floor(value / TWO_32), true);
}

function nsec(view: DataView, at: number, value: number, field: string): void {
  if (!(Number.isInteger(value) && value >= 0 && value <= 999_999_999)) throw new EncodeError(field, value);
  view.setUint32(at, value, true);
}

/** A timeout in seconds as u64 seconds at `at` and u32 nanoseconds at `nsAt`. */
function timeout(view: DataView, at: number, nsAt: number, seconds: number, field: string): void {
  if (!(seconds >= 0 && seconds <= Number.MAX_SAFE_INTEGER)) throw new EncodeError(field, seconds);
  const whole = Math.floor(seconds);
  view.setUint32(at, whole >>> 0, true);
  view.setUint32(at + 4, Math.floor(whole / TWO_32), true);
  view.setUint32(nsAt, Math.min(Math.round((seconds - whole) * 1e9), 999_999_999), true);
}

function header(view: DataView, length: number, error: number, to: ReplyTo): void {
  view.setUint32(0, length, true);
  view.setInt32(4, error, true);
  view.setUint32(8, to.uniqueLo, true);
  view.setUint32(12, to.uniqueHi, true);
}

/**
 * Replies up to this size are carved out of shared slabs: a fresh
 * ArrayBuffer per reply costs more (its malloc, free and tracking by the
 * garbage collector) than the encoding. A slab is never written twice, so
 * what is carved from it starts zeroed; a reply kept by a sink keeps its
 * slab alive, as a small Buffer keeps Node's pool.
 */
const SLAB_REPLY_MAX = 1024;
const SLAB_SIZE = 64 * 1024;
let slab = new ArrayBuffer(SLAB_SIZE);
let slabUsed = 0;

/** A zeroed reply of `size` bytes, with a view of exactly those bytes. */
function zeroed(size: number): { bytes: Uint8Array; view: DataView } {
  if (size > SLAB_REPLY_MAX) {
    const buffer = new ArrayBuffer(size);
    return { bytes: new Uint8Array(buffer), view: new DataView(buffer) };
  }
  if (slabUsed + size > SLAB_SIZE) {
    slab = new ArrayBuffer(SLAB_SIZE);
    slabUsed = 0;
  }
  const at = slabUsed;
  // 8-byte aligned, as the kernel's structs are.
  slabUsed += (size + 7) & ~7;
  return { bytes: new Uint8Array(slab, at, size), view: new DataView(slab, at, size) };
}

/** A zeroed reply buffer of `bodySize` bytes after the header, with the header filled in. */
function reply(to: ReplyTo, bodySize: number, dataSize = 0): { bytes: Uint8Array; view: DataView } {
  const out = zeroed(Size.OUT_HEADER + bodySize);
  header(out.view, Size.OUT_HEADER + bodySize + dataSize, 0, to);
  return out;
}

/** `fuse_out_header` alone with `-errno` (0 for an empty success). */
export function encodeError(to: ReplyTo, errno: number): Uint8Array {
  const { bytes, view } = zeroed(Size.OUT_HEADER);
  header(view, Size.OUT_HEADER, -errno, to);
  return bytes;
}

/** An empty success reply. */
export function encodeEmpty(to: ReplyTo): Uint8Array {
  return encodeError(to, 0);
}

/** The header of a reply whose body is `data`, sent after it as is (no copy). */
export function encodeDataHeader(to: ReplyTo, dataSize: number): Uint8Array {
  return reply(to, 0, dataSize).bytes;
}

/** `struct fuse_attr` at `at`. */
function attr(view: DataView, at: number, a: Attr): void {
  u64(view, at, a.ino, "attr.ino");
  u64(view, at + 8, a.size, "attr.size");
  u64(view, at + 16, a.blocks, "attr.blocks");
  s64(view, at + 24, a.atime.sec, "attr.atime.sec");
  s64(view, at + 32, a.mtime.sec, "attr.mtime.sec");
  s64(view, at + 40, a.ctime.sec, "attr.ctime.sec");
  nsec(view, at + 48, a.atime.nsec, "attr.atime.nsec");
  nsec(view, at + 52, a.mtime.nsec, "attr.mtime.nsec");
  nsec(view, at + 56, a.ctime.nsec, "attr.ctime.nsec");
  u32(view, at + 60, a.mode, "attr.mode");
  u32(view, at + 64, a.nlink, "attr.nlink");
  u32(view, at + 68, a.uid, "attr.uid");
  u32(view, at + 72, a.gid, "attr.gid");
  u32(view, at + 76, a.rdev, "attr.rdev");
  u32(view, at + 80, a.blksize, "attr.blksize");
}

/** `struct fuse_entry_out` at `at`. */
function entryOut(view: DataView, at: number, e: Entry, t: Timeouts): void {
  u64(view, at, e.ino, "entry.ino");
  u64(view, at + 8, e.generation, "entry.generation");
  timeout(view, at + 16, at + 32, e.entryTimeout ?? t.entry, "entry.entryTimeout");
  timeout(view, at + 24, at + 36, e.attrTimeout ?? t.attr, "entry.attrTimeout");
  attr(view, at + 40, e.attr);
}

/** LOOKUP, MKNOD, MKDIR, SYMLINK, LINK: `fuse_entry_out`; an entry's own timeouts win over `t`. */
export function encodeEntry(to: ReplyTo, e: Entry, t: Timeouts): Uint8Array {
  const { bytes, view } = reply(to, Size.ENTRY_OUT);
  entryOut(view, Size.OUT_HEADER, e, t);
  return bytes;
}

/** A negative LOOKUP: nodeid 0 lets the kernel cache the absence for `seconds`. */
export function encodeNegativeEntry(to: ReplyTo, seconds: number): Uint8Array {
  const { bytes, view } = reply(to, Size.ENTRY_OUT);
  timeout(view, Size.OUT_HEADER + 16, Size.OUT_HEADER + 32, seconds, "negative timeout");
  return bytes;
}

/** GETATTR, SETATTR: `fuse_attr_out`. */
export function encodeAttr(to: ReplyTo, a: Attr, seconds: number): Uint8Array {
  const { bytes, view } = reply(to, Size.ATTR_OUT);
  timeout(view, Size.OUT_HEADER, Size.OUT_HEADER + 8, seconds, "attr timeout");
  attr(view, Size.OUT_HEADER + 16, a);
  return bytes;
}

/** OPEN, OPENDIR: `fuse_open_out`. */
export function encodeOpen(to: ReplyTo, fh: number, flags: number, backingId = 0): Uint8Array {
  const { bytes, view } = reply(to, Size.OPEN_OUT);
  openOut(view, Size.OUT_HEADER, fh, flags, backingId);
  return bytes;
}

/** CREATE: `fuse_entry_out` followed by `fuse_open_out`. */
export function encodeCreate(to: ReplyTo, e: Entry, fh: number, flags: number, t: Timeouts, backingId = 0): Uint8Array {
  const { bytes, view } = reply(to, Size.ENTRY_OUT + Size.OPEN_OUT);
  entryOut(view, Size.OUT_HEADER, e, t);
  openOut(view, Size.OUT_HEADER + Size.ENTRY_OUT, fh, flags, backingId);
  return bytes;
}

/** `fuse_open_out`: the handle, FOPEN flags and, with FOPEN_PASSTHROUGH, the backing id. */
function openOut(view: DataView, at: number, fh: number, flags: number, backingId: number): void {
  u64(view, at, fh, "fh");
  u32(view, at + 8, flags, "open flags");
  view.setInt32(at + 12, backingId, true);
}

/** WRITE, COPY_FILE_RANGE: `fuse_write_out`. */
export function encodeWrite(to: ReplyTo, written: number): Uint8Array {
  const { bytes, view } = reply(to, Size.WRITE_OUT);
  u32(view, Size.OUT_HEADER, written, "bytes written");
  return bytes;
}

/** GETXATTR, LISTXATTR probing with size 0: `fuse_getxattr_out`. */
export function encodeXattrSize(to: ReplyTo, size: number): Uint8Array {
  const { bytes, view } = reply(to, Size.GETXATTR_OUT);
  u32(view, Size.OUT_HEADER, size, "xattr size");
  return bytes;
}

/** LSEEK: `fuse_lseek_out`; COPY_FILE_RANGE_64: `fuse_copy_file_range_out` (same layout: one u64). */
export function encodeU64(to: ReplyTo, value: number, field: string): Uint8Array {
  const { bytes, view } = reply(to, 8);
  u64(view, Size.OUT_HEADER, value, field);
  return bytes;
}

/** STATFS: `fuse_statfs_out`. */
export function encodeStatfs(to: ReplyTo, st: StatFs): Uint8Array {
  const { bytes, view } = reply(to, Size.STATFS_OUT);
  const at = Size.OUT_HEADER;
  u64(view, at, st.blocks, "statfs.blocks");
  u64(view, at + 8, st.bfree, "statfs.bfree");
  u64(view, at + 16, st.bavail, "statfs.bavail");
  u64(view, at + 24, st.files, "statfs.files");
  u64(view, at + 32, st.ffree, "statfs.ffree");
  u32(view, at + 40, st.bsize, "statfs.bsize");
  u32(view, at + 44, st.namelen, "statfs.namelen");
  u32(view, at + 48, st.frsize, "statfs.frsize");
  return bytes;
}

/** The fields of `fuse_init_out` this server sets. */
export interface InitOut {
  readonly major: number;
  readonly minor: number;
  readonly maxReadahead: number;
  /** flags; bits 32..63 go to flags2. */
  readonly flags: bigint;
  readonly maxBackground: number;
  readonly congestionThreshold: number;
  readonly maxWrite: number;
  readonly timeGran: number;
  readonly maxPages: number;
  /** With FUSE_PASSTHROUGH: how deep the backing files' filesystems may be stacked, plus one. */
  readonly maxStackDepth: number;
}

/** INIT: `fuse_init_out`, in the size the negotiated minor knows (24 bytes before 7.23). */
export function encodeInit(to: ReplyTo, o: InitOut): Uint8Array {
  const size = o.minor < 23 ? Size.INIT_OUT_COMPAT_22 : Size.INIT_OUT;
  const { bytes, view } = reply(to, size);
  const at = Size.OUT_HEADER;
  view.setUint32(at, o.major, true);
  view.setUint32(at + 4, o.minor, true);
  view.setUint32(at + 8, o.maxReadahead, true);
  view.setUint32(at + 12, Number(o.flags & 0xffff_ffffn), true);
  view.setUint16(at + 16, o.maxBackground, true);
  view.setUint16(at + 18, o.congestionThreshold, true);
  view.setUint32(at + 20, o.maxWrite, true);
  if (size === Size.INIT_OUT) {
    view.setUint32(at + 24, o.timeGran, true);
    view.setUint16(at + 28, o.maxPages, true);
    view.setUint32(at + 32, Number(o.flags >> 32n), true);
    view.setUint32(at + 36, o.maxStackDepth, true);
  }
  return bytes;
}

/** The major version alone, asking a kernel with a newer major to retry INIT with ours. */
export function encodeInitMajorOnly(to: ReplyTo, major: number, minor: number): Uint8Array {
  const { bytes, view } = reply(to, 8);
  view.setUint32(Size.OUT_HEADER, major, true);
  view.setUint32(Size.OUT_HEADER + 4, minor, true);
  return bytes;
}

/**
 * FUSE_NOTIFY_INVAL_INODE for the attributes only (`off` -1): an unsolicited
 * message (unique 0, the notification code in `error`) after which the kernel
 * fetches the inode's attributes again before trusting them.
 */
export function encodeInvalidateAttr(ino: number): Uint8Array {
  const { bytes, view } = reply({ uniqueLo: 0, uniqueHi: 0 }, Size.NOTIFY_INVAL_INODE_OUT);
  view.setInt32(4, NOTIFY_INVAL_INODE, true);
  u64(view, Size.OUT_HEADER, ino, "ino");
  view.setInt32(Size.OUT_HEADER + 8, -1, true);
  view.setInt32(Size.OUT_HEADER + 12, -1, true);
  return bytes;
}

const align8 = (n: number): number => (n + 7) & ~7;

/** Checks a name as the kernel's readdir parser will (1..FUSE_NAME_MAX bytes, no '/'). */
function direntName(name: Uint8Array, index: number): Uint8Array {
  if (!(name instanceof Uint8Array) || name.length === 0 || name.length > FUSE_NAME_MAX || name.includes(0x2f)) {
    throw new EncodeError(`entry ${index} name`, name instanceof Uint8Array ? new TextDecoder().decode(name) : name);
  }
  return name;
}

/** The packed dirents of a READDIR/READDIRPLUS reply and how many entries fit. */
export interface Dirents {
  readonly bytes: Uint8Array;
  readonly count: number;
}

/**
 * Packs as many entries as fit in `size` bytes of `fuse_dirent` (or, with
 * `t`, `fuse_direntplus`) records, each padded to 8 bytes. The caller
 * releases the lookups of the plus entries beyond `count`.
 */
export function encodeDirents(to: ReplyTo, entries: readonly DirEntry[], size: number, t?: Timeouts): Dirents {
  const fixed = t === undefined ? Size.DIRENT : Size.DIRENTPLUS;
  let total = 0;
  let count = 0;
  for (; count < entries.length; count++) {
    const record = align8(fixed + direntName(entries[count]!.name, count).length);
    if (total + record > size) break;
    total += record;
  }
  const { bytes, view } = reply(to, total);
  let at = Size.OUT_HEADER;
  for (let i = 0; i < count; i++) {
    const e = entries[i]!;
    if (t !== undefined) {
      entryOut(view, at, (e as DirEntryPlus).entry, t);
      at += Size.ENTRY_OUT;
    }
    u64(view, at, e.ino, `entry ${i} ino`);
    u64(view, at + 8, e.offset, `entry ${i} offset`);
    view.setUint32(at + 16, e.name.length, true);
    u32(view, at + 20, e.type, `entry ${i} type`);
    bytes.set(e.name, at + Size.DIRENT);
    at += align8(Size.DIRENT + e.name.length);
  }
  return { bytes, count };
}
