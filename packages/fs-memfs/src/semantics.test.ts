import { FALLOC, O, RENAME, ROOT_INO, S, SEEK, WRITE, XATTR, bytesToString, setattrRequest } from "@msb/fs";
import { describe, expect, it } from "vitest";
import { Fixture, ROOT, errno, n } from "./memfs.fixture.js";

const MiB = 1024 * 1024;

describe("MemFs rename", () => {
  it("moves a directory: its .. and both parents' link counts follow", () => {
    const t = new Fixture();
    const a = t.mkdir("a");
    const b = t.mkdir("b");
    const d = t.mkdir("d", a);
    expect(t.fs.getattr(ROOT, a).nlink).toBe(3);
    t.fs.rename(ROOT, a, n("d"), b, n("moved"), 0);
    expect(t.fs.getattr(ROOT, a).nlink).toBe(2);
    expect(t.fs.getattr(ROOT, b).nlink).toBe(3);
    expect(t.fs.getattr(ROOT, d).nlink).toBe(2);
    expect(t.fs.lookup(ROOT, d, n("..")).ino).toBe(b);
  });

  it("replaces an empty directory and refuses a non-empty one", () => {
    const t = new Fixture();
    const src = t.mkdir("src");
    const empty = t.mkdir("empty");
    const full = t.mkdir("full");
    t.file("x", "", full);
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("src"), ROOT_INO, n("full"), 0))).toBe("ENOTEMPTY");
    t.fs.rename(ROOT, ROOT_INO, n("src"), ROOT_INO, n("empty"), 0);
    expect(t.fs.getattr(ROOT, empty).nlink).toBe(0);
    expect(t.fs.lookup(ROOT, ROOT_INO, n("empty")).ino).toBe(src);
    expect(t.fs.getattr(ROOT, ROOT_INO).nlink).toBe(4);
  });

  it("answers EISDIR, ENOTDIR and EINVAL for impossible moves", () => {
    const t = new Fixture();
    const d = t.mkdir("d");
    const sub = t.mkdir("sub", d);
    t.file("f");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("f"), ROOT_INO, n("d"), 0))).toBe("EISDIR");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("d"), ROOT_INO, n("f"), 0))).toBe("ENOTDIR");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("d"), sub, n("x"), 0))).toBe("EINVAL");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("d"), d, n("x"), 0))).toBe("EINVAL");
    expect(errno(() => t.fs.rename(ROOT, sub, n(".."), ROOT_INO, n("x"), 0))).toBe("EBUSY");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("missing"), ROOT_INO, n("x"), 0))).toBe("ENOENT");
  });

  it("does nothing for a rename onto the same inode", () => {
    const t = new Fixture();
    const ino = t.file("a");
    t.fs.link(ROOT, ino, ROOT_INO, n("b"));
    const before = t.fs.getattr(ROOT, ROOT_INO);
    t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), 0);
    t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("a"), 0);
    expect(t.fs.getattr(ROOT, ROOT_INO)).toBe(before);
    expect(t.names()).toEqual(["a", "b"]);
    expect(t.fs.getattr(ROOT, ino).nlink).toBe(2);
  });

  it("honours RENAME_NOREPLACE and refuses bad flag combinations", () => {
    const t = new Fixture();
    t.file("a");
    t.file("b");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), RENAME.NOREPLACE))).toBe("EEXIST");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), RENAME.NOREPLACE | RENAME.EXCHANGE))).toBe("EINVAL");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), 1 << 5))).toBe("EINVAL");
    t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("c"), RENAME.NOREPLACE);
    expect(t.names()).toEqual(["b", "c"]);
  });

  it("exchanges a file and a directory across directories", () => {
    const t = new Fixture();
    const a = t.mkdir("a");
    const f = t.file("f", "file", a);
    const d = t.mkdir("d");
    t.fs.rename(ROOT, a, n("f"), ROOT_INO, n("d"), RENAME.EXCHANGE);
    expect(t.fs.lookup(ROOT, a, n("f")).ino).toBe(d);
    expect(t.fs.lookup(ROOT, ROOT_INO, n("d")).ino).toBe(f);
    expect(t.fs.lookup(ROOT, d, n("..")).ino).toBe(a);
    expect(t.fs.getattr(ROOT, a).nlink).toBe(3);
    expect(t.fs.getattr(ROOT, ROOT_INO).nlink).toBe(3);
    expect(errno(() => t.fs.rename(ROOT, a, n("f"), ROOT_INO, n("none"), RENAME.EXCHANGE))).toBe("ENOENT");
  });

  it("leaves a 0:0 character device behind with RENAME_WHITEOUT", () => {
    const t = new Fixture();
    const ino = t.file("a", "x");
    t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), RENAME.WHITEOUT);
    expect(t.fs.lookup(ROOT, ROOT_INO, n("b")).ino).toBe(ino);
    const whiteout = t.fs.lookup(ROOT, ROOT_INO, n("a")).attr;
    expect(whiteout).toMatchObject({ mode: S.IFCHR, rdev: 0, nlink: 1, uid: 0, gid: 0 });
  });
});

describe("MemFs files", () => {
  it("opens an existing file on create without O_EXCL, truncating with O_TRUNC", () => {
    const t = new Fixture();
    const ino = t.file("f", "content");
    const again = t.fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o600, O.RDWR | O.CREAT | O.TRUNC, 0);
    expect(again.entry.ino).toBe(ino);
    expect(t.fs.getattr(ROOT, ino)).toMatchObject({ size: 0, mode: S.IFREG | 0o644 });
    expect(errno(() => t.fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o600, O.RDWR | O.CREAT | O.EXCL, 0))).toBe("EEXIST");
    t.mkdir("d");
    expect(errno(() => t.fs.create(ROOT, ROOT_INO, n("d"), S.IFREG | 0o600, O.RDONLY | O.CREAT, 0))).toBe("EISDIR");
  });

  it("refuses to open symlinks, to write directories and O_DIRECTORY on files", () => {
    const t = new Fixture();
    const link = t.fs.symlink(ROOT, n("t"), ROOT_INO, n("l")).ino;
    const file = t.file("f");
    expect(errno(() => t.fs.open(ROOT, link, O.RDONLY))).toBe("ELOOP");
    expect(errno(() => t.fs.open(ROOT, ROOT_INO, O.RDWR))).toBe("EISDIR");
    expect(errno(() => t.fs.open(ROOT, ROOT_INO, O.RDONLY | O.TRUNC))).toBe("EISDIR");
    expect(errno(() => t.fs.open(ROOT, file, O.RDONLY | O.DIRECTORY))).toBe("ENOTDIR");
  });

  it("appends at the end on an O_APPEND handle whatever the offset", () => {
    const t = new Fixture();
    const ino = t.file("log", "one\n");
    const { fh } = t.fs.open(ROOT, ino, O.WRONLY | O.APPEND);
    t.fs.write(ROOT, ino, fh, n("two\n"), 0, 0);
    t.fs.write(ROOT, ino, fh, n("three\n"), 1, 0);
    expect(t.content(ino)).toBe("one\ntwo\nthree\n");
  });

  it("checks the handle: its inode, and its access mode", () => {
    const t = new Fixture();
    const a = t.file("a", "aaa");
    const b = t.file("b", "bbb");
    const ro = t.fs.open(ROOT, a, O.RDONLY).fh;
    const wo = t.fs.open(ROOT, a, O.WRONLY).fh;
    expect(errno(() => t.fs.read(ROOT, b, ro, 3, 0))).toBe("EBADF");
    expect(errno(() => t.fs.write(ROOT, a, ro, n("x"), 0, 0))).toBe("EBADF");
    expect(errno(() => t.fs.read(ROOT, a, wo, 3, 0))).toBe("EBADF");
    expect(errno(() => t.fs.fallocate(ROOT, a, ro, 0, 0, 1))).toBe("EBADF");
    expect(errno(() => t.fs.flush(ROOT, a, 12345, 0))).toBe("EBADF");
    expect(errno(() => t.fs.releasedir(ROOT, a, ro, 0))).toBe("EBADF");
    t.fs.release(ROOT, a, ro, 0);
    expect(errno(() => t.fs.release(ROOT, a, ro, 0))).toBe("EBADF");
  });

  it("updates mtime and ctime on write and clears setuid for an unprivileged writer", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f", ROOT_INO, 0o6777);
    const before = t.fs.getattr(ROOT, ino);
    t.fs.write(ROOT, ino, fh, n("root keeps the bits"), 0, 0);
    const after = t.fs.getattr(ROOT, ino);
    expect(after.mode).toBe(S.IFREG | 0o6777);
    expect(after.mtime).not.toBe(before.mtime);
    expect(after.ctime).toEqual(after.mtime);
    t.fs.write({ uid: 1000, gid: 1000, pid: 2 }, ino, fh, n("x"), 0, 0);
    expect(t.fs.getattr(ROOT, ino).mode).toBe(S.IFREG | 0o777);
  });

  it("clears setuid and group-executable setgid on KILL_SUIDGID, even for root", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f", ROOT_INO, 0o6755);
    t.fs.write(ROOT, ino, fh, n("x"), 0, WRITE.KILL_SUIDGID);
    expect(t.fs.getattr(ROOT, ino).mode).toBe(S.IFREG | 0o755);
  });

  it("reads zeros from a file extended by truncate after a shrink", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f");
    t.fs.write(ROOT, ino, fh, new Uint8Array(5000).fill(7), 0, 0);
    t.fs.setattr(ROOT, ino, setattrRequest({ size: 10 }));
    t.fs.setattr(ROOT, ino, setattrRequest({ size: 5000 }));
    const data = t.fs.read(ROOT, ino, fh, 5000, 0);
    expect(data.subarray(0, 10).every((b) => b === 7)).toBe(true);
    expect(data.subarray(10).every((b) => b === 0)).toBe(true);
  });

  it("supports fallocate modes as Linux does and refuses the others", () => {
    const t = new Fixture({ capacity: 16 * MiB });
    const { ino, fh } = t.create("f");
    t.fs.write(ROOT, ino, fh, n("abcdefgh"), 0, 0);
    t.fs.fallocate(ROOT, ino, fh, FALLOC.ZERO_RANGE, 2, 3);
    expect([...t.fs.read(ROOT, ino, fh, 8, 0)]).toEqual([0x61, 0x62, 0, 0, 0, 0x66, 0x67, 0x68]);
    t.fs.fallocate(ROOT, ino, fh, FALLOC.ZERO_RANGE, 6, 10);
    expect(t.fs.getattr(ROOT, ino).size).toBe(16);
    t.fs.fallocate(ROOT, ino, fh, FALLOC.ZERO_RANGE | FALLOC.KEEP_SIZE, 0, 100);
    expect(t.fs.getattr(ROOT, ino).size).toBe(16);
    for (const mode of [FALLOC.PUNCH_HOLE, FALLOC.COLLAPSE_RANGE, FALLOC.INSERT_RANGE, FALLOC.PUNCH_HOLE | FALLOC.ZERO_RANGE | FALLOC.KEEP_SIZE]) {
      expect(errno(() => t.fs.fallocate(ROOT, ino, fh, mode, 0, 1))).toBe("EOPNOTSUPP");
    }
    expect(errno(() => t.fs.fallocate(ROOT, ino, fh, 0, 0, 0))).toBe("EINVAL");
    const fifo = t.fs.mknod(ROOT, ROOT_INO, n("p"), S.IFIFO | 0o666, 0, 0).ino;
    expect(errno(() => t.fs.fallocate(ROOT, fifo, t.fs.open(ROOT, fifo, O.WRONLY).fh, 0, 0, 1))).toBe("ENODEV");
  });

  it("finds data and holes with lseek", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f");
    t.fs.write(ROOT, ino, fh, n("head"), 0, 0);
    t.fs.write(ROOT, ino, fh, n("tail"), 10 * MiB, 0);
    const size = 10 * MiB + 4;
    expect(t.fs.lseek(ROOT, ino, fh, 0, SEEK.DATA)).toBe(0);
    const hole = t.fs.lseek(ROOT, ino, fh, 0, SEEK.HOLE);
    expect(hole).toBeGreaterThanOrEqual(4);
    expect(hole).toBeLessThanOrEqual(64 * 1024);
    expect(t.fs.lseek(ROOT, ino, fh, hole, SEEK.DATA)).toBe(10 * MiB);
    expect(t.fs.lseek(ROOT, ino, fh, 10 * MiB, SEEK.HOLE)).toBe(size);
    expect(errno(() => t.fs.lseek(ROOT, ino, fh, size, SEEK.DATA))).toBe("ENXIO");
    expect(errno(() => t.fs.lseek(ROOT, ino, fh, size, SEEK.HOLE))).toBe("ENXIO");
    expect(errno(() => t.fs.lseek(ROOT, ino, fh, -1, SEEK.DATA))).toBe("ENXIO");
    expect(t.fs.lseek(ROOT, ino, fh, 5, SEEK.SET)).toBe(5);
    expect(t.fs.lseek(ROOT, ino, fh, -4, SEEK.END)).toBe(size - 4);
    expect(errno(() => t.fs.lseek(ROOT, ino, fh, 0, 9))).toBe("EINVAL");
  });

  it("copies ranges, keeping holes and refusing overlaps within one file", () => {
    const t = new Fixture();
    const src = t.create("src");
    const dst = t.create("dst");
    t.fs.write(ROOT, src.ino, src.fh, n("abc"), 0, 0);
    t.fs.write(ROOT, src.ino, src.fh, n("xyz"), 4 * MiB, 0);
    const size = 4 * MiB + 3;
    expect(t.fs.copyFileRange(ROOT, src.ino, src.fh, 0, dst.ino, dst.fh, 0, 10 * MiB, 0)).toBe(size);
    expect(t.fs.getattr(ROOT, dst.ino)).toMatchObject({ size, blocks: 2 });
    expect(bytesToString(t.fs.read(ROOT, dst.ino, dst.fh, 3, 4 * MiB))).toBe("xyz");
    expect(t.fs.copyFileRange(ROOT, src.ino, src.fh, size, dst.ino, dst.fh, 0, 10, 0)).toBe(0);
    expect(errno(() => t.fs.copyFileRange(ROOT, src.ino, src.fh, 0, src.ino, src.fh, 1, 3, 0))).toBe("EINVAL");
    expect(t.fs.copyFileRange(ROOT, src.ino, src.fh, 0, src.ino, src.fh, 3, 3, 0)).toBe(3);
    expect(errno(() => t.fs.copyFileRange(ROOT, src.ino, src.fh, 0, dst.ino, dst.fh, 0, 3, 1))).toBe("EINVAL");
    expect(errno(() => t.fs.copyFileRange(ROOT, src.ino, src.fh, 0, ROOT_INO, dst.fh, 0, 3, 0))).toBe("EBADF");
  });
});

describe("MemFs xattrs", () => {
  it("stores copies, honours CREATE and REPLACE, and lists names", () => {
    const t = new Fixture();
    const ino = t.file("f");
    const value = n("v1");
    t.fs.setxattr(ROOT, ino, n("user.a"), value, XATTR.CREATE);
    value[1] = 0x39;
    expect(bytesToString(t.fs.getxattr(ROOT, ino, n("user.a")))).toBe("v1");
    expect(errno(() => t.fs.setxattr(ROOT, ino, n("user.a"), value, XATTR.CREATE))).toBe("EEXIST");
    expect(errno(() => t.fs.setxattr(ROOT, ino, n("user.b"), value, XATTR.REPLACE))).toBe("ENODATA");
    expect(errno(() => t.fs.setxattr(ROOT, ino, n("user.b"), value, 4))).toBe("EINVAL");
    t.fs.setxattr(ROOT, ino, n("trusted.t"), value, 0);
    expect(t.fs.listxattr(ROOT, ino).map(bytesToString)).toEqual(["user.a", "trusted.t"]);
    expect(t.fs.listxattr({ uid: 1000, gid: 1000, pid: 2 }, ino).map(bytesToString)).toEqual(["user.a"]);
    t.fs.removexattr(ROOT, ino, n("user.a"));
    expect(errno(() => t.fs.getxattr(ROOT, ino, n("user.a")))).toBe("ENODATA");
    expect(errno(() => t.fs.removexattr(ROOT, ino, n("user.a")))).toBe("ENODATA");
  });

  it("changes ctime on setxattr and removexattr", () => {
    const t = new Fixture();
    const ino = t.file("f");
    const before = t.fs.getattr(ROOT, ino).ctime;
    t.fs.setxattr(ROOT, ino, n("user.a"), n("1"), 0);
    const set = t.fs.getattr(ROOT, ino).ctime;
    expect(set).not.toBe(before);
    t.fs.removexattr(ROOT, ino, n("user.a"));
    expect(t.fs.getattr(ROOT, ino).ctime).not.toBe(set);
  });
});
