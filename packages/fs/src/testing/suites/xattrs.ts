import { expect, it } from "vitest";
import { ROOT_INO, S, XATTR } from "../../constants.js";
import { bytesToString } from "../../names.js";
import { setattrRequest } from "../../setattr.js";
import { ALICE, BOB, ROOT, expectErrno, n } from "../harness.js";
import type { Suite } from "../index.js";

const names = (list: Uint8Array[]): string[] => list.map(bytesToString).sort();

/** Extended attributes: flags, errors, namespaces, listing, permissions. */
export const xattrSuite: Suite = (env, caps) => {
  if (!caps.xattrs) {
    it("says EOPNOTSUPP for xattrs it does not support", async () => {
      const { h, fs } = env();
      const ino = await h.file("f");
      await expectErrno(() => fs.setxattr(ROOT, ino, n("user.a"), n("v"), 0), "EOPNOTSUPP");
    });
    return;
  }

  it("sets, gets, lists and removes a user xattr", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await fs.setxattr(ROOT, ino, n("user.color"), n("blue"), 0);
    expect(bytesToString(await fs.getxattr(ROOT, ino, n("user.color")))).toBe("blue");
    expect(names(await fs.listxattr(ROOT, ino))).toContain("user.color");
    await fs.removexattr(ROOT, ino, n("user.color"));
    await expectErrno(() => fs.getxattr(ROOT, ino, n("user.color")), "ENODATA");
    expect(names(await fs.listxattr(ROOT, ino))).not.toContain("user.color");
  });

  it("answers ENODATA for a missing xattr on get and remove", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await expectErrno(() => fs.getxattr(ROOT, ino, n("user.none")), "ENODATA");
    await expectErrno(() => fs.removexattr(ROOT, ino, n("user.none")), "ENODATA");
  });

  it("honours XATTR_CREATE and XATTR_REPLACE", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user.a"), n("1"), XATTR.REPLACE), "ENODATA");
    await fs.setxattr(ROOT, ino, n("user.a"), n("1"), XATTR.CREATE);
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user.a"), n("2"), XATTR.CREATE), "EEXIST");
    expect(bytesToString(await fs.getxattr(ROOT, ino, n("user.a")))).toBe("1");
    await fs.setxattr(ROOT, ino, n("user.a"), n("3"), XATTR.REPLACE);
    await fs.setxattr(ROOT, ino, n("user.a"), n("4"), 0);
    expect(bytesToString(await fs.getxattr(ROOT, ino, n("user.a")))).toBe("4");
  });

  it("applies both flags together as Linux does: ENODATA when missing, EEXIST when present", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user.a"), n("1"), XATTR.CREATE | XATTR.REPLACE), "ENODATA");
    await fs.setxattr(ROOT, ino, n("user.a"), n("1"), 0);
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user.a"), n("2"), XATTR.CREATE | XATTR.REPLACE), "EEXIST");
  });

  it("refuses unknown flags with EINVAL", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user.a"), n("1"), 0x10), "EINVAL");
  });

  it("refuses a bare namespace prefix such as user. with EINVAL", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user."), n("1"), 0), "EINVAL");
  });

  it("stores empty values and binary values byte for byte", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    const binary = new Uint8Array(256).map((_, i) => i);
    await fs.setxattr(ROOT, ino, n("user.empty"), new Uint8Array(0), 0);
    await fs.setxattr(ROOT, ino, n("user.bin"), binary, 0);
    expect((await fs.getxattr(ROOT, ino, n("user.empty"))).length).toBe(0);
    expect(await fs.getxattr(ROOT, ino, n("user.bin"))).toEqual(binary);
  });

  it("keeps a copy: changing the caller's buffer afterwards changes nothing", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    const value = n("original");
    await fs.setxattr(ROOT, ino, n("user.a"), value, 0);
    value.fill(0x21);
    expect(bytesToString(await fs.getxattr(ROOT, ino, n("user.a")))).toBe("original");
  });

  const largest = caps.largeXattrValues ? 65536 : 3072;
  it(`accepts a ${largest / 1024} KiB value and refuses a larger one with E2BIG${caps.largeXattrValues ? "" : " (64 KiB: ENOSPC)"}`, async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await fs.setxattr(ROOT, ino, n("user.big"), new Uint8Array(largest).fill(7), 0);
    expect((await fs.getxattr(ROOT, ino, n("user.big"))).length).toBe(largest);
    if (!caps.largeXattrValues) await expectErrno(() => fs.setxattr(ROOT, ino, n("user.big"), new Uint8Array(65536), 0), "ENOSPC");
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user.huge"), new Uint8Array(65537), 0), ["E2BIG", "ENOSPC"]);
  }, 20_000);

  it("refuses names without a known namespace (EOPNOTSUPP) and bad lengths (ERANGE)", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await expectErrno(() => fs.setxattr(ROOT, ino, n("nonamespace"), n("v"), 0), "EOPNOTSUPP");
    await expectErrno(() => fs.getxattr(ROOT, ino, n("bogus.name")), "EOPNOTSUPP");
    await expectErrno(() => fs.setxattr(ROOT, ino, n("user." + "a".repeat(251)), n("v"), 0), "ERANGE");
    await expectErrno(() => fs.getxattr(ROOT, ino, new Uint8Array(0)), "ERANGE");
  });

  it("lists several xattrs, each once", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    for (const k of ["a", "b", "c"]) await fs.setxattr(ROOT, ino, n(`user.${k}`), n(k), 0);
    await fs.setxattr(ROOT, ino, n("user.a"), n("again"), 0);
    const listed = names(await fs.listxattr(ROOT, ino)).filter((x) => x.startsWith("user."));
    expect(listed).toEqual(["user.a", "user.b", "user.c"]);
  });

  it("keeps xattrs per inode, shared by hard links", async () => {
    const { h, fs } = env();
    const a = await h.file("a");
    const b = await h.file("b");
    await fs.setxattr(ROOT, a, n("user.k"), n("a"), 0);
    await expectErrno(() => fs.getxattr(ROOT, b, n("user.k")), "ENODATA");
    if (caps.hardLinks) {
      const link = await fs.link(ROOT, a, ROOT_INO, n("c"));
      expect(bytesToString(await fs.getxattr(ROOT, link.ino, n("user.k")))).toBe("a");
    }
  });

  it("sets xattrs on directories", async () => {
    const { h, fs } = env();
    const d = await h.mkdir("d");
    await fs.setxattr(ROOT, d.ino, n("user.dir"), n("yes"), 0);
    expect(bytesToString(await fs.getxattr(ROOT, d.ino, n("user.dir")))).toBe("yes");
  });

  it("refuses user xattrs on symlinks (EPERM to set, ENODATA to get)", async () => {
    const { h, fs } = env();
    const link = await h.symlink("t", "l");
    await expectErrno(() => fs.setxattr(ROOT, link.ino, n("user.a"), n("v"), 0), "EPERM");
    await expectErrno(() => fs.getxattr(ROOT, link.ino, n("user.a")), "ENODATA");
  });

  if (caps.specialFiles) {
    it("refuses user xattrs on FIFOs and devices", async () => {
      const { fs } = env();
      const fifo = await fs.mknod(ROOT, ROOT_INO, n("p"), S.IFIFO | 0o666, 0, 0);
      await expectErrno(() => fs.setxattr(ROOT, fifo.ino, n("user.a"), n("v"), 0), "EPERM");
    });
  }

  it("lets root use trusted xattrs and hides them from others", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "", 0o666);
    await fs.setxattr(ROOT, ino, n("trusted.secret"), n("s"), 0);
    await fs.setxattr(ROOT, ino, n("user.public"), n("p"), 0);
    expect(bytesToString(await fs.getxattr(ROOT, ino, n("trusted.secret")))).toBe("s");
    expect(names(await fs.listxattr(ROOT, ino))).toEqual(expect.arrayContaining(["trusted.secret", "user.public"]));
    if (caps.permissions) {
      expect(names(await fs.listxattr(ALICE, ino))).not.toContain("trusted.secret");
      expect(names(await fs.listxattr(ALICE, ino))).toContain("user.public");
      await expectErrno(() => fs.getxattr(ALICE, ino, n("trusted.secret")), "ENODATA");
      await expectErrno(() => fs.setxattr(ALICE, ino, n("trusted.x"), n("v"), 0), "EPERM");
    }
  });

  if (caps.permissions) {
    it("needs write permission to set and read permission to get user xattrs", async () => {
      const { h, fs } = env();
      const ino = await h.file("f", "", 0o644);
      await fs.setxattr(ROOT, ino, n("user.a"), n("v"), 0);
      await expectErrno(() => fs.setxattr(BOB, ino, n("user.a"), n("w"), 0), "EACCES");
      await expectErrno(() => fs.removexattr(BOB, ino, n("user.a")), "EACCES");
      expect(bytesToString(await fs.getxattr(BOB, ino, n("user.a")))).toBe("v");
      const secret = await h.file("s", "", 0o600);
      await fs.setxattr(ROOT, secret, n("user.a"), n("v"), 0);
      await expectErrno(() => fs.getxattr(BOB, secret, n("user.a")), "EACCES");
    });

    it("lets only the owner or root change user xattrs of a sticky directory (EPERM)", async () => {
      const { h, fs } = env();
      const shared = (await h.mkdir("shared", 0o1777)).ino;
      await fs.setattr(ROOT, shared, setattrRequest({ uid: ALICE.uid, gid: ALICE.gid }));
      await expectErrno(() => fs.setxattr(BOB, shared, n("user.a"), n("v"), 0), "EPERM");
      await fs.setxattr(ALICE, shared, n("user.a"), n("v"), 0);
      await expectErrno(() => fs.removexattr(BOB, shared, n("user.a")), "EPERM");
      // Reading needs only read permission, as on any directory.
      expect(bytesToString(await fs.getxattr(BOB, shared, n("user.a")))).toBe("v");
      await fs.setxattr(ROOT, shared, n("user.a"), n("w"), 0);
      await fs.removexattr(ALICE, shared, n("user.a"));
    });
  }

  it("moves ctime on setxattr and removexattr", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    const before = (await h.getattr(ino)).ctime;
    await new Promise((r) => setTimeout(r, 15));
    await fs.setxattr(ROOT, ino, n("user.a"), n("v"), 0);
    const mid = (await h.getattr(ino)).ctime;
    expect(mid.sec * 1e9 + mid.nsec).toBeGreaterThan(before.sec * 1e9 + before.nsec);
    await new Promise((r) => setTimeout(r, 15));
    await fs.removexattr(ROOT, ino, n("user.a"));
    const after = (await h.getattr(ino)).ctime;
    expect(after.sec * 1e9 + after.nsec).toBeGreaterThan(mid.sec * 1e9 + mid.nsec);
  });
};
