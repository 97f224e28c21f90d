// The quota: allocated bytes (st_blocks × 512) under the root, measured at
// construction and kept current; writes short-write what fits, then ENOSPC.
import { FALLOC, FsError, O, ROOT_INO, S, setattrRequest } from "@msb/fs";
import { expectErrno } from "@msb/fs/testing";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, n, useBackends, useScratch, writeFile } from "./scratch.fixture.js";

const scratch = useScratch();
const backend = useBackends();
const KiB = 1024;

/** Fresh data, so no filesystem can share or compress its blocks. */
const data = (size: number): Uint8Array => new Uint8Array(size).map((_, i) => (i * 7 + 1) & 0xff);

describe("PassthroughFs quota", () => {
  it("counts what the tree already holds when it is created, hard links once", () => {
    const dir = scratch();
    writeFileSync(join(dir, "a"), data(64 * KiB));
    mkdirSync(join(dir, "d"));
    writeFileSync(join(dir, "d", "b"), data(32 * KiB));
    const fs = backend({ rootDir: dir, quota: 1 << 30 });
    // At least the data, at most data plus a few metadata blocks (directories, extent blocks).
    expect(fs.usage.used).toBeGreaterThanOrEqual(96 * KiB);
    expect(fs.usage.used).toBeLessThan(96 * KiB + 64 * KiB);
    expect(fs.usage.quota).toBe(1 << 30);
  });

  it("short-writes what fits, then answers ENOSPC, and frees space on unlink", async () => {
    const fs = backend({ rootDir: scratch(), quota: 256 * KiB });
    const base = fs.usage.used;
    const { entry, fh } = fs.create(ROOT, ROOT_INO, n("big"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
    let offset = 0;
    for (;;) {
      let written: number;
      try {
        written = fs.write(ROOT, entry.ino, fh, data(100 * KiB), offset, 0);
      } catch (error) {
        expect(FsError.isInstance(error) && error.code).toBe("ENOSPC");
        break;
      }
      expect(written).toBeGreaterThan(0);
      offset += written;
      expect(offset).toBeLessThanOrEqual(256 * KiB);
    }
    expect(offset).toBeGreaterThan(256 * KiB - base - 16 * KiB);
    expect(fs.usage.used).toBeLessThanOrEqual(256 * KiB);
    // Overwriting data that is already allocated needs no new space.
    expect(fs.write(ROOT, entry.ino, fh, data(8 * KiB), 0, 0)).toBe(8 * KiB);
    await expectErrno(() => fs.mkdir(ROOT, ROOT_INO, n("more"), S.IFDIR | 0o755, 0), "ENOSPC");
    const free = fs.statfs(ROOT, ROOT_INO);
    expect(free.bavail).toBe(0);
    expect(free.blocks * free.frsize).toBeLessThanOrEqual(256 * KiB);
    // Unlinked but open: the space stays taken until the last handle goes.
    fs.unlink(ROOT, ROOT_INO, n("big"));
    fs.forget(ROOT, entry.ino, 1);
    expect(fs.usage.used).toBeGreaterThan(200 * KiB);
    fs.release(ROOT, entry.ino, fh, O.RDWR);
    expect(fs.usage.used).toBeLessThanOrEqual(base + 8 * KiB);
    expect(writeFile(fs, "again", data(100 * KiB)).ino).toBeGreaterThan(0);
  });

  it("frees space on truncate and refuses fallocate beyond the quota", async () => {
    const fs = backend({ rootDir: scratch(), quota: 512 * KiB });
    const f = writeFile(fs, "f", data(300 * KiB));
    const used = fs.usage.used;
    const fh = fs.open(ROOT, f.ino, O.RDWR).fh;
    await expectErrno(() => fs.fallocate(ROOT, f.ino, fh, 0, 300 * KiB, 300 * KiB), "ENOSPC");
    fs.fallocate(ROOT, f.ino, fh, FALLOC.KEEP_SIZE, 300 * KiB, 64 * KiB);
    expect(fs.usage.used).toBeGreaterThanOrEqual(used + 64 * KiB);
    fs.setattr(ROOT, f.ino, setattrRequest({ size: 0, fh }));
    expect(fs.usage.used).toBeLessThan(used - 250 * KiB);
    // Growing by truncate allocates nothing, so it is allowed past the quota.
    expect(fs.setattr(ROOT, f.ino, setattrRequest({ size: 10 << 20 })).size).toBe(10 << 20);
    fs.release(ROOT, f.ino, fh, O.RDWR);
  });

  it("reports the quota in statfs", () => {
    const fs = backend({ rootDir: scratch(), quota: 1 << 20 });
    const st = fs.statfs(ROOT, ROOT_INO);
    expect(st.blocks * st.frsize).toBeLessThanOrEqual(1 << 20);
    expect(st.blocks * st.frsize).toBeGreaterThan((1 << 20) - st.frsize);
    writeFile(fs, "f", data(256 * KiB));
    expect(fs.statfs(ROOT, ROOT_INO).bavail).toBeLessThan(st.bavail);
  });

  it("counts copy_file_range and rename over an existing file", async () => {
    const fs = backend({ rootDir: scratch(), quota: 400 * KiB });
    const src = writeFile(fs, "src", data(150 * KiB));
    const victim = writeFile(fs, "victim", data(100 * KiB));
    const dst = writeFile(fs, "dst");
    const fin = fs.open(ROOT, src.ino, O.RDONLY).fh;
    const fout = fs.open(ROOT, dst.ino, O.WRONLY).fh;
    const copied = fs.copyFileRange(ROOT, src.ino, fin, 0, dst.ino, fout, 0, 150 * KiB, 0);
    expect(copied).toBeGreaterThan(0);
    expect(copied).toBeLessThan(150 * KiB);
    await expectErrno(() => fs.copyFileRange(ROOT, src.ino, fin, copied, dst.ino, fout, copied, 150 * KiB, 0), "ENOSPC");
    // The replaced file's blocks are freed once nothing holds its inode: here when the kernel forgets it.
    fs.rename(ROOT, ROOT_INO, n("src"), ROOT_INO, n("victim"), 0);
    fs.forget(ROOT, victim.ino, 1);
    expect(fs.copyFileRange(ROOT, src.ino, fin, copied, dst.ino, fout, copied, 150 * KiB - copied, 0)).toBe(150 * KiB - copied);
  });
});
