// MemFs against the npm package `memfs` (the reference), on the same
// workloads. MemFs is driven through its inode API, the calls FUSE makes
// (lookup, create, write, getattr, readdir, unlink with a root Context), and
// reads with readInto; memfs through its synchronous fs API. Both read into
// a buffer the caller keeps (memfs's readSync, MemFs's readInto), so neither
// pays for a new array per read. vitest prints each variant's ops/s and how
// many times faster the fastest is.
import { O, ROOT_INO, S, type Context } from "@msb/fs";
import { Volume } from "memfs";
import { bench, describe } from "vitest";
import type * as MemFsModule from "../src/index.js";

// MemFs as its users run it, from its build (`pnpm bench` builds it first),
// which vitest.config.ts leaves to Node to load, as it does memfs from
// node_modules. Through vitest's transform, every reference from one module
// to another becomes a getter call: that costs MemFs a third to a half of
// its speed on most rows here, and memfs nothing.
const { MemFs } = (await import(new URL("../dist/index.js", import.meta.url).href)) as typeof MemFsModule;

const ctx: Context = { uid: 0, gid: 0, pid: 1 };
const encoder = new TextEncoder();
const DIRS = 100;
const FILES = 100;
const dirNames = Array.from({ length: DIRS }, (_, i) => encoder.encode(`d${i}`));
const fileNames = Array.from({ length: FILES }, (_, i) => encoder.encode(`f${i}`));
const KiB4 = new Uint8Array(4096).fill(0x61);
const MiB1 = new Uint8Array(1 << 20).fill(0x62);

/** A MemFs holding the 100 × 100 tree; returns the directories' inodes. */
function memTree(fs: MemFsModule.MemFs): number[] {
  return dirNames.map((dirName) => {
    const dir = fs.mkdir(ctx, ROOT_INO, dirName, S.IFDIR | 0o755, 0).ino;
    for (const name of fileNames) {
      const { entry, fh } = fs.create(ctx, dir, name, S.IFREG | 0o644, O.WRONLY | O.CREAT, 0);
      fs.release(ctx, entry.ino, fh, 0);
    }
    return dir;
  });
}

/** A memfs Volume holding the same tree. */
function volTree(vol: InstanceType<typeof Volume>): void {
  for (let d = 0; d < DIRS; d++) {
    vol.mkdirSync(`/d${d}`);
    for (let f = 0; f < FILES; f++) vol.writeFileSync(`/d${d}/f${f}`, "");
  }
}

const options = { time: 1000, warmupTime: 200 };

/**
 * Operations that take a microsecond or less are timed 100 to an iteration
 * (on both sides alike): timed one by one, the bench's own per-iteration
 * cost would be a large part of what it reports and squeeze the ratio.
 */
const BATCH = 100;
const batched = (op: () => void): (() => void) => () => {
  for (let i = 0; i < BATCH; i++) op();
};

describe("create 10k files in 100 dirs", () => {
  bench("memfs (reference)", () => volTree(new Volume()), { ...options, time: 3000 });
  bench("MemFs", () => void memTree(new MemFs()), { ...options, time: 3000 });
});

for (const [label, data, perIteration] of [
  ["4 KiB", KiB4, batched],
  ["1 MiB", MiB1, (op: () => void) => op],
] as const) {
  describe(`${label} write + read through an open file${perIteration === batched ? ` (${BATCH} per iteration)` : ""}`, () => {
    const vol = new Volume();
    const fd = vol.openSync("/file", "w+");
    const back = new Uint8Array(data.length);
    bench("memfs (reference)", perIteration(() => {
      vol.writeSync(fd, data, 0, data.length, 0);
      vol.readSync(fd, back, 0, back.length, 0);
    }), options);

    const fs = new MemFs();
    const { entry, fh } = fs.create(ctx, ROOT_INO, encoder.encode("file"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
    const target = new Uint8Array(data.length);
    bench("MemFs", perIteration(() => {
      fs.write(ctx, entry.ino, fh, data, 0, 0);
      fs.readInto(ctx, entry.ino, fh, target, 0);
    }), options);
  });

  describe(`${label} whole file: write it by name, read it back${perIteration === batched ? ` (${BATCH} per iteration)` : ""}`, () => {
    const vol = new Volume();
    const back = new Uint8Array(data.length);
    // Opening and reading into a kept buffer: as fast as memfs's readFileSync or faster (no new buffer per read).
    bench("memfs (reference)", perIteration(() => {
      vol.writeFileSync("/file", data);
      const fd = vol.openSync("/file", "r");
      vol.readSync(fd, back, 0, back.length, 0);
      vol.closeSync(fd);
    }), options);

    // What the kernel sends for `echo > file; cat file` once the name is known.
    const fs = new MemFs();
    const name = encoder.encode("file");
    const { entry, fh } = fs.create(ctx, ROOT_INO, name, S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
    fs.release(ctx, entry.ino, fh, 0);
    const target = new Uint8Array(data.length);
    bench("MemFs", perIteration(() => {
      const { ino } = fs.lookup(ctx, ROOT_INO, name);
      const out = fs.open(ctx, ino, O.WRONLY | O.TRUNC).fh;
      fs.write(ctx, ino, out, data, 0, 0);
      fs.release(ctx, ino, out, 0);
      const input = fs.open(ctx, ino, O.RDONLY).fh;
      fs.readInto(ctx, ino, input, target, 0);
      fs.release(ctx, ino, input, 0);
      fs.forget(ctx, ino, 1);
    }), options);
  });
}

describe(`stat a file two levels down (${BATCH} per iteration)`, () => {
  const vol = new Volume();
  volTree(vol);
  let i = 0;
  bench("memfs (reference)", batched(() => {
    vol.statSync(`/d${i % DIRS}/f${i++ % FILES}`);
  }), options);

  const fs = new MemFs();
  memTree(fs);
  let j = 0;
  bench("MemFs", batched(() => {
    const dir = fs.lookup(ctx, ROOT_INO, dirNames[j % DIRS]!).ino;
    const file = fs.lookup(ctx, dir, fileNames[j++ % FILES]!).ino;
    fs.getattr(ctx, file);
    fs.forget(ctx, file, 1);
    fs.forget(ctx, dir, 1);
  }), options);
});

describe("readdir of a 100-entry directory", () => {
  const vol = new Volume();
  volTree(vol);
  bench("memfs (reference)", () => {
    vol.readdirSync("/d7");
  }, options);

  const fs = new MemFs();
  const dir = memTree(fs)[7]!;
  bench("MemFs", () => {
    const { fh } = fs.opendir(ctx, dir, O.RDONLY);
    for (let offset = 0; ; ) {
      const batch = fs.readdir(ctx, dir, fh, offset, 4096);
      if (batch.length === 0) break;
      offset = batch[batch.length - 1]!.offset;
    }
    fs.releasedir(ctx, dir, fh, 0);
  }, options);
});

describe(`create + unlink a file (${BATCH} per iteration)`, () => {
  const vol = new Volume();
  vol.mkdirSync("/d");
  bench("memfs (reference)", batched(() => {
    vol.writeFileSync("/d/victim", "");
    vol.unlinkSync("/d/victim");
  }), options);

  const fs = new MemFs();
  const dir = fs.mkdir(ctx, ROOT_INO, encoder.encode("d"), S.IFDIR | 0o755, 0).ino;
  const victim = encoder.encode("victim");
  bench("MemFs", batched(() => {
    const { entry, fh } = fs.create(ctx, dir, victim, S.IFREG | 0o644, O.WRONLY | O.CREAT, 0);
    fs.release(ctx, entry.ino, fh, 0);
    fs.unlink(ctx, dir, victim);
    fs.forget(ctx, entry.ino, 1);
  }), options);
});
