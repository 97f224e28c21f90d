import { describe, expect, it } from "vitest";
import { checkAccess, hasAccess, inGroup, stickyAllows } from "./access.js";
import { ACCESS, S } from "./constants.js";
import { FsError } from "./errno.js";

const { R_OK, W_OK, X_OK, F_OK } = ACCESS;
const file = (mode: number, uid = 1000, gid = 1000) => ({ ino: 5, mode: S.IFREG | mode, uid, gid });
const user = (uid: number, gid: number, groups?: number[]) => ({ uid, gid, pid: 1, groups });

describe("access checks", () => {
  it("uses the owner class for the owner, even when group or other would allow more", () => {
    expect(hasAccess(file(0o077), user(1000, 1000), R_OK)).toBe(false);
    expect(hasAccess(file(0o600), user(1000, 1000), R_OK | W_OK)).toBe(true);
    expect(hasAccess(file(0o600), user(1000, 1000), X_OK)).toBe(false);
  });

  it("uses the group class for primary and supplementary groups", () => {
    expect(hasAccess(file(0o640), user(2000, 1000), R_OK)).toBe(true);
    expect(hasAccess(file(0o640), user(2000, 1000), W_OK)).toBe(false);
    expect(hasAccess(file(0o640), user(2000, 3000, [1000]), R_OK)).toBe(true);
    expect(hasAccess(file(0o604), user(2000, 1000), R_OK)).toBe(false);
    expect(inGroup(user(1, 2, [3]), 3)).toBe(true);
  });

  it("uses the other class for everyone else", () => {
    expect(hasAccess(file(0o604), user(2000, 2000), R_OK)).toBe(true);
    expect(hasAccess(file(0o604), user(2000, 2000), W_OK)).toBe(false);
  });

  it("lets root read and write anything, and execute only what some class may", () => {
    expect(hasAccess(file(0o000), user(0, 0), R_OK | W_OK)).toBe(true);
    expect(hasAccess(file(0o000), user(0, 0), X_OK)).toBe(false);
    expect(hasAccess(file(0o001), user(0, 0), X_OK)).toBe(true);
    expect(hasAccess({ mode: S.IFDIR, uid: 1, gid: 1 }, user(0, 0), X_OK)).toBe(true);
  });

  it("allows F_OK always", () => {
    expect(hasAccess(file(0), user(5, 5), F_OK)).toBe(true);
  });

  it("throws EACCES naming the operation", () => {
    let caught: unknown;
    try {
      checkAccess(file(0o600), user(2000, 2000), R_OK, "open");
    } catch (error) {
      caught = error;
    }
    expect(FsError.isInstance(caught) && caught.code).toBe("EACCES");
    expect(String(caught)).toMatch(/open.*inode 5.*uid 2000 lacks r/);
  });

  it("applies the sticky bit", () => {
    const tmp = { mode: S.IFDIR | 0o1777, uid: 0 };
    expect(stickyAllows(tmp, { uid: 1000 }, user(1000, 1000))).toBe(true);
    expect(stickyAllows(tmp, { uid: 1000 }, user(2000, 2000))).toBe(false);
    expect(stickyAllows(tmp, { uid: 1000 }, user(0, 0))).toBe(true);
    expect(stickyAllows({ mode: S.IFDIR | 0o1777, uid: 2000 }, { uid: 1000 }, user(2000, 2000))).toBe(true);
    expect(stickyAllows({ mode: S.IFDIR | 0o777, uid: 0 }, { uid: 1000 }, user(2000, 2000))).toBe(true);
  });
});

describe("openAccess", () => {
  it("asks for what the access mode and O_TRUNC need", async () => {
    const { O } = await import("./constants.js");
    const { openAccess } = await import("./access.js");
    expect(openAccess(O.RDONLY)).toBe(R_OK);
    expect(openAccess(O.WRONLY | O.CREAT)).toBe(W_OK);
    expect(openAccess(O.RDWR)).toBe(R_OK | W_OK);
    expect(openAccess(O.RDONLY | O.TRUNC)).toBe(R_OK | W_OK);
    expect(openAccess(O.ACCMODE)).toBe(R_OK | W_OK);
  });
});
