// The kernel's ownership and permission rules for metadata changes, in one
// place, so every backend that keeps its own uid/gid/mode (MemFs, and
// PassthroughFs with virtualised ownership) answers exactly as Linux would.
// References: fs/attr.c (setattr_prepare, setattr_should_drop_suidgid),
// fs/inode.c (inode_init_owner, should_remove_suid), fs/xattr.c (xattr_permission).
import { hasAccess, inGroup } from "./access.js";
import { ACCESS, S, SetattrValid, XATTR_NAME_MAX, XATTR_SIZE_MAX } from "./constants.js";
import { FsError } from "./errno.js";
import { bytesToString } from "./names.js";
import type { Attr, Context, SetattrRequest, Timespec } from "./types.js";

const isRoot = (ctx: Context): boolean => ctx.uid === 0;

/**
 * Owner, group and mode of a new inode created by `ctx` in directory `parent`
 * (`inode_init_owner`): the caller's uid; the parent's group and, for a
 * directory, its setgid bit when the parent is setgid; the setgid bit of a
 * new group-executable file dropped when the caller is not in its group.
 *
 * @param mode - the requested mode with type bits, before the umask
 * @param umask - bits to clear (`0` when the kernel applied it already)
 */
export function newInodeOwnership(
  ctx: Context,
  parent: Pick<Attr, "mode" | "gid">,
  mode: number,
  umask: number,
): { uid: number; gid: number; mode: number } {
  const type = mode & S.IFMT;
  const isDir = type === S.IFDIR;
  // mkdir keeps only permission and sticky bits (vfs_mkdir); other types keep all of 07777.
  let perms = mode & ~umask & (isDir ? 0o777 | S.ISVTX : S.IALLUGO);
  let gid = ctx.gid;
  if ((parent.mode & S.ISGID) !== 0) {
    gid = parent.gid;
    if (isDir) perms |= S.ISGID;
    else if ((perms & (S.ISGID | 0o010)) === (S.ISGID | 0o010) && !inGroup(ctx, gid) && !isRoot(ctx)) perms &= ~S.ISGID;
  }
  return { uid: ctx.uid, gid, mode: type | perms };
}

/**
 * The mode after a write or truncate by `ctx` (`setattr_should_drop_suidgid`):
 * a caller without CAP_FSETID (not root) writing a regular file clears setuid,
 * and setgid when the file is group-executable or the caller is not in its
 * group. Returns the mode unchanged otherwise.
 *
 * @param kill - the kernel already decided the caller lacks CAP_FSETID
 *   (`WRITE.KILL_SUIDGID`, `SetattrValid.KILL_SUIDGID`, HANDLE_KILLPRIV_V2):
 *   setuid goes, and setgid when group-executable, whoever `ctx` is.
 */
export function modeAfterWrite(attr: Pick<Attr, "mode" | "gid">, ctx: Context, kill = false): number {
  if ((attr.mode & S.IFMT) !== S.IFREG) return attr.mode;
  if (kill) return attr.mode & ~(S.ISUID | ((attr.mode & 0o010) !== 0 ? S.ISGID : 0));
  return isRoot(ctx) ? attr.mode : attr.mode & ~suidSgidToDrop(attr, ctx);
}

/**
 * Setuid always; setgid when group-executable, or when the caller is neither
 * in the file's group nor root (`setattr_should_drop_sgid`).
 */
function suidSgidToDrop(attr: Pick<Attr, "mode" | "gid">, ctx: Context): number {
  const dropSgid = (attr.mode & 0o010) !== 0 || (!isRoot(ctx) && !inGroup(ctx, attr.gid));
  return S.ISUID | (dropSgid ? S.ISGID : 0);
}

/** Options of {@link planSetattr}. */
export interface SetattrPlanOptions {
  /** The time to use for "now" and for ctime. */
  readonly now: Timespec;
  /** The request came through a handle opened for writing (`ftruncate`): no write-permission check for size. */
  readonly openForWrite?: boolean;
}

/** What a `setattr` changes, after the kernel's checks; absent fields stay as they are. */
export interface SetattrPlan {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Timespec;
  mtime?: Timespec;
  ctime: Timespec;
}

/**
 * Checks a `setattr` request against the caller's rights and works out its
 * full effect, as `setattr_prepare` and `notify_change` do:
 *
 * - mode: owner or root, else `EPERM`; setgid dropped when a non-root caller
 *   is not in the file's group.
 * - uid: root only (`EPERM`), unless unchanged; gid: root, or the owner
 *   moving to a group they are in; either drops setuid/setgid of a non-directory.
 * - size: write permission unless through a handle open for writing; not on
 *   a directory (`EISDIR`); updates mtime and ctime; drops setuid/setgid for
 *   non-root.
 * - times: explicit values need owner or root (`EPERM`); "now" also allows a
 *   caller with write permission (`EACCES` otherwise).
 * - ctime always becomes `now`.
 *
 * The backend then applies the plan (and, for `size`, the data change).
 */
export function planSetattr(attr: Pick<Attr, "ino" | "mode" | "uid" | "gid">, ctx: Context, req: SetattrRequest, options: SetattrPlanOptions): SetattrPlan {
  const { valid } = req;
  const { now } = options;
  const owner = isRoot(ctx) || ctx.uid === attr.uid;
  const plan: SetattrPlan = { ctime: now };
  let mode = attr.mode;

  if ((valid & SetattrValid.SIZE) !== 0) {
    if ((attr.mode & S.IFMT) === S.IFDIR) throw new FsError("EISDIR", { op: "truncate", ino: attr.ino });
    if ((attr.mode & S.IFMT) !== S.IFREG) throw new FsError("EINVAL", { op: "truncate", ino: attr.ino });
    if (options.openForWrite !== true && !hasAccess(attr, ctx, ACCESS.W_OK)) {
      throw new FsError("EACCES", { op: "truncate", ino: attr.ino });
    }
    if (!Number.isSafeInteger(req.size) || req.size < 0) {
      throw new FsError("EINVAL", { op: "truncate", ino: attr.ino, detail: `size ${req.size}` });
    }
    plan.size = req.size;
    plan.mtime = now;
    mode = modeAfterWrite({ mode, gid: attr.gid }, ctx);
  }

  // chown_ok / chgrp_ok: the owner may "change" to the same uid, or to a group
  // they are in; root may do anything.
  const setsUid = (valid & SetattrValid.UID) !== 0;
  const setsGid = (valid & SetattrValid.GID) !== 0;
  const isOwner = ctx.uid === attr.uid;
  if (setsUid && !isRoot(ctx) && !(isOwner && req.uid === attr.uid)) {
    throw new FsError("EPERM", { op: "chown", ino: attr.ino, detail: `uid ${ctx.uid} cannot give the file to uid ${req.uid}` });
  }
  if (setsGid && !isRoot(ctx) && !(isOwner && (req.gid === attr.gid || inGroup(ctx, req.gid)))) {
    throw new FsError("EPERM", { op: "chown", ino: attr.ino, detail: `uid ${ctx.uid} cannot change the group to ${req.gid}` });
  }
  if (setsUid || setsGid) {
    if (setsUid) plan.uid = req.uid;
    if (setsGid) plan.gid = req.gid;
    if ((attr.mode & S.IFMT) !== S.IFDIR) mode &= ~suidSgidToDrop({ mode, gid: attr.gid }, ctx);
  }

  if ((valid & SetattrValid.MODE) !== 0) {
    if (!owner) throw new FsError("EPERM", { op: "chmod", ino: attr.ino, detail: `uid ${ctx.uid} does not own it` });
    let perms = req.mode & S.IALLUGO;
    const gid = plan.gid ?? attr.gid;
    if (!isRoot(ctx) && !inGroup(ctx, gid)) perms &= ~S.ISGID;
    mode = (attr.mode & S.IFMT) | perms;
  } else if ((valid & SetattrValid.KILL_SUIDGID) !== 0) {
    mode = modeAfterWrite({ mode, gid: attr.gid }, ctx, true);
  }
  if (mode !== attr.mode) plan.mode = mode;

  for (const [bit, nowBit, key] of [
    [SetattrValid.ATIME, SetattrValid.ATIME_NOW, "atime"],
    [SetattrValid.MTIME, SetattrValid.MTIME_NOW, "mtime"],
  ] as const) {
    if ((valid & bit) === 0) continue;
    const toNow = (valid & nowBit) !== 0;
    if (!owner) {
      if (!toNow) throw new FsError("EPERM", { op: "utimens", ino: attr.ino, detail: "only the owner sets explicit times" });
      if (!hasAccess(attr, ctx, ACCESS.W_OK)) throw new FsError("EACCES", { op: "utimens", ino: attr.ino });
    }
    plan[key] = toNow ? now : req[key];
  }
  if ((valid & SetattrValid.CTIME) !== 0 && owner) plan.ctime = req.ctime;
  return plan;
}

/** The xattr namespaces Linux knows. */
export type XattrNamespace = "user" | "trusted" | "security" | "system";

/**
 * Checks an xattr name as the VFS does and returns its namespace: empty or
 * longer than 255 bytes → `ERANGE`; no known `namespace.` prefix →
 * `EOPNOTSUPP`; a bare prefix such as `user.` → `EINVAL`.
 */
export function xattrNamespace(name: Uint8Array, op: string): XattrNamespace {
  if (name.length === 0 || name.length > XATTR_NAME_MAX) {
    throw new FsError("ERANGE", { op, detail: `xattr name of ${name.length} bytes` });
  }
  const text = bytesToString(name);
  for (const ns of ["user", "trusted", "security", "system"] as const) {
    if (!text.startsWith(`${ns}.`)) continue;
    if (text.length === ns.length + 1) throw new FsError("EINVAL", { op, path: text, detail: "xattr name has nothing after its namespace" });
    return ns;
  }
  throw new FsError("EOPNOTSUPP", { op, path: text, detail: "unknown xattr namespace" });
}

/**
 * Checks that `ctx` may read (`write` false) or change an xattr in namespace
 * `ns` of an inode (`xattr_permission`): `trusted.*` needs root (`EPERM` to
 * change, `ENODATA` to read); `user.*` exists only on regular files and
 * directories (`EPERM` / `ENODATA` elsewhere), only the owner or root
 * changes those of a sticky directory (`EPERM`), and it needs read or write
 * permission (`EACCES`); `system.*` is not supported (`EOPNOTSUPP`).
 */
export function checkXattrAccess(attr: Pick<Attr, "ino" | "mode" | "uid" | "gid">, ctx: Context, ns: XattrNamespace, write: boolean, op: string): void {
  if (ns === "system") throw new FsError("EOPNOTSUPP", { op, ino: attr.ino, detail: "system.* xattrs (ACLs) are not supported" });
  if (ns === "trusted" && !isRoot(ctx)) throw new FsError(write ? "EPERM" : "ENODATA", { op, ino: attr.ino });
  if (ns === "user") {
    const type = attr.mode & S.IFMT;
    if (type !== S.IFREG && type !== S.IFDIR) throw new FsError(write ? "EPERM" : "ENODATA", { op, ino: attr.ino });
    // A sticky directory is shared: only its owner (or root) changes its user xattrs.
    if (write && type === S.IFDIR && (attr.mode & S.ISVTX) !== 0 && ctx.uid !== attr.uid && !isRoot(ctx)) {
      throw new FsError("EPERM", { op, ino: attr.ino, detail: "user xattrs of a sticky directory are its owner's" });
    }
    if (!hasAccess(attr, ctx, write ? ACCESS.W_OK : ACCESS.R_OK)) throw new FsError("EACCES", { op, ino: attr.ino });
  }
}

/** Checks an xattr value's size (`E2BIG` above 64 KiB). */
export function checkXattrValue(value: Uint8Array, op: string): void {
  if (value.length > XATTR_SIZE_MAX) throw new FsError("E2BIG", { op, detail: `xattr value of ${value.length} bytes` });
}

/** True when `ctx` may see xattr `name` in a listing (`trusted.*` only for root). */
export function xattrVisible(name: Uint8Array, ctx: Context): boolean {
  return isRoot(ctx) || !bytesToString(name).startsWith("trusted.");
}
