// Building blocks for filesystems made of other filesystems (OverlayFs,
// DualFs): the OCI whiteout names both store on their backends, and the
// layer-level operations both need (listing, probing, copying an object
// across backends atomically).
import { O, S, SetattrValid, NAME_MAX } from "./constants.js";
import { FsError } from "./errno.js";
import { bytesStartWith, isDotOrDotDot, toBytes, validateName } from "./names.js";
import { setattrRequest } from "./setattr.js";
import type { Attr, CachePolicy, Context, DirEntry, DynFileSystem, Entry } from "./types.js";

/** Root credentials, for the work a composing filesystem does on its backends on its own behalf. */
export const ROOT_CONTEXT: Context = Object.freeze({ uid: 0, gid: 0, pid: 0 });

/** The prefix of every OCI whiteout name (`.wh.<name>` hides `<name>`). */
export const WHITEOUT_PREFIX = toBytes(".wh.");
/** The OCI opaque-directory marker. */
export const OPAQUE_MARKER = toBytes(".wh..wh..opq");

/**
 * True for any name in a whiteout namespace: the OCI one (`.wh.` prefix, the
 * opaque marker included) unless another `prefix` is given.
 */
export const isWhiteoutName = (name: Uint8Array, prefix: Uint8Array = WHITEOUT_PREFIX): boolean => bytesStartWith(name, prefix);

/** The whiteout of `name` (OCI unless another `prefix` is given), or `undefined` when it would be longer than a name may be. */
export function whiteoutOf(name: Uint8Array, prefix: Uint8Array = WHITEOUT_PREFIX): Uint8Array | undefined {
  if (name.length + prefix.length > NAME_MAX) return undefined;
  const out = new Uint8Array(prefix.length + name.length);
  out.set(prefix);
  out.set(name, prefix.length);
  return out;
}

/** A Map key for a name: one char per byte, so any bytes round-trip. */
export function nameKey(name: Uint8Array): string {
  let key = "";
  for (let i = 0; i < name.length; i += 4096) key += String.fromCharCode(...name.subarray(i, i + 4096));
  return key;
}

/** True for an FsError `ENOENT`: the answer to a name that is not there. */
export const isNoEntry = (error: unknown): boolean => FsError.isInstance(error) && error.code === "ENOENT";
const LIST_BATCH_BYTES = 64 * 1024;
const COPY_CHUNK = 1 << 20;

/**
 * Every entry of directory `ino` of `fs` but `.` and `..`, read as `ctx`
 * (root by default). A backend whose cookies do not advance gets `EIO`
 * instead of an endless listing.
 */
export async function listEntries(fs: DynFileSystem, ino: number, ctx: Context = ROOT_CONTEXT): Promise<DirEntry[]> {
  const { fh } = await fs.opendir(ctx, ino, O.RDONLY | O.DIRECTORY);
  try {
    const entries: DirEntry[] = [];
    let offset = 0;
    for (;;) {
      const batch = await fs.readdir(ctx, ino, fh, offset, LIST_BATCH_BYTES);
      if (batch.length === 0) return entries;
      for (const e of batch) if (!isDotOrDotDot(e.name)) entries.push(e);
      const next = batch[batch.length - 1]!.offset;
      if (next === offset) throw new FsError("EIO", { op: "readdir", ino, detail: "directory offset did not advance" });
      offset = next;
    }
  } finally {
    await fs.releasedir(ctx, ino, fh, O.RDONLY);
  }
}

/** The entry of `name` in directory `dir` of `fs` (one lookup counted), or `undefined` when there is none. */
export async function lookupIfExists(fs: DynFileSystem, dir: number, name: Uint8Array): Promise<Entry | undefined> {
  try {
    return await fs.lookup(ROOT_CONTEXT, dir, name);
  } catch (error) {
    if (isNoEntry(error)) return undefined;
    throw error;
  }
}

/** True when `name` exists in directory `dir` of `fs`; nothing stays counted. */
export async function hasEntry(fs: DynFileSystem, dir: number, name: Uint8Array): Promise<boolean> {
  const entry = await lookupIfExists(fs, dir, name);
  if (entry === undefined) return false;
  await fs.forget(ROOT_CONTEXT, entry.ino, 1);
  return true;
}

/** Creates the empty regular file `name` (a whiteout or marker) in directory `dir` of `fs`, unless it exists. */
export async function ensureMarker(fs: DynFileSystem, dir: number, name: Uint8Array): Promise<void> {
  if (await hasEntry(fs, dir, name)) return;
  const entry = await fs.mknod(ROOT_CONTEXT, dir, name, S.IFREG | 0o644, 0, 0);
  await fs.forget(ROOT_CONTEXT, entry.ino, 1);
}

/** Where {@link copyObject} builds its copy: a directory of the target and a temporary name in it. */
export interface CopyTarget {
  readonly fs: DynFileSystem;
  /** The staging directory the copy is assembled in before it is renamed into place. */
  readonly stagingDir: number;
  /** A name not in use in the staging directory. */
  readonly tempName: Uint8Array;
}

/**
 * Copies one object (`ino` of `source`, with attributes `attr`) to
 * `target.fs` as `tempName` in its staging directory, as root: the data of a
 * regular file in 1 MiB chunks (made durable), an empty directory, a symlink's
 * target or a device's number, then every xattr, owner, mode and times. The
 * caller renames it into place, so nobody ever sees a partial copy; on
 * failure nothing is left in the staging directory. The returned Entry counts
 * one lookup on the target.
 *
 * @param skipData - leave a regular file empty (an open with `O_TRUNC` will cut it anyway)
 */
export async function copyObject(source: DynFileSystem, ino: number, attr: Attr, target: CopyTarget, skipData = false): Promise<Entry> {
  const { fs, stagingDir, tempName } = target;
  const type = attr.mode & S.IFMT;
  let entry: Entry;
  if (type === S.IFREG) {
    const reply = await fs.create(ROOT_CONTEXT, stagingDir, tempName, S.IFREG | 0o600, O.WRONLY, 0);
    entry = reply.entry;
    try {
      if (!skipData) await copyData(source, ino, fs, entry.ino, reply.fh);
      // Durable before the rename makes it visible: a crash never shows a renamed but empty copy.
      await fs.fsync(ROOT_CONTEXT, entry.ino, reply.fh, true);
    } catch (error) {
      await fs.release(ROOT_CONTEXT, entry.ino, reply.fh, O.WRONLY);
      await discardCopy(target, entry);
      throw error;
    }
    await fs.release(ROOT_CONTEXT, entry.ino, reply.fh, O.WRONLY);
  } else if (type === S.IFDIR) {
    entry = await fs.mkdir(ROOT_CONTEXT, stagingDir, tempName, S.IFDIR | 0o700, 0);
  } else if (type === S.IFLNK) {
    entry = await fs.symlink(ROOT_CONTEXT, await source.readlink(ROOT_CONTEXT, ino), stagingDir, tempName);
  } else {
    entry = await fs.mknod(ROOT_CONTEXT, stagingDir, tempName, type | 0o600, attr.rdev, 0);
  }
  try {
    for (const name of await source.listxattr(ROOT_CONTEXT, ino)) {
      await fs.setxattr(ROOT_CONTEXT, entry.ino, name, await source.getxattr(ROOT_CONTEXT, ino, name), 0);
    }
    // Owner before mode (a chown drops setuid), times last.
    const req = setattrRequest({ uid: attr.uid, gid: attr.gid, atime: attr.atime, mtime: attr.mtime });
    await fs.setattr(ROOT_CONTEXT, entry.ino, type === S.IFLNK ? req : { ...req, valid: req.valid | SetattrValid.MODE, mode: attr.mode & S.IALLUGO });
  } catch (error) {
    await discardCopy(target, entry);
    throw error;
  }
  return entry;
}

async function copyData(source: DynFileSystem, ino: number, fs: DynFileSystem, targetIno: number, targetFh: number): Promise<void> {
  const { fh } = await source.open(ROOT_CONTEXT, ino, O.RDONLY);
  try {
    for (let offset = 0; ; ) {
      const data = await source.read(ROOT_CONTEXT, ino, fh, COPY_CHUNK, offset);
      if (data.length === 0) return;
      for (let done = 0; done < data.length; ) {
        const written = await fs.write(ROOT_CONTEXT, targetIno, targetFh, data.subarray(done), offset + done, 0);
        if (written <= 0) throw new FsError("EIO", { op: "copy", ino, detail: "the target accepted no bytes" });
        done += written;
      }
      offset += data.length;
    }
  } finally {
    await source.release(ROOT_CONTEXT, ino, fh, O.RDONLY);
  }
}

/** Removes a copy from the staging directory (best effort) and gives its lookup back. */
export async function discardCopy(target: CopyTarget, entry: Entry): Promise<void> {
  const { fs, stagingDir, tempName } = target;
  try {
    await ((entry.attr.mode & S.IFMT) === S.IFDIR ? fs.rmdir(ROOT_CONTEXT, stagingDir, tempName) : fs.unlink(ROOT_CONTEXT, stagingDir, tempName));
  } catch {
    // Left for the owner's next init, which empties its staging directory.
  }
  await fs.forget(ROOT_CONTEXT, entry.ino, 1);
}

/** One open file of one filesystem. */
export interface OpenFileRef {
  readonly fs: DynFileSystem;
  readonly ino: number;
  readonly fh: number;
}

/**
 * `copy_file_range` between two open files of different filesystems: read
 * and write in 1 MiB chunks, as the kernel's fallback does. Returns the
 * number of bytes copied (fewer at end of file or on a short write).
 */
export async function copyRangeAcross(ctx: Context, from: OpenFileRef, offsetIn: number, to: OpenFileRef, offsetOut: number, length: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const data = await from.fs.read(ctx, from.ino, from.fh, Math.min(COPY_CHUNK, length - done), offsetIn + done);
    if (data.length === 0) break;
    const written = await to.fs.write(ctx, to.ino, to.fh, data, offsetOut + done, 0);
    done += written;
    if (written < data.length) break;
  }
  return done;
}

/**
 * Checks the name of a composing filesystem's staging directory (one valid
 * name, short enough to be whited out, not itself a whiteout name with
 * `whiteoutPrefix`), throwing a `TypeError` that names `owner`.
 */
export function resolveStagingName(owner: string, staging: string | undefined, fallback: string, whiteoutPrefix: Uint8Array = WHITEOUT_PREFIX): Uint8Array {
  const name = toBytes(staging ?? fallback);
  try {
    validateName(name, "staging");
  } catch (error) {
    throw new TypeError(`${owner}: staging must be one valid name, got ${JSON.stringify(staging)}`, { cause: error });
  }
  if (name.length > NAME_MAX - whiteoutPrefix.length || isWhiteoutName(name, whiteoutPrefix)) {
    throw new TypeError(`${owner}: staging ${JSON.stringify(staging)} is too long or a whiteout name`);
  }
  return name;
}

/** Checks a cache policy option (`auto` when absent), throwing a `TypeError` that names `owner`. */
export function resolveCachePolicy(owner: string, cache: unknown): CachePolicy {
  const value = cache ?? "auto";
  if (value !== "never" && value !== "auto" && value !== "always") throw new TypeError(`${owner}: cache must be never, auto or always, got ${JSON.stringify(value) ?? typeof value}`);
  return value;
}
