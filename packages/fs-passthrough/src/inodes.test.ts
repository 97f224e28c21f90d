// The inode table: numbers stable by host (device, inode), never reused; one
// O_PATH fd per known inode, closed when the kernel forgets it and no handle
// holds it; readdir cookies that stay small numbers over ext4's 63-bit hashes.
import { O, ROOT_INO, S, bytesToString, isDotOrDotDot } from "@msb/fs";
import { expectErrno } from "@msb/fs/testing";
import { close as closeFd, constants as c, getdents, openat, statfs } from "@msb/native";
import { linkSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PassthroughFs } from "./index.js";
import { ROOT, n, openFds, readFile, useBackends, useScratch, writeFile } from "./scratch.fixture.js";

const EXT4_SUPER_MAGIC = 0xef53;
const scratch = useScratch();
/** tmpfs, for the tests that make tens of thousands of files (a disk's journal makes that slow). */
const tmpfsScratch = useScratch("/dev/shm");
const backend = useBackends();

function listAll(fs: PassthroughFs, ino: number, size: number): { name: string; ino: number; offset: number }[] {
  const { fh } = fs.opendir(ROOT, ino, O.RDONLY);
  const all = [];
  for (let offset = 0; ; ) {
    const batch = fs.readdir(ROOT, ino, fh, offset, size);
    if (batch.length === 0) break;
    all.push(...batch.map((e) => ({ name: bytesToString(e.name), ino: e.ino, offset: e.offset })));
    offset = batch[batch.length - 1]!.offset;
  }
  fs.releasedir(ROOT, ino, fh, O.RDONLY);
  return all;
}

describe("PassthroughFs inode numbers", () => {
  it("maps one host inode to one guest number: hard links made on the host, renames, repeated lookups", () => {
    const dir = scratch();
    writeFileSync(join(dir, "a"), "same");
    mkdirSync(join(dir, "d"));
    linkSync(join(dir, "a"), join(dir, "d", "b"));
    const fs = backend({ rootDir: dir });
    const a = fs.lookup(ROOT, ROOT_INO, n("a"));
    const d = fs.lookup(ROOT, ROOT_INO, n("d"));
    const b = fs.lookup(ROOT, d.ino, n("b"));
    expect(b.ino).toBe(a.ino);
    expect(b.attr.nlink).toBe(2);
    renameSync(join(dir, "a"), join(dir, "renamed-on-host"));
    expect(fs.lookup(ROOT, ROOT_INO, n("renamed-on-host")).ino).toBe(a.ino);
    expect(fs.lookup(ROOT, ROOT_INO, n("renamed-on-host")).ino).toBe(a.ino);
    expect(new Set([ROOT_INO, a.ino, d.ino]).size).toBe(3);
  });

  it("keeps a number across forget and lookup again, and agrees with readdir before any lookup", () => {
    const dir = scratch();
    for (const name of ["x", "y", "z"]) writeFileSync(join(dir, name), name);
    const fs = backend({ rootDir: dir });
    const listed = Object.fromEntries(listAll(fs, ROOT_INO, 4096).map((e) => [e.name, e.ino]));
    const x = fs.lookup(ROOT, ROOT_INO, n("x"));
    expect(x.ino).toBe(listed.x);
    fs.forget(ROOT, x.ino, 1);
    expect(fs.lookup(ROOT, ROOT_INO, n("x")).ino).toBe(x.ino);
    expect(fs.lookup(ROOT, ROOT_INO, n("y")).ino).toBe(listed.y);
  });

  it("never gives a number out twice, even after the inode behind it was removed", async () => {
    const fs = backend({ rootDir: scratch() });
    const seen = new Set<number>();
    for (let round = 0; round < 20; round++) {
      const f = writeFile(fs, "f", String(round));
      expect(seen.has(f.ino)).toBe(false);
      seen.add(f.ino);
      fs.unlink(ROOT, ROOT_INO, n("f"));
      fs.forget(ROOT, f.ino, 1);
      await expectErrno(() => fs.getattr(ROOT, f.ino), "ENOENT");
    }
    expect(Math.min(...seen)).toBeGreaterThan(ROOT_INO);
  });

  it("resolves . and .. within the tree, .. of the root being the root", () => {
    const fs = backend({ rootDir: scratch() });
    const a = fs.mkdir(ROOT, ROOT_INO, n("a"), S.IFDIR | 0o755, 0);
    const b = fs.mkdir(ROOT, a.ino, n("b"), S.IFDIR | 0o755, 0);
    expect(fs.lookup(ROOT, b.ino, n("..")).ino).toBe(a.ino);
    expect(fs.lookup(ROOT, a.ino, n("..")).ino).toBe(ROOT_INO);
    expect(fs.lookup(ROOT, ROOT_INO, n("..")).ino).toBe(ROOT_INO);
    expect(fs.lookup(ROOT, ROOT_INO, n(".")).ino).toBe(ROOT_INO);
    const rootDots = listAll(fs, ROOT_INO, 4096).filter((e) => isDotOrDotDot(n(e.name)));
    expect(rootDots.map((e) => [e.name, e.ino])).toEqual([
      [".", ROOT_INO],
      ["..", ROOT_INO],
    ]);
    expect(listAll(fs, b.ino, 4096).find((e) => e.name === "..")?.ino).toBe(a.ino);
  });
});

describe("PassthroughFs host fds", () => {
  it("holds one fd per known inode and closes it when the last lookup is forgotten", () => {
    const dir = scratch();
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, `f${i}`), "x");
    const fs = backend({ rootDir: dir });
    const base = openFds();
    const entries = Array.from({ length: 50 }, (_, i) => fs.lookup(ROOT, ROOT_INO, n(`f${i}`)));
    expect(openFds()).toBe(base + 50);
    for (let i = 0; i < 50; i++) expect(fs.lookup(ROOT, ROOT_INO, n(`f${i}`)).ino).toBe(entries[i]!.ino);
    expect(openFds()).toBe(base + 50);
    fs.batchForget(ROOT, entries.map((e) => [e.ino, 1] as const));
    expect(openFds()).toBe(base + 50);
    fs.batchForget(ROOT, entries.map((e) => [e.ino, 1] as const));
    expect(openFds()).toBe(base);
  });

  it("keeps numbers, fds and ENOENT for forgotten inodes right through thousands of lookups and forgets", async () => {
    const dir = tmpfsScratch();
    const count = 1500;
    for (let i = 0; i < count; i++) writeFileSync(join(dir, `f${i}`), "");
    const fs = backend({ rootDir: dir });
    const held = fs.lookup(ROOT, ROOT_INO, n("f0"));
    const base = openFds();
    const numbers: number[] = [];
    // Forgetting this many lets the inode table drop what it kept of them.
    for (let i = 1; i < count; i++) {
      const entry = fs.lookup(ROOT, ROOT_INO, n(`f${i}`));
      numbers.push(entry.ino);
      fs.forget(ROOT, entry.ino, 1);
    }
    expect(openFds()).toBe(base);
    await expectErrno(() => fs.getattr(ROOT, numbers[0]!), "ENOENT");
    expect(fs.getattr(ROOT, held.ino).ino).toBe(held.ino);
    for (let i = 1; i < count; i++) expect(fs.lookup(ROOT, ROOT_INO, n(`f${i}`)).ino).toBe(numbers[i - 1]);
    expect(openFds()).toBe(base + count - 1);
    expect(fs.lookup(ROOT, ROOT_INO, n("f0")).ino).toBe(held.ino);
  });

  it("keeps at most MAX_RESERVED numbers of inodes not known, letting the oldest sixteenth go at once", { timeout: 60_000 }, () => {
    const dir = tmpfsScratch();
    const max = PassthroughFs.MAX_RESERVED;
    for (let i = 0; i <= max; i++) writeFileSync(join(dir, `f${i}`), "");
    const fs = backend({ rootDir: dir });
    // Listing reserves a number for each name in the order listed; one past the limit evicts the oldest sixteenth.
    const listed = listAll(fs, ROOT_INO, 1 << 20).filter((e) => !isDotOrDotDot(n(e.name)));
    expect(listed).toHaveLength(max + 1);
    const evicted = listed[max / 16 - 1]!;
    const kept = listed[max / 16]!;
    expect(fs.lookup(ROOT, ROOT_INO, n(kept.name)).ino).toBe(kept.ino);
    const again = fs.lookup(ROOT, ROOT_INO, n(evicted.name)).ino;
    expect(again).not.toBe(evicted.ino);
    expect(again).toBeGreaterThan(Math.max(...listed.map((e) => e.ino)));
  });

  it("keeps an inode's fd while a handle is open, even after forget, and answers through it after unlink", async () => {
    const fs = backend({ rootDir: scratch() });
    const base = openFds();
    const { entry, fh } = fs.create(ROOT, ROOT_INO, n("tmp"), S.IFREG | 0o600, O.RDWR | O.CREAT, 0);
    expect(openFds()).toBe(base + 2);
    fs.write(ROOT, entry.ino, fh, n("still here"), 0, 0);
    fs.unlink(ROOT, ROOT_INO, n("tmp"));
    fs.forget(ROOT, entry.ino, 1);
    expect(openFds()).toBe(base + 2);
    expect(fs.getattr(ROOT, entry.ino, fh)).toMatchObject({ nlink: 0, size: 10 });
    expect(bytesToString(fs.read(ROOT, entry.ino, fh, 100, 0))).toBe("still here");
    fs.release(ROOT, entry.ino, fh, O.RDWR);
    expect(openFds()).toBe(base);
    await expectErrno(() => fs.getattr(ROOT, entry.ino), "ENOENT");
  });

  it("closes what readdirplus and opendir took, and everything on destroy", () => {
    const dir = scratch();
    for (let i = 0; i < 20; i++) writeFileSync(join(dir, `f${i}`), "x");
    const before = openFds();
    const fs = backend({ rootDir: dir });
    const { fh } = fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const plus = fs.readdirplus(ROOT, ROOT_INO, fh, 0, 1 << 20).filter((e) => !isDotOrDotDot(e.name));
    expect(plus).toHaveLength(20);
    fs.batchForget(ROOT, plus.map((e) => [e.entry.ino, 1] as const));
    fs.releasedir(ROOT, ROOT_INO, fh, O.RDONLY);
    // The root and /proc/self/fd stay open while mounted.
    expect(openFds()).toBe(before + 2);
    writeFile(fs, "open-at-destroy");
    fs.open(ROOT, fs.lookup(ROOT, ROOT_INO, n("f1")).ino, O.RDONLY);
    fs.destroy();
    expect(openFds()).toBe(before);
  });

  it("reads data written through another handle of the same inode", () => {
    const fs = backend({ rootDir: scratch() });
    const f = writeFile(fs, "f", "0123456789");
    expect(readFile(fs, f.ino)).toBe("0123456789");
  });
});

describe("PassthroughFs readdir cookies", () => {
  // ext4 cookies are 63-bit hashes: the guest must only ever see small numbers.
  it("maps the host's cookies (63-bit hashes on ext4) to small stable numbers and resumes from each", async () => {
    const dir = scratch();
    for (let i = 0; i < 200; i++) writeFileSync(join(dir, `entry-${i}`), "");
    const fd = openat(c.AT_FDCWD, dir, c.O_RDONLY | c.O_DIRECTORY);
    const hostOffsets = getdents(fd).map((e) => e.off);
    closeFd(fd);
    const fs = backend({ rootDir: dir });
    const all = listAll(fs, ROOT_INO, 512);
    expect(all.map((e) => e.name).filter((x) => !isDotOrDotDot(n(x))).sort()).toEqual(Array.from({ length: 200 }, (_, i) => `entry-${i}`).sort());
    for (const e of all) expect(Number.isSafeInteger(e.offset) && e.offset < 1000).toBe(true);
    // On ext4 the case this mapping exists for is exercised: host cookies that do not fit a number.
    if (statfs(dir).type === EXT4_SUPER_MAGIC) expect(hostOffsets.some((off) => off > BigInt(Number.MAX_SAFE_INTEGER))).toBe(true);
    // Resuming from any cookie lists exactly the rest, again and again.
    const { fh } = fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const first = fs.readdir(ROOT, ROOT_INO, fh, 0, 1 << 20);
    for (const at of [3, 57, 150]) {
      const rest = fs.readdir(ROOT, ROOT_INO, fh, first[at]!.offset, 1 << 20).map((e) => bytesToString(e.name));
      expect(rest).toEqual(first.slice(at + 1).map((e) => bytesToString(e.name)));
    }
    await expectErrno(() => fs.readdir(ROOT, ROOT_INO, fh, 987_654, 4096), "EINVAL");
    fs.releasedir(ROOT, ROOT_INO, fh, O.RDONLY);
  });
});
