import { expect, it } from "vitest";
import { ACCESS, DT, O, ROOT_INO, S } from "../../constants.js";
import { makedev } from "../../mode.js";
import { bytesToString } from "../../names.js";
import { ROOT, expectErrno, n } from "../harness.js";
import type { Suite } from "../index.js";

/** Lookup, forget, getattr, names, symlinks, special files, hard links, statfs, access. */
export const namespaceSuite: Suite = (env, caps) => {
  it("has a root directory at inode 1", async () => {
    const { h } = env();
    const root = await h.getattr(ROOT_INO);
    expect(root.ino).toBe(ROOT_INO);
    expect(root.mode & S.IFMT).toBe(S.IFDIR);
    expect(root.nlink).toBeGreaterThanOrEqual(2);
  });

  it("starts empty", async () => {
    expect(await env().h.names()).toEqual([]);
  });

  it("looks up what was created, with attributes matching getattr", async () => {
    const { h } = env();
    const ino = await h.file("a", "hello");
    const entry = await h.lookup("a");
    expect(entry.ino).toBe(ino);
    expect(entry.attr.ino).toBe(ino);
    expect(entry.attr.size).toBe(5);
    expect(entry.attr.mode).toBe(S.IFREG | 0o644);
    expect(await h.getattr(ino)).toMatchObject({ ino, size: 5, mode: S.IFREG | 0o644, nlink: 1 });
  });

  it("answers ENOENT for a missing name", async () => {
    await expectErrno(() => env().h.lookup("missing"), "ENOENT");
  });

  it("answers ENOTDIR when looking up inside a file", async () => {
    const { h } = env();
    const ino = await h.file("f");
    await expectErrno(() => h.lookup("x", ino), "ENOTDIR");
  });

  it("looks up . and .. as the directory and its parent", async () => {
    const { h } = env();
    const dir = await h.mkdir("d");
    expect((await h.lookup(".", dir.ino)).ino).toBe(dir.ino);
    expect((await h.lookup("..", dir.ino)).ino).toBe(ROOT_INO);
  });

  it("gives distinct inode numbers and keeps them stable across lookups", async () => {
    const { h } = env();
    const a = await h.file("a");
    const b = await h.file("b");
    expect(a).not.toBe(b);
    expect((await h.lookup("a")).ino).toBe(a);
    expect((await h.lookup("a")).ino).toBe(a);
  });

  it("keeps an unlinked inode usable while lookups remain, without reusing its number", async () => {
    const { h, fs } = env();
    const ino = await h.file("a", "data");
    await h.lookup("a");
    await h.unlink("a");
    const attr = await h.getattr(ino);
    expect(attr.nlink).toBe(0);
    const fresh = await Promise.all(["b", "c", "d"].map((name) => h.file(name)));
    expect(fresh).not.toContain(ino);
    await fs.forget(ROOT, ino, 2);
  });

  it("accepts forget and batchForget of counted lookups", async () => {
    const { h, fs } = env();
    const a = await h.file("a");
    const b = await h.file("b");
    await h.lookup("a");
    await h.lookup("b");
    await fs.forget(ROOT, a, 1);
    await fs.batchForget(ROOT, [
      [a, 1],
      [b, 2],
    ]);
    expect((await h.lookup("a")).ino).toBe(a);
  });

  it("answers ENOENT for an inode number it never gave out", async () => {
    const { h, fs } = env();
    await expectErrno(() => h.getattr(987_654_321), ["ENOENT", "ESTALE"]);
    await expectErrno(() => fs.lookup(ROOT, 987_654_321, n("x")), ["ENOENT", "ESTALE"]);
    await expectErrno(() => fs.open(ROOT, 987_654_321, O.RDONLY), ["ENOENT", "ESTALE"]);
    await expectErrno(() => fs.opendir(ROOT, 987_654_321, O.RDONLY), ["ENOENT", "ESTALE"]);
    await expectErrno(() => fs.mkdir(ROOT, 987_654_321, n("x"), S.IFDIR | 0o755, 0), ["ENOENT", "ESTALE"]);
  });

  it("accepts a 255-byte name and refuses 256 bytes with ENAMETOOLONG", async () => {
    const { h } = env();
    const longest = "x".repeat(255);
    await h.file(longest);
    expect((await h.lookup(longest)).attr.mode & S.IFMT).toBe(S.IFREG);
    await h.mkdir("y".repeat(255));
    await expectErrno(() => h.create("z".repeat(256)), "ENAMETOOLONG");
    await expectErrno(() => h.mkdir("z".repeat(256)), "ENAMETOOLONG");
    await expectErrno(() => h.symlink("t", "z".repeat(256)), "ENAMETOOLONG");
    await expectErrno(() => h.lookup("z".repeat(256)), "ENAMETOOLONG");
  });

  it("keeps names that are not UTF-8, byte for byte", async () => {
    const { h } = env();
    const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9]);
    const invalid = new Uint8Array([0xff, 0xfe, 0x80]);
    const ino = await h.file(latin1, "latin1");
    await h.mkdir(invalid);
    expect((await h.lookup(latin1)).ino).toBe(ino);
    expect(await h.content(ino)).toBe("latin1");
    const names = (await h.readdirAll()).map((e) => [...e.name].join(","));
    expect(names).toContain([...latin1].join(","));
    expect(names).toContain([...invalid].join(","));
    // The UTF-8 spelling of the same text is another name.
    await expectErrno(() => h.lookup("café"), "ENOENT");
  });

  it("tells names apart that differ only in case or trailing bytes", async () => {
    const { h } = env();
    await h.file("name", "1");
    await h.file("Name", "2");
    await h.file("name ", "3");
    expect(await h.content((await h.lookup("Name")).ino)).toBe("2");
    expect(await h.content((await h.lookup("name ")).ino)).toBe("3");
  });

  it("creates symlinks and reads their targets back as bytes", async () => {
    const { h } = env();
    const link = await h.symlink("../some/where", "l");
    expect(link.attr.mode).toBe(S.IFLNK | 0o777);
    expect(link.attr.size).toBe(13);
    expect(bytesToString(await h.fs.readlink(ROOT, link.ino))).toBe("../some/where");
    const raw = new Uint8Array([0x2f, 0xff, 0x00 + 0x41]);
    const other = await h.symlink(raw, "raw");
    expect(await h.fs.readlink(ROOT, other.ino)).toEqual(raw);
    expect((await h.lookup("l")).attr.mode & S.IFMT).toBe(S.IFLNK);
  });

  it("stores a dangling or absolute symlink without resolving it", async () => {
    const { h } = env();
    const abs = await h.symlink("/etc/passwd", "abs");
    expect(bytesToString(await h.fs.readlink(ROOT, abs.ino))).toBe("/etc/passwd");
    const dots = await h.symlink("../../../../..", "up");
    expect(bytesToString(await h.fs.readlink(ROOT, dots.ino))).toBe("../../../../..");
  });

  it("refuses readlink of a non-symlink with EINVAL", async () => {
    const { h } = env();
    const ino = await h.file("f");
    await expectErrno(() => h.fs.readlink(ROOT, ino), "EINVAL");
    await expectErrno(() => h.fs.readlink(ROOT, ROOT_INO), "EINVAL");
  });

  it("refuses to create over an existing name with EEXIST", async () => {
    const { h } = env();
    await h.file("f");
    await h.mkdir("d");
    await expectErrno(() => h.symlink("x", "f"), "EEXIST");
    await expectErrno(() => h.mkdir("f"), "EEXIST");
    await expectErrno(() => h.mkdir("d"), "EEXIST");
    await expectErrno(() => h.create("d", 0o644, ROOT_INO, O.RDWR | O.CREAT | O.EXCL), "EEXIST");
    await expectErrno(() => h.create("f", 0o644, ROOT_INO, O.RDWR | O.CREAT | O.EXCL), "EEXIST");
  });

  if (caps.specialFiles) {
    it("creates FIFOs and sockets", async () => {
      const { h, fs } = env();
      const fifo = await fs.mknod(ROOT, ROOT_INO, n("fifo"), S.IFIFO | 0o640, 0, 0);
      const sock = await fs.mknod(ROOT, ROOT_INO, n("sock"), S.IFSOCK | 0o755, 0, 0);
      expect(fifo.attr.mode).toBe(S.IFIFO | 0o640);
      expect(sock.attr.mode).toBe(S.IFSOCK | 0o755);
      expect((await h.lookup("fifo")).attr.mode & S.IFMT).toBe(S.IFIFO);
      const types = Object.fromEntries((await h.readdirAll()).map((e) => [bytesToString(e.name), e.type]));
      expect(types.fifo).toBe(DT.FIFO);
      expect(types.sock).toBe(DT.SOCK);
    });

    it("creates character and block devices with their device numbers", async () => {
      const { h, fs } = env();
      const nul = await fs.mknod(ROOT, ROOT_INO, n("null"), S.IFCHR | 0o666, makedev(1, 3), 0);
      const disk = await fs.mknod(ROOT, ROOT_INO, n("sda"), S.IFBLK | 0o660, makedev(8, 0), 0);
      expect(nul.attr).toMatchObject({ mode: S.IFCHR | 0o666, rdev: makedev(1, 3) });
      expect(disk.attr).toMatchObject({ mode: S.IFBLK | 0o660, rdev: makedev(8, 0) });
      expect((await h.getattr(nul.ino)).rdev).toBe(makedev(1, 3));
      const types = Object.fromEntries((await h.readdirAll()).map((e) => [bytesToString(e.name), e.type]));
      expect(types.null).toBe(DT.CHR);
      expect(types.sda).toBe(DT.BLK);
    });

    it("creates regular files with mknod", async () => {
      const { h, fs } = env();
      const entry = await fs.mknod(ROOT, ROOT_INO, n("plain"), S.IFREG | 0o600, 0, 0);
      expect(entry.attr).toMatchObject({ mode: S.IFREG | 0o600, size: 0 });
      expect(await h.content(entry.ino)).toBe("");
    });

    it("applies the umask to mknod", async () => {
      const { fs } = env();
      const entry = await fs.mknod(ROOT, ROOT_INO, n("fifo"), S.IFIFO | 0o666, 0, 0o027);
      expect(entry.attr.mode).toBe(S.IFIFO | 0o640);
    });

    it("refuses mknod over an existing name", async () => {
      const { h, fs } = env();
      await h.file("f");
      await expectErrno(() => fs.mknod(ROOT, ROOT_INO, n("f"), S.IFIFO | 0o644, 0, 0), "EEXIST");
    });
  }

  if (caps.hardLinks) {
    it("hard-links a file: one inode, nlink counted, data shared", async () => {
      const { h, fs } = env();
      const ino = await h.file("a", "shared");
      const dir = await h.mkdir("d");
      const link = await fs.link(ROOT, ino, dir.ino, n("b"));
      expect(link.ino).toBe(ino);
      expect(link.attr.nlink).toBe(2);
      expect((await h.lookup("b", dir.ino)).ino).toBe(ino);
      const fh = await h.open(ino, O.WRONLY);
      await h.write(ino, fh, "SHARED");
      await h.release(ino, fh, O.WRONLY);
      expect(await h.content((await h.lookup("b", dir.ino)).ino)).toBe("SHARED");
      await h.unlink("a");
      expect((await h.getattr(ino)).nlink).toBe(1);
      expect(await h.content(ino)).toBe("SHARED");
    });

    it("refuses to hard-link a directory with EPERM", async () => {
      const { h, fs } = env();
      const dir = await h.mkdir("d");
      await expectErrno(() => fs.link(ROOT, dir.ino, ROOT_INO, n("d2")), "EPERM");
    });

    it("refuses a link over an existing name with EEXIST", async () => {
      const { h, fs } = env();
      const a = await h.file("a");
      await h.file("b");
      await expectErrno(() => fs.link(ROOT, a, ROOT_INO, n("b")), "EEXIST");
    });

    it("hard-links symlinks and special files too", async () => {
      const { h, fs } = env();
      const link = await h.symlink("target", "l");
      const again = await fs.link(ROOT, link.ino, ROOT_INO, n("l2"));
      expect(again.attr.nlink).toBe(2);
      expect(bytesToString(await fs.readlink(ROOT, again.ino))).toBe("target");
    });
  }

  it("reports filesystem statistics", async () => {
    const { fs } = env();
    const st = await fs.statfs(ROOT, ROOT_INO);
    expect(st.bsize).toBeGreaterThan(0);
    expect(st.namelen).toBe(255);
    expect(st.bfree).toBeLessThanOrEqual(st.blocks);
    expect(st.bavail).toBeLessThanOrEqual(st.blocks);
    expect(st.ffree).toBeLessThanOrEqual(st.files);
    for (const v of Object.values(st)) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
  });

  it("answers access() for root as the kernel does", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "", 0o000);
    await fs.access(ROOT, ino, ACCESS.F_OK);
    await fs.access(ROOT, ino, ACCESS.R_OK | ACCESS.W_OK);
    await expectErrno(() => fs.access(ROOT, ino, ACCESS.X_OK), "EACCES");
    const exe = await h.file("x", "", 0o100);
    await fs.access(ROOT, exe, ACCESS.X_OK);
    await fs.access(ROOT, ROOT_INO, ACCESS.X_OK);
  });
};
