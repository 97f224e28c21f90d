import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { STATX_FIELDS, close, constants, fstat, fstatAsync, fstatat, fstatatAsync, fstatfs, major, minor, openat, statfs, statfsAsync, statxInto } from "../index.js";
import type { Stat } from "../index.js";
import { expectErrno, rejected, useTmpDir } from "./helpers.js";

const c = constants;

/** Compares every field with node:fs's BigInt stats of the same object. */
function expectSameAs(st: Stat, ref: fs.BigIntStats): void {
  expect(st.dev).toBe(ref.dev);
  expect(st.ino).toBe(ref.ino);
  expect(BigInt(st.mode)).toBe(ref.mode);
  expect(BigInt(st.nlink)).toBe(ref.nlink);
  expect(BigInt(st.uid)).toBe(ref.uid);
  expect(BigInt(st.gid)).toBe(ref.gid);
  expect(st.rdev).toBe(ref.rdev);
  expect(BigInt(st.size)).toBe(ref.size);
  expect(BigInt(st.blksize)).toBe(ref.blksize);
  expect(BigInt(st.blocks)).toBe(ref.blocks);
  expect(BigInt(st.atimeSec) * 1_000_000_000n + BigInt(st.atimeNsec)).toBe(ref.atimeNs);
  expect(BigInt(st.mtimeSec) * 1_000_000_000n + BigInt(st.mtimeNsec)).toBe(ref.mtimeNs);
  expect(BigInt(st.ctimeSec) * 1_000_000_000n + BigInt(st.ctimeNsec)).toBe(ref.ctimeNs);
}

describe("fstatat / fstat / statfs", () => {
  const tmp = useTmpDir();

  it("matches fs.lstatSync for a file, a directory and a symlink", () => {
    fs.writeFileSync(tmp.join("f"), "12345");
    fs.mkdirSync(tmp.join("d"));
    fs.symlinkSync("f", tmp.join("l"));
    for (const name of ["f", "d"]) {
      expectSameAs(fstatat(c.AT_FDCWD, tmp.join(name)), fs.lstatSync(tmp.join(name), { bigint: true }));
    }
    const st = fstatat(c.AT_FDCWD, tmp.join("l"), c.AT_SYMLINK_NOFOLLOW);
    expectSameAs(st, fs.lstatSync(tmp.join("l"), { bigint: true }));
    expect(st.mode & c.S_IFMT).toBe(c.S_IFLNK);
    // Without the flag the symlink is followed.
    expectSameAs(fstatat(c.AT_FDCWD, tmp.join("l")), fs.statSync(tmp.join("f"), { bigint: true }));
    expect(typeof st.ino).toBe("bigint");
    expect(typeof st.dev).toBe("bigint");
    expect(typeof st.size).toBe("number");
  });

  it("works relative to a dirfd, with Uint8Array paths, and on the fd itself", async () => {
    fs.writeFileSync(tmp.join("f"), "abc");
    const ref = fs.statSync(tmp.join("f"), { bigint: true });
    const d = openat(c.AT_FDCWD, tmp.dir, c.O_DIRECTORY | c.O_PATH);
    const fd = openat(d, "f");
    try {
      expectSameAs(fstatat(d, new TextEncoder().encode("f")), ref);
      expectSameAs(fstatat(fd, "", c.AT_EMPTY_PATH), ref);
      expectSameAs(fstat(fd), ref);
      expectSameAs(await fstatAsync(fd), ref);
      expectSameAs(await fstatatAsync(d, "f"), ref);
      expectSameAs(fstat(d), fs.statSync(tmp.dir, { bigint: true }));
    } finally {
      close(fd);
      close(d);
    }
  });

  it("reports ENOENT / ENOTDIR / EBADF from statx", async () => {
    fs.writeFileSync(tmp.join("f"), "");
    const err = expectErrno(() => fstatat(c.AT_FDCWD, tmp.join("missing")), "ENOENT", "statx");
    expect(err).toMatchObject({ errno: -2, path: tmp.join("missing") });
    expect(err.message).toBe(`ENOENT: no such file or directory, statx '${tmp.join("missing")}'`);
    expectErrno(() => fstatat(c.AT_FDCWD, tmp.join("f", "x")), "ENOTDIR", "statx");
    expectErrno(() => fstat(1_000_000), "EBADF", "statx");
    expect(await rejected(fstatAsync(1_000_000))).toMatchObject({ code: "EBADF", errno: -9, syscall: "statx" });
  });

  it("statxInto writes every field as exact numbers, false for a missing name", () => {
    fs.writeFileSync(tmp.join("f"), "12345");
    fs.symlinkSync("f", tmp.join("link"));
    const dir = openat(c.AT_FDCWD, tmp.dir, c.O_PATH | c.O_DIRECTORY);
    const out = new Float64Array(STATX_FIELDS.length);
    const F = STATX_FIELDS;
    try {
      for (const [name, flags, ref] of [
        ["f", 0, fs.statSync(tmp.join("f"), { bigint: true })],
        ["link", c.AT_SYMLINK_NOFOLLOW, fs.lstatSync(tmp.join("link"), { bigint: true })],
      ] as const) {
        expect(statxInto(dir, name, flags, out)).toBe(true);
        expect(BigInt(out[F.inoHigh]!) * 2n ** 32n + BigInt(out[F.inoLow]!)).toBe(ref.ino);
        expect([out[F.devMajor], out[F.devMinor]]).toEqual([major(ref.dev), minor(ref.dev)]);
        expect([out[F.rdevMajor], out[F.rdevMinor]]).toEqual([major(ref.rdev), minor(ref.rdev)]);
        const numbers = [out[F.mode], out[F.nlink], out[F.uid], out[F.gid], out[F.size], out[F.blksize], out[F.blocks]].map((n) => BigInt(n!));
        expect(numbers).toEqual([ref.mode, ref.nlink, ref.uid, ref.gid, ref.size, ref.blksize, ref.blocks]);
        expect(BigInt(out[F.mtimeSec]!) * 1_000_000_000n + BigInt(out[F.mtimeNsec]!)).toBe(ref.mtimeNs);
        expect(BigInt(out[F.ctimeSec]!) * 1_000_000_000n + BigInt(out[F.ctimeNsec]!)).toBe(ref.ctimeNs);
        expect(BigInt(out[F.atimeSec]!) * 1_000_000_000n + BigInt(out[F.atimeNsec]!)).toBe(ref.atimeNs);
      }
      expect(statxInto(dir, "", c.AT_EMPTY_PATH, out)).toBe(true);
      expect(BigInt(out[F.inoHigh]!) * 2n ** 32n + BigInt(out[F.inoLow]!)).toBe(fs.statSync(tmp.dir, { bigint: true }).ino);
      out.fill(-1);
      expect(statxInto(dir, "missing", 0, out)).toBe(false);
      expect(out.every((n) => n === -1)).toBe(true);
      expectErrno(() => statxInto(dir, "f/x", 0, out), "ENOTDIR", "statx");
      expect(() => statxInto(dir, "f", 0, new Float64Array(F.length - 1))).toThrow(RangeError);
      expect(() => statxInto(dir, "f", 0, new Uint8Array(64) as unknown as Float64Array)).toThrow(TypeError);
    } finally {
      close(dir);
    }
  });

  it("statfs / fstatfs agree with fs.statfsSync", async () => {
    const ref = fs.statfsSync(tmp.dir);
    const st = statfs(tmp.dir);
    expect(st.type).toBe(ref.type);
    expect(st.bsize).toBe(ref.bsize);
    expect(st.blocks).toBe(ref.blocks);
    expect(st.files).toBe(ref.files);
    expect(st.namelen).toBeGreaterThan(0);
    expect(st.frsize).toBeGreaterThan(0);
    expect(typeof st.flags).toBe("number");
    const fd = openat(c.AT_FDCWD, tmp.dir, c.O_DIRECTORY);
    try {
      expect(fstatfs(fd)).toMatchObject({ type: ref.type, bsize: ref.bsize, blocks: ref.blocks });
    } finally {
      close(fd);
    }
    expect((await statfsAsync(tmp.dir)).type).toBe(ref.type);
    // /proc is procfs (PROC_SUPER_MAGIC 0x9fa0).
    expect(statfs("/proc").type).toBe(0x9fa0);
    expectErrno(() => statfs(tmp.join("missing")), "ENOENT", "statfs");
    expectErrno(() => fstatfs(1_000_000), "EBADF", "fstatfs");
  });
});
