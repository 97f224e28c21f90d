import fs from "node:fs";
import { describe, expect, it } from "vitest";
import {
  UTIME_NOW,
  UTIME_OMIT,
  close,
  constants,
  faccessat,
  faccessatAsync,
  fchmodat,
  fchownat,
  fstatat,
  linkat,
  linkatAsync,
  major,
  makedev,
  minor,
  mkdirat,
  mkdiratAsync,
  mknodat,
  openat,
  readlinkat,
  readlinkatAsync,
  renameat2,
  renameat2Async,
  symlinkat,
  unlinkat,
  utimensat,
  utimensatAsync,
} from "../index.js";
import { expectErrno, modeOf, rejected, useTmpDir } from "./helpers.js";

const c = constants;

describe("*at family", () => {
  const tmp = useTmpDir();

  function dirfd(): number {
    return openat(c.AT_FDCWD, tmp.dir, c.O_DIRECTORY | c.O_PATH);
  }

  describe("mkdirat / unlinkat", () => {
    it("creates and removes directories (AT_REMOVEDIR) and files", async () => {
      const d = dirfd();
      try {
        mkdirat(d, "sub", 0o750);
        expect(fs.statSync(tmp.join("sub")).isDirectory()).toBe(true);
        await mkdiratAsync(d, Buffer.from("sub2"));
        fs.writeFileSync(tmp.join("sub", "f"), "");
        expectErrno(() => unlinkat(d, "sub", c.AT_REMOVEDIR), "ENOTEMPTY", "unlinkat");
        expectErrno(() => unlinkat(d, "sub"), "EISDIR", "unlinkat");
        expectErrno(() => mkdirat(d, "sub"), "EEXIST", "mkdirat");
        unlinkat(d, "sub/f");
        unlinkat(d, "sub", c.AT_REMOVEDIR);
        unlinkat(d, "sub2", c.AT_REMOVEDIR);
        expect(fs.readdirSync(tmp.dir)).toEqual([]);
        const err = expectErrno(() => unlinkat(d, "sub", c.AT_REMOVEDIR), "ENOENT");
        expect(err.path).toBe("sub");
      } finally {
        close(d);
      }
    });
  });

  describe("mknodat", () => {
    it("creates a FIFO", () => {
      mknodat(c.AT_FDCWD, tmp.join("fifo"), c.S_IFIFO | 0o600);
      const st = fs.lstatSync(tmp.join("fifo"));
      expect(st.isFIFO()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
    });

    it("creates a character device as root (bigint and number dev)", () => {
      const dev = makedev(1, 3);
      expect(major(dev)).toBe(1);
      expect(minor(dev)).toBe(3);
      mknodat(c.AT_FDCWD, tmp.join("null"), c.S_IFCHR | 0o666, dev);
      mknodat(c.AT_FDCWD, tmp.join("null2"), c.S_IFCHR | 0o666, Number(dev));
      for (const name of ["null", "null2"]) {
        const st = fs.lstatSync(tmp.join(name), { bigint: true });
        expect(st.isCharacterDevice()).toBe(true);
        expect(st.rdev).toBe(dev);
        expect(fstatat(c.AT_FDCWD, tmp.join(name)).rdev).toBe(dev);
      }
      // It behaves like /dev/null.
      fs.writeFileSync(tmp.join("null"), "discarded");
      expect(fs.readFileSync(tmp.join("null"))).toHaveLength(0);
      // A large major/minor survives the glibc encoding.
      const big = makedev(300, 70000);
      expect([major(big), minor(big)]).toEqual([300, 70000]);
      mknodat(c.AT_FDCWD, tmp.join("big"), c.S_IFBLK | 0o600, big);
      expect(fs.lstatSync(tmp.join("big"), { bigint: true }).rdev).toBe(big);
    });
  });

  describe("symlinkat / readlinkat", () => {
    it("round-trips non-UTF-8 target bytes", async () => {
      const target = Buffer.from([0x2e, 0x2f, 0xff, 0xfe, 0x80, 0x61]); // "./\xff\xfe\x80a"
      const d = dirfd();
      try {
        symlinkat(target, d, "link");
        expect(readlinkat(d, "link")).toEqual(target);
        await expect(readlinkatAsync(d, Buffer.from("link"))).resolves.toEqual(target);
        expect(fs.readlinkSync(tmp.join("link"), { encoding: "buffer" })).toEqual(target);
      } finally {
        close(d);
      }
    });

    it("reads targets longer than the initial buffer", () => {
      const target = `${"x/".repeat(1500)}end`; // 3003 bytes
      symlinkat(target, c.AT_FDCWD, tmp.join("long"));
      expect(readlinkat(c.AT_FDCWD, tmp.join("long")).toString()).toBe(target);
    });

    it("reads the link an O_PATH|O_NOFOLLOW fd refers to with an empty path", () => {
      symlinkat("somewhere", c.AT_FDCWD, tmp.join("l"));
      const fd = openat(c.AT_FDCWD, tmp.join("l"), c.O_PATH | c.O_NOFOLLOW);
      try {
        expect(readlinkat(fd, "").toString()).toBe("somewhere");
      } finally {
        close(fd);
      }
    });

    it("reports EEXIST with path = target and dest = linkpath, EINVAL on a non-link", () => {
      fs.writeFileSync(tmp.join("f"), "");
      const err = expectErrno(() => symlinkat("t", c.AT_FDCWD, tmp.join("f")), "EEXIST", "symlinkat");
      expect(err.path).toBe("t");
      expect(err.dest).toBe(tmp.join("f"));
      expect(err.message).toBe(`EEXIST: file already exists, symlinkat 't' -> '${tmp.join("f")}'`);
      expectErrno(() => readlinkat(c.AT_FDCWD, tmp.join("f")), "EINVAL", "readlinkat");
    });
  });

  describe("linkat", () => {
    it("creates hard links (nlink) and reports EEXIST with dest", async () => {
      fs.writeFileSync(tmp.join("a"), "data");
      linkat(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("b"));
      expect(fs.statSync(tmp.join("a")).nlink).toBe(2);
      expect(fstatat(c.AT_FDCWD, tmp.join("b")).nlink).toBe(2);
      expect(fs.statSync(tmp.join("b")).ino).toBe(fs.statSync(tmp.join("a")).ino);
      const err = await rejected(linkatAsync(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("b")));
      expect(err).toMatchObject({ code: "EEXIST", errno: -17, syscall: "linkat", path: tmp.join("a"), dest: tmp.join("b") });
    });

    it("links the symlink itself by default and its target with AT_SYMLINK_FOLLOW", () => {
      fs.writeFileSync(tmp.join("a"), "data");
      fs.symlinkSync("a", tmp.join("s"));
      linkat(c.AT_FDCWD, tmp.join("s"), c.AT_FDCWD, tmp.join("s-hard"));
      expect(fs.lstatSync(tmp.join("s-hard")).isSymbolicLink()).toBe(true);
      linkat(c.AT_FDCWD, tmp.join("s"), c.AT_FDCWD, tmp.join("a-hard"), c.AT_SYMLINK_FOLLOW);
      expect(fs.lstatSync(tmp.join("a-hard")).isFile()).toBe(true);
      expect(fs.statSync(tmp.join("a")).nlink).toBe(2);
    });
  });

  describe("renameat2", () => {
    it("RENAME_NOREPLACE refuses to replace (EEXIST)", async () => {
      fs.writeFileSync(tmp.join("a"), "A");
      fs.writeFileSync(tmp.join("b"), "B");
      const err = expectErrno(() => renameat2(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("b"), c.RENAME_NOREPLACE), "EEXIST", "renameat2");
      expect(err).toMatchObject({ errno: -17, path: tmp.join("a"), dest: tmp.join("b") });
      expect(fs.readFileSync(tmp.join("b"), "utf8")).toBe("B");
      await renameat2Async(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("c"), c.RENAME_NOREPLACE);
      expect(fs.readFileSync(tmp.join("c"), "utf8")).toBe("A");
      renameat2(c.AT_FDCWD, tmp.join("c"), c.AT_FDCWD, tmp.join("b"));
      expect(fs.readdirSync(tmp.dir)).toEqual(["b"]);
    });

    it("RENAME_EXCHANGE swaps two entries atomically, even a file and a directory", () => {
      fs.writeFileSync(tmp.join("a"), "A");
      fs.mkdirSync(tmp.join("d"));
      renameat2(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("d"), c.RENAME_EXCHANGE);
      expect(fs.statSync(tmp.join("a")).isDirectory()).toBe(true);
      expect(fs.readFileSync(tmp.join("d"), "utf8")).toBe("A");
      expectErrno(() => renameat2(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("missing"), c.RENAME_EXCHANGE), "ENOENT");
    });

    it("RENAME_WHITEOUT leaves a 0/0 character device (root)", () => {
      fs.writeFileSync(tmp.join("a"), "A");
      renameat2(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("b"), c.RENAME_WHITEOUT);
      const st = fstatat(c.AT_FDCWD, tmp.join("a"), c.AT_SYMLINK_NOFOLLOW);
      expect(st.mode & c.S_IFMT).toBe(c.S_IFCHR);
      expect(st.rdev).toBe(0n);
      expect(fs.readFileSync(tmp.join("b"), "utf8")).toBe("A");
    });

    it("rejects unknown flags with EINVAL", () => {
      fs.writeFileSync(tmp.join("a"), "A");
      expectErrno(() => renameat2(c.AT_FDCWD, tmp.join("a"), c.AT_FDCWD, tmp.join("b"), 0x80), "EINVAL");
    });
  });

  describe("fchownat / fchmodat", () => {
    it("changes owner and group; -1 keeps one unchanged", () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      fchownat(c.AT_FDCWD, f, 1234, 5678);
      expect(fs.statSync(f)).toMatchObject({ uid: 1234, gid: 5678 });
      fchownat(c.AT_FDCWD, f, -1, 42);
      expect(fs.statSync(f)).toMatchObject({ uid: 1234, gid: 42 });
      fchownat(c.AT_FDCWD, f, 7, -1);
      expect(fs.statSync(f)).toMatchObject({ uid: 7, gid: 42 });
    });

    it("AT_SYMLINK_NOFOLLOW chowns the symlink, not its target", () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      fs.symlinkSync("f", tmp.join("l"));
      fchownat(c.AT_FDCWD, tmp.join("l"), 99, 98, c.AT_SYMLINK_NOFOLLOW);
      expect(fs.lstatSync(tmp.join("l"))).toMatchObject({ uid: 99, gid: 98 });
      expect(fs.statSync(f)).toMatchObject({ uid: 0, gid: 0 });
    });

    it("AT_EMPTY_PATH chowns the fd itself", () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      const fd = openat(c.AT_FDCWD, f, c.O_PATH);
      try {
        fchownat(fd, "", 5, 6, c.AT_EMPTY_PATH);
      } finally {
        close(fd);
      }
      expect(fs.statSync(f)).toMatchObject({ uid: 5, gid: 6 });
    });

    it("changes the mode; with AT_SYMLINK_NOFOLLOW uses fchmodat2", () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      fchmodat(c.AT_FDCWD, f, 0o4711);
      expect(modeOf(f)).toBe(0o4711);
      fchmodat(c.AT_FDCWD, f, 0o640, c.AT_SYMLINK_NOFOLLOW);
      expect(modeOf(f)).toBe(0o640);
      fs.symlinkSync("f", tmp.join("l"));
      // Linux >= 6.6 supports the flag; symlink modes cannot change (EOPNOTSUPP).
      expectErrno(() => fchmodat(c.AT_FDCWD, tmp.join("l"), 0o600, c.AT_SYMLINK_NOFOLLOW), "ENOTSUP", "fchmodat2");
      expect(modeOf(f)).toBe(0o640);
      expectErrno(() => fchmodat(c.AT_FDCWD, tmp.join("missing"), 0o600), "ENOENT", "fchmodat");
    });
  });

  describe("utimensat", () => {
    it("sets explicit times, and UTIME_OMIT leaves one alone", () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      utimensat(c.AT_FDCWD, f, { sec: 1_000_000_000, nsec: 123_456_789 }, { sec: 1_500_000_000, nsec: 5 });
      let st = fstatat(c.AT_FDCWD, f);
      expect([st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec]).toEqual([1_000_000_000, 123_456_789, 1_500_000_000, 5]);
      expect(fs.statSync(f, { bigint: true }).mtimeNs).toBe(1_500_000_000_000_000_005n);

      utimensat(c.AT_FDCWD, f, UTIME_OMIT, { sec: -1 });
      st = fstatat(c.AT_FDCWD, f);
      expect([st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec]).toEqual([1_000_000_000, 123_456_789, -1, 0]);
    });

    it("UTIME_NOW uses the current time", async () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      utimensat(c.AT_FDCWD, f, { sec: 0 }, { sec: 0 });
      const before = Math.floor(Date.now() / 1000) - 1;
      await utimensatAsync(c.AT_FDCWD, f, UTIME_OMIT, c.UTIME_NOW);
      const st = fstatat(c.AT_FDCWD, f);
      expect(st.atimeSec).toBe(0);
      expect(st.mtimeSec).toBeGreaterThanOrEqual(before);
    });

    it("a null path or '' with AT_EMPTY_PATH sets the fd's own times (futimens)", () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      const fd = openat(c.AT_FDCWD, f, c.O_RDWR);
      try {
        utimensat(fd, null, { sec: 11 }, { sec: 22 });
        expect(fstatat(c.AT_FDCWD, f)).toMatchObject({ atimeSec: 11, mtimeSec: 22 });
        utimensat(fd, "", { sec: 33 }, UTIME_OMIT, c.AT_EMPTY_PATH);
        expect(fstatat(c.AT_FDCWD, f)).toMatchObject({ atimeSec: 33, mtimeSec: 22 });
      } finally {
        close(fd);
      }
      expectErrno(() => utimensat(1_000_000, null, UTIME_NOW, UTIME_NOW), "EBADF", "futimens");
    });

    it("AT_SYMLINK_NOFOLLOW changes the symlink's times only", () => {
      fs.writeFileSync(tmp.join("f"), "");
      fs.symlinkSync("f", tmp.join("l"));
      utimensat(c.AT_FDCWD, tmp.join("l"), { sec: 77 }, { sec: 88 }, c.AT_SYMLINK_NOFOLLOW);
      expect(fstatat(c.AT_FDCWD, tmp.join("l"), c.AT_SYMLINK_NOFOLLOW).mtimeSec).toBe(88);
      expect(fstatat(c.AT_FDCWD, tmp.join("f")).mtimeSec).not.toBe(88);
    });
  });

  describe("faccessat", () => {
    it("checks existence and permissions", async () => {
      const f = tmp.join("f");
      fs.writeFileSync(f, "");
      fs.chmodSync(f, 0o644);
      faccessat(c.AT_FDCWD, f);
      faccessat(c.AT_FDCWD, f, c.R_OK | c.W_OK);
      // Even root needs an execute bit somewhere for X_OK.
      expectErrno(() => faccessat(c.AT_FDCWD, f, c.X_OK), "EACCES", "faccessat");
      fs.chmodSync(f, 0o000);
      faccessat(c.AT_FDCWD, f, c.R_OK | c.W_OK); // root bypasses rw checks
      await expect(faccessatAsync(c.AT_FDCWD, f, c.F_OK)).resolves.toBeUndefined();
      const err = await rejected(faccessatAsync(c.AT_FDCWD, tmp.join("missing")));
      expect(err).toMatchObject({ code: "ENOENT", errno: -2, syscall: "faccessat" });
    });

    it("uses faccessat2 for AT_SYMLINK_NOFOLLOW and AT_EACCESS", () => {
      fs.symlinkSync("/nonexistent/target", tmp.join("dangling"));
      expectErrno(() => faccessat(c.AT_FDCWD, tmp.join("dangling"), c.F_OK), "ENOENT", "faccessat");
      faccessat(c.AT_FDCWD, tmp.join("dangling"), c.F_OK, c.AT_SYMLINK_NOFOLLOW);
      faccessat(c.AT_FDCWD, tmp.dir, c.R_OK | c.X_OK, c.AT_EACCESS);
      expectErrno(() => faccessat(c.AT_FDCWD, tmp.join("missing"), c.F_OK, c.AT_EACCESS), "ENOENT", "faccessat2");
    });
  });
});
