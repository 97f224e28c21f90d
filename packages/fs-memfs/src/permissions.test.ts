// Tests run as root; these act as other users through their Context.
import { ACCESS, O, RENAME, ROOT_INO, S, setattrRequest } from "@msb/fs";
import { describe, expect, it } from "vitest";
import { ALICE, BOB, Fixture, ROOT, errno, n } from "./memfs.fixture.js";

/** A MemFs with a world-writable sticky /tmp, a private dir of ALICE's and a file of hers. */
function world(): { t: Fixture; tmp: number; home: number; file: number } {
  const t = new Fixture();
  const tmp = t.mkdir("tmp", ROOT_INO, 0o1777);
  const home = t.mkdir("home", ROOT_INO, 0o700);
  t.fs.setattr(ROOT, home, setattrRequest({ uid: ALICE.uid, gid: ALICE.gid }));
  const file = t.fs.create(ALICE, home, n("notes"), S.IFREG | 0o600, O.RDWR, 0);
  t.fs.release(ALICE, file.entry.ino, file.fh, 0);
  return { t, tmp, home, file: file.entry.ino };
}

describe("MemFs permissions", () => {
  it("needs search permission to look up and write permission to add or remove names", () => {
    const { t, home } = world();
    expect(errno(() => t.fs.lookup(BOB, home, n("notes")))).toBe("EACCES");
    expect(errno(() => t.fs.mkdir(BOB, home, n("x"), S.IFDIR | 0o755, 0))).toBe("EACCES");
    expect(errno(() => t.fs.create(BOB, ROOT_INO, n("x"), S.IFREG | 0o644, O.RDWR, 0))).toBe("EACCES");
    expect(errno(() => t.fs.unlink(BOB, home, n("notes")))).toBe("EACCES");
    expect(errno(() => t.fs.rename(BOB, home, n("notes"), ROOT_INO, n("stolen"), 0))).toBe("EACCES");
    expect(t.fs.lookup(ALICE, home, n("notes")).attr.uid).toBe(ALICE.uid);
    expect(t.fs.lookup(ROOT, home, n("notes")).attr.uid).toBe(ALICE.uid);
  });

  it("lets only owners remove entries of a sticky directory", () => {
    const { t, tmp } = world();
    const mine = t.fs.create(ALICE, tmp, n("mine"), S.IFREG | 0o666, O.RDWR, 0);
    t.fs.release(ALICE, mine.entry.ino, mine.fh, 0);
    expect(errno(() => t.fs.unlink(BOB, tmp, n("mine")))).toBe("EPERM");
    expect(errno(() => t.fs.rename(BOB, tmp, n("mine"), tmp, n("bobs"), 0))).toBe("EPERM");
    const bobs = t.fs.create(BOB, tmp, n("bobs"), S.IFREG | 0o666, O.RDWR, 0);
    t.fs.release(BOB, bobs.entry.ino, bobs.fh, 0);
    expect(errno(() => t.fs.rename(ALICE, tmp, n("mine"), tmp, n("bobs"), 0))).toBe("EPERM");
    t.fs.unlink(ALICE, tmp, n("mine"));
    t.fs.unlink(ROOT, tmp, n("bobs"));
  });

  it("checks read and write access on open, and write access for O_TRUNC", () => {
    const { t, home, file } = world();
    t.fs.setattr(ROOT, home, setattrRequest({ mode: 0o755 }));
    t.fs.setattr(ROOT, file, setattrRequest({ mode: 0o604 }));
    t.fs.release(BOB, file, t.fs.open(BOB, file, O.RDONLY).fh, 0);
    expect(errno(() => t.fs.open(BOB, file, O.WRONLY))).toBe("EACCES");
    expect(errno(() => t.fs.open(BOB, file, O.RDONLY | O.TRUNC))).toBe("EACCES");
    t.fs.releasedir(BOB, ROOT_INO, t.fs.opendir(BOB, ROOT_INO, O.RDONLY).fh, 0);
    t.fs.setattr(ROOT, ROOT_INO, setattrRequest({ mode: 0o711 }));
    expect(errno(() => t.fs.opendir(BOB, ROOT_INO, O.RDONLY))).toBe("EACCES");
  });

  it("answers access() by mode bits, with root passing all but execute of non-executables", () => {
    const { t, file } = world();
    t.fs.access(ALICE, file, ACCESS.R_OK | ACCESS.W_OK);
    expect(errno(() => t.fs.access(ALICE, file, ACCESS.X_OK))).toBe("EACCES");
    expect(errno(() => t.fs.access(BOB, file, ACCESS.R_OK))).toBe("EACCES");
    t.fs.access(BOB, file, ACCESS.F_OK);
    t.fs.access(ROOT, file, ACCESS.R_OK | ACCESS.W_OK);
    expect(errno(() => t.fs.access(ROOT, file, ACCESS.X_OK))).toBe("EACCES");
    expect(errno(() => t.fs.access(ROOT, file, 8))).toBe("EINVAL");
  });

  it("creates files owned by the caller, inheriting a setgid directory's group", () => {
    const { t, tmp } = world();
    t.fs.setattr(ROOT, tmp, setattrRequest({ gid: 500, mode: 0o3777 }));
    const file = t.fs.create(ALICE, tmp, n("f"), S.IFREG | 0o666, O.RDWR, 0o022).entry.attr;
    expect(file).toMatchObject({ uid: ALICE.uid, gid: 500, mode: S.IFREG | 0o644 });
    const dir = t.fs.mkdir(ALICE, tmp, n("d"), S.IFDIR | 0o777, 0o022).attr;
    expect(dir).toMatchObject({ uid: ALICE.uid, gid: 500, mode: S.IFDIR | 0o2755 });
  });

  it("applies the kernel's setattr rules: chmod by the owner, chown by root", () => {
    const { t, file } = world();
    expect(errno(() => t.fs.setattr(BOB, file, setattrRequest({ mode: 0o777 })))).toBe("EPERM");
    expect(errno(() => t.fs.setattr(ALICE, file, setattrRequest({ uid: BOB.uid })))).toBe("EPERM");
    expect(errno(() => t.fs.setattr(BOB, file, setattrRequest({ size: 0 })))).toBe("EACCES");
    expect(t.fs.setattr(ALICE, file, setattrRequest({ mode: 0o640 })).mode).toBe(S.IFREG | 0o640);
    expect(t.fs.setattr(ROOT, file, setattrRequest({ uid: BOB.uid })).uid).toBe(BOB.uid);
  });

  it("truncates through a handle open for writing without write permission (ftruncate)", () => {
    const t = new Fixture({ rootMode: 0o777 });
    // A file created read-only still opens read-write for its creator (FMODE_CREATED).
    const created = t.fs.create(ALICE, ROOT_INO, n("g"), S.IFREG | 0o444, O.RDWR, 0);
    const { ino } = created.entry;
    expect(created.entry.attr.mode).toBe(S.IFREG | 0o444);
    t.fs.write(ALICE, ino, created.fh, n("data"), 0, 0);
    expect(errno(() => t.fs.setattr(ALICE, ino, setattrRequest({ size: 1 })))).toBe("EACCES");
    expect(t.fs.setattr(ALICE, ino, setattrRequest({ size: 1, fh: created.fh })).size).toBe(1);
    expect(errno(() => t.fs.open(ALICE, ino, O.RDWR))).toBe("EACCES");
  });

  it("keeps trusted xattrs from other users and user xattrs from those without access", () => {
    const { t, file } = world();
    t.fs.setxattr(ROOT, file, n("trusted.secret"), n("1"), 0);
    t.fs.setxattr(ALICE, file, n("user.note"), n("2"), 0);
    expect(errno(() => t.fs.getxattr(ALICE, file, n("trusted.secret")))).toBe("ENODATA");
    expect(errno(() => t.fs.setxattr(ALICE, file, n("trusted.x"), n("1"), 0))).toBe("EPERM");
    expect(errno(() => t.fs.getxattr(BOB, file, n("user.note")))).toBe("EACCES");
    expect(errno(() => t.fs.removexattr(BOB, file, n("user.note")))).toBe("EACCES");
    expect(errno(() => t.fs.setxattr(ALICE, file, n("system.posix_acl_access"), n("1"), 0))).toBe("EOPNOTSUPP");
  });

  it("keeps device nodes and whiteouts to root", () => {
    const { t, tmp } = world();
    expect(errno(() => t.fs.mknod(ALICE, tmp, n("disk"), S.IFBLK | 0o600, 0x800, 0))).toBe("EPERM");
    expect(t.fs.mknod(ALICE, tmp, n("fifo"), S.IFIFO | 0o600, 0, 0).attr.uid).toBe(ALICE.uid);
    expect(errno(() => t.fs.mknod(ALICE, tmp, n("d"), S.IFDIR | 0o700, 0, 0))).toBe("EPERM");
    expect(errno(() => t.fs.rename(ALICE, tmp, n("fifo"), tmp, n("moved"), RENAME.WHITEOUT))).toBe("EPERM");
  });

  it("needs write access to a directory it moves to another parent (its .. changes)", () => {
    const { t, tmp } = world();
    const dir = t.fs.mkdir(ALICE, tmp, n("ro"), S.IFDIR | 0o555, 0).ino;
    const dest = t.fs.mkdir(ALICE, tmp, n("dest"), S.IFDIR | 0o755, 0).ino;
    expect(errno(() => t.fs.rename(ALICE, tmp, n("ro"), dest, n("ro"), 0))).toBe("EACCES");
    t.fs.rename(ALICE, tmp, n("ro"), tmp, n("renamed"), 0);
    expect(t.fs.lookup(ALICE, tmp, n("renamed")).ino).toBe(dir);
  });
});
