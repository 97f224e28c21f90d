import { DT, O, ROOT_INO, type DirEntry } from "@msb/fs";
import { describe, expect, it } from "vitest";
import { Fixture, ROOT, errno, n } from "./memfs.fixture.js";

const text = (e: DirEntry): string => Buffer.from(e.name).toString("latin1");

describe("MemFs readdir", () => {
  it("lists . and .. first, then entries in creation order, with next-entry cookies", () => {
    const t = new Fixture();
    const d = t.mkdir("d");
    t.file("b", "", d);
    t.file("a", "", d);
    const all = t.readdirAll(d);
    expect(all.map(text)).toEqual([".", "..", "b", "a"]);
    expect(all.map((e) => e.ino)).toEqual([d, ROOT_INO, d + 1, d + 2]);
    expect(all.map((e) => e.type)).toEqual([DT.DIR, DT.DIR, DT.REG, DT.REG]);
    const offsets = all.map((e) => e.offset);
    expect([...offsets].sort((x, y) => x - y)).toEqual(offsets);
    expect(new Set(offsets).size).toBe(offsets.length);
  });

  it("resumes after any cookie it gave out", () => {
    const t = new Fixture();
    for (let i = 0; i < 5; i++) t.file(`f${i}`);
    const all = t.readdirAll();
    const { fh } = t.fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    all.forEach((entry, i) => {
      expect(t.fs.readdir(ROOT, ROOT_INO, fh, entry.offset, 1 << 20).map(text)).toEqual(all.slice(i + 1).map(text));
    });
    expect(t.fs.readdir(ROOT, ROOT_INO, fh, 10 ** 9, 4096)).toEqual([]);
  });

  it("keeps its cookies valid while entries come and go between calls", () => {
    const t = new Fixture();
    for (let i = 0; i < 300; i++) t.file(`old${i}`);
    const { fh } = t.fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const seen: string[] = [];
    const removed = new Set<string>();
    let offset = 0;
    for (let round = 0; ; round++) {
      const batch = t.fs.readdir(ROOT, ROOT_INO, fh, offset, 256);
      if (batch.length === 0) break;
      seen.push(...batch.map(text));
      offset = batch[batch.length - 1]!.offset;
      // Between calls: remove some entries (some already seen, some ahead), add new ones.
      for (const i of [round * 7, round * 7 + 150]) {
        if (i < 300 && !removed.has(`old${i}`)) {
          t.fs.unlink(ROOT, ROOT_INO, n(`old${i}`));
          removed.add(`old${i}`);
        }
      }
      // New entries come after every cookie given out, so they may be seen; a few, so the pass ends.
      if (round < 10) t.file(`new${round}`);
    }
    expect(new Set(seen).size).toBe(seen.length);
    // Every entry that lived through the whole pass came exactly once.
    for (let i = 0; i < 300; i++) {
      const name = `old${i}`;
      if (!removed.has(name)) expect(seen).toContain(name);
    }
    // An entry removed before the pass reached it was not returned.
    expect(removed.has("old150")).toBe(true);
    expect(seen).not.toContain("old150");
  });

  it("survives compaction of many removed entries in the middle of a pass", () => {
    const t = new Fixture();
    for (let i = 0; i < 1000; i++) t.file(`f${i}`);
    const { fh } = t.fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const first = t.fs.readdir(ROOT, ROOT_INO, fh, 0, 24 * 12);
    const lastSeen = text(first[first.length - 1]!);
    for (let i = 0; i < 900; i++) t.fs.unlink(ROOT, ROOT_INO, n(`f${i}`));
    const rest: string[] = [];
    for (let offset = first[first.length - 1]!.offset; ; ) {
      const batch = t.fs.readdir(ROOT, ROOT_INO, fh, offset, 4096);
      if (batch.length === 0) break;
      rest.push(...batch.map(text));
      offset = batch[batch.length - 1]!.offset;
    }
    expect(lastSeen).toBe("f6");
    expect(rest).toEqual(Array.from({ length: 100 }, (_, i) => `f${900 + i}`));
  });

  it("shows a renamed entry under its new name at the end, and a replaced one no more", () => {
    const t = new Fixture();
    t.file("a");
    t.file("b");
    t.file("c");
    t.fs.rename(ROOT, ROOT_INO, n("a"), ROOT_INO, n("c"), 0);
    expect(t.names()).toEqual(["b", "c"]);
  });

  it("fits entries in the size budget, but always returns one", () => {
    const t = new Fixture();
    for (let i = 0; i < 10; i++) t.file(`name-${i}`);
    const { fh } = t.fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    expect(t.fs.readdir(ROOT, ROOT_INO, fh, 0, 1)).toHaveLength(1);
    // "." and ".." take 32 bytes each, "name-0" 32: 96 bytes hold three.
    expect(t.fs.readdir(ROOT, ROOT_INO, fh, 0, 96)).toHaveLength(3);
    expect(t.fs.readdir(ROOT, ROOT_INO, fh, 0, 95)).toHaveLength(2);
    // readdirplus entries are 128 bytes larger.
    expect(t.fs.readdirplus(ROOT, ROOT_INO, fh, 0, 3 * 160)).toHaveLength(3);
  });

  it("counts a lookup for each readdirplus entry but . and ..", () => {
    const t = new Fixture();
    const d = t.mkdir("d");
    const f = t.file("f", "", d);
    t.fs.forget(ROOT, f, 1);
    t.fs.forget(ROOT, d, 1);
    const { fh } = t.fs.opendir(ROOT, d, O.RDONLY);
    const plus = t.fs.readdirplus(ROOT, d, fh, 0, 4096);
    t.fs.releasedir(ROOT, d, fh, 0);
    expect(plus.map((e) => [text(e), e.entry.ino, e.entry.attr.ino])).toEqual([
      [".", d, d],
      ["..", ROOT_INO, ROOT_INO],
      ["f", f, f],
    ]);
    t.fs.unlink(ROOT, d, n("f"));
    t.fs.rmdir(ROOT, ROOT_INO, n("d"));
    // d's own lookups were all forgotten (the "." entry did not count); f holds one.
    expect(errno(() => t.fs.getattr(ROOT, d))).toBe("ENOENT");
    expect(t.fs.getattr(ROOT, f).nlink).toBe(0);
    t.fs.forget(ROOT, f, 1);
    expect(errno(() => t.fs.getattr(ROOT, f))).toBe("ENOENT");
  });

  it("refuses a file handle, another directory's handle or a released one with EBADF", () => {
    const t = new Fixture();
    const d = t.mkdir("d");
    const { ino, fh: fileFh } = t.create("f");
    expect(errno(() => t.fs.readdir(ROOT, ino, fileFh, 0, 4096))).toBe("EBADF");
    const { fh } = t.fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    expect(errno(() => t.fs.readdir(ROOT, d, fh, 0, 4096))).toBe("EBADF");
    expect(errno(() => t.fs.release(ROOT, ROOT_INO, fh, 0))).toBe("EBADF");
    t.fs.releasedir(ROOT, ROOT_INO, fh, 0);
    expect(errno(() => t.fs.readdir(ROOT, ROOT_INO, fh, 0, 4096))).toBe("EBADF");
    expect(errno(() => t.fs.opendir(ROOT, ino, O.RDONLY))).toBe("ENOTDIR");
  });
});

describe("MemFs names", () => {
  it("keeps names that are not UTF-8 byte for byte, apart from their UTF-8 look-alikes", () => {
    const t = new Fixture();
    const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9]);
    const invalid = new Uint8Array([0xff, 0xfe, 0x80, 0x00 + 0x01]);
    const a = t.file(latin1, "latin1");
    const b = t.file(invalid, "invalid");
    const c = t.file("café", "utf8");
    expect(new Set([a, b, c]).size).toBe(3);
    expect(t.content(t.fs.lookup(ROOT, ROOT_INO, latin1).ino)).toBe("latin1");
    expect(t.content(t.fs.lookup(ROOT, ROOT_INO, invalid).ino)).toBe("invalid");
    expect(t.content(t.fs.lookup(ROOT, ROOT_INO, n("café")).ino)).toBe("utf8");
    const names = t.readdirAll().map((e) => [...e.name]);
    expect(names).toContainEqual([...latin1]);
    expect(names).toContainEqual([...invalid]);
    t.fs.rename(ROOT, ROOT_INO, invalid, ROOT_INO, new Uint8Array([0xc0]), 0);
    expect(t.content(t.fs.lookup(ROOT, ROOT_INO, new Uint8Array([0xc0])).ino)).toBe("invalid");
  });

  it("copies the name it is given, so the caller may reuse its buffer", () => {
    const t = new Fixture();
    const name = n("first");
    t.file(name);
    name.set(n("xxxxx"));
    expect(t.names()).toEqual(["first"]);
    expect(errno(() => t.fs.lookup(ROOT, ROOT_INO, name))).toBe("ENOENT");
  });

  it("treats names inside a larger buffer by their own bytes", () => {
    const t = new Fixture();
    const buffer = n("xxabcxx");
    t.file(buffer.subarray(2, 5));
    expect(t.fs.lookup(ROOT, ROOT_INO, n("abc")).attr.size).toBe(0);
  });

  it("looks up . and .. as the directory and its parent, and refuses them as entry names", () => {
    const t = new Fixture();
    const d = t.mkdir("d");
    expect(t.fs.lookup(ROOT, d, n(".")).ino).toBe(d);
    expect(t.fs.lookup(ROOT, d, n("..")).ino).toBe(ROOT_INO);
    expect(t.fs.lookup(ROOT, ROOT_INO, n("..")).ino).toBe(ROOT_INO);
    expect(errno(() => t.mkdir(".", d))).toBe("EEXIST");
    expect(errno(() => t.fs.unlink(ROOT, d, n("..")))).toBe("EISDIR");
    expect(errno(() => t.fs.rmdir(ROOT, d, n(".")))).toBe("EINVAL");
    expect(errno(() => t.fs.rmdir(ROOT, d, n("..")))).toBe("ENOTEMPTY");
    expect(errno(() => t.fs.rename(ROOT, d, n("."), ROOT_INO, n("x"), 0))).toBe("EBUSY");
  });

  it("refuses names with '/' or NUL, empty names and names of 256 bytes", () => {
    const t = new Fixture();
    expect(errno(() => t.file("a/b"))).toBe("EINVAL");
    expect(errno(() => t.file(new Uint8Array([0x61, 0])))).toBe("EINVAL");
    expect(errno(() => t.file(""))).toBe("ENOENT");
    expect(errno(() => t.file("x".repeat(256)))).toBe("ENAMETOOLONG");
    expect(errno(() => t.fs.lookup(ROOT, ROOT_INO, n("x".repeat(256))))).toBe("ENAMETOOLONG");
    t.file("x".repeat(255));
  });
});
