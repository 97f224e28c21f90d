// Decoding of FUSE requests: every length is checked against the header's
// `len` and the opcode's struct size before a field is read, and every name
// must end with a NUL inside the message. Anything else is a ProtocolError
// carrying the errno to answer with; nothing here trusts the sender.
import { Errno, SetattrValid, type Context, type SetattrRequest, type Timespec } from "@msb/fs";
import { EXT_GROUPS, FSYNC_FDATASYNC, GETATTR_FH, InitFlag, OPEN_KILL_SUIDGID, Op, Size } from "./protocol.js";

const TWO_32 = 2 ** 32;

/** A request that cannot be decoded: the errno to answer with and why. */
export class ProtocolError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** `fuse_in_header`, plus where the arguments end. */
export interface RequestHeader {
  readonly length: number;
  readonly opcode: number;
  /** The request id as a number key (exact below 2^53; the kernel's ids are). */
  readonly unique: number;
  /** The low and high halves of the id, echoed byte-exact in the reply. */
  readonly uniqueLo: number;
  readonly uniqueHi: number;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** Length of the request extensions at the end of the message, in bytes. */
  readonly extLength: number;
}

/** What the decoder must know of the negotiated connection. */
export interface DecodeOptions {
  /** `fuse_setxattr_in` is the 16-byte 7.33 form (FUSE_SETXATTR_EXT negotiated). */
  readonly setxattrExt: boolean;
  /**
   * The message is only lent (a read buffer that the next request
   * overwrites): names, write data and xattr values are copied out of it
   * instead of being views into it. Default false.
   */
  readonly copyBytes?: boolean;
}

/** The fields of `fuse_init_in` this server uses. */
export interface InitIn {
  readonly major: number;
  readonly minor: number;
  readonly maxReadahead: number;
  /** flags, with flags2 in bits 32..63 when the kernel set FUSE_INIT_EXT. */
  readonly flags: bigint;
}

/** A decoded request: one variant per opcode the server handles. */
export type Request =
  | { readonly kind: "init"; readonly init: InitIn }
  | { readonly kind: "destroy" }
  | { readonly kind: "interrupt"; readonly target: number }
  | { readonly kind: "forget"; readonly nlookup: number }
  | { readonly kind: "batchForget"; readonly items: (readonly [number, number])[]; readonly declared: number }
  | { readonly kind: "lookup" | "unlink" | "rmdir" | "removexattr"; readonly name: Uint8Array }
  | { readonly kind: "getattr"; readonly fh: number | undefined }
  | { readonly kind: "setattr"; readonly req: SetattrRequest }
  | { readonly kind: "readlink" | "statfs" }
  | { readonly kind: "symlink"; readonly name: Uint8Array; readonly target: Uint8Array }
  | { readonly kind: "mknod"; readonly name: Uint8Array; readonly mode: number; readonly rdev: number; readonly umask: number }
  | { readonly kind: "mkdir"; readonly name: Uint8Array; readonly mode: number; readonly umask: number }
  | { readonly kind: "rename"; readonly name: Uint8Array; readonly newParent: number; readonly newName: Uint8Array; readonly flags: number }
  | { readonly kind: "link"; readonly ino: number; readonly newName: Uint8Array }
  | { readonly kind: "open" | "opendir"; readonly flags: number; readonly killSuidgid: boolean }
  | { readonly kind: "create"; readonly name: Uint8Array; readonly mode: number; readonly flags: number; readonly umask: number }
  | { readonly kind: "read" | "readdir" | "readdirplus"; readonly fh: number; readonly offset: number; readonly size: number }
  | { readonly kind: "write"; readonly fh: number; readonly offset: number; readonly data: Uint8Array; readonly flags: number }
  | { readonly kind: "release" | "releasedir"; readonly fh: number; readonly flags: number }
  | { readonly kind: "fsync" | "fsyncdir"; readonly fh: number; readonly datasync: boolean }
  | { readonly kind: "flush"; readonly fh: number; readonly lockOwner: number }
  | { readonly kind: "setxattr"; readonly name: Uint8Array; readonly value: Uint8Array; readonly flags: number }
  | { readonly kind: "getxattr"; readonly name: Uint8Array; readonly size: number }
  | { readonly kind: "listxattr"; readonly size: number }
  | { readonly kind: "access"; readonly mask: number }
  | { readonly kind: "fallocate"; readonly fh: number; readonly offset: number; readonly length: number; readonly mode: number }
  | { readonly kind: "lseek"; readonly fh: number; readonly offset: number; readonly whence: number }
  | {
      readonly kind: "copyFileRange";
      readonly wide: boolean;
      readonly fhIn: number;
      readonly offsetIn: number;
      readonly inoOut: number;
      readonly fhOut: number;
      readonly offsetOut: number;
      readonly length: number;
      readonly flags: number;
    }
  /** Known to the protocol but not served (locks, ioctl, poll, DAX, statx, ...): ENOSYS. */
  | { readonly kind: "unsupported" }
  /** A reply of the kernel to a notification this server never sends: dropped. */
  | { readonly kind: "notifyReply" };

/** The kind of a decoded request. */
export type RequestKind = Request["kind"];

// Fields are read from the bytes themselves: a DataView per request costs
// more (its construction) than the few fields a request has.

function u16(bytes: Uint8Array, at: number): number {
  return bytes[at]! | (bytes[at + 1]! << 8);
}

function i32(bytes: Uint8Array, at: number): number {
  return bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);
}

function u32(bytes: Uint8Array, at: number): number {
  return i32(bytes, at) >>> 0;
}

/** A u64 as a number: exact up to 2^53, the nearest double above (never a valid inode or handle). */
function u64(bytes: Uint8Array, at: number): number {
  return u32(bytes, at) + u32(bytes, at + 4) * TWO_32;
}

/**
 * Decodes `fuse_in_header` and checks it against the message: `len` must
 * equal the message length and leave room for the extensions it declares.
 */
export function decodeHeader(message: Uint8Array): RequestHeader {
  if (message.length < Size.IN_HEADER) {
    throw new ProtocolError(Errno.EIO, `request of ${message.length} bytes is shorter than fuse_in_header (${Size.IN_HEADER})`);
  }
  const length = u32(message, 0);
  const uniqueLo = u32(message, 8);
  const uniqueHi = u32(message, 12);
  const extLength = u16(message, 36) * 8;
  const header: RequestHeader = {
    length,
    opcode: u32(message, 4),
    unique: uniqueLo + uniqueHi * TWO_32,
    uniqueLo,
    uniqueHi,
    nodeid: u64(message, 16),
    uid: u32(message, 24),
    gid: u32(message, 28),
    pid: u32(message, 32),
    extLength,
  };
  if (length !== message.length) {
    throw new HeaderError(header, `header len ${length} but the message has ${message.length} bytes`);
  }
  if (Size.IN_HEADER + extLength > length) {
    throw new HeaderError(header, `total_extlen of ${extLength} bytes exceeds the ${length - Size.IN_HEADER} bytes after the header`);
  }
  return header;
}

/** A ProtocolError found after the header could be read, so the reply can name its unique. */
export class HeaderError extends ProtocolError {
  constructor(
    readonly header: RequestHeader,
    message: string,
  ) {
    super(Errno.EINVAL, message);
  }
}

/** The caller's credentials, with the supplementary groups of a FUSE_EXT_GROUPS extension. */
export function decodeContext(message: Uint8Array, header: RequestHeader): Context {
  if (header.extLength === 0) return { uid: header.uid, gid: header.gid, pid: header.pid };
  const groups = decodeExtensions(message.subarray(header.length - header.extLength, header.length));
  return groups === undefined
    ? { uid: header.uid, gid: header.gid, pid: header.pid }
    : { uid: header.uid, gid: header.gid, pid: header.pid, groups };
}

/**
 * Walks the `fuse_ext_header` chain; returns the groups of the groups
 * extension, skipping others (security contexts, future types).
 */
function decodeExtensions(ext: Uint8Array): number[] | undefined {
  let groups: number[] | undefined;
  for (let at = 0; at < ext.length; ) {
    if (ext.length - at < Size.EXT_HEADER) throw new ProtocolError(Errno.EINVAL, `truncated extension header at byte ${at}`);
    const size = u32(ext, at);
    const type = u32(ext, at + 4);
    if (size < Size.EXT_HEADER || size % 8 !== 0 || size > ext.length - at) {
      throw new ProtocolError(Errno.EINVAL, `extension of type ${type} has a bad size ${size}`);
    }
    if (type === EXT_GROUPS) {
      if (size < Size.EXT_HEADER + 4) throw new ProtocolError(Errno.EINVAL, `groups extension of ${size} bytes`);
      const count = u32(ext, at + 8);
      if (count > (size - Size.EXT_HEADER - 4) / 4) {
        throw new ProtocolError(Errno.EINVAL, `groups extension declares ${count} groups in ${size} bytes`);
      }
      groups = [];
      for (let i = 0; i < count; i++) groups.push(u32(ext, at + 12 + 4 * i));
    }
    at += size;
  }
  return groups;
}

/**
 * Reads the arguments of one request, bytes `at` to `end` of its message,
 * checking each length first.
 */
class Args {
  constructor(
    readonly message: Uint8Array,
    public at: number,
    readonly end: number,
    private readonly opcode: number,
    private readonly copyBytes: boolean,
  ) {}

  /** Bytes of the arguments left to read. */
  get left(): number {
    return this.end - this.at;
  }

  /** Bytes `from` to `to` of the message: a copy when the message is lent, else a view. */
  #take(from: number, to: number): Uint8Array {
    return this.copyBytes ? this.message.slice(from, to) : this.message.subarray(from, to);
  }

  #error(message: string): ProtocolError {
    return new ProtocolError(Errno.EINVAL, `opcode ${this.opcode}: ${message}`);
  }

  /** Requires `size` more bytes for a struct named `struct`. */
  need(size: number, struct: string): this {
    if (this.left < size) throw this.#error(`${this.left} bytes left for ${struct} (${size})`);
    return this;
  }

  u32(): number {
    const value = u32(this.message, this.at);
    this.at += 4;
    return value;
  }

  u64(): number {
    const value = u64(this.message, this.at);
    this.at += 8;
    return value;
  }

  skip(size: number): this {
    this.at += size;
    return this;
  }

  /** A NUL-terminated name; the NUL must lie inside the arguments. */
  name(field: string): Uint8Array {
    const end = this.message.indexOf(0, this.at);
    if (end < 0 || end >= this.end) throw this.#error(`${field} is not NUL-terminated`);
    const name = this.#take(this.at, end);
    this.at = end + 1;
    return name;
  }

  /** The next `size` bytes as they are. */
  bytesOf(size: number, field: string): Uint8Array {
    this.need(size, field);
    const data = this.#take(this.at, this.at + size);
    this.at += size;
    return data;
  }
}

function timespec(sec: number, nsec: number): Timespec {
  return { sec, nsec };
}

/** A signed 64-bit count of seconds (times before 1970 are negative). */
function signedSeconds(bytes: Uint8Array, at: number): number {
  return u32(bytes, at) + i32(bytes, at + 4) * TWO_32;
}

/** A time a SETATTR sets (its `valid` bit on, its `_NOW` bit off) must have nanoseconds below 10^9, as the kernel checks. */
function setattrTime(bytes: Uint8Array, valid: number, bit: number, nowBit: number, at: number, nsAt: number, field: string): Timespec {
  const time = timespec(signedSeconds(bytes, at), u32(bytes, nsAt));
  if ((valid & bit) !== 0 && (valid & nowBit) === 0 && time.nsec > 999_999_999) {
    throw new ProtocolError(Errno.EINVAL, `fuse_setattr_in: ${field}nsec ${time.nsec} is not below 10^9`);
  }
  return time;
}

function decodeSetattr(a: Args): SetattrRequest {
  a.need(Size.SETATTR_IN, "fuse_setattr_in");
  const m = a.message;
  const at = a.at;
  const valid = u32(m, at);
  return {
    valid,
    fh: u64(m, at + 8),
    size: u64(m, at + 16),
    atime: setattrTime(m, valid, SetattrValid.ATIME, SetattrValid.ATIME_NOW, at + 32, at + 56, "atime"),
    mtime: setattrTime(m, valid, SetattrValid.MTIME, SetattrValid.MTIME_NOW, at + 40, at + 60, "mtime"),
    ctime: setattrTime(m, valid, SetattrValid.CTIME, 0, at + 48, at + 64, "ctime"),
    mode: u32(m, at + 68),
    uid: u32(m, at + 76),
    gid: u32(m, at + 80),
  };
}

function decodeInit(a: Args): InitIn {
  a.need(Size.INIT_IN_MIN, "fuse_init_in");
  const major = a.u32();
  const minor = a.u32();
  const length = a.end - Size.IN_HEADER;
  const maxReadahead = length >= 12 ? a.u32() : 0;
  let flags = length >= 16 ? BigInt(a.u32()) : 0n;
  if ((flags & InitFlag.INIT_EXT) !== 0n && length >= 20) flags |= BigInt(a.u32()) << 32n;
  return { major, minor, maxReadahead, flags };
}

function decodeBatchForget(a: Args): Request {
  a.need(Size.BATCH_FORGET_IN, "fuse_batch_forget_in");
  const declared = a.u32();
  a.skip(4);
  // A short batch is applied as far as it goes: the kernel never hears back.
  const count = Math.min(declared, Math.floor(a.left / Size.FORGET_ONE));
  const items: (readonly [number, number])[] = [];
  for (let i = 0; i < count; i++) items.push([a.u64(), a.u64()]);
  return { kind: "batchForget", items, declared };
}

function decodeRead(a: Args, kind: "read" | "readdir" | "readdirplus"): Request {
  a.need(Size.READ_IN, "fuse_read_in");
  const fh = a.u64();
  const offset = a.u64();
  return { kind, fh, offset, size: a.u32() };
}

/**
 * Decodes the arguments of a request whose header passed {@link decodeHeader}.
 * Throws {@link ProtocolError} for arguments shorter than the opcode's struct
 * or names without their NUL.
 */
export function decodeRequest(message: Uint8Array, header: RequestHeader, options: DecodeOptions): Request {
  const a = new Args(message, Size.IN_HEADER, header.length - header.extLength, header.opcode, options.copyBytes === true);
  switch (header.opcode) {
    case Op.INIT:
      return { kind: "init", init: decodeInit(a) };
    case Op.DESTROY:
      return { kind: "destroy" };
    case Op.INTERRUPT:
      return { kind: "interrupt", target: a.need(Size.INTERRUPT_IN, "fuse_interrupt_in").u64() };
    case Op.FORGET:
      return { kind: "forget", nlookup: a.need(Size.FORGET_IN, "fuse_forget_in").u64() };
    case Op.BATCH_FORGET:
      return decodeBatchForget(a);
    case Op.LOOKUP:
      return { kind: "lookup", name: a.name("name") };
    case Op.UNLINK:
      return { kind: "unlink", name: a.name("name") };
    case Op.RMDIR:
      return { kind: "rmdir", name: a.name("name") };
    case Op.REMOVEXATTR:
      return { kind: "removexattr", name: a.name("name") };
    case Op.GETATTR: {
      a.need(Size.GETATTR_IN, "fuse_getattr_in");
      const flags = a.u32();
      const fh = a.skip(4).u64();
      return { kind: "getattr", fh: (flags & GETATTR_FH) !== 0 ? fh : undefined };
    }
    case Op.SETATTR:
      return { kind: "setattr", req: decodeSetattr(a) };
    case Op.READLINK:
      return { kind: "readlink" };
    case Op.STATFS:
      return { kind: "statfs" };
    case Op.SYMLINK: {
      const name = a.name("name");
      return { kind: "symlink", name, target: a.name("target") };
    }
    case Op.MKNOD: {
      a.need(Size.MKNOD_IN, "fuse_mknod_in");
      const mode = a.u32();
      const rdev = a.u32();
      const umask = a.u32();
      return { kind: "mknod", mode, rdev, umask, name: a.skip(4).name("name") };
    }
    case Op.MKDIR: {
      a.need(Size.MKDIR_IN, "fuse_mkdir_in");
      const mode = a.u32();
      const umask = a.u32();
      return { kind: "mkdir", mode, umask, name: a.name("name") };
    }
    case Op.RENAME:
    case Op.RENAME2: {
      const wide = header.opcode === Op.RENAME2;
      a.need(wide ? Size.RENAME2_IN : Size.RENAME_IN, wide ? "fuse_rename2_in" : "fuse_rename_in");
      const newParent = a.u64();
      const flags = wide ? a.u32() : 0;
      if (wide) a.skip(4);
      const name = a.name("oldname");
      return { kind: "rename", name, newParent, newName: a.name("newname"), flags };
    }
    case Op.LINK: {
      const ino = a.need(Size.LINK_IN, "fuse_link_in").u64();
      return { kind: "link", ino, newName: a.name("newname") };
    }
    case Op.OPEN:
    case Op.OPENDIR: {
      const flags = a.need(Size.OPEN_IN, "fuse_open_in").u32();
      const killSuidgid = (a.u32() & OPEN_KILL_SUIDGID) !== 0;
      return { kind: header.opcode === Op.OPEN ? "open" : "opendir", flags, killSuidgid };
    }
    case Op.CREATE: {
      a.need(Size.CREATE_IN, "fuse_create_in");
      const flags = a.u32();
      const mode = a.u32();
      const umask = a.u32();
      return { kind: "create", flags, mode, umask, name: a.skip(4).name("name") };
    }
    case Op.READ:
      return decodeRead(a, "read");
    case Op.READDIR:
      return decodeRead(a, "readdir");
    case Op.READDIRPLUS:
      return decodeRead(a, "readdirplus");
    case Op.WRITE: {
      a.need(Size.WRITE_IN, "fuse_write_in");
      const fh = a.u64();
      const offset = a.u64();
      const size = a.u32();
      const flags = a.u32();
      return { kind: "write", fh, offset, flags, data: a.skip(16).bytesOf(size, "write data") };
    }
    case Op.RELEASE:
    case Op.RELEASEDIR: {
      a.need(Size.RELEASE_IN, "fuse_release_in");
      const fh = a.u64();
      return { kind: header.opcode === Op.RELEASE ? "release" : "releasedir", fh, flags: a.u32() };
    }
    case Op.FSYNC:
    case Op.FSYNCDIR: {
      a.need(Size.FSYNC_IN, "fuse_fsync_in");
      const fh = a.u64();
      const datasync = (a.u32() & FSYNC_FDATASYNC) !== 0;
      return { kind: header.opcode === Op.FSYNC ? "fsync" : "fsyncdir", fh, datasync };
    }
    case Op.FLUSH: {
      a.need(Size.FLUSH_IN, "fuse_flush_in");
      const fh = a.u64();
      return { kind: "flush", fh, lockOwner: a.skip(8).u64() };
    }
    case Op.SETXATTR: {
      a.need(options.setxattrExt ? Size.SETXATTR_IN_EXT : Size.SETXATTR_IN, "fuse_setxattr_in");
      const size = a.u32();
      const flags = a.u32();
      if (options.setxattrExt) a.skip(8);
      const name = a.name("name");
      return { kind: "setxattr", name, flags, value: a.bytesOf(size, "xattr value") };
    }
    case Op.GETXATTR: {
      const size = a.need(Size.GETXATTR_IN, "fuse_getxattr_in").u32();
      return { kind: "getxattr", size, name: a.skip(4).name("name") };
    }
    case Op.LISTXATTR:
      return { kind: "listxattr", size: a.need(Size.GETXATTR_IN, "fuse_getxattr_in").u32() };
    case Op.ACCESS:
      return { kind: "access", mask: a.need(Size.ACCESS_IN, "fuse_access_in").u32() };
    case Op.FALLOCATE: {
      a.need(Size.FALLOCATE_IN, "fuse_fallocate_in");
      const fh = a.u64();
      const offset = a.u64();
      const length = a.u64();
      return { kind: "fallocate", fh, offset, length, mode: a.u32() };
    }
    case Op.LSEEK: {
      a.need(Size.LSEEK_IN, "fuse_lseek_in");
      const fh = a.u64();
      const offset = a.u64();
      return { kind: "lseek", fh, offset, whence: a.u32() };
    }
    case Op.COPY_FILE_RANGE:
    case Op.COPY_FILE_RANGE_64: {
      a.need(Size.COPY_FILE_RANGE_IN, "fuse_copy_file_range_in");
      return {
        kind: "copyFileRange",
        wide: header.opcode === Op.COPY_FILE_RANGE_64,
        fhIn: a.u64(),
        offsetIn: a.u64(),
        inoOut: a.u64(),
        fhOut: a.u64(),
        offsetOut: a.u64(),
        length: a.u64(),
        flags: a.u64(),
      };
    }
    case Op.NOTIFY_REPLY:
      return { kind: "notifyReply" };
    default:
      return { kind: "unsupported" };
  }
}
