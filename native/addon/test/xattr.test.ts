import fs from "node:fs";
import { describe, expect, it } from "vitest";
import {
  constants,
  fgetxattr,
  flistxattr,
  fremovexattr,
  fsetxattr,
  getxattr,
  getxattrAsync,
  getxattrat,
  getxattratAsync,
  lgetxattr,
  listxattr,
  listxattrAsync,
  llistxattr,
  close,
  openat,
  lremovexattr,
  lsetxattr,
  removexattr,
  removexattrAsync,
  setxattr,
  setxattrAsync,
} from "../index.js";
import { expectErrno, rejected, thrown, useTmpDir } from "./helpers.js";

const { XATTR_CREATE, XATTR_REPLACE } = constants;

const names = (list: Buffer[]): string[] => list.map((b) => b.toString("latin1")).sort();

describe("xattrs", () => {
  const tmp = useTmpDir();

  function file(content = "x"): string {
    const f = tmp.join("f");
    fs.writeFileSync(f, content);
    return f;
  }

  it("round-trips on a path: set, get, list, remove", () => {
    const f = file();
    setxattr(f, "user.a", Buffer.from("one"));
    setxattr(f, "user.empty", new Uint8Array(0));
    expect(getxattr(f, "user.a")).toEqual(Buffer.from("one"));
    expect(getxattr(f, "user.empty")).toEqual(Buffer.alloc(0));
    expect(Buffer.isBuffer(getxattr(f, "user.a"))).toBe(true);
    expect(names(listxattr(f))).toEqual(["user.a", "user.empty"]);
    removexattr(f, "user.a");
    removexattr(f, "user.empty");
    expect(listxattr(f)).toEqual([]);
  });

  it("round-trips on an fd", () => {
    const f = file();
    const fd = fs.openSync(f, "r");
    try {
      fsetxattr(fd, "user.b", new Uint8Array([1, 2, 3]));
      expect(fgetxattr(fd, "user.b")).toEqual(Buffer.from([1, 2, 3]));
      expect(names(flistxattr(fd))).toEqual(["user.b"]);
      expect(getxattr(f, "user.b")).toEqual(Buffer.from([1, 2, 3]));
      fremovexattr(fd, "user.b");
      expect(flistxattr(fd)).toEqual([]);
      const err = expectErrno(() => fgetxattr(fd, "user.b"), "ENODATA", "fgetxattr");
      expect(err.path).toBeUndefined();
    } finally {
      fs.closeSync(fd);
    }
  });

  it("a Uint8Array view passes only its own bytes", () => {
    const f = file();
    const backing = Buffer.from("xxhelloxx");
    setxattr(f, "user.view", backing.subarray(2, 7));
    expect(getxattr(f, "user.view").toString()).toBe("hello");
  });

  it("throws ENODATA shaped like a Node fs error", () => {
    const f = file();
    const err = thrown(() => getxattr(f, "user.missing"));
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: "ENODATA", errno: -61, syscall: "getxattr", path: f });
    expect(err.message).toBe(`ENODATA: no data available, getxattr '${f}'`);
    expect(err.dest).toBeUndefined();
  });

  it("getxattrat reads relative to a dirfd, answers undefined for an absent name, and never follows with AT_SYMLINK_NOFOLLOW", async () => {
    const f = file();
    setxattr(f, "user.a", Buffer.from("value"));
    fs.symlinkSync("f", tmp.join("link"));
    const dir = openat(constants.AT_FDCWD, tmp.dir, constants.O_PATH | constants.O_DIRECTORY);
    try {
      expect(getxattrat(dir, "f", "user.a")?.toString()).toBe("value");
      expect(getxattrat(dir, Buffer.from("f"), "user.none", constants.AT_SYMLINK_NOFOLLOW)).toBeUndefined();
      expect(getxattrat(dir, "link", "user.a")?.toString()).toBe("value");
      // A symlink cannot carry user.* xattrs: nothing there, and the target is not read.
      expect(getxattrat(dir, "link", "user.a", constants.AT_SYMLINK_NOFOLLOW)).toBeUndefined();
      expectErrno(() => getxattrat(dir, "missing", "user.a"), "ENOENT", "getxattrat");
      expect((await getxattratAsync(dir, "f", "user.a"))?.toString()).toBe("value");
      expect(await getxattratAsync(dir, "f", "user.none")).toBeUndefined();
    } finally {
      close(dir);
    }
  });

  it("getxattrat reads an O_PATH fd's own inode through an fd of /proc/self/fd", () => {
    const f = file();
    setxattr(f, "user.a", Buffer.from("mine"));
    const pathFd = openat(constants.AT_FDCWD, f, constants.O_PATH | constants.O_NOFOLLOW);
    const procFd = openat(constants.AT_FDCWD, "/proc/self/fd", constants.O_PATH | constants.O_DIRECTORY);
    try {
      // The file's name now leads elsewhere: the fd still reaches the inode it holds.
      fs.renameSync(f, tmp.join("moved"));
      fs.writeFileSync(f, "other");
      expect(getxattrat(procFd, String(pathFd), "user.a")?.toString()).toBe("mine");
      expect(getxattrat(procFd, String(pathFd), "user.none")).toBeUndefined();
      // The kernel refuses O_PATH fds with AT_EMPTY_PATH.
      expectErrno(() => getxattrat(pathFd, "", "user.a", constants.AT_EMPTY_PATH), "EBADF", "getxattrat");
    } finally {
      close(pathFd);
      close(procFd);
    }
  });

  it("XATTR_CREATE on an existing name is EEXIST, XATTR_REPLACE on a missing one ENODATA", () => {
    const f = file();
    setxattr(f, "user.a", Buffer.from("1"), XATTR_CREATE);
    expect(expectErrno(() => setxattr(f, "user.a", Buffer.from("2"), XATTR_CREATE), "EEXIST", "setxattr").errno).toBe(-17);
    expect(getxattr(f, "user.a").toString()).toBe("1");
    setxattr(f, "user.a", Buffer.from("3"), XATTR_REPLACE);
    expect(getxattr(f, "user.a").toString()).toBe("3");
    expectErrno(() => setxattr(f, "user.b", Buffer.from("4"), XATTR_REPLACE), "ENODATA", "setxattr");
    expectErrno(() => removexattr(f, "user.b"), "ENODATA", "removexattr");
  });

  it("handles names and values that are not UTF-8", () => {
    const f = file();
    const name = Buffer.concat([Buffer.from("user."), Buffer.from([0xff, 0xfe, 0x80, 0x41])]);
    const value = Buffer.from([0x00, 0xff, 0x00, 0x80, 0xc3]);
    setxattr(Buffer.from(f), name, value);
    expect(getxattr(f, name)).toEqual(value);
    const listed = listxattr(f);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toEqual(name);
    removexattr(f, name);
    expect(listxattr(f)).toEqual([]);
  });

  it("no-follow variants act on the symlink: user.* is EPERM, trusted.* works as root", () => {
    const f = file();
    const link = tmp.join("link");
    fs.symlinkSync("f", link);
    setxattr(f, "user.target", Buffer.from("t"));

    // Following variants see the target's attributes.
    expect(getxattr(link, "user.target").toString()).toBe("t");
    expect(names(listxattr(link))).toEqual(["user.target"]);
    // The link itself has none (user.* are not allowed on symlinks).
    expectErrno(() => lgetxattr(link, "user.target"), "ENODATA", "lgetxattr");
    expectErrno(() => lsetxattr(link, "user.x", Buffer.from("v")), "EPERM", "lsetxattr");

    // trusted.* needs CAP_SYS_ADMIN and is allowed on symlinks.
    lsetxattr(link, "trusted.msb", Buffer.from("on-link"));
    expect(lgetxattr(link, "trusted.msb").toString()).toBe("on-link");
    expect(names(llistxattr(link))).toContain("trusted.msb");
    expectErrno(() => getxattr(link, "trusted.msb"), "ENODATA", "getxattr");
    lremovexattr(link, "trusted.msb");
    expect(names(llistxattr(link))).not.toContain("trusted.msb");
  });

  it("a value as large as one ext4 block allows round-trips", () => {
    // ext4 without ea_inode keeps all xattrs of an inode in one block (ENOSPC beyond).
    const f = file();
    const big = Buffer.alloc(3500, 0xab);
    setxattr(f, "user.big", big);
    expect(getxattr(f, "user.big")).toEqual(big);
  });

  it("never returns a torn or ERANGE read while the value keeps changing size", async () => {
    const f = file();
    const small = Buffer.alloc(16, 1);
    const big = Buffer.alloc(3000, 2);
    setxattr(f, "user.race", small);
    const reads: Promise<Buffer>[] = [];
    for (let i = 0; i < 200; i++) {
      reads.push(getxattrAsync(f, "user.race"));
      setxattr(f, "user.race", i % 2 === 0 ? big : small);
    }
    for (const value of await Promise.all(reads)) {
      expect(value.equals(small) || value.equals(big)).toBe(true);
    }
  });

  it("async forms resolve and reject like the sync ones", async () => {
    const f = file();
    await setxattrAsync(f, "user.a", Buffer.from("async"));
    await expect(getxattrAsync(f, "user.a")).resolves.toEqual(Buffer.from("async"));
    expect(names(await listxattrAsync(f))).toEqual(["user.a"]);
    const err = await rejected(setxattrAsync(f, "user.a", Buffer.from("x"), XATTR_CREATE));
    expect(err).toMatchObject({ code: "EEXIST", errno: -17, syscall: "setxattr", path: f });
    await removexattrAsync(f, "user.a");
    const gone = await rejected(getxattrAsync(f, "user.a"));
    expect(gone).toMatchObject({ code: "ENODATA", errno: -61, syscall: "getxattr", path: f });
    expect(gone.message).toBe(`ENODATA: no data available, getxattr '${f}'`);
  });

  it("ENOENT for a missing file, EBADF for a bad fd", () => {
    const missing = tmp.join("missing");
    expect(expectErrno(() => getxattr(missing, "user.a"), "ENOENT").path).toBe(missing);
    expectErrno(() => listxattr(missing), "ENOENT", "listxattr");
    expectErrno(() => fgetxattr(1_000_000, "user.a"), "EBADF", "fgetxattr");
  });
});
