// Escape attempts of a hostile guest (and of a host tree laid out to help
// one). Each test checks, besides its own assertions, that a sentinel tree
// outside the root stays byte-identical: nothing there is read into the
// guest, written, created, removed, re-permissioned or given xattrs.
import { DT, FsError, O, ROOT_INO, S, bytesToString, setattrRequest, type Entry } from "@msb/fs";
import { expectErrno } from "@msb/fs/testing";
import { close as closeFd, constants as c, openat } from "@msb/native";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, rmdirSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PassthroughFs } from "./index.js";
import { ROOT, n, readFile, snapshotTree } from "./scratch.fixture.js";

interface Jail {
  readonly base: string;
  readonly root: string;
  readonly sentinel: string;
  readonly fs: PassthroughFs;
}

let jail: Jail | undefined;
let sentinelBefore = "";

beforeEach(() => {
  const base = mkdtempSync(join(tmpdir(), "msb-escape-"));
  const root = join(base, "root");
  const sentinel = join(base, "sentinel");
  mkdirSync(root);
  mkdirSync(join(sentinel, "sub"), { recursive: true });
  writeFileSync(join(sentinel, "secret.txt"), "top secret");
  writeFileSync(join(sentinel, "sub", "deep.txt"), "deeper secret");
  symlinkSync("secret.txt", join(sentinel, "link"));
  sentinelBefore = snapshotTree(sentinel);
  jail = { base, root, sentinel, fs: new PassthroughFs({ rootDir: root }) };
});

afterEach(() => {
  const { base, sentinel, fs } = jail!;
  fs.destroy();
  try {
    expect(snapshotTree(sentinel), "the sentinel outside the root changed").toBe(sentinelBefore);
  } finally {
    rmSync(base, { recursive: true, force: true });
    jail = undefined;
  }
});

const env = (): Jail => jail!;

/** Every way to put a new name into `parent`. */
function creators(fs: PassthroughFs, parent: number, name: string, other: number): [string, () => unknown][] {
  return [
    ["create", () => fs.create(ROOT, parent, n(name), S.IFREG | 0o644, O.RDWR | O.CREAT, 0)],
    ["create O_EXCL", () => fs.create(ROOT, parent, n(name), S.IFREG | 0o644, O.RDWR | O.CREAT | O.EXCL, 0)],
    ["mkdir", () => fs.mkdir(ROOT, parent, n(name), S.IFDIR | 0o755, 0)],
    ["mknod", () => fs.mknod(ROOT, parent, n(name), S.IFIFO | 0o644, 0, 0)],
    ["symlink", () => fs.symlink(ROOT, n("t"), parent, n(name))],
    ["link", () => fs.link(ROOT, other, parent, n(name))],
  ];
}

/** Every way to use an inode as a directory. */
function directoryUses(fs: PassthroughFs, ino: number): [string, () => unknown][] {
  return [
    ["lookup", () => fs.lookup(ROOT, ino, n("secret.txt"))],
    ["opendir", () => fs.opendir(ROOT, ino, O.RDONLY)],
    ["unlink", () => fs.unlink(ROOT, ino, n("secret.txt"))],
    ["rmdir", () => fs.rmdir(ROOT, ino, n("sub"))],
    ["rename", () => fs.rename(ROOT, ino, n("secret.txt"), ROOT_INO, n("stolen"), 0)],
  ];
}

/** Asserts that `ino` is a symlink the backend will not go through. */
async function expectSealedSymlink(fs: PassthroughFs, entry: Entry, target: string): Promise<void> {
  expect(entry.attr.mode & S.IFMT).toBe(S.IFLNK);
  expect(bytesToString(fs.readlink(ROOT, entry.ino))).toBe(target);
  await expectErrno(() => fs.open(ROOT, entry.ino, O.RDONLY), "ELOOP");
  await expectErrno(() => fs.open(ROOT, entry.ino, O.RDWR | O.TRUNC), "ELOOP");
  for (const [, use] of directoryUses(fs, entry.ino)) await expectErrno(use, "ENOTDIR");
  const file = fs.create(ROOT, ROOT_INO, n(`other-${entry.ino}`), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
  fs.release(ROOT, file.entry.ino, file.fh, O.RDWR);
  for (const [, make] of creators(fs, entry.ino, "planted", file.entry.ino)) await expectErrno(make, "ENOTDIR");
  await expectErrno(() => fs.setxattr(ROOT, entry.ino, n("user.x"), n("v"), 0), "EPERM");
  await expectErrno(() => fs.setattr(ROOT, entry.ino, setattrRequest({ mode: 0o777 })), "EOPNOTSUPP");
  // Times and ownership apply to the link itself.
  fs.setattr(ROOT, entry.ino, setattrRequest({ mtime: { sec: 1, nsec: 0 }, uid: 0 }));
  expect(fs.getattr(ROOT, entry.ino).mtime.sec).toBe(1);
}

describe("PassthroughFs confinement", () => {
  it("returns a guest symlink to / as the symlink, never following it", async () => {
    const { fs } = env();
    fs.symlink(ROOT, n("/"), ROOT_INO, n("up"));
    await expectSealedSymlink(fs, fs.lookup(ROOT, ROOT_INO, n("up")), "/");
  });

  it("never follows symlinks to the outside, absolute or relative, made by the guest or found on the host", async () => {
    const { fs, root, sentinel } = env();
    fs.symlink(ROOT, n(sentinel), ROOT_INO, n("abs"));
    fs.symlink(ROOT, n("../sentinel"), ROOT_INO, n("rel"));
    fs.symlink(ROOT, n("../../../../../../../../.."), ROOT_INO, n("dots"));
    symlinkSync(sentinel, join(root, "host-abs"));
    symlinkSync(join(sentinel, "secret.txt"), join(root, "host-file"));
    for (const [name, target] of [
      ["abs", sentinel],
      ["rel", "../sentinel"],
      ["dots", "../../../../../../../../.."],
      ["host-abs", sentinel],
      ["host-file", join(sentinel, "secret.txt")],
    ]) {
      await expectSealedSymlink(fs, fs.lookup(ROOT, ROOT_INO, n(name!)), target!);
    }
    const { fh } = fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const listed = fs.readdirplus(ROOT, ROOT_INO, fh, 0, 1 << 20).filter((e) => bytesToString(e.name).includes("abs"));
    expect(listed.map((e) => [e.type, e.entry.attr.mode & S.IFMT])).toEqual([
      [DT.LNK, S.IFLNK],
      [DT.LNK, S.IFLNK],
    ]);
  });

  it("does not create, truncate or replace through a symlink in the way of a new name", async () => {
    const { fs, root, sentinel } = env();
    symlinkSync(join(sentinel, "planted.txt"), join(root, "dangling"));
    symlinkSync(join(sentinel, "secret.txt"), join(root, "existing"));
    const other = fs.create(ROOT, ROOT_INO, n("other"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
    for (const name of ["dangling", "existing"]) {
      await expectErrno(() => fs.create(ROOT, ROOT_INO, n(name), S.IFREG | 0o644, O.RDWR | O.CREAT | O.TRUNC, 0), "ELOOP");
      for (const [what, make] of creators(fs, ROOT_INO, name, other.entry.ino)) {
        if (what !== "create") await expectErrno(make, "EEXIST");
      }
    }
    // Renaming onto it, and removing it, act on the link.
    fs.rename(ROOT, ROOT_INO, n("other"), ROOT_INO, n("existing"), 0);
    expect(lstatSync(join(root, "existing")).isFile()).toBe(true);
    fs.unlink(ROOT, ROOT_INO, n("dangling"));
    expect(existsSync(join(sentinel, "planted.txt"))).toBe(false);
  });

  it("keeps . and .. inside the tree and refuses names that are paths", async () => {
    const { fs } = env();
    const d = fs.mkdir(ROOT, ROOT_INO, n("d"), S.IFDIR | 0o755, 0);
    let up = ROOT_INO;
    for (let i = 0; i < 5; i++) up = fs.lookup(ROOT, up, n("..")).ino;
    expect(up).toBe(ROOT_INO);
    expect(fs.lookup(ROOT, fs.lookup(ROOT, d.ino, n("..")).ino, n("..")).ino).toBe(ROOT_INO);
    const file = fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0).entry.ino;
    for (const bad of ["../sentinel", "../sentinel/secret.txt", "/etc", "a/b", "x\0y", "/"]) {
      await expectErrno(() => fs.lookup(ROOT, ROOT_INO, n(bad)), "EINVAL");
      for (const [, make] of creators(fs, d.ino, bad, file)) await expectErrno(make, "EINVAL");
      await expectErrno(() => fs.unlink(ROOT, ROOT_INO, n(bad)), "EINVAL");
      await expectErrno(() => fs.rename(ROOT, ROOT_INO, n("f"), ROOT_INO, n(bad), 0), "EINVAL");
    }
    for (const dots of ["..", "."]) {
      for (const [what, make] of creators(fs, d.ino, dots, file)) await expectErrno(make, what === "create" || what === "create O_EXCL" ? "EISDIR" : "EEXIST");
      await expectErrno(() => fs.rename(ROOT, ROOT_INO, n("f"), d.ino, n(dots), 0), "EBUSY");
      await expectErrno(() => fs.rename(ROOT, d.ino, n(dots), ROOT_INO, n("x"), 0), "EBUSY");
    }
    for (const huge of [256, 4096, 1 << 20]) {
      await expectErrno(() => fs.lookup(ROOT, ROOT_INO, new Uint8Array(huge).fill(0x61)), "ENAMETOOLONG");
      await expectErrno(() => fs.mkdir(ROOT, ROOT_INO, new Uint8Array(huge).fill(0x2e), S.IFDIR | 0o755, 0), "ENAMETOOLONG");
    }
    await expectErrno(() => fs.symlink(ROOT, new Uint8Array(4096).fill(0x61), ROOT_INO, n("long")), "ENAMETOOLONG");
    await expectErrno(() => fs.symlink(ROOT, n("a\0b"), ROOT_INO, n("nul")), "EINVAL");
  });

  it("does not follow /proc magic links placed in the tree", async () => {
    const { fs, root, sentinel } = env();
    const sentinelFd = openat(c.AT_FDCWD, sentinel, c.O_PATH | c.O_DIRECTORY);
    try {
      const links: [string, string][] = [
        ["self-root", "/proc/self/root"],
        ["self-cwd", "/proc/self/cwd"],
        ["self-fd", `/proc/self/fd/${sentinelFd}`],
        ["pid-root", `/proc/${process.pid}/root`],
        ["thread-self", `/proc/thread-self/fd/${sentinelFd}`],
      ];
      for (const [name, target] of links) symlinkSync(target, join(root, name));
      for (const [name, target] of links) await expectSealedSymlink(fs, fs.lookup(ROOT, ROOT_INO, n(name)), target);
    } finally {
      closeFd(sentinelFd);
    }
  });

  it("treats a host hard link to an outside file as that one inode, and no way to anything else", async () => {
    const { fs, root, base } = env();
    mkdirSync(join(base, "outside"));
    writeFileSync(join(base, "outside", "linked.txt"), "shared with the host");
    writeFileSync(join(base, "outside", "neighbour.txt"), "not reachable");
    linkSync(join(base, "outside", "linked.txt"), join(root, "hl"));
    const neighbourBefore = snapshotTree(join(base, "outside", "neighbour.txt"));
    const hl = fs.lookup(ROOT, ROOT_INO, n("hl"));
    // Accepted and documented: the inode is in the tree, so its data is the guest's to read and write.
    expect(readFile(fs, hl.ino)).toBe("shared with the host");
    for (const [, use] of directoryUses(fs, hl.ino)) await expectErrno(use, "ENOTDIR");
    fs.link(ROOT, hl.ino, ROOT_INO, n("hl2"));
    fs.rename(ROOT, ROOT_INO, n("hl2"), ROOT_INO, n("hl3"), 0);
    expect(lstatSync(join(root, "hl3")).nlink).toBe(3);
    expect(snapshotTree(join(base, "outside", "neighbour.txt"))).toBe(neighbourBefore);
  });

  it("creates in the directory a parent inode is, even after its name was swapped for a symlink", async () => {
    const { fs, root, sentinel } = env();
    const d = fs.mkdir(ROOT, ROOT_INO, n("d"), S.IFDIR | 0o777, 0);
    const f = fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
    renameSync(join(root, "d"), join(root, "d.moved"));
    symlinkSync(sentinel, join(root, "d"));
    for (const [what, make] of creators(fs, d.ino, "made", f.entry.ino)) {
      if (what === "create O_EXCL") continue;
      make();
      const made = lstatSync(join(root, "d.moved", "made"));
      expect(made.isFile() || made.isDirectory() || made.isSymbolicLink(), what).toBe(true);
      rmSync(join(root, "d.moved", "made"), { recursive: true });
    }
    // The same after the directory itself is gone: ENOENT, and still nothing outside.
    rmdirSync(join(root, "d.moved"));
    for (const [, make] of creators(fs, d.ino, "made", f.entry.ino)) await expectErrno(make, "ENOENT");
  });

  it("opens the file an inode is, even after its name was swapped for a symlink to an outside file", () => {
    const { fs, root, sentinel } = env();
    const f = fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
    fs.write(ROOT, f.entry.ino, f.fh, n("inside"), 0, 0);
    fs.release(ROOT, f.entry.ino, f.fh, O.RDWR);
    renameSync(join(root, "f"), join(root, "f.moved"));
    symlinkSync(join(sentinel, "secret.txt"), join(root, "f"));
    const fh = fs.open(ROOT, f.entry.ino, O.RDWR | O.TRUNC).fh;
    fs.write(ROOT, f.entry.ino, fh, n("overwritten"), 0, 0);
    fs.release(ROOT, f.entry.ino, fh, O.RDWR);
    fs.setattr(ROOT, f.entry.ino, setattrRequest({ mode: 0o600, size: 3 }));
    expect(readFileSync(join(root, "f.moved"), "utf8")).toBe("ove");
  });

  it("answers garbage arguments with FsError and nothing else", () => {
    const { fs, root } = env();
    const f = fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
    const d = fs.opendir(ROOT, ROOT_INO, O.RDONLY).fh;
    const file = f.entry.ino;
    const { fh } = f;
    const garbage: unknown[] = [undefined, null, -1, 1.5, NaN, Infinity, 2 ** 64, "1", {}, [], Symbol("x"), new Uint8Array(0), n("a\0b"), { valid: 0xffff, mode: Symbol("m") }];
    const calls: ((x: never) => unknown)[] = [
      (x) => fs.lookup(ROOT, x, n("a")),
      (x) => fs.lookup(ROOT, ROOT_INO, x),
      (x) => fs.forget(ROOT, x, x),
      (x) => fs.batchForget(ROOT, x),
      (x) => fs.getattr(ROOT, file, x),
      (x) => fs.setattr(ROOT, file, x),
      (x) => fs.readlink(ROOT, x),
      (x) => fs.symlink(ROOT, x, ROOT_INO, n("s")),
      (x) => fs.mknod(ROOT, ROOT_INO, n("m"), x, 0, 0),
      (x) => fs.mknod(ROOT, ROOT_INO, n("c"), S.IFCHR | 0o600, x, 0),
      (x) => fs.mkdir(ROOT, ROOT_INO, n("d"), S.IFDIR | 0o755, x),
      (x) => fs.unlink(ROOT, ROOT_INO, x),
      (x) => fs.rename(ROOT, ROOT_INO, n("nothing"), ROOT_INO, n("y"), x),
      (x) => fs.link(ROOT, x, ROOT_INO, n("l")),
      (x) => fs.open(ROOT, file, x),
      (x) => fs.create(ROOT, ROOT_INO, n("g"), S.IFREG | 0o644, x, 0),
      (x) => fs.read(ROOT, file, fh, x, 0),
      (x) => fs.read(ROOT, file, fh, 10, x),
      (x) => fs.write(ROOT, file, fh, x, 0, 0),
      (x) => fs.write(ROOT, file, fh, n("x"), x, 0),
      (x) => fs.write(ROOT, file, x, n("x"), 0, 0),
      (x) => fs.fallocate(ROOT, file, fh, x, 0, 10),
      (x) => fs.fallocate(ROOT, file, fh, 0, x, 10),
      (x) => fs.lseek(ROOT, file, fh, 0, x),
      (x) => fs.lseek(ROOT, file, fh, x, 3),
      (x) => fs.copyFileRange(ROOT, file, fh, 0, file, fh, 100, x, 0),
      (x) => fs.setxattr(ROOT, file, x, n("v"), 0),
      (x) => fs.setxattr(ROOT, file, n("user.a"), x, 0),
      (x) => fs.setxattr(ROOT, file, n("user.a"), n("v"), x),
      (x) => fs.getxattr(ROOT, file, x),
      (x) => fs.removexattr(ROOT, file, x),
      (x) => fs.opendir(ROOT, ROOT_INO, x),
      (x) => fs.readdir(ROOT, ROOT_INO, d, x, 4096),
      (x) => fs.readdirplus(ROOT, ROOT_INO, d, 0, x),
      (x) => fs.access(ROOT, file, x),
      (x) => fs.release(ROOT, file, x, 0),
    ];
    for (const call of calls) {
      for (const value of garbage) {
        try {
          call(value as never);
        } catch (error) {
          if (!FsError.isInstance(error)) throw new Error(`${String(call)} with ${String(value)} threw ${String(error)}`);
        }
      }
    }
    expect(existsSync(join(root, "f"))).toBe(true);
  });

  it("survives a directory and a symlink to the outside swapping places while the guest works through them", async () => {
    const { fs, root, sentinel } = env();
    mkdirSync(join(root, "d"));
    symlinkSync(sentinel, join(root, "alt"));
    // Another process swaps the two names atomically, as fast as it can, while the guest works.
    const native = createRequire(import.meta.url).resolve("@msb/native");
    const swapper = spawn(process.execPath, [
      "-e",
      `const n = require(process.argv[1]); const root = n.openat(n.constants.AT_FDCWD, process.argv[2], n.constants.O_PATH);
       process.stdout.write("ready\\n");
       for (let i = 0; i < 5e6; i++) n.renameat2(root, "d", root, "alt", n.constants.RENAME_EXCHANGE);`,
      native,
      root,
    ]);
    const exited = once(swapper, "exit");
    await once(swapper.stdout, "data");
    const seen = { dir: 0, symlink: 0, created: 0 };
    const allowed = new Set(["ENOENT", "ENOTDIR", "ELOOP", "EEXIST"]);
    try {
      for (let i = 0; i < 3000; i++) {
        for (const name of ["d", "alt"]) {
          try {
            const e = fs.lookup(ROOT, ROOT_INO, n(name));
            if ((e.attr.mode & S.IFMT) === S.IFDIR) seen.dir++;
            else seen.symlink++;
            const made = fs.create(ROOT, e.ino, n(`f${i}${name}`), S.IFREG | 0o644, O.RDWR | O.CREAT | O.EXCL, 0);
            fs.write(ROOT, made.entry.ino, made.fh, n("x"), 0, 0);
            fs.release(ROOT, made.entry.ino, made.fh, O.RDWR);
            fs.forget(ROOT, made.entry.ino, 1);
            fs.mkdir(ROOT, e.ino, n(`m${i}${name}`), S.IFDIR | 0o755, 0);
            seen.created++;
            fs.forget(ROOT, e.ino, 1);
          } catch (error) {
            if (!FsError.isInstance(error) || !allowed.has(error.code)) throw error;
          }
        }
      }
    } finally {
      swapper.kill();
      await exited;
    }
    expect(seen.dir).toBeGreaterThan(0);
    expect(seen.symlink).toBeGreaterThan(0);
    expect(seen.created).toBeGreaterThan(0);
  }, 60_000);
});
