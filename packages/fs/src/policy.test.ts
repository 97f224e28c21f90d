import { describe, expect, it } from "vitest";
import { S } from "./constants.js";
import { FsError } from "./errno.js";
import { toBytes } from "./names.js";
import {
  checkXattrAccess,
  checkXattrValue,
  modeAfterWrite,
  newInodeOwnership,
  planSetattr,
  xattrNamespace,
  xattrVisible,
} from "./policy.js";
import { setattrRequest } from "./setattr.js";
import type { Context } from "./types.js";

const root: Context = { uid: 0, gid: 0, pid: 1 };
const alice: Context = { uid: 1000, gid: 1000, pid: 2, groups: [50] };
const bob: Context = { uid: 2000, gid: 2000, pid: 3 };
const now = { sec: 100, nsec: 5 };
const file = (mode: number, uid = 1000, gid = 1000) => ({ ino: 9, mode: S.IFREG | mode, uid, gid });

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (FsError.isInstance(error)) return error.code;
    throw error;
  }
  return undefined;
}

describe("newInodeOwnership", () => {
  it("gives the caller's ids and applies the umask", () => {
    expect(newInodeOwnership(alice, { mode: S.IFDIR | 0o777, gid: 0 }, S.IFREG | 0o666, 0o022)).toEqual({
      uid: 1000,
      gid: 1000,
      mode: S.IFREG | 0o644,
    });
  });

  it("keeps only permission and sticky bits for directories", () => {
    expect(newInodeOwnership(root, { mode: S.IFDIR | 0o755, gid: 0 }, S.IFDIR | 0o7777, 0).mode).toBe(S.IFDIR | 0o1777);
  });

  it("inherits the group, and setgid for directories, from a setgid parent", () => {
    const parent = { mode: S.IFDIR | 0o2775, gid: 50 };
    expect(newInodeOwnership(bob, parent, S.IFDIR | 0o755, 0)).toEqual({ uid: 2000, gid: 50, mode: S.IFDIR | 0o2755 });
    expect(newInodeOwnership(bob, parent, S.IFREG | 0o644, 0)).toEqual({ uid: 2000, gid: 50, mode: S.IFREG | 0o644 });
  });

  it("drops setgid of a group-executable file created by a non-member in a setgid directory", () => {
    const parent = { mode: S.IFDIR | 0o2777, gid: 50 };
    expect(newInodeOwnership(bob, parent, S.IFREG | 0o2755, 0).mode).toBe(S.IFREG | 0o755);
    expect(newInodeOwnership(alice, parent, S.IFREG | 0o2755, 0).mode).toBe(S.IFREG | 0o2755);
    expect(newInodeOwnership(root, parent, S.IFREG | 0o2755, 0).mode).toBe(S.IFREG | 0o2755);
  });
});

describe("modeAfterWrite", () => {
  it("clears setuid and group-exec setgid for non-root writers", () => {
    expect(modeAfterWrite(file(0o6755), alice)).toBe(S.IFREG | 0o755);
    expect(modeAfterWrite(file(0o4755), alice)).toBe(S.IFREG | 0o755);
  });

  it("keeps setgid without group execute for a member, drops it for a non-member", () => {
    expect(modeAfterWrite(file(0o2644), alice)).toBe(S.IFREG | 0o2644);
    expect(modeAfterWrite(file(0o2646), bob)).toBe(S.IFREG | 0o646);
  });

  it("drops privileges for anyone when the kernel says so", () => {
    expect(modeAfterWrite(file(0o6755), root, true)).toBe(S.IFREG | 0o755);
    expect(modeAfterWrite(file(0o2644), root, true)).toBe(S.IFREG | 0o2644);
  });

  it("leaves root's writes and non-regular files alone", () => {
    expect(modeAfterWrite(file(0o6755), root)).toBe(S.IFREG | 0o6755);
    expect(modeAfterWrite({ mode: S.IFDIR | 0o2755, gid: 1 }, bob)).toBe(S.IFDIR | 0o2755);
  });
});

describe("planSetattr", () => {
  it("lets the owner and root chmod, and nobody else", () => {
    expect(planSetattr(file(0o644), alice, setattrRequest({ mode: 0o600 }), { now })).toEqual({ mode: S.IFREG | 0o600, ctime: now });
    expect(planSetattr(file(0o644), root, setattrRequest({ mode: 0o4755 }), { now }).mode).toBe(S.IFREG | 0o4755);
    expect(code(() => planSetattr(file(0o644), bob, setattrRequest({ mode: 0o777 }), { now }))).toBe("EPERM");
  });

  it("drops setgid on chmod by an owner outside the file's group", () => {
    expect(planSetattr(file(0o644, 1000, 77), alice, setattrRequest({ mode: 0o2755 }), { now }).mode).toBe(S.IFREG | 0o755);
    expect(planSetattr(file(0o644, 1000, 50), alice, setattrRequest({ mode: 0o2755 }), { now }).mode).toBe(S.IFREG | 0o2755);
  });

  it("allows chown only to root; chgrp to the owner within their groups", () => {
    expect(code(() => planSetattr(file(0o644), alice, setattrRequest({ uid: 2000 }), { now }))).toBe("EPERM");
    expect(planSetattr(file(0o644), alice, setattrRequest({ uid: 1000 }), { now }).uid).toBe(1000);
    expect(code(() => planSetattr(file(0o644), bob, setattrRequest({ uid: 1000 }), { now }))).toBe("EPERM");
    expect(planSetattr(file(0o644), alice, setattrRequest({ gid: 50 }), { now }).gid).toBe(50);
    expect(code(() => planSetattr(file(0o644), alice, setattrRequest({ gid: 51 }), { now }))).toBe("EPERM");
    expect(code(() => planSetattr(file(0o644), bob, setattrRequest({ gid: 2000 }), { now }))).toBe("EPERM");
    expect(planSetattr(file(0o644), root, setattrRequest({ uid: 5, gid: 6 }), { now })).toMatchObject({ uid: 5, gid: 6 });
  });

  it("drops setuid/setgid of files on chown, even by root, but not of directories", () => {
    expect(planSetattr(file(0o6755), root, setattrRequest({ uid: 5 }), { now }).mode).toBe(S.IFREG | 0o755);
    expect(planSetattr(file(0o2644), root, setattrRequest({ uid: 5 }), { now }).mode).toBeUndefined();
    const dir = { ino: 3, mode: S.IFDIR | 0o2755, uid: 0, gid: 0 };
    expect(planSetattr(dir, root, setattrRequest({ gid: 5 }), { now }).mode).toBeUndefined();
  });

  it("truncates with write permission or an open handle, updating mtime and dropping privileges", () => {
    const plan = planSetattr(file(0o4666), bob, setattrRequest({ size: 10 }), { now });
    expect(plan).toEqual({ size: 10, mtime: now, ctime: now, mode: S.IFREG | 0o666 });
    expect(code(() => planSetattr(file(0o644), bob, setattrRequest({ size: 0 }), { now }))).toBe("EACCES");
    expect(planSetattr(file(0o644), bob, setattrRequest({ size: 0 }), { now, openForWrite: true }).size).toBe(0);
    expect(code(() => planSetattr({ ino: 1, mode: S.IFDIR | 0o777, uid: 0, gid: 0 }, root, setattrRequest({ size: 0 }), { now }))).toBe("EISDIR");
    expect(code(() => planSetattr({ ino: 1, mode: S.IFIFO | 0o666, uid: 0, gid: 0 }, root, setattrRequest({ size: 0 }), { now }))).toBe("EINVAL");
    expect(code(() => planSetattr(file(0o666), root, setattrRequest({ size: -1 }), { now }))).toBe("EINVAL");
  });

  it("sets explicit times for the owner only, 'now' for anyone who may write", () => {
    const t = { sec: 1, nsec: 2 };
    expect(planSetattr(file(0o644), alice, setattrRequest({ atime: t, mtime: t }), { now })).toEqual({ atime: t, mtime: t, ctime: now });
    expect(code(() => planSetattr(file(0o666), bob, setattrRequest({ mtime: t }), { now }))).toBe("EPERM");
    expect(planSetattr(file(0o666), bob, setattrRequest({ atime: "now", mtime: "now" }), { now })).toEqual({ atime: now, mtime: now, ctime: now });
    expect(code(() => planSetattr(file(0o644), bob, setattrRequest({ mtime: "now" }), { now }))).toBe("EACCES");
  });

  it("kills privileges on request, whoever asks", () => {
    expect(planSetattr(file(0o6755), alice, setattrRequest({ killSuidgid: true }), { now }).mode).toBe(S.IFREG | 0o755);
    expect(planSetattr(file(0o6755), root, setattrRequest({ killSuidgid: true }), { now }).mode).toBe(S.IFREG | 0o755);
  });
});

describe("xattr rules", () => {
  it("knows the namespaces and rejects bad names", () => {
    expect(xattrNamespace(toBytes("user.a"), "setxattr")).toBe("user");
    expect(xattrNamespace(toBytes("trusted.overlay.opaque"), "getxattr")).toBe("trusted");
    expect(xattrNamespace(toBytes("security.capability"), "getxattr")).toBe("security");
    expect(code(() => xattrNamespace(toBytes("user."), "setxattr"))).toBe("EINVAL");
    expect(code(() => xattrNamespace(toBytes("foo.bar"), "setxattr"))).toBe("EOPNOTSUPP");
    expect(code(() => xattrNamespace(new Uint8Array(0), "setxattr"))).toBe("ERANGE");
    expect(code(() => xattrNamespace(toBytes("user." + "a".repeat(251)), "setxattr"))).toBe("ERANGE");
    expect(xattrNamespace(toBytes("user." + "a".repeat(250)), "setxattr")).toBe("user");
  });

  it("applies the VFS permission rules", () => {
    expect(code(() => checkXattrAccess(file(0o644), bob, "trusted", true, "setxattr"))).toBe("EPERM");
    expect(code(() => checkXattrAccess(file(0o644), bob, "trusted", false, "getxattr"))).toBe("ENODATA");
    expect(code(() => checkXattrAccess(file(0o644), root, "trusted", true, "setxattr"))).toBeUndefined();
    expect(code(() => checkXattrAccess(file(0o644), bob, "user", true, "setxattr"))).toBe("EACCES");
    expect(code(() => checkXattrAccess(file(0o644), bob, "user", false, "getxattr"))).toBeUndefined();
    expect(code(() => checkXattrAccess(file(0o600), bob, "user", false, "getxattr"))).toBe("EACCES");
    const link = { ino: 4, mode: S.IFLNK | 0o777, uid: 0, gid: 0 };
    expect(code(() => checkXattrAccess(link, root, "user", true, "setxattr"))).toBe("EPERM");
    expect(code(() => checkXattrAccess(link, root, "user", false, "getxattr"))).toBe("ENODATA");
    expect(code(() => checkXattrAccess(file(0o644), root, "system", false, "getxattr"))).toBe("EOPNOTSUPP");
    expect(code(() => checkXattrValue(new Uint8Array(65536), "setxattr"))).toBeUndefined();
    expect(code(() => checkXattrValue(new Uint8Array(65537), "setxattr"))).toBe("E2BIG");
  });

  it("hides trusted.* from non-root listings", () => {
    expect(xattrVisible(toBytes("trusted.x"), bob)).toBe(false);
    expect(xattrVisible(toBytes("trusted.x"), root)).toBe(true);
    expect(xattrVisible(toBytes("user.x"), bob)).toBe(true);
  });
});
