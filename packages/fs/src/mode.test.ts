import { describe, expect, it } from "vitest";
import { DT, S } from "./constants.js";
import { dtFromMode, fileKind, isDirectory, isRegularFile, isSymlink, major, makedev, minor } from "./mode.js";

describe("mode helpers", () => {
  it("names every file type", () => {
    expect(fileKind(S.IFREG | 0o644)).toBe("file");
    expect(fileKind(S.IFDIR | 0o755)).toBe("directory");
    expect(fileKind(S.IFLNK | 0o777)).toBe("symlink");
    expect(fileKind(S.IFIFO)).toBe("fifo");
    expect(fileKind(S.IFSOCK)).toBe("socket");
    expect(fileKind(S.IFCHR)).toBe("char-device");
    expect(fileKind(S.IFBLK)).toBe("block-device");
    expect(fileKind(0o644)).toBeUndefined();
    expect(isDirectory(S.IFDIR)).toBe(true);
    expect(isRegularFile(S.IFREG)).toBe(true);
    expect(isSymlink(S.IFLNK)).toBe(true);
    expect(isSymlink(S.IFREG)).toBe(false);
  });

  it("derives d_type", () => {
    expect(dtFromMode(S.IFREG | 0o600)).toBe(DT.REG);
    expect(dtFromMode(S.IFDIR)).toBe(DT.DIR);
    expect(dtFromMode(S.IFLNK)).toBe(DT.LNK);
    expect(dtFromMode(S.IFCHR)).toBe(DT.CHR);
    expect(dtFromMode(S.IFBLK)).toBe(DT.BLK);
    expect(dtFromMode(S.IFIFO)).toBe(DT.FIFO);
    expect(dtFromMode(S.IFSOCK)).toBe(DT.SOCK);
    expect(dtFromMode(0o070000)).toBe(DT.UNKNOWN);
  });

  it("encodes devices the way the kernel does", () => {
    // /dev/null is 1:3, /dev/sda 8:0; a whiteout is 0:0.
    expect(makedev(1, 3)).toBe(0x103);
    expect(makedev(8, 0)).toBe(0x800);
    expect(makedev(0, 0)).toBe(0);
    const big = makedev(0xfff, 0xfffff);
    expect(big).toBeGreaterThan(0);
    expect(major(big)).toBe(0xfff);
    expect(minor(big)).toBe(0xfffff);
    expect([major(makedev(259, 70000)), minor(makedev(259, 70000))]).toEqual([259, 70000]);
  });
});
