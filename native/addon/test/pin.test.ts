import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { STATX_FIELDS, close, constants as c, createPinned, fgetxattr, getxattr, openat, pinAt, setxattr, unpin } from "../index.js";
import { expectErrno, useTmpDir } from "./helpers.js";

const BENEATH = c.RESOLVE_BENEATH | c.RESOLVE_NO_MAGICLINKS | c.RESOLVE_NO_SYMLINKS;
const NAME = "user.test.pin";
const EXTRA = STATX_FIELDS.length;
const out = (): Float64Array => new Float64Array(EXTRA + 1);

describe("pinAt / unpin / createPinned", () => {
  const tmp = useTmpDir();
  const withDir = <T>(fn: (dirFd: number, procFd: number) => T): T => {
    const dirFd = openat(c.AT_FDCWD, tmp.dir, c.O_PATH | c.O_DIRECTORY);
    const procFd = openat(c.AT_FDCWD, "/proc/self/fd", c.O_PATH | c.O_DIRECTORY);
    try {
      return fn(dirFd, procFd);
    } finally {
      close(dirFd);
      close(procFd);
    }
  };

  it("pins an entry, stats the pin and reads the xattr of that inode", () => {
    fs.writeFileSync(tmp.join("f"), "abc");
    setxattr(tmp.join("f"), NAME, Buffer.from("value"));
    withDir((dirFd, procFd) => {
      const stat = out();
      const value = new Uint8Array(16);
      const fd = pinAt(dirFd, "f", c.O_NOFOLLOW, BENEATH, procFd, NAME, stat, value);
      expect(stat[STATX_FIELDS.size]).toBe(3);
      expect(stat[STATX_FIELDS.inoLow]! + stat[STATX_FIELDS.inoHigh]! * 2 ** 32).toBe(fs.statSync(tmp.join("f")).ino);
      expect(Buffer.from(value.subarray(0, stat[EXTRA])).toString()).toBe("value");
      // The pin holds the inode: unlinked, its link count reads 0 as it goes.
      fs.unlinkSync(tmp.join("f"));
      expect(unpin(fd)).toBe(0);
      expectErrno(() => unpin(fd), "EBADF");
    });
  });

  it("reads a directory's xattr from the pinned directory itself", () => {
    fs.mkdirSync(tmp.join("d"));
    setxattr(tmp.join("d"), NAME, Buffer.from("dir"));
    withDir((dirFd, procFd) => {
      const stat = out();
      const value = new Uint8Array(16);
      const fd = pinAt(dirFd, "d", c.O_NOFOLLOW | c.O_DIRECTORY, BENEATH, procFd, NAME, stat, value);
      expect(Buffer.from(value.subarray(0, stat[EXTRA])).toString()).toBe("dir");
      // Renamed away and replaced: the pin still reads its own directory.
      fs.renameSync(tmp.join("d"), tmp.join("moved"));
      fs.mkdirSync(tmp.join("d"));
      expect(unpin(pinAt(fd, ".", c.O_DIRECTORY, BENEATH, procFd, NAME, stat, value))).toBe(2);
      expect(Buffer.from(value.subarray(0, stat[EXTRA])).toString()).toBe("dir");
      expect(unpin(fd)).toBe(2);
    });
  });

  it("reports an absent xattr as -ENODATA, a longer one as -ERANGE, and reads none of a symlink", () => {
    fs.writeFileSync(tmp.join("plain"), "");
    fs.writeFileSync(tmp.join("long"), "");
    setxattr(tmp.join("long"), NAME, Buffer.alloc(32, 1));
    fs.symlinkSync("/etc/passwd", tmp.join("link"));
    withDir((dirFd, procFd) => {
      const stat = out();
      for (const [name, expected] of [["plain", -61], ["long", -34], ["link", -61]] as const) {
        const fd = pinAt(dirFd, name, c.O_NOFOLLOW, BENEATH, procFd, NAME, stat, new Uint8Array(16));
        expect([name, stat[EXTRA]]).toEqual([name, expected]);
        expect(unpin(fd)).toBe(1);
      }
      expect(stat[STATX_FIELDS.mode]! & c.S_IFMT).toBe(c.S_IFLNK);
    });
  });

  it("stays beneath the directory, as openat2 with its resolve flags", () => {
    withDir((dirFd, procFd) => {
      for (const name of ["..", "/etc/passwd", "../x"]) {
        expectErrno(() => pinAt(dirFd, name, c.O_NOFOLLOW, BENEATH, procFd, NAME, out(), new Uint8Array(16)), "EXDEV");
      }
      expectErrno(() => pinAt(dirFd, "missing", c.O_NOFOLLOW, BENEATH, procFd, NAME, out(), new Uint8Array(16)), "ENOENT");
    });
  });

  it("creates a file with its xattr set, stat'ed and pinned", () => {
    withDir((dirFd, procFd) => {
      const stat = out();
      const fd = createPinned(dirFd, "new", 0o600, BENEATH, procFd, NAME, Buffer.from("v1"), stat);
      const pin = stat[EXTRA]!;
      expect(Buffer.from(fgetxattr(fd, NAME)).toString()).toBe("v1");
      expect(stat[STATX_FIELDS.mode]).toBe(c.S_IFREG | 0o600);
      fs.writeSync(fd, "data");
      const again = out();
      expect(unpin(pinAt(procFd, String(pin), 0, 0, procFd, NAME, again, new Uint8Array(16)))).toBe(1);
      expect(again[STATX_FIELDS.inoLow]).toBe(stat[STATX_FIELDS.inoLow]);
      expect(again[STATX_FIELDS.size]).toBe(4);
      close(fd);
      expect(unpin(pin)).toBe(1);
      expectErrno(() => createPinned(dirFd, "new", 0o600, BENEATH, procFd, NAME, Buffer.from("v2"), out()), "EEXIST");
      expect(Buffer.from(getxattr(tmp.join("new"), NAME)).toString()).toBe("v1");
    });
  });

  it("removes the file again when its xattr cannot be set", () => {
    withDir((dirFd, procFd) => {
      expectErrno(() => createPinned(dirFd, "bad", 0o600, BENEATH, procFd, "nonamespace.x", Buffer.from("v"), out()), "ENOTSUP");
      expect(fs.existsSync(tmp.join("bad"))).toBe(false);
    });
  });
});
