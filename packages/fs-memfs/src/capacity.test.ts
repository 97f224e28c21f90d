import { FALLOC, O, ROOT_INO, S, XATTR, setattrRequest } from "@msb/fs";
import { describe, expect, it } from "vitest";
import { MemFs } from "./index.js";
import { Fixture, ROOT, errno, n } from "./memfs.fixture.js";

const { INODE_COST, ENTRY_COST, XATTR_COST } = MemFs;
const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 * 1024 * MiB;

describe("MemFs capacity accounting", () => {
  it("charges the root, each inode, each name and each symlink target", () => {
    const t = new Fixture();
    expect(t.fs.usage).toEqual({ bytes: INODE_COST, inodes: 1 });
    t.mkdir("dir");
    expect(t.fs.usage.bytes).toBe(2 * INODE_COST + ENTRY_COST + 3);
    t.fs.symlink(ROOT, n("../target"), ROOT_INO, n("ln"));
    expect(t.fs.usage.bytes).toBe(3 * INODE_COST + 2 * ENTRY_COST + 3 + 2 + 9);
    expect(t.fs.usage.inodes).toBe(3);
  });

  it("charges a hard link its name only", () => {
    const t = new Fixture();
    const ino = t.file("a");
    const before = t.fs.usage.bytes;
    t.fs.link(ROOT, ino, ROOT_INO, n("second"));
    expect(t.fs.usage.bytes).toBe(before + ENTRY_COST + 6);
  });

  it("charges xattr names and values, and the difference when a value changes", () => {
    const t = new Fixture();
    const ino = t.file("f");
    const base = t.fs.usage.bytes;
    t.fs.setxattr(ROOT, ino, n("user.k"), new Uint8Array(100), 0);
    expect(t.fs.usage.bytes).toBe(base + XATTR_COST + 6 + 100);
    t.fs.setxattr(ROOT, ino, n("user.k"), new Uint8Array(10), XATTR.REPLACE);
    expect(t.fs.usage.bytes).toBe(base + XATTR_COST + 6 + 10);
    t.fs.removexattr(ROOT, ino, n("user.k"));
    expect(t.fs.usage.bytes).toBe(base);
  });

  it("charges file data in 512-byte grains as it is allocated", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f");
    const base = t.fs.usage.bytes;
    t.fs.write(ROOT, ino, fh, new Uint8Array(100), 0, 0);
    expect(t.fs.usage.bytes).toBe(base + 512);
    expect(t.fs.getattr(ROOT, ino).blocks).toBe(1);
  });

  it("takes no memory for holes, even at huge offsets", () => {
    const t = new Fixture({ capacity: MiB });
    const { ino, fh } = t.create("sparse");
    const base = t.fs.usage.bytes;
    expect(t.fs.write(ROOT, ino, fh, n("end"), 4 * TiB, 0)).toBe(3);
    expect(t.fs.usage.bytes).toBe(base + 512);
    const attr = t.fs.getattr(ROOT, ino);
    expect(attr.size).toBe(4 * TiB + 3);
    expect(attr.blocks).toBe(1);
    expect(t.fs.read(ROOT, ino, fh, 8, 4 * TiB - 5)).toEqual(new Uint8Array([0, 0, 0, 0, 0, 0x65, 0x6e, 0x64]));
  });

  it("writes what fits at the edge of the capacity, then answers ENOSPC", () => {
    const t = new Fixture({ capacity: 64 * KiB });
    const { ino, fh } = t.create("f");
    const room = 64 * KiB - t.fs.usage.bytes;
    const written = t.fs.write(ROOT, ino, fh, new Uint8Array(100 * KiB).fill(1), 0, 0);
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThanOrEqual(room);
    expect(written % 512).toBe(0);
    expect(t.fs.getattr(ROOT, ino).size).toBe(written);
    expect(errno(() => t.fs.write(ROOT, ino, fh, new Uint8Array(1), written, 0))).toBe("ENOSPC");
    expect(t.fs.usage.bytes).toBeLessThanOrEqual(64 * KiB);
    // Overwriting what is allocated needs no room.
    expect(t.fs.write(ROOT, ino, fh, new Uint8Array(written).fill(2), 0, 0)).toBe(written);
  });

  it("refuses a new name, inode or xattr that does not fit, and changes nothing", () => {
    const t = new Fixture({ capacity: 2 * INODE_COST + ENTRY_COST + 10 });
    t.file("a");
    const usage = t.fs.usage;
    expect(errno(() => t.create("b"))).toBe("ENOSPC");
    expect(errno(() => t.fs.link(ROOT, 2, ROOT_INO, n("another-name")))).toBe("ENOSPC");
    expect(errno(() => t.fs.setxattr(ROOT, 2, n("user.x"), n("v"), 0))).toBe("ENOSPC");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("a-much-longer-name"), 0))).toBe("ENOSPC");
    expect(t.fs.usage).toEqual(usage);
    expect(t.names()).toEqual(["a"]);
    // A shorter name fits.
    t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), 0);
    expect(t.names()).toEqual(["b"]);
  });

  it("frees a file's memory on unlink once it is forgotten and closed", () => {
    const t = new Fixture();
    const base = t.fs.usage;
    const { ino, fh } = t.create("f");
    t.fs.write(ROOT, ino, fh, new Uint8Array(MiB), 0, 0);
    t.fs.unlink(ROOT, ROOT_INO, n("f"));
    expect(t.fs.usage.bytes).toBe(base.bytes + INODE_COST + MiB);
    t.fs.release(ROOT, ino, fh, 0);
    expect(t.fs.usage.bytes).toBe(base.bytes + INODE_COST + MiB);
    t.fs.forget(ROOT, ino, 1);
    expect(t.fs.usage).toEqual(base);
  });

  it("frees memory on truncate, on O_TRUNC and on PUNCH_HOLE", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f");
    const base = t.fs.usage.bytes;
    t.fs.write(ROOT, ino, fh, new Uint8Array(MiB).fill(1), 0, 0);
    expect(t.fs.usage.bytes).toBe(base + MiB);
    t.fs.setattr(ROOT, ino, setattrRequest({ size: 1000 }));
    expect(t.fs.usage.bytes).toBe(base + 1024);
    t.fs.write(ROOT, ino, fh, new Uint8Array(MiB).fill(1), 0, 0);
    t.fs.fallocate(ROOT, ino, fh, FALLOC.PUNCH_HOLE | FALLOC.KEEP_SIZE, 0, MiB / 2);
    expect(t.fs.usage.bytes).toBe(base + MiB / 2);
    expect(t.fs.getattr(ROOT, ino).size).toBe(MiB);
    t.fs.release(ROOT, ino, t.fs.open(ROOT, ino, O.WRONLY | O.TRUNC).fh, 0);
    expect(t.fs.usage.bytes).toBe(base);
  });

  it("counts fallocate against the capacity, all or nothing", () => {
    const t = new Fixture({ capacity: MiB });
    const { ino, fh } = t.create("f");
    const base = t.fs.usage.bytes;
    expect(errno(() => t.fs.fallocate(ROOT, ino, fh, 0, 0, 2 * MiB))).toBe("ENOSPC");
    expect(t.fs.usage.bytes).toBe(base);
    expect(t.fs.getattr(ROOT, ino).size).toBe(0);
    t.fs.fallocate(ROOT, ino, fh, FALLOC.KEEP_SIZE, 0, 256 * KiB);
    expect(t.fs.usage.bytes).toBe(base + 256 * KiB);
    expect(t.fs.getattr(ROOT, ino).size).toBe(0);
    // Writing into the allocated range takes no more.
    t.fs.write(ROOT, ino, fh, new Uint8Array(256 * KiB), 0, 0);
    expect(t.fs.usage.bytes).toBe(base + 256 * KiB);
  });

  it("only changes the size on fallocate without a capacity (nothing to reserve)", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f");
    const base = t.fs.usage.bytes;
    t.fs.fallocate(ROOT, ino, fh, 0, 0, 1024 * TiB);
    expect(t.fs.getattr(ROOT, ino).size).toBe(1024 * TiB);
    expect(t.fs.usage.bytes).toBe(base);
  });

  it("never holds more than its capacity under a mixed workload", () => {
    const capacity = 256 * KiB;
    const t = new Fixture({ capacity });
    let seed = 7;
    const random = (below: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % below;
    };
    const files: { ino: number; fh: number }[] = [];
    for (let step = 0; step < 2000; step++) {
      try {
        const choice = random(6);
        if (choice === 0 || files.length === 0) files.push(t.create(`f${step}`));
        const file = files[random(files.length)]!;
        if (choice === 1) t.fs.write(ROOT, file.ino, file.fh, new Uint8Array(random(20_000)), random(200_000), 0);
        if (choice === 2) t.fs.setattr(ROOT, file.ino, setattrRequest({ size: random(100_000) }));
        if (choice === 3) t.fs.fallocate(ROOT, file.ino, file.fh, random(2) === 0 ? 0 : FALLOC.KEEP_SIZE, random(100_000), 1 + random(50_000));
        if (choice === 4) t.fs.setxattr(ROOT, file.ino, n(`user.${random(5)}`), new Uint8Array(random(3000)), 0);
        if (choice === 5) t.fs.fallocate(ROOT, file.ino, file.fh, FALLOC.PUNCH_HOLE | FALLOC.KEEP_SIZE, random(100_000), 1 + random(50_000));
      } catch (error) {
        expect((error as { code?: string }).code).toBe("ENOSPC");
      }
      expect(t.fs.usage.bytes).toBeLessThanOrEqual(capacity);
    }
  });
});

describe("MemFs maxInodes", () => {
  it("counts the root and answers ENOSPC past the limit until an inode goes", () => {
    const t = new Fixture({ maxInodes: 3 });
    const a = t.file("a");
    t.mkdir("d");
    expect(errno(() => t.create("c"))).toBe("ENOSPC");
    expect(errno(() => t.mkdir("e"))).toBe("ENOSPC");
    expect(errno(() => t.fs.symlink(ROOT, n("x"), ROOT_INO, n("l")))).toBe("ENOSPC");
    expect(errno(() => t.fs.mknod(ROOT, ROOT_INO, n("p"), S.IFIFO | 0o644, 0, 0))).toBe("ENOSPC");
    // A hard link is a name, not an inode.
    t.fs.link(ROOT, a, ROOT_INO, n("a2"));
    expect(t.fs.statfs(ROOT, ROOT_INO)).toMatchObject({ files: 3, ffree: 0 });
    t.fs.unlink(ROOT, ROOT_INO, n("a"));
    t.fs.unlink(ROOT, ROOT_INO, n("a2"));
    expect(errno(() => t.create("c"))).toBe("ENOSPC");
    t.fs.forget(ROOT, a, 2);
    t.file("c");
  });

  it("counts the whiteout a rename leaves", () => {
    const t = new Fixture({ maxInodes: 2 });
    t.file("a");
    expect(errno(() => t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), 4))).toBe("ENOSPC");
    expect(t.names()).toEqual(["a"]);
  });
});

describe("MemFs maxFileSize", () => {
  const max = 100_000;

  it("answers EFBIG for a write at or past the limit and shortens one that crosses it", () => {
    const t = new Fixture({ maxFileSize: max });
    const { ino, fh } = t.create("f");
    expect(errno(() => t.fs.write(ROOT, ino, fh, n("x"), max, 0))).toBe("EFBIG");
    expect(errno(() => t.fs.write(ROOT, ino, fh, n("x"), max + 5, 0))).toBe("EFBIG");
    expect(t.fs.write(ROOT, ino, fh, new Uint8Array(10), max - 4, 0)).toBe(4);
    expect(t.fs.getattr(ROOT, ino).size).toBe(max);
  });

  it("answers EFBIG for truncate and fallocate past the limit", () => {
    const t = new Fixture({ maxFileSize: max });
    const { ino, fh } = t.create("f");
    t.fs.setattr(ROOT, ino, setattrRequest({ size: max }));
    expect(errno(() => t.fs.setattr(ROOT, ino, setattrRequest({ size: max + 1 })))).toBe("EFBIG");
    expect(errno(() => t.fs.fallocate(ROOT, ino, fh, 0, max - 10, 11))).toBe("EFBIG");
    expect(errno(() => t.fs.fallocate(ROOT, ino, fh, FALLOC.KEEP_SIZE, max, 1))).toBe("EFBIG");
    expect(t.fs.getattr(ROOT, ino).size).toBe(max);
  });

  it("shortens a copy that would cross the limit", () => {
    const t = new Fixture({ maxFileSize: max });
    const src = t.create("src");
    const dst = t.create("dst");
    t.fs.write(ROOT, src.ino, src.fh, new Uint8Array(1000), 0, 0);
    expect(t.fs.copyFileRange(ROOT, src.ino, src.fh, 0, dst.ino, dst.fh, max - 10, 1000, 0)).toBe(10);
    expect(errno(() => t.fs.copyFileRange(ROOT, src.ino, src.fh, 0, dst.ino, dst.fh, max, 1000, 0))).toBe("EFBIG");
  });
});

describe("MemFs statfs", () => {
  it("reports blocks from the capacity and files from maxInodes", () => {
    const t = new Fixture({ capacity: MiB, maxInodes: 100 });
    const { ino, fh } = t.create("f");
    t.fs.write(ROOT, ino, fh, new Uint8Array(100 * KiB), 0, 0);
    const used = t.fs.usage.bytes;
    expect(t.fs.statfs(ROOT, ROOT_INO)).toEqual({
      blocks: 256,
      bfree: Math.floor((MiB - used) / 4096),
      bavail: Math.floor((MiB - used) / 4096),
      files: 100,
      ffree: 98,
      bsize: 4096,
      frsize: 4096,
      namelen: 255,
    });
  });

  it("reports large fixed totals without limits", () => {
    const t = new Fixture();
    const st = t.fs.statfs(ROOT, ROOT_INO);
    expect(st.blocks).toBe(2 ** 32);
    expect(st.bfree).toBe(2 ** 32 - 1);
    expect(st.files).toBe(2 ** 24);
    expect(st.ffree).toBe(2 ** 24 - 1);
  });
});
