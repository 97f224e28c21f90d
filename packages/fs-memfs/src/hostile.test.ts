// A guest sends whatever it likes: every argument of every call is tried
// with malformed values, and nothing but an FsError may come out.
import { FsError, O, ROOT_INO, S, type FsOperation } from "@msb/fs";
import { describe, expect, it } from "vitest";
import { MemFs } from "./index.js";
import { ROOT, n } from "./memfs.fixture.js";

type Pool = readonly unknown[];

const numbers: Pool = [0, 1, 2, 3, -1, 1.5, Number.NaN, Infinity, -Infinity, 2 ** 53, 2 ** 40, 0x7fffffff, "1", undefined, null, {}];
const names: Pool = [n("a"), n("f"), n("d"), n("."), n(".."), n(""), n("x".repeat(256)), n("a/b"), new Uint8Array([0xff, 0]), "a", undefined, null, [97]];
const datas: Pool = [n("hello"), new Uint8Array(0), new Uint8Array(70_000), "text", undefined, null, [1, 2, 3]];
const contexts: Pool = [ROOT, { uid: 1000, gid: 1000, pid: 1 }, { uid: -1, gid: Number.NaN, pid: 0 }];
const requests: Pool = [
  { valid: 0xffff, mode: 0o777, uid: 5, gid: 5, size: 10, atime: { sec: 1, nsec: 2 }, mtime: { sec: 1, nsec: 2 }, ctime: { sec: 1, nsec: 2 }, fh: 1 },
  { valid: 8, size: -1 },
  { valid: 8, size: 2 ** 60 },
  { valid: 16, atime: null },
  { valid: 2, uid: Number.NaN },
  { valid: Number.NaN },
  null,
  undefined,
  "mode",
];

/** The kind of each argument of each operation, after the context. */
const SIGNATURES: Readonly<Record<Exclude<FsOperation, "init" | "destroy"> | "readInto", readonly Pool[]>> = {
  lookup: [numbers, names],
  forget: [numbers, numbers],
  batchForget: [[[[1, 1]], [[Number.NaN, 1]], [null], null, "x", [[2, -5]]]],
  getattr: [numbers, numbers],
  setattr: [numbers, requests],
  readlink: [numbers],
  symlink: [names, numbers, names],
  mknod: [numbers, names, numbers, numbers, numbers],
  mkdir: [numbers, names, numbers, numbers],
  unlink: [numbers, names],
  rmdir: [numbers, names],
  rename: [numbers, names, numbers, names, numbers],
  link: [numbers, numbers, names],
  open: [numbers, numbers],
  create: [numbers, names, numbers, numbers, numbers],
  read: [numbers, numbers, numbers, numbers],
  readInto: [numbers, numbers, datas, numbers],
  write: [numbers, numbers, datas, numbers, numbers],
  flush: [numbers, numbers, numbers],
  fsync: [numbers, numbers, [true, false, undefined]],
  fallocate: [numbers, numbers, numbers, numbers, numbers],
  release: [numbers, numbers, numbers],
  statfs: [numbers],
  setxattr: [numbers, [n("user.a"), n("trusted.b"), n("system.c"), n("bad"), n(""), undefined], datas, numbers],
  getxattr: [numbers, [n("user.a"), n("trusted.b"), n("nope"), null]],
  listxattr: [numbers],
  removexattr: [numbers, [n("user.a"), n("security.x"), 5]],
  opendir: [numbers, numbers],
  readdir: [numbers, numbers, numbers, numbers],
  readdirplus: [numbers, numbers, numbers, numbers],
  releasedir: [numbers, numbers, numbers],
  fsyncdir: [numbers, numbers, [true, false]],
  access: [numbers, numbers],
  lseek: [numbers, numbers, numbers, numbers],
  copyFileRange: [numbers, numbers, numbers, numbers, numbers, numbers, numbers, numbers],
};

function populate(fs: MemFs): void {
  fs.mkdir(ROOT, ROOT_INO, n("d"), S.IFDIR | 0o755, 0); // inode 2
  fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o644, O.RDWR, 0); // inode 3, handle 1, left open
  fs.opendir(ROOT, ROOT_INO, 0); // handle 2
}

describe("MemFs under hostile input", () => {
  it("throws nothing but FsError whatever the arguments", () => {
    let seed = 12345;
    const pick = <T,>(pool: readonly T[]): T => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return pool[seed % pool.length]!;
    };
    const ops = Object.keys(SIGNATURES) as (keyof typeof SIGNATURES)[];
    for (const capacity of [Infinity, 200_000]) {
      const fs = new MemFs({ capacity, maxInodes: 50 });
      populate(fs);
      for (let i = 0; i < 20_000; i++) {
        const op = pick(ops);
        const args = [pick(contexts), ...SIGNATURES[op].map((pool) => pick(pool))];
        try {
          (fs[op] as (...a: unknown[]) => unknown)(...args);
        } catch (error) {
          if (!FsError.isInstance(error)) {
            throw new Error(`${op}(${args.map((a) => JSON.stringify(a)).join(", ")}) threw ${String(error)}`, { cause: error });
          }
        }
        expect(fs.usage.bytes).toBeLessThanOrEqual(capacity);
      }
      // Still consistent: the root answers, and statfs adds up.
      expect(fs.getattr(ROOT, ROOT_INO).ino).toBe(ROOT_INO);
      const st = fs.statfs(ROOT, ROOT_INO);
      expect(st.ffree).toBe(Math.max(0, 50 - fs.usage.inodes));
    }
  });
});
