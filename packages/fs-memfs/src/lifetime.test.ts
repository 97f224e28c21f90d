import { O, ROOT_INO, S } from "@msb/fs";
import { describe, expect, it } from "vitest";
import { Fixture, ROOT, errno, n } from "./memfs.fixture.js";

describe("MemFs inode lifetime", () => {
  it("keeps an unlinked inode until its lookups are forgotten and its handles released", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("f"); // one lookup, one handle
    t.fs.write(ROOT, ino, fh, n("data"), 0, 0);
    t.fs.lookup(ROOT, ROOT_INO, n("f")); // two lookups
    t.fs.unlink(ROOT, ROOT_INO, n("f"));
    expect(t.fs.getattr(ROOT, ino, fh)).toMatchObject({ nlink: 0, size: 4 });
    t.fs.forget(ROOT, ino, 1);
    expect(t.fs.getattr(ROOT, ino).nlink).toBe(0);
    t.fs.release(ROOT, ino, fh, 0);
    expect(t.fs.getattr(ROOT, ino).nlink).toBe(0);
    t.fs.forget(ROOT, ino, 1);
    expect(errno(() => t.fs.getattr(ROOT, ino))).toBe("ENOENT");
    expect(t.fs.usage.inodes).toBe(1);
  });

  it("keeps a file with names however often it is forgotten", () => {
    const t = new Fixture();
    const ino = t.file("f", "kept");
    t.fs.forget(ROOT, ino, 1000);
    expect(t.content(t.fs.lookup(ROOT, ROOT_INO, n("f")).ino)).toBe("kept");
  });

  it("serves reads and writes through the handle of an unlinked, forgotten file", () => {
    const t = new Fixture();
    const { ino, fh } = t.create("tmp");
    t.fs.unlink(ROOT, ROOT_INO, n("tmp"));
    t.fs.forget(ROOT, ino, 1);
    expect(t.fs.write(ROOT, ino, fh, n("still"), 0, 0)).toBe(5);
    expect(Buffer.from(t.fs.read(ROOT, ino, fh, 10, 0)).toString()).toBe("still");
    t.fs.release(ROOT, ino, fh, 0);
    expect(errno(() => t.fs.getattr(ROOT, ino))).toBe("ENOENT");
  });

  it("keeps a removed directory while it is open, reporting nlink 0", () => {
    const t = new Fixture();
    const dir = t.mkdir("d");
    const { fh } = t.fs.opendir(ROOT, dir, O.RDONLY);
    t.fs.rmdir(ROOT, ROOT_INO, n("d"));
    t.fs.forget(ROOT, dir, 1);
    expect(t.fs.getattr(ROOT, dir).nlink).toBe(0);
    expect(t.fs.getattr(ROOT, ROOT_INO).nlink).toBe(2);
    expect(errno(() => t.fs.readdir(ROOT, dir, fh, 0, 4096))).toBe("ENOENT");
    expect(errno(() => t.fs.mkdir(ROOT, dir, n("x"), S.IFDIR | 0o755, 0))).toBe("ENOENT");
    expect(errno(() => t.fs.lookup(ROOT, dir, n("..")))).toBe("ENOENT");
    t.fs.releasedir(ROOT, dir, fh, 0);
    expect(errno(() => t.fs.getattr(ROOT, dir))).toBe("ENOENT");
  });

  it("frees an inode replaced by rename once forgotten", () => {
    const t = new Fixture();
    const a = t.file("a", "new");
    const b = t.file("b", "old");
    t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("b"), 0);
    expect(t.fs.getattr(ROOT, b).nlink).toBe(0);
    t.fs.forget(ROOT, b, 1);
    expect(errno(() => t.fs.getattr(ROOT, b))).toBe("ENOENT");
    expect(t.content(a)).toBe("new");
  });

  it("never reuses an inode number", () => {
    const t = new Fixture();
    const seen = new Set<number>([ROOT_INO]);
    for (let i = 0; i < 50; i++) {
      const ino = t.file("f");
      expect(seen.has(ino)).toBe(false);
      seen.add(ino);
      t.fs.unlink(ROOT, ROOT_INO, n("f"));
      t.fs.forget(ROOT, ino, 1);
    }
  });

  it("never frees the root", () => {
    const t = new Fixture();
    t.fs.forget(ROOT, ROOT_INO, 10);
    t.fs.batchForget(ROOT, [[ROOT_INO, 5]]);
    expect(t.fs.getattr(ROOT, ROOT_INO).ino).toBe(ROOT_INO);
  });

  it("counts one lookup per Entry: lookup, create, mkdir, mknod, symlink, link and readdirplus", () => {
    const t = new Fixture();
    const ino = t.file("f"); // create: 1
    t.fs.lookup(ROOT, ROOT_INO, n("f")); // 2
    t.fs.link(ROOT, ino, ROOT_INO, n("g")); // 3
    const { fh } = t.fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const plus = t.fs.readdirplus(ROOT, ROOT_INO, fh, 0, 1 << 20); // . .. f g: 5
    t.fs.releasedir(ROOT, ROOT_INO, fh, 0);
    expect(plus.map((e) => e.entry.ino)).toEqual([ROOT_INO, ROOT_INO, ino, ino]);
    t.fs.unlink(ROOT, ROOT_INO, n("f"));
    t.fs.unlink(ROOT, ROOT_INO, n("g"));
    t.fs.forget(ROOT, ino, 4);
    expect(t.fs.getattr(ROOT, ino).nlink).toBe(0);
    t.fs.batchForget(ROOT, [[ino, 1]]);
    expect(errno(() => t.fs.getattr(ROOT, ino))).toBe("ENOENT");
  });

  it("frees every inode of a tree removed bottom-up, back to the empty filesystem's usage", () => {
    const t = new Fixture();
    const empty = t.fs.usage;
    const d = t.mkdir("d");
    const e = t.mkdir("e", d);
    const f = t.file("f", "x".repeat(10_000), e);
    t.fs.symlink(ROOT, n("f"), e, n("l"));
    t.fs.unlink(ROOT, e, n("f"));
    t.fs.unlink(ROOT, e, n("l"));
    t.fs.rmdir(ROOT, d, n("e"));
    t.fs.rmdir(ROOT, ROOT_INO, n("d"));
    t.fs.batchForget(ROOT, [
      [d, 1],
      [e, 1],
      [f, 1],
      [f + 1, 1],
    ]);
    expect(t.fs.usage).toEqual(empty);
  });

  it("answers EINVAL to a forget with a bad count but still applies the good ones of a batch", () => {
    const t = new Fixture();
    const ino = t.file("f");
    t.fs.unlink(ROOT, ROOT_INO, n("f"));
    expect(errno(() => t.fs.forget(ROOT, ino, -1))).toBe("EINVAL");
    expect(errno(() => t.fs.batchForget(ROOT, [
      [ino, Number.NaN],
      [ino, 1],
    ]))).toBe("EINVAL");
    expect(errno(() => t.fs.getattr(ROOT, ino))).toBe("ENOENT");
  });
});
