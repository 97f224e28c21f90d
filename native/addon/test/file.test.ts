import fs from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { close, constants, copyFileRange, copyFileRangeAsync, fallocate, fallocateAsync, fstat, fuseDevClone, fuseDevCloneAsync, lseek, lseekAsync, openat } from "../index.js";
import { expectErrno, rejected, useTmpDir } from "./helpers.js";

const c = constants;
const MiB = 1024 * 1024;

describe("fallocate / lseek / copyFileRange", () => {
  const tmp = useTmpDir();
  const fds: number[] = [];

  function open(name: string, flags: number = c.O_RDWR | c.O_CREAT): number {
    const fd = openat(c.AT_FDCWD, tmp.join(name), flags, 0o644);
    fds.push(fd);
    return fd;
  }

  beforeEach(() => {
    fds.length = 0;
  });
  afterEach(() => {
    for (const fd of fds) close(fd);
  });

  it("fallocate allocates, KEEP_SIZE keeps the size, ZERO_RANGE zeroes", async () => {
    const fd = open("f");
    fallocate(fd, 0, 0, MiB);
    expect(fstat(fd).size).toBe(MiB);
    expect(fstat(fd).blocks * 512).toBeGreaterThanOrEqual(MiB);
    await fallocateAsync(fd, c.FALLOC_FL_KEEP_SIZE, MiB, MiB);
    expect(fstat(fd).size).toBe(MiB);
    expect(fstat(fd).blocks * 512).toBeGreaterThanOrEqual(2 * MiB);

    fs.writeSync(fd, Buffer.alloc(8192, 0x61), 0, 8192, 0);
    fallocate(fd, c.FALLOC_FL_ZERO_RANGE, 4096, 4096);
    const back = Buffer.alloc(8192);
    fs.readSync(fd, back, 0, 8192, 0);
    expect(back.subarray(0, 4096).every((b) => b === 0x61)).toBe(true);
    expect(back.subarray(4096).every((b) => b === 0)).toBe(true);
    expectErrno(() => fallocate(fd, c.FALLOC_FL_PUNCH_HOLE, 0, 4096), "ENOTSUP", "fallocate"); // needs KEEP_SIZE
    expectErrno(() => fallocate(1_000_000, 0, 0, 1), "EBADF", "fallocate");
  });

  it("SEEK_DATA / SEEK_HOLE find data in a sparse file; PUNCH_HOLE removes it; ENXIO past data", async () => {
    const fd = open("sparse");
    fs.ftruncateSync(fd, 4 * MiB);
    fs.writeSync(fd, Buffer.alloc(64 * 1024, 0x62), 0, 64 * 1024, MiB);
    fs.fsyncSync(fd);

    expect(lseek(fd, 0, c.SEEK_DATA)).toBe(MiB);
    expect(lseek(fd, MiB, c.SEEK_HOLE)).toBe(MiB + 64 * 1024);
    expect(lseek(fd, 0, c.SEEK_HOLE)).toBe(0);
    expect(await lseekAsync(fd, MiB + 100, c.SEEK_DATA)).toBe(MiB + 100);
    // No data after the written extent (the end of file counts as a hole).
    expect(expectErrno(() => lseek(fd, 2 * MiB, c.SEEK_DATA), "ENXIO", "lseek").errno).toBe(-6);
    expect(lseek(fd, 2 * MiB, c.SEEK_HOLE)).toBe(2 * MiB);
    expectErrno(() => lseek(fd, 5 * MiB, c.SEEK_HOLE), "ENXIO");

    fallocate(fd, c.FALLOC_FL_PUNCH_HOLE | c.FALLOC_FL_KEEP_SIZE, MiB, 64 * 1024);
    expect(fstat(fd).size).toBe(4 * MiB);
    expectErrno(() => lseek(fd, 0, c.SEEK_DATA), "ENXIO");
    expect((await rejected(lseekAsync(fd, 0, c.SEEK_DATA))).code).toBe("ENXIO");
  });

  it("lseek SEEK_SET/CUR/END, negative relative offsets, bigint in → bigint out", () => {
    const fd = open("f");
    fs.writeSync(fd, Buffer.from("0123456789"));
    expect(lseek(fd, 2, c.SEEK_SET)).toBe(2);
    expect(lseek(fd, 3, c.SEEK_CUR)).toBe(5);
    expect(lseek(fd, -4, c.SEEK_END)).toBe(6);
    expect(lseek(fd, 1n, c.SEEK_SET)).toBe(1n);
    expect(lseek(fd, 2n ** 40n, c.SEEK_SET)).toBe(2n ** 40n);
    expectErrno(() => lseek(fd, -1, c.SEEK_SET), "EINVAL", "lseek");
    expectErrno(() => lseek(fd, 0, 99), "EINVAL");
  });

  it("copyFileRange copies with explicit offsets without moving file positions", async () => {
    fs.writeFileSync(tmp.join("src"), "hello world");
    const src = open("src", c.O_RDONLY);
    const dst = open("dst");
    expect(copyFileRange(src, 6, dst, 0, 5)).toBe(5);
    expect(fs.readFileSync(tmp.join("dst"), "utf8")).toBe("world");
    expect(lseek(src, 0, c.SEEK_CUR)).toBe(0);
    expect(lseek(dst, 0, c.SEEK_CUR)).toBe(0);
    expect(await copyFileRangeAsync(src, 0, dst, 5, 6)).toBe(6);
    expect(fs.readFileSync(tmp.join("dst"), "utf8")).toBe("worldhello ");
    // Past the end of the input: 0 bytes.
    expect(copyFileRange(src, 100, dst, 0, 10)).toBe(0);
  });

  it("copyFileRange with null offsets uses and advances the file positions", () => {
    fs.writeFileSync(tmp.join("src"), "abcdefghij");
    const src = open("src", c.O_RDONLY);
    const dst = open("dst", c.O_WRONLY | c.O_CREAT);
    lseek(src, 2, c.SEEK_SET);
    expect(copyFileRange(src, null, dst, null, 3)).toBe(3);
    expect(lseek(src, 0, c.SEEK_CUR)).toBe(5);
    expect(lseek(dst, 0, c.SEEK_CUR)).toBe(3);
    expect(copyFileRange(src, null, dst, null, 100)).toBe(5);
    expect(fs.readFileSync(tmp.join("dst"), "utf8")).toBe("cdefghij");
    expectErrno(() => copyFileRange(src, 0, dst, 0, 1, 1), "EINVAL", "copy_file_range");
    expectErrno(() => copyFileRange(dst, 0, src, 0, 1), "EBADF", "copy_file_range");
  });
});

describe("fuseDevClone", () => {
  const tmp = useTmpDir();

  it("refuses descriptors that are not an attached /dev/fuse (the mounted case is tested in @msb/fuse)", async () => {
    const file = openat(c.AT_FDCWD, tmp.join("f"), c.O_RDWR | c.O_CREAT, 0o644);
    try {
      expectErrno(() => fuseDevClone(file, file), "ENOTTY", "ioctl(FUSE_DEV_IOC_CLONE)");
      if (!fs.existsSync("/dev/fuse")) return; // the rest needs the fuse module
      const fresh = openat(c.AT_FDCWD, "/dev/fuse", c.O_RDWR, 0);
      const unmounted = openat(c.AT_FDCWD, "/dev/fuse", c.O_RDWR, 0);
      try {
        // A session descriptor that no mount(2) attached has no connection to join (EPERM);
        // one that is not /dev/fuse at all is EINVAL.
        expectErrno(() => fuseDevClone(fresh, unmounted), "EPERM", "ioctl(FUSE_DEV_IOC_CLONE)");
        expectErrno(() => fuseDevClone(fresh, file), "EINVAL", "ioctl(FUSE_DEV_IOC_CLONE)");
        expect((await rejected(fuseDevCloneAsync(fresh, unmounted))).code).toBe("EPERM");
      } finally {
        close(fresh);
        close(unmounted);
      }
    } finally {
      close(file);
    }
  });
});
