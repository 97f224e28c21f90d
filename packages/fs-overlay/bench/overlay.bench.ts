// OverlayFs with three lowers against one PassthroughFs serving the same
// merged tree, side by side: vitest prints ops/s for each and, per group,
// how many times faster the faster one is. Every layer is a PassthroughFs
// over a host directory under MSB_BENCH_TMPDIR (else the OS temp dir).
//
// The tree: /usr/lib holds 300 files, 100 from each lower, and the bottom
// lower's /usr/lib/f-0 is what lookup, stat and read use (the deepest case:
// both lowers above miss it first, and have their whiteouts looked for).
// /etc/hosts is in a directory only the bottom lower holds, as most
// directories of an image are: nothing is merged there. The copy-up group copies
// a 100 MiB lower file into the upper (built in the staging directory,
// fsynced, renamed) against `cp` of the same file, and against `cp` followed
// by `sync` of the copy, which is what the copy-up's fsync amounts to.
//
// Both filesystems are called as a FUSE server would: by inode number, with
// each entry's lookup forgotten again.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { O, ROOT_INO, type Context, type DynFileSystem } from "@msb/fs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterAll, bench, describe } from "vitest";
import { OverlayFs } from "../src/index.js";

const ctx: Context = { uid: 0, gid: 0, pid: 1 };
const KiB = 1024;
const MiB = 1024 * KiB;
const FILES_PER_LOWER = 100;
const name = (text: string): Uint8Array => new TextEncoder().encode(text);

const base = mkdtempSync(join(process.env.MSB_BENCH_TMPDIR ?? tmpdir(), "msb-overlay-bench-"));
const merged = join(base, "merged");
const lowers = [0, 1, 2].map((i) => join(base, `lower-${i}`));
for (const [i, dir] of lowers.entries()) {
  for (const root of [dir, merged]) {
    mkdirSync(join(root, "usr", "lib"), { recursive: true });
    for (let f = 0; f < FILES_PER_LOWER; f++) writeFileSync(join(root, "usr", "lib", `f-${i * FILES_PER_LOWER + f}`), new Uint8Array(4 * KiB).fill(0x61 + i));
  }
}
writeFileSync(join(lowers[0]!, "usr", "lib", "f-0"), new Uint8Array(MiB).fill(0x62));
writeFileSync(join(merged, "usr", "lib", "f-0"), new Uint8Array(MiB).fill(0x62));
for (const root of [lowers[0]!, merged]) {
  mkdirSync(join(root, "etc"));
  writeFileSync(join(root, "etc", "hosts"), "127.0.0.1 localhost\n");
}
const big = join(lowers[0]!, "big");
writeFileSync(big, new Uint8Array(100 * MiB).fill(0x63));

let uppers = 0;
/** A new overlay of the three lowers over an empty upper directory. */
async function newOverlay(): Promise<{ fs: OverlayFs; upperDir: string }> {
  const upperDir = join(base, `upper-${uppers++}`);
  mkdirSync(upperDir);
  const fs = new OverlayFs({ lowers: lowers.map((rootDir) => new PassthroughFs({ rootDir, readOnly: true })), upper: new PassthroughFs({ rootDir: upperDir }) });
  await fs.init();
  return { fs, upperDir };
}

/** The inode of `path`, looked up once and held for the whole run. */
async function held(fs: DynFileSystem, path: string): Promise<number> {
  let ino = ROOT_INO;
  for (const part of path.split("/")) ino = (await fs.lookup(ctx, ino, name(part))).ino;
  return ino;
}

const overlay = (await newOverlay()).fs;
const reference = new PassthroughFs({ rootDir: merged });
const sides: [string, DynFileSystem][] = [
  ["PassthroughFs of the merged tree (reference)", reference],
  ["OverlayFs, 3 lowers", overlay],
];
const inodes = new Map<DynFileSystem, { lib: number; etc: number; file: number; fh: number }>();
for (const [, fs] of sides) {
  const lib = await held(fs, "usr/lib");
  const file = await held(fs, "usr/lib/f-0");
  inodes.set(fs, { lib, etc: await held(fs, "etc"), file, fh: (await fs.open(ctx, file, O.RDONLY)).fh });
}

afterAll(async () => {
  for (const [, fs] of sides) await fs.destroy();
  rmSync(base, { recursive: true, force: true });
});

describe("lookup of a bottom-lower file (+ forget)", () => {
  for (const [label, fs] of sides) {
    const { lib } = inodes.get(fs)!;
    bench(label, async () => {
      await fs.forget(ctx, (await fs.lookup(ctx, lib, name("f-0"))).ino, 1);
    });
  }
});

describe("lookup of a file in a directory one lower holds (+ forget)", () => {
  for (const [label, fs] of sides) {
    const { etc } = inodes.get(fs)!;
    bench(label, async () => {
      await fs.forget(ctx, (await fs.lookup(ctx, etc, name("hosts"))).ino, 1);
    });
  }
});

describe("stat (getattr) of a bottom-lower file", () => {
  for (const [label, fs] of sides) {
    const { file } = inodes.get(fs)!;
    bench(label, async () => {
      await fs.getattr(ctx, file);
    });
  }
});

describe("readdir of a directory merged from 3 lowers (300 entries)", () => {
  for (const [label, fs] of sides) {
    const { lib } = inodes.get(fs)!;
    bench(label, async () => {
      const { fh } = await fs.opendir(ctx, lib, O.RDONLY);
      for (let offset = 0; ; ) {
        const batch = await fs.readdir(ctx, lib, fh, offset, 64 * KiB);
        if (batch.length === 0) break;
        offset = batch[batch.length - 1]!.offset;
      }
      await fs.releasedir(ctx, lib, fh, O.RDONLY);
    });
  }
});

describe("read 1 MiB from an open bottom-lower file", () => {
  for (const [label, fs] of sides) {
    const { file, fh } = inodes.get(fs)!;
    bench(label, async () => {
      await fs.read(ctx, file, fh, MiB, 0);
    });
  }
});

describe("open + read 4 KiB + release of a bottom-lower file", () => {
  for (const [label, fs] of sides) {
    const { file } = inodes.get(fs)!;
    bench(label, async () => {
      const { fh } = await fs.open(ctx, file, O.RDONLY);
      await fs.read(ctx, file, fh, 4 * KiB, 0);
      await fs.release(ctx, file, fh, O.RDONLY);
    });
  }
});

let copies = 0;
describe("copy of a 100 MiB file", () => {
  const options = { iterations: 5, warmupIterations: 1, time: 0, warmupTime: 0 };
  bench(
    "cp (reference)",
    () => {
      const target = join(base, `cp-${copies++}`);
      execFileSync("cp", [big, target]);
      rmSync(target);
    },
    options,
  );
  bench(
    "cp + sync of the copy",
    () => {
      const target = join(base, `cp-${copies++}`);
      execFileSync("cp", [big, target]);
      execFileSync("sync", [target]);
      rmSync(target);
    },
    options,
  );
  bench(
    "OverlayFs copy-up (open for writing)",
    async () => {
      const { fs, upperDir } = await newOverlay();
      const ino = await held(fs, "big");
      const { fh } = await fs.open(ctx, ino, O.WRONLY);
      await fs.release(ctx, ino, fh, O.WRONLY);
      await fs.destroy();
      rmSync(upperDir, { recursive: true });
    },
    options,
  );
});
