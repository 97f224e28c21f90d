// PassthroughFs against node:fs doing the same work on the same kind of host
// directory (both under MSB_BENCH_TMPDIR, else the OS temp dir), side by side:
// vitest prints ops/s for each and, per group, how many times faster the
// faster one is. On a disk, creating files is dominated by the journal and
// varies run to run; MSB_BENCH_TMPDIR=/dev/shm shows the CPU cost alone.
//
// PassthroughFs is called as a FUSE server would: by inode number, with each
// entry's lookup forgotten again, so the inode table does not grow.
import { O, ROOT_INO, S, type Context } from "@msb/fs";
import { closeSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, bench, describe } from "vitest";
import type * as PassthroughModule from "../src/index.js";

// PassthroughFs as its users run it, from its build (`pnpm bench` builds it
// first), which vitest.config.ts leaves to Node to load, as node:fs is.
// Through vitest's transform every reference from one module to another
// becomes a getter call, a cost node:fs does not pay.
const { PassthroughFs } = (await import(new URL("../dist/index.js", import.meta.url).href)) as typeof PassthroughModule;

const ctx: Context = { uid: 0, gid: 0, pid: 1 };
const KiB = 1024;
const MiB = 1024 * KiB;
const block = new Uint8Array(4 * KiB).fill(0x61);
const big = new Uint8Array(MiB).fill(0x62);
const name = (text: string): Uint8Array => new TextEncoder().encode(text);

const base = mkdtempSync(join(process.env.MSB_BENCH_TMPDIR ?? tmpdir(), "msb-passthrough-bench-"));
const plain = join(base, "node");
const served = join(base, "passthrough");
for (const dir of [plain, served]) {
  mkdirSync(join(dir, "listed"), { recursive: true });
  writeFileSync(join(dir, "small"), new Uint8Array(64 * KiB).fill(0x63));
  writeFileSync(join(dir, "large"), big);
  writeFileSync(join(dir, "cold"), "");
  for (let i = 0; i < 100; i++) writeFileSync(join(dir, "listed", `entry-${i}`), "");
}
const fs = new PassthroughFs({ rootDir: served });
const small = fs.lookup(ctx, ROOT_INO, name("small")).ino;
const large = fs.lookup(ctx, ROOT_INO, name("large")).ino;
const listed = fs.lookup(ctx, ROOT_INO, name("listed")).ino;
const largeFh = fs.open(ctx, large, O.RDWR).fh;
const largeFd = openSync(join(plain, "large"), "r+");
const smallFd = openSync(join(plain, "small"), "r");

afterAll(() => {
  fs.destroy();
  closeSync(largeFd);
  closeSync(smallFd);
  rmSync(base, { recursive: true, force: true });
});

let created = 0;
describe("create + write 4 KiB + close", () => {
  bench("node:fs (reference)", () => {
    const fd = openSync(join(plain, `c${created++}`), "wx", 0o644);
    writeSync(fd, block, 0, block.length, 0);
    closeSync(fd);
  });
  bench("PassthroughFs", () => {
    const { entry, fh } = fs.create(ctx, ROOT_INO, name(`c${created++}`), S.IFREG | 0o644, O.WRONLY | O.CREAT | O.EXCL, 0);
    fs.write(ctx, entry.ino, fh, block, 0, 0);
    fs.release(ctx, entry.ino, fh, O.WRONLY);
    fs.forget(ctx, entry.ino, 1);
  });
});

describe("open + read 4 KiB + close", () => {
  bench("node:fs (reference)", () => {
    const fd = openSync(join(plain, "small"), "r");
    readSync(fd, Buffer.allocUnsafe(4 * KiB), 0, 4 * KiB, 8 * KiB);
    closeSync(fd);
  });
  bench("PassthroughFs", () => {
    const { fh } = fs.open(ctx, small, O.RDONLY);
    fs.read(ctx, small, fh, 4 * KiB, 8 * KiB);
    fs.release(ctx, small, fh, O.RDONLY);
  });
});

describe("write 1 MiB to an open file", () => {
  bench("node:fs (reference)", () => {
    writeSync(largeFd, big, 0, big.length, 0);
  });
  bench("PassthroughFs", () => {
    fs.write(ctx, large, largeFh, big, 0, 0);
  });
});

describe("read 1 MiB from an open file", () => {
  bench("node:fs (reference)", () => {
    readSync(largeFd, Buffer.allocUnsafe(MiB), 0, MiB, 0);
  });
  bench("PassthroughFs", () => {
    fs.read(ctx, large, largeFh, MiB, 0);
  });
});

// A name whose inode the server holds (the bench keeps "small" looked up).
describe("stat by name of a held inode (lookup)", () => {
  bench("node:fs lstat (reference)", () => {
    lstatSync(join(plain, "small"));
  });
  bench("PassthroughFs lookup + forget", () => {
    fs.forget(ctx, fs.lookup(ctx, ROOT_INO, name("small")).ino, 1);
  });
});

// What the kernel mostly sends: a name whose inode the server has let go, so
// it is opened (O_PATH), stat'ed and its override read, then closed again.
describe("stat by name of an inode not held (lookup)", () => {
  bench("node:fs lstat (reference)", () => {
    lstatSync(join(plain, "cold"));
  });
  bench("PassthroughFs lookup + forget", () => {
    fs.forget(ctx, fs.lookup(ctx, ROOT_INO, name("cold")).ino, 1);
  });
});

describe("stat of an open file (getattr)", () => {
  bench("node:fs fstat (reference)", () => {
    fstatSync(smallFd);
  });
  bench("PassthroughFs getattr", () => {
    fs.getattr(ctx, small);
  });
});

describe("list a directory of 100 entries", () => {
  bench("node:fs readdir with types (reference)", () => {
    readdirSync(join(plain, "listed"), { withFileTypes: true });
  });
  bench("PassthroughFs opendir + readdir + releasedir", () => {
    const { fh } = fs.opendir(ctx, listed, O.RDONLY);
    for (let offset = 0; ; ) {
      const batch = fs.readdir(ctx, listed, fh, offset, 64 * KiB);
      if (batch.length === 0) break;
      offset = batch[batch.length - 1]!.offset;
    }
    fs.releasedir(ctx, listed, fh, O.RDONLY);
  });
});

let unlinked = 0;
describe("create an empty file + unlink it", () => {
  bench("node:fs (reference)", () => {
    const path = join(plain, `u${unlinked++}`);
    closeSync(openSync(path, "wx", 0o644));
    unlinkSync(path);
  });
  bench("PassthroughFs", () => {
    const file = name(`u${unlinked++}`);
    const { entry, fh } = fs.create(ctx, ROOT_INO, file, S.IFREG | 0o644, O.WRONLY | O.CREAT | O.EXCL, 0);
    fs.release(ctx, entry.ino, fh, O.WRONLY);
    fs.unlink(ctx, ROOT_INO, file);
    fs.forget(ctx, entry.ino, 1);
  });
});
