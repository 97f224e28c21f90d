import { expect, it } from "vitest";
import { DT, O, ROOT_INO, S } from "../../constants.js";
import { dtFromMode, makedev } from "../../mode.js";
import { bytesToString } from "../../names.js";
import { setattrRequest } from "../../setattr.js";
import type { DynFileSystem } from "../../types.js";
import { ROOT, expectErrno, n, type Harness } from "../harness.js";
import type { ConformanceCapabilities, Suite } from "../index.js";

const BAD_INO = 987_654_321;
const BAD_FH = 876_543;
const TOO_LONG = n("n".repeat(256));

/** An operation on a directory inode that takes a name, for the error matrices. */
type NameOp = (fs: DynFileSystem, parent: number, name: Uint8Array, other: number) => unknown;

/** Operations that create `name` in `parent` (`other` is an existing file, for link). */
function creators(caps: ConformanceCapabilities): [string, NameOp][] {
  const ops: [string, NameOp][] = [
    ["create", (fs, p, name) => fs.create(ROOT, p, name, S.IFREG | 0o644, O.RDWR | O.CREAT | O.EXCL, 0)],
    ["mkdir", (fs, p, name) => fs.mkdir(ROOT, p, name, S.IFDIR | 0o755, 0)],
    ["symlink", (fs, p, name) => fs.symlink(ROOT, n("target"), p, name)],
  ];
  if (caps.specialFiles) ops.push(["mknod", (fs, p, name) => fs.mknod(ROOT, p, name, S.IFIFO | 0o644, 0, 0)]);
  if (caps.hardLinks) ops.push(["link", (fs, p, name, other) => fs.link(ROOT, other, p, name)]);
  return ops;
}

/** Operations that find or remove an existing `name` in `parent`. */
const finders: [string, NameOp][] = [
  ["lookup", (fs, p, name) => fs.lookup(ROOT, p, name)],
  ["unlink", (fs, p, name) => fs.unlink(ROOT, p, name)],
  ["rmdir", (fs, p, name) => fs.rmdir(ROOT, p, name)],
  ["rename (source)", (fs, p, name) => fs.rename(ROOT, p, name, ROOT_INO, n("elsewhere"), 0)],
];

/** Every inode kind, made in the root as `name`. */
function kinds(caps: ConformanceCapabilities): [string, number, (h: Harness, name: string) => Promise<number>][] {
  const list: [string, number, (h: Harness, name: string) => Promise<number>][] = [
    ["regular file", S.IFREG, (h, name) => h.file(name, "x")],
    ["directory", S.IFDIR, async (h, name) => (await h.mkdir(name)).ino],
    ["symlink", S.IFLNK, async (h, name) => (await h.symlink("t", name)).ino],
  ];
  if (caps.specialFiles) {
    const node = (mode: number, rdev: number) => async (h: Harness, name: string) =>
      (await h.fs.mknod(ROOT, ROOT_INO, n(name), mode, rdev, 0)).ino;
    list.push(
      ["fifo", S.IFIFO, node(S.IFIFO | 0o644, 0)],
      ["socket", S.IFSOCK, node(S.IFSOCK | 0o644, 0)],
      ["character device", S.IFCHR, node(S.IFCHR | 0o644, makedev(1, 5))],
      ["block device", S.IFBLK, node(S.IFBLK | 0o644, makedev(7, 0))],
    );
  }
  return list;
}

/**
 * The error matrix: every operation against every way its arguments can be
 * wrong (unknown inode, unknown handle, parent not a directory, parent gone,
 * name too long, name taken), and every operation on every inode kind.
 */
export const errorSuite: Suite = (env, caps) => {
  const inodeOps: [string, (fs: DynFileSystem) => unknown][] = [
    ["lookup", (fs) => fs.lookup(ROOT, BAD_INO, n("x"))],
    ["getattr", (fs) => fs.getattr(ROOT, BAD_INO)],
    ["setattr", (fs) => fs.setattr(ROOT, BAD_INO, setattrRequest({ mode: 0o644 }))],
    ["readlink", (fs) => fs.readlink(ROOT, BAD_INO)],
    ["symlink", (fs) => fs.symlink(ROOT, n("t"), BAD_INO, n("x"))],
    ["mknod", (fs) => fs.mknod(ROOT, BAD_INO, n("x"), S.IFIFO | 0o644, 0, 0)],
    ["mkdir", (fs) => fs.mkdir(ROOT, BAD_INO, n("x"), S.IFDIR | 0o755, 0)],
    ["unlink", (fs) => fs.unlink(ROOT, BAD_INO, n("x"))],
    ["rmdir", (fs) => fs.rmdir(ROOT, BAD_INO, n("x"))],
    ["rename", (fs) => fs.rename(ROOT, BAD_INO, n("x"), ROOT_INO, n("y"), 0)],
    ["link", (fs) => fs.link(ROOT, BAD_INO, ROOT_INO, n("x"))],
    ["open", (fs) => fs.open(ROOT, BAD_INO, O.RDONLY)],
    ["create", (fs) => fs.create(ROOT, BAD_INO, n("x"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0)],
    ["setxattr", (fs) => fs.setxattr(ROOT, BAD_INO, n("user.a"), n("v"), 0)],
    ["getxattr", (fs) => fs.getxattr(ROOT, BAD_INO, n("user.a"))],
    ["listxattr", (fs) => fs.listxattr(ROOT, BAD_INO)],
    ["removexattr", (fs) => fs.removexattr(ROOT, BAD_INO, n("user.a"))],
    ["opendir", (fs) => fs.opendir(ROOT, BAD_INO, O.RDONLY)],
    ["access", (fs) => fs.access(ROOT, BAD_INO, 0)],
  ];
  for (const [name, call] of inodeOps) {
    it(`answers ENOENT from ${name} for an unknown inode`, async () => {
      await expectErrno(() => call(env().fs), ["ENOENT", "ESTALE"]);
    });
  }

  const handleOps: [string, (fs: DynFileSystem, file: number) => unknown][] = [
    ["read", (fs, f) => fs.read(ROOT, f, BAD_FH, 10, 0)],
    ["write", (fs, f) => fs.write(ROOT, f, BAD_FH, n("x"), 0, 0)],
    ["flush", (fs, f) => fs.flush(ROOT, f, BAD_FH, 0)],
    ["fsync", (fs, f) => fs.fsync(ROOT, f, BAD_FH, false)],
    ["lseek", (fs, f) => fs.lseek(ROOT, f, BAD_FH, 0, 3)],
    ["readdir", (fs) => fs.readdir(ROOT, ROOT_INO, BAD_FH, 0, 4096)],
    ["fsyncdir", (fs) => fs.fsyncdir(ROOT, ROOT_INO, BAD_FH, false)],
  ];
  if (caps.fallocate) handleOps.push(["fallocate", (fs, f) => fs.fallocate(ROOT, f, BAD_FH, 0, 0, 10)]);
  if (caps.readdirplus) handleOps.push(["readdirplus", (fs) => fs.readdirplus(ROOT, ROOT_INO, BAD_FH, 0, 4096)]);
  if (caps.copyFileRange) {
    handleOps.push(["copyFileRange", (fs, f) => fs.copyFileRange(ROOT, f, BAD_FH, 0, f, BAD_FH, 100, 1, 0)]);
  }
  for (const [name, call] of handleOps) {
    it(`answers EBADF from ${name} for an unknown handle`, async () => {
      const { h, fs } = env();
      const file = await h.file("f", "abc");
      await expectErrno(() => call(fs, file), "EBADF");
    });
  }

  for (const [name, call] of [...creators(caps), ...finders]) {
    it(`answers ENOTDIR from ${name} when the parent is a file`, async () => {
      const { h, fs } = env();
      const file = await h.file("f", "abc");
      await expectErrno(() => call(fs, file, n("x"), file), "ENOTDIR");
    });

    it(`answers ENAMETOOLONG from ${name} for a 256-byte name`, async () => {
      const { h, fs } = env();
      const file = await h.file("f");
      await expectErrno(() => call(fs, ROOT_INO, TOO_LONG, file), "ENAMETOOLONG");
    });
  }

  for (const [name, call] of creators(caps)) {
    it(`answers ENOENT from ${name} in a removed directory`, async () => {
      const { h, fs } = env();
      const file = await h.file("f");
      const dir = await h.mkdir("gone");
      await h.rmdir("gone");
      await expectErrno(() => call(fs, dir.ino, n("x"), file), "ENOENT");
    });

    for (const [kind, , make] of kinds(caps)) {
      it(`answers EEXIST from ${name} over an existing ${kind}`, async () => {
        const { h, fs } = env();
        const file = await h.file("f");
        await make(h, "taken");
        await expectErrno(() => call(fs, ROOT_INO, n("taken"), file), "EEXIST");
      });
    }
  }

  for (const [name, call] of finders) {
    it(`answers ENOENT from ${name} for a missing name`, async () => {
      await expectErrno(() => call(env().fs, ROOT_INO, n("missing"), 0), "ENOENT");
    });
  }

  for (const [kind, type, make] of kinds(caps)) {
    it(`reports a ${kind} with its type in getattr, lookup and readdir`, async () => {
      const { h } = env();
      const ino = await make(h, "it");
      expect((await h.getattr(ino)).mode & S.IFMT).toBe(type);
      expect((await h.lookup("it")).attr.mode & S.IFMT).toBe(type);
      const entry = (await h.readdirAll()).find((e) => bytesToString(e.name) === "it");
      expect(entry?.ino).toBe(ino);
      expect([DT.UNKNOWN, dtFromMode(type)]).toContain(entry?.type);
    });

    it(`renames a ${kind} and finds it under the new name`, async () => {
      const { h } = env();
      const ino = await make(h, "old");
      await h.rename("old", "new");
      expect((await h.lookup("new")).ino).toBe(ino);
      await expectErrno(() => h.lookup("old"), "ENOENT");
    });

    it(`removes a ${kind} with the right call and refuses the wrong one`, async () => {
      const { h } = env();
      await make(h, "it");
      if (type === S.IFDIR) {
        await expectErrno(() => h.unlink("it"), "EISDIR");
        await h.rmdir("it");
      } else {
        await expectErrno(() => h.rmdir("it"), "ENOTDIR");
        await h.unlink("it");
      }
      await expectErrno(() => h.lookup("it"), "ENOENT");
    });

    if (type !== S.IFLNK) {
      // The kernel never chmods a symlink itself (chmod follows it).
      it(`changes the mode of a ${kind} without changing its type`, async () => {
        const { h, fs } = env();
        const ino = await make(h, "it");
        const attr = await fs.setattr(ROOT, ino, setattrRequest({ mode: 0o700 }));
        expect(attr.mode).toBe(type | 0o700);
      });
    }

    if (type !== S.IFDIR && type !== S.IFLNK) {
      it(`refuses to look up a name inside a ${kind} with ENOTDIR`, async () => {
        const { h } = env();
        const ino = await make(h, "it");
        await expectErrno(() => h.lookup("x", ino), "ENOTDIR");
      });
    }
  }

  it("answers EBADF for a handle used after release on every data call", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "abc");
    const fh = await h.open(ino, O.RDWR);
    await h.release(ino, fh);
    await expectErrno(() => h.read(ino, fh, 1, 0), "EBADF");
    await expectErrno(() => h.write(ino, fh, "x", 0), "EBADF");
    await expectErrno(() => fs.fsync(ROOT, ino, fh, false), "EBADF");
  });

  it("answers EBADF for a directory handle after releasedir", async () => {
    const { fs } = env();
    const { fh } = await fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    await fs.releasedir(ROOT, ROOT_INO, fh, 0);
    await expectErrno(() => fs.readdir(ROOT, ROOT_INO, fh, 0, 4096), "EBADF");
  });
};
