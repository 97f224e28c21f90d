import { expect, it } from "vitest";
import { ACCESS, O, RENAME, ROOT_INO, S } from "../../constants.js";
import { setattrRequest } from "../../setattr.js";
import { ALICE, BOB, ROOT, expectErrno, n } from "../harness.js";
import type { Suite } from "../index.js";

/** Non-root callers: permission bits, sticky directories, setgid inheritance, privilege dropping. */
export const permissionSuite: Suite = (env, caps) => {
  if (!caps.permissions) return;

  /** A world-writable directory owned by root, for unprivileged callers to work in. */
  async function shared(mode = 0o777): Promise<number> {
    const { h, fs } = env();
    const d = await h.mkdir("shared");
    await fs.setattr(ROOT, d.ino, setattrRequest({ mode }));
    return d.ino;
  }

  it("creates files owned by the caller", async () => {
    const { h } = env();
    const dir = await shared();
    const { entry } = await h.as(ALICE).create("mine", 0o644, dir);
    expect(entry.attr).toMatchObject({ uid: ALICE.uid, gid: ALICE.gid });
    const d = await h.as(BOB).mkdir("bobs", 0o755, dir);
    expect(d.attr).toMatchObject({ uid: BOB.uid, gid: BOB.gid });
  });

  it("needs search permission on a directory to look up in it (EACCES)", async () => {
    const { h, fs } = env();
    const d = await h.mkdir("private", 0o700);
    await h.file("f", "", 0o644, d.ino);
    await expectErrno(() => h.as(ALICE).lookup("f", d.ino), "EACCES");
    await fs.setattr(ROOT, d.ino, setattrRequest({ mode: 0o711 }));
    expect((await h.as(ALICE).lookup("f", d.ino)).attr.mode & S.IFMT).toBe(S.IFREG);
  });

  it("needs read permission to list a directory (EACCES)", async () => {
    const { h, fs } = env();
    const d = await h.mkdir("noread", 0o711);
    await expectErrno(() => fs.opendir(ALICE, d.ino, O.RDONLY), "EACCES");
  });

  it("needs write and search permission on the parent to create or remove (EACCES)", async () => {
    const { h, fs } = env();
    const d = await h.mkdir("ro", 0o755);
    await h.file("f", "", 0o666, d.ino);
    const alice = h.as(ALICE);
    await expectErrno(() => alice.create("x", 0o644, d.ino), "EACCES");
    await expectErrno(() => alice.mkdir("x", 0o755, d.ino), "EACCES");
    await expectErrno(() => alice.symlink("t", "x", d.ino), "EACCES");
    await expectErrno(() => alice.unlink("f", d.ino), "EACCES");
    await expectErrno(() => alice.rename("f", "g", 0, d.ino), "EACCES");
    if (caps.specialFiles) await expectErrno(() => fs.mknod(ALICE, d.ino, n("p"), S.IFIFO | 0o644, 0, 0), "EACCES");
    const fileIno = (await h.lookup("f", d.ino)).ino;
    if (caps.hardLinks) await expectErrno(() => fs.link(ALICE, fileIno, d.ino, n("l")), "EACCES");
  });

  it("checks read and write permission on open by the owner, group and other classes", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "data", 0o640);
    await fs.setattr(ROOT, ino, setattrRequest({ uid: ALICE.uid, gid: 3000 }));
    // ALICE owns it: rw.
    const fh = await h.as(ALICE).open(ino, O.RDWR);
    await h.as(ALICE).release(ino, fh);
    // BOB is other: nothing.
    await expectErrno(() => h.as(BOB).open(ino, O.RDONLY), "EACCES");
    // A member of group 3000 may read, not write.
    const member = { uid: 4000, gid: 4000, pid: 9, groups: [3000] };
    const ro = await h.as(member).open(ino, O.RDONLY);
    await h.as(member).release(ino, ro, O.RDONLY);
    await expectErrno(() => h.as(member).open(ino, O.WRONLY), "EACCES");
    await expectErrno(() => h.as(member).open(ino, O.RDONLY | O.TRUNC), "EACCES");
  });

  it("uses the owner class even when it grants less than others get", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "", 0o077);
    await fs.setattr(ROOT, ino, setattrRequest({ uid: ALICE.uid, gid: ALICE.gid }));
    await expectErrno(() => h.as(ALICE).open(ino, O.RDONLY), "EACCES");
    const fh = await h.as(BOB).open(ino, O.RDONLY);
    await h.as(BOB).release(ino, fh, O.RDONLY);
  });

  it("answers access() per class, and X_OK for root only with an execute bit", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "", 0o754);
    await fs.setattr(ROOT, ino, setattrRequest({ uid: ALICE.uid, gid: 3000 }));
    await fs.access(ALICE, ino, ACCESS.R_OK | ACCESS.W_OK | ACCESS.X_OK);
    const member = { uid: 4000, gid: 3000, pid: 9 };
    await fs.access(member, ino, ACCESS.R_OK | ACCESS.X_OK);
    await expectErrno(() => fs.access(member, ino, ACCESS.W_OK), "EACCES");
    await fs.access(BOB, ino, ACCESS.R_OK);
    await expectErrno(() => fs.access(BOB, ino, ACCESS.X_OK), "EACCES");
    await fs.access(BOB, ino, ACCESS.F_OK);
  });

  it("lets only the owner or root chmod (EPERM)", async () => {
    const { h, fs } = env();
    const dir = await shared();
    const { ino } = await h.as(ALICE).create("f", 0o644, dir);
    expect((await fs.setattr(ALICE, ino, setattrRequest({ mode: 0o600 }))).mode).toBe(S.IFREG | 0o600);
    await expectErrno(() => fs.setattr(BOB, ino, setattrRequest({ mode: 0o777 })), "EPERM");
  });

  it("drops setgid when the owner chmods outside the file's group", async () => {
    const { h, fs } = env();
    const dir = await shared();
    const { ino } = await h.as(ALICE).create("f", 0o644, dir);
    await fs.setattr(ROOT, ino, setattrRequest({ gid: 9999 }));
    expect((await fs.setattr(ALICE, ino, setattrRequest({ mode: 0o2755 }))).mode).toBe(S.IFREG | 0o755);
    await fs.setattr(ROOT, ino, setattrRequest({ gid: 3000 }));
    expect((await fs.setattr(ALICE, ino, setattrRequest({ mode: 0o2755 }))).mode).toBe(S.IFREG | 0o2755);
  });

  it("lets only root give files away; owners may change the group to one of theirs", async () => {
    const { h, fs } = env();
    const dir = await shared();
    const { ino } = await h.as(ALICE).create("f", 0o644, dir);
    await expectErrno(() => fs.setattr(ALICE, ino, setattrRequest({ uid: BOB.uid })), "EPERM");
    await expectErrno(() => fs.setattr(ALICE, ino, setattrRequest({ gid: BOB.gid })), "EPERM");
    await expectErrno(() => fs.setattr(BOB, ino, setattrRequest({ gid: BOB.gid })), "EPERM");
    expect((await fs.setattr(ALICE, ino, setattrRequest({ gid: 3000 }))).gid).toBe(3000);
    expect((await fs.setattr(ALICE, ino, setattrRequest({ uid: ALICE.uid }))).uid).toBe(ALICE.uid);
  });

  it("lets only the owner set explicit times; writers may set them to now", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "", 0o666);
    const t = { sec: 5, nsec: 0 };
    await expectErrno(() => fs.setattr(ALICE, ino, setattrRequest({ mtime: t })), "EPERM");
    const now = await fs.setattr(ALICE, ino, setattrRequest({ atime: "now", mtime: "now" }));
    expect(now.mtime.sec).toBeGreaterThan(5);
    const ro = await h.file("g", "", 0o644);
    await expectErrno(() => fs.setattr(ALICE, ro, setattrRequest({ mtime: "now" })), "EACCES");
  });

  it("needs write permission to truncate by name (EACCES)", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "abc", 0o644);
    await expectErrno(() => fs.setattr(ALICE, ino, setattrRequest({ size: 0 })), "EACCES");
    const open = await h.file("g", "abc", 0o666);
    expect((await fs.setattr(ALICE, open, setattrRequest({ size: 1 }))).size).toBe(1);
  });

  it("clears setuid and group-exec setgid when a non-root user writes", async () => {
    const { h } = env();
    const ino = await h.file("f", "", 0o6777);
    const fh = await h.as(ALICE).open(ino, O.WRONLY);
    await h.as(ALICE).write(ino, fh, "x");
    await h.as(ALICE).release(ino, fh, O.WRONLY);
    expect((await h.getattr(ino)).mode).toBe(S.IFREG | 0o777);
  });

  it("keeps setuid when root writes", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("f", 0o4755);
    await h.write(ino, fh, "x");
    expect((await h.getattr(ino)).mode).toBe(S.IFREG | 0o4755);
  });

  it("clears setuid when a non-root user truncates", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "abc", 0o4777);
    await fs.setattr(ALICE, ino, setattrRequest({ size: 0 }));
    expect((await h.getattr(ino)).mode).toBe(S.IFREG | 0o777);
  });

  it("clears setuid and setgid on chown of an executable", async () => {
    const { h, fs } = env();
    const dir = await shared();
    const { ino } = await h.as(ALICE).create("f", 0o755, dir);
    await fs.setattr(ALICE, ino, setattrRequest({ mode: 0o6755 }));
    await fs.setattr(ALICE, ino, setattrRequest({ gid: 3000 }));
    expect((await h.getattr(ino)).mode & 0o7777).toBe(0o755);
  });

  it("restricts removal in a sticky directory to the entry's owner, the directory's owner and root", async () => {
    const { h, fs } = env();
    const tmp = await shared(0o1777);
    await h.as(ALICE).file("alices", "", 0o666, tmp);
    await h.as(ALICE).mkdir("alicedir", 0o777, tmp);
    await expectErrno(() => h.as(BOB).unlink("alices", tmp), "EPERM");
    await expectErrno(() => h.as(BOB).rmdir("alicedir", tmp), "EPERM");
    await expectErrno(() => h.as(BOB).rename("alices", "stolen", 0, tmp), "EPERM");
    await h.as(BOB).file("bobs", "", 0o666, tmp);
    await expectErrno(() => h.as(BOB).rename("bobs", "alices", 0, tmp), "EPERM");
    await h.as(ALICE).unlink("alices", tmp);
    await fs.unlink(ROOT, tmp, n("bobs"));
    await h.as(ALICE).rmdir("alicedir", tmp);
  });

  it("lets a non-owner remove from a non-sticky writable directory", async () => {
    const { h } = env();
    const dir = await shared(0o777);
    await h.as(ALICE).file("f", "", 0o600, dir);
    await h.as(BOB).unlink("f", dir);
  });

  it("needs write permission on a directory being moved to another parent (for ..)", async () => {
    const { h, fs } = env();
    const dir = await shared(0o777);
    const other = (await h.mkdir("other")).ino;
    await fs.setattr(ROOT, other, setattrRequest({ mode: 0o777 }));
    const moving = await h.as(ALICE).mkdir("moving", 0o755, dir);
    await fs.setattr(ROOT, moving.ino, setattrRequest({ mode: 0o555 }));
    await expectErrno(() => h.as(ALICE).rename("moving", "moved", 0, dir, other), "EACCES");
  });

  it("gives new entries the group of a setgid directory, and setgid to new subdirectories", async () => {
    const { h, fs } = env();
    const dir = await shared(0o777);
    await fs.setattr(ROOT, dir, setattrRequest({ gid: 3000, mode: 0o2777 }));
    const file = await h.as(BOB).create("f", 0o644, dir);
    expect(file.entry.attr).toMatchObject({ uid: BOB.uid, gid: 3000 });
    const sub = await h.as(BOB).mkdir("sub", 0o755, dir);
    expect(sub.attr).toMatchObject({ uid: BOB.uid, gid: 3000, mode: S.IFDIR | 0o2755 });
    const nested = await h.as(BOB).create("g", 0o644, sub.ino);
    expect(nested.entry.attr.gid).toBe(3000);
  });

  it("drops setgid from a group-executable file a non-member creates in a setgid directory", async () => {
    const { h, fs } = env();
    const dir = await shared(0o777);
    await fs.setattr(ROOT, dir, setattrRequest({ gid: 3000, mode: 0o2777 }));
    const bobs = await h.as(BOB).create("b", 0o2755, dir);
    expect(bobs.entry.attr.mode).toBe(S.IFREG | 0o755);
    const alices = await h.as(ALICE).create("a", 0o2755, dir);
    expect(alices.entry.attr.mode).toBe(S.IFREG | 0o2755);
  });

  it("lets no unprivileged user create device nodes", async () => {
    if (!caps.specialFiles) return;
    const { fs } = env();
    const dir = await shared();
    await expectErrno(() => fs.mknod(ALICE, dir, n("dev"), S.IFCHR | 0o666, 0x103, 0), "EPERM");
    const fifo = await fs.mknod(ALICE, dir, n("fifo"), S.IFIFO | 0o644, 0, 0);
    expect(fifo.attr.uid).toBe(ALICE.uid);
  });

  it("refuses RENAME_WHITEOUT to unprivileged users with EPERM", async () => {
    if (!caps.renameWhiteout) return;
    const { h } = env();
    const dir = await shared();
    await h.as(ALICE).file("a", "", 0o644, dir);
    await expectErrno(() => h.as(ALICE).rename("a", "b", RENAME.WHITEOUT, dir), "EPERM");
  });

  it("lets the root directory be searched by everyone by default", async () => {
    const { h } = env();
    await h.file("visible");
    expect((await h.as(BOB).lookup("visible", ROOT_INO)).attr.mode & S.IFMT).toBe(S.IFREG);
  });
};
