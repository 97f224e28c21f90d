import { expect, it } from "vitest";
import { FALLOC, O, ROOT_INO, S, SEEK, WRITE } from "../../constants.js";
import { ROOT, expectErrno, n } from "../harness.js";
import type { Suite } from "../index.js";

const MiB = 1024 * 1024;

/** create/open flags, data I/O, holes, open-unlinked files, fallocate, lseek, copyFileRange. */
export const fileSuite: Suite = (env, caps) => {
  it("creates a file with the mode minus the umask, empty, owned by the caller", async () => {
    const { h } = env();
    const { entry } = await h.create("f", 0o666, ROOT_INO, O.RDWR | O.CREAT, 0o022);
    expect(entry.attr).toMatchObject({ mode: S.IFREG | 0o644, size: 0, nlink: 1, uid: 0, gid: 0 });
  });

  it("keeps setuid, setgid and sticky bits given to create", async () => {
    const { h } = env();
    const { entry } = await h.create("f", 0o7755);
    expect(entry.attr.mode).toBe(S.IFREG | 0o7755);
  });

  it("opens an existing file on create without O_EXCL", async () => {
    const { h } = env();
    const ino = await h.file("f", "keep");
    const again = await h.create("f", 0o600, ROOT_INO, O.RDWR | O.CREAT);
    expect(again.ino).toBe(ino);
    expect(await h.readText(ino, again.fh)).toBe("keep");
    await h.release(ino, again.fh);
  });

  it("truncates an existing file on create with O_TRUNC", async () => {
    const { h } = env();
    const ino = await h.file("f", "old content");
    const again = await h.create("f", 0o644, ROOT_INO, O.RDWR | O.CREAT | O.TRUNC);
    expect(again.ino).toBe(ino);
    expect((await h.getattr(ino)).size).toBe(0);
    await h.release(ino, again.fh);
  });

  it("writes and reads at offsets", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("f");
    expect(await h.write(ino, fh, "hello world")).toBe(11);
    expect(await h.write(ino, fh, "W", 6)).toBe(1);
    expect(await h.readText(ino, fh)).toBe("hello World");
    expect(await h.readText(ino, fh, 5, 3)).toBe("lo Wo");
    expect((await h.getattr(ino)).size).toBe(11);
  });

  it("returns short reads at end of file and empty reads past it", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, "abc");
    expect(await h.readText(ino, fh, 100, 1)).toBe("bc");
    expect((await h.read(ino, fh, 10, 3)).length).toBe(0);
    expect((await h.read(ino, fh, 10, 1000)).length).toBe(0);
    expect((await h.read(ino, fh, 0, 0)).length).toBe(0);
  });

  // readInto is optional: a backend without it skips these (its callers use read).
  it("readInto fills the caller's buffer as read would, short at end of file, leaving the rest alone", async ({ skip }) => {
    const { h, fs } = env();
    if (fs.readInto === undefined) skip("the backend has no readInto");
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, "hello world");
    const target = new Uint8Array(8).fill(0xee);
    expect(await fs.readInto!(ROOT, ino, fh, target, 3)).toBe(8);
    expect(new TextDecoder().decode(target)).toBe("lo world");
    target.fill(0xee);
    expect(await fs.readInto!(ROOT, ino, fh, target, 6)).toBe(5);
    expect([...target]).toEqual([...n("world"), 0xee, 0xee, 0xee]);
    expect(await fs.readInto!(ROOT, ino, fh, target, 11)).toBe(0);
    expect(await fs.readInto!(ROOT, ino, fh, target, 1000)).toBe(0);
    expect(await fs.readInto!(ROOT, ino, fh, new Uint8Array(0), 0)).toBe(0);
    expect([...target]).toEqual([...n("world"), 0xee, 0xee, 0xee]);
  });

  it("readInto writes into a view at the view's own place, and reads a gap as zeros", async ({ skip }) => {
    const { h, fs } = env();
    if (fs.readInto === undefined) skip("the backend has no readInto");
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, "x", 100_000);
    const whole = new Uint8Array(100_020).fill(0xee);
    const view = whole.subarray(10, 10 + 100_001);
    expect(await fs.readInto!(ROOT, ino, fh, view, 0)).toBe(100_001);
    expect(view.subarray(0, 100_000).every((b) => b === 0)).toBe(true);
    expect(view[100_000]).toBe(0x78);
    expect(whole.subarray(0, 10).every((b) => b === 0xee)).toBe(true);
    expect(whole.subarray(10 + 100_001).every((b) => b === 0xee)).toBe(true);
    // The same bytes as read gives.
    expect(Buffer.from(view).equals(await h.read(ino, fh, 100_001, 0))).toBe(true);
  });

  it("readInto refuses what read refuses: EBADF for a write-only or unknown handle, EINVAL for a bad offset or target", async ({ skip }) => {
    const { h, fs } = env();
    if (fs.readInto === undefined) skip("the backend has no readInto");
    const ino = await h.file("f", "abc");
    const target = new Uint8Array(3);
    const wo = await h.open(ino, O.WRONLY);
    await expectErrno(() => fs.readInto!(ROOT, ino, wo, target, 0), "EBADF");
    await h.release(ino, wo, O.WRONLY);
    await expectErrno(() => fs.readInto!(ROOT, ino, 987_654, target, 0), "EBADF");
    const ro = await h.open(ino, O.RDONLY);
    await expectErrno(() => fs.readInto!(ROOT, ino, ro, target, -1), "EINVAL");
    await expectErrno(() => fs.readInto!(ROOT, ino, ro, [0, 0, 0] as unknown as Uint8Array, 0), "EINVAL");
    await h.release(ino, ro, O.RDONLY);
    expect([...target]).toEqual([0, 0, 0]);
  });

  it("zero-fills a gap written past the end", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, "a");
    await h.write(ino, fh, "z", 10_000);
    const data = await h.read(ino, fh, 20_000, 0);
    expect(data.length).toBe(10_001);
    expect(data[0]).toBe(0x61);
    expect(data.subarray(1, 10_000).every((b) => b === 0)).toBe(true);
    expect(data[10_000]).toBe(0x7a);
  });

  it("keeps a large sparse file readable at both ends", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("sparse");
    const far = 4 * 1024 * MiB; // 4 GiB: beyond 32-bit offsets
    await h.write(ino, fh, "end", far);
    expect((await h.getattr(ino)).size).toBe(far + 3);
    expect(await h.readText(ino, fh, 3, far)).toBe("end");
    expect((await h.read(ino, fh, 4096, far - 4096)).every((b) => b === 0)).toBe(true);
    const attr = await h.getattr(ino);
    if (caps.sparseFiles) expect(attr.blocks * 512).toBeLessThan(MiB);
  });

  it("writes and reads back 1 MiB and 8 MiB buffers intact", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("big");
    for (const size of [MiB, 8 * MiB]) {
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 0xff;
      data[size - 1] = 0x55;
      let done = 0;
      while (done < size) done += await h.write(ino, fh, data.subarray(done), done);
      const back = new Uint8Array(size);
      let got = 0;
      while (got < size) {
        const part = await h.read(ino, fh, size - got, got);
        expect(part.length).toBeGreaterThan(0);
        back.set(part, got);
        got += part.length;
      }
      expect(Buffer.compare(back, data)).toBe(0);
    }
  });

  it("appends every write on an O_APPEND handle at the end, whatever the offset", async () => {
    const { h } = env();
    const ino = await h.file("log", "one\n");
    const fh = await h.open(ino, O.WRONLY | O.APPEND);
    await h.write(ino, fh, "two\n", 0);
    await h.write(ino, fh, "three\n", 1);
    await h.release(ino, fh, O.WRONLY | O.APPEND);
    expect(await h.content(ino)).toBe("one\ntwo\nthree\n");
  });

  it("truncates on open with O_TRUNC and write access", async () => {
    const { h } = env();
    const ino = await h.file("f", "content");
    const fh = await h.open(ino, O.WRONLY | O.TRUNC);
    expect((await h.getattr(ino)).size).toBe(0);
    await h.release(ino, fh, O.WRONLY);
  });

  it("refuses O_DIRECTORY on a file with ENOTDIR", async () => {
    const { h } = env();
    const ino = await h.file("f");
    await expectErrno(() => h.open(ino, O.RDONLY | O.DIRECTORY), "ENOTDIR");
  });

  it("refuses to open a directory for writing with EISDIR", async () => {
    const { h } = env();
    const dir = await h.mkdir("d");
    await expectErrno(() => h.open(dir.ino, O.WRONLY), "EISDIR");
    await expectErrno(() => h.open(dir.ino, O.RDWR), "EISDIR");
  });

  it("refuses to open a symlink itself with ELOOP", async () => {
    const { h } = env();
    const link = await h.symlink("target", "l");
    await expectErrno(() => h.open(link.ino, O.RDONLY | O.NOFOLLOW), "ELOOP");
  });

  it("refuses reads on a write-only handle and writes on a read-only one with EBADF", async () => {
    const { h } = env();
    const ino = await h.file("f", "abc");
    const wo = await h.open(ino, O.WRONLY);
    await expectErrno(() => h.read(ino, wo, 3, 0), "EBADF");
    await h.release(ino, wo, O.WRONLY);
    const ro = await h.open(ino, O.RDONLY);
    await expectErrno(() => h.write(ino, ro, "x", 0), "EBADF");
    await h.release(ino, ro, O.RDONLY);
  });

  it("answers EBADF for a handle it never gave out or already released", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "abc");
    await expectErrno(() => h.read(ino, 987_654, 3, 0), "EBADF");
    await expectErrno(() => h.write(ino, 987_654, "x", 0), "EBADF");
    const fh = await h.open(ino, O.RDONLY);
    await h.release(ino, fh, O.RDONLY);
    await expectErrno(() => h.read(ino, fh, 3, 0), "EBADF");
    await expectErrno(() => fs.fsync(ROOT, ino, 987_654, false), "EBADF");
  });

  it("refuses negative offsets with EINVAL", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("f");
    await expectErrno(() => h.write(ino, fh, "x", -1), "EINVAL");
    await expectErrno(() => h.read(ino, fh, 1, -1), "EINVAL");
  });

  it("serves several handles of one file independently", async () => {
    const { h } = env();
    const ino = await h.file("f", "0123456789");
    const a = await h.open(ino, O.RDONLY);
    const b = await h.open(ino, O.RDWR);
    await h.write(ino, b, "AB", 4);
    expect(await h.readText(ino, a)).toBe("0123AB6789");
    await h.release(ino, a, O.RDONLY);
    expect(await h.readText(ino, b, 2, 4)).toBe("AB");
    await h.release(ino, b);
  });

  it("keeps an unlinked open file readable and writable until release", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("tmp");
    await h.write(ino, fh, "still here");
    await h.unlink("tmp");
    await expectErrno(() => h.lookup("tmp"), "ENOENT");
    expect(await h.readText(ino, fh)).toBe("still here");
    await h.write(ino, fh, "!", 10);
    expect(await h.readText(ino, fh)).toBe("still here!");
    const attr = await h.getattr(ino, fh);
    expect(attr.nlink).toBe(0);
    expect(attr.size).toBe(11);
    await h.release(ino, fh);
    // A new file of the same name is a new inode.
    const again = await h.file("tmp", "new");
    expect(again).not.toBe(ino);
  });

  it("accepts flush, fsync and datasync on open handles", async () => {
    const { h, fs } = env();
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, "x");
    await fs.flush(ROOT, ino, fh, 0);
    await fs.fsync(ROOT, ino, fh, false);
    await fs.fsync(ROOT, ino, fh, true);
    await h.release(ino, fh);
  });

  it("clears setuid and setgid when the kernel asks with WRITE.KILL_SUIDGID", async () => {
    const { h, fs } = env();
    const { ino, fh } = await h.create("f", 0o6755);
    await fs.write(ROOT, ino, fh, n("x"), 0, WRITE.KILL_SUIDGID);
    expect((await h.getattr(ino)).mode & 0o7777).toBe(0o755);
    await h.release(ino, fh);
  });

  if (caps.fallocate) {
    it("fallocate mode 0 extends the size and reads zeros", async () => {
      const { h, fs } = env();
      const { ino, fh } = await h.create("f");
      await h.write(ino, fh, "ab");
      await fs.fallocate(ROOT, ino, fh, 0, 0, 8192);
      expect((await h.getattr(ino)).size).toBe(8192);
      const data = await h.read(ino, fh, 8192, 0);
      expect(data[0]).toBe(0x61);
      expect(data.subarray(2).every((b) => b === 0)).toBe(true);
    });

    it("fallocate KEEP_SIZE leaves the size alone", async () => {
      const { h, fs } = env();
      const { ino, fh } = await h.create("f");
      await h.write(ino, fh, "ab");
      await fs.fallocate(ROOT, ino, fh, FALLOC.KEEP_SIZE, 0, 65536);
      expect((await h.getattr(ino)).size).toBe(2);
    });

    it("punches holes (with KEEP_SIZE) that read as zeros", async () => {
      const { h, fs } = env();
      const { ino, fh } = await h.create("f");
      await h.write(ino, fh, new Uint8Array(3 * 65536).fill(0x41));
      await fs.fallocate(ROOT, ino, fh, FALLOC.PUNCH_HOLE | FALLOC.KEEP_SIZE, 65536, 65536);
      const data = await h.read(ino, fh, 3 * 65536, 0);
      expect(data.length).toBe(3 * 65536);
      expect(data[65535]).toBe(0x41);
      expect(data.subarray(65536, 131072).every((b) => b === 0)).toBe(true);
      expect(data[131072]).toBe(0x41);
    });

    it("refuses PUNCH_HOLE without KEEP_SIZE with EOPNOTSUPP", async () => {
      const { h, fs } = env();
      const { ino, fh } = await h.create("f");
      await h.write(ino, fh, "abc");
      await expectErrno(() => fs.fallocate(ROOT, ino, fh, FALLOC.PUNCH_HOLE, 0, 1), "EOPNOTSUPP");
    });

    it("zeroes a range with ZERO_RANGE", async () => {
      const { h, fs } = env();
      const { ino, fh } = await h.create("f");
      await h.write(ino, fh, "abcdefgh");
      await fs.fallocate(ROOT, ino, fh, FALLOC.ZERO_RANGE, 2, 3);
      expect([...(await h.read(ino, fh, 8, 0))]).toEqual([0x61, 0x62, 0, 0, 0, 0x66, 0x67, 0x68]);
    });

    it("refuses fallocate on a read-only handle with EBADF", async () => {
      const { h, fs } = env();
      const ino = await h.file("f", "x");
      const fh = await h.open(ino, O.RDONLY);
      await expectErrno(() => fs.fallocate(ROOT, ino, fh, 0, 0, 10), "EBADF");
    });

    it("refuses a zero or negative length with EINVAL", async () => {
      const { h, fs } = env();
      const { ino, fh } = await h.create("f");
      await expectErrno(() => fs.fallocate(ROOT, ino, fh, 0, 0, 0), "EINVAL");
      await expectErrno(() => fs.fallocate(ROOT, ino, fh, 0, -1, 10), "EINVAL");
    });
  }

  if (caps.sparseFiles) {
    it("finds data and holes with SEEK_DATA and SEEK_HOLE", async () => {
      const { h, fs } = env();
      const { ino, fh } = await h.create("f");
      const far = 16 * MiB;
      await h.write(ino, fh, "data", far);
      const size = far + 4;
      expect(await fs.lseek(ROOT, ino, fh, 0, SEEK.HOLE)).toBe(0);
      const data = await fs.lseek(ROOT, ino, fh, 0, SEEK.DATA);
      expect(data).toBeLessThanOrEqual(far);
      expect(data).toBeGreaterThan(MiB);
      expect(await fs.lseek(ROOT, ino, fh, far, SEEK.HOLE)).toBe(size);
      await expectErrno(() => fs.lseek(ROOT, ino, fh, size, SEEK.DATA), "ENXIO");
      await expectErrno(() => fs.lseek(ROOT, ino, fh, size + 10, SEEK.HOLE), "ENXIO");
    });
  }

  it("treats a file without holes as data up to its end", async () => {
    const { h, fs } = env();
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, "abcdef");
    expect(await fs.lseek(ROOT, ino, fh, 2, SEEK.DATA)).toBe(2);
    expect(await fs.lseek(ROOT, ino, fh, 2, SEEK.HOLE)).toBe(6);
    await expectErrno(() => fs.lseek(ROOT, ino, fh, 6, SEEK.DATA), "ENXIO");
    await expectErrno(() => fs.lseek(ROOT, ino, fh, -1, SEEK.DATA), ["EINVAL", "ENXIO"]);
  });

  if (caps.copyFileRange) {
    it("copies a range between files", async () => {
      const { h, fs } = env();
      const src = await h.file("src", "0123456789");
      const dst = await h.file("dst", "abcdefghij");
      const fin = await h.open(src, O.RDONLY);
      const fout = await h.open(dst, O.WRONLY);
      expect(await fs.copyFileRange(ROOT, src, fin, 2, dst, fout, 5, 4, 0)).toBe(4);
      await h.release(src, fin, O.RDONLY);
      await h.release(dst, fout, O.WRONLY);
      expect(await h.content(dst)).toBe("abcde2345j");
    });

    it("copies only what exists before the source's end, and nothing past it", async () => {
      const { h, fs } = env();
      const src = await h.file("src", "abc");
      const dst = await h.file("dst", "");
      const fin = await h.open(src, O.RDONLY);
      const fout = await h.open(dst, O.WRONLY);
      expect(await fs.copyFileRange(ROOT, src, fin, 1, dst, fout, 0, 100, 0)).toBe(2);
      expect(await fs.copyFileRange(ROOT, src, fin, 3, dst, fout, 0, 100, 0)).toBe(0);
      expect(await h.content(dst)).toBe("bc");
    });

    it("extends the destination when copying past its end", async () => {
      const { h, fs } = env();
      const src = await h.file("src", "xy");
      const dst = await h.file("dst", "");
      const fin = await h.open(src, O.RDONLY);
      const fout = await h.open(dst, O.WRONLY);
      expect(await fs.copyFileRange(ROOT, src, fin, 0, dst, fout, 4, 2, 0)).toBe(2);
      expect([...new TextEncoder().encode(await h.content(dst))]).toEqual([0, 0, 0, 0, 0x78, 0x79]);
    });

    it("refuses overlapping ranges of one file with EINVAL", async () => {
      const { h, fs } = env();
      const ino = await h.file("f", "0123456789");
      const fh = await h.open(ino, O.RDWR);
      await expectErrno(() => fs.copyFileRange(ROOT, ino, fh, 0, ino, fh, 2, 5, 0), "EINVAL");
    });

    it("refuses a write-only source or read-only destination with EBADF", async () => {
      const { h, fs } = env();
      const src = await h.file("src", "abc");
      const dst = await h.file("dst", "");
      const srcWo = await h.open(src, O.WRONLY);
      const dstRo = await h.open(dst, O.RDONLY);
      const dstWo = await h.open(dst, O.WRONLY);
      const srcRo = await h.open(src, O.RDONLY);
      await expectErrno(() => fs.copyFileRange(ROOT, src, srcWo, 0, dst, dstWo, 0, 3, 0), "EBADF");
      await expectErrno(() => fs.copyFileRange(ROOT, src, srcRo, 0, dst, dstRo, 0, 3, 0), "EBADF");
    });
  }
};
