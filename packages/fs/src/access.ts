import { ACCESS, O, S } from "./constants.js";
import { FsError } from "./errno.js";
import type { Attr, Context } from "./types.js";

/** True when the caller is in group `gid` (primary or supplementary). */
export function inGroup(ctx: Context, gid: number): boolean {
  return ctx.gid === gid || (ctx.groups?.includes(gid) ?? false);
}

/**
 * True when `ctx` may access an inode with {@link ACCESS} `mask`, by the
 * kernel's rules (`generic_permission`): the owner class, else the group
 * class, else other; root passes read and write always, and execute when any
 * execute bit is set or the inode is a directory.
 */
export function hasAccess(attr: Pick<Attr, "mode" | "uid" | "gid">, ctx: Context, mask: number): boolean {
  const wanted = mask & (ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK);
  if (wanted === 0) return true;
  if (ctx.uid === 0) {
    if ((wanted & ACCESS.X_OK) === 0) return true;
    return (attr.mode & S.IFMT) === S.IFDIR || (attr.mode & 0o111) !== 0;
  }
  let granted: number;
  if (ctx.uid === attr.uid) granted = (attr.mode >> 6) & 7;
  else if (inGroup(ctx, attr.gid)) granted = (attr.mode >> 3) & 7;
  else granted = attr.mode & 7;
  return (granted & wanted) === wanted;
}

/** Throws `EACCES` (naming `op`) unless {@link hasAccess} allows `mask`. */
export function checkAccess(attr: Pick<Attr, "mode" | "uid" | "gid" | "ino">, ctx: Context, mask: number, op: string): void {
  if (!hasAccess(attr, ctx, mask)) {
    throw new FsError("EACCES", { op, ino: attr.ino, detail: `uid ${ctx.uid} lacks ${maskText(mask)}` });
  }
}

/**
 * True when `ctx` may remove or rename entry `child` of directory `dir` as far
 * as the sticky bit goes: in a sticky directory only the entry's owner, the
 * directory's owner or root may.
 */
export function stickyAllows(dir: Pick<Attr, "mode" | "uid">, child: Pick<Attr, "uid">, ctx: Context): boolean {
  if ((dir.mode & S.ISVTX) === 0 || ctx.uid === 0) return true;
  return ctx.uid === child.uid || ctx.uid === dir.uid;
}

function maskText(mask: number): string {
  return (
    ((mask & ACCESS.R_OK) !== 0 ? "r" : "") + ((mask & ACCESS.W_OK) !== 0 ? "w" : "") + ((mask & ACCESS.X_OK) !== 0 ? "x" : "")
  );
}

/**
 * The {@link ACCESS} mask an `open` with {@link O} `flags` needs: read,
 * write or both by the access mode, plus write for `O_TRUNC`.
 */
export function openAccess(flags: number): number {
  const mode = flags & O.ACCMODE;
  let mask = mode === O.RDONLY ? ACCESS.R_OK : mode === O.WRONLY ? ACCESS.W_OK : ACCESS.R_OK | ACCESS.W_OK;
  if ((flags & O.TRUNC) !== 0) mask |= ACCESS.W_OK;
  return mask;
}
