import { expect, it } from "vitest";
import { ROOT_INO, S } from "../../constants.js";
import { setattrRequest } from "../../setattr.js";
import type { Attr, Timespec } from "../../types.js";
import { ROOT, expectErrno, n, notBefore, tick } from "../harness.js";
import type { Suite, SuiteEnv } from "../index.js";

const OLD: Timespec = { sec: 1_000_000_000, nsec: 0 };
const later = (a: Timespec, b: Timespec): boolean => a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);

/**
 * Sets the mtime of `inos` to a fixed old value, waits, runs `op`, and returns
 * the attributes before and after, so a test sees which times `op` moved.
 */
async function around(env: SuiteEnv, inos: readonly number[], op: () => Promise<unknown>): Promise<{ before: Attr[]; after: Attr[] }> {
  const { fs } = env;
  for (const ino of inos) await fs.setattr(ROOT, ino, setattrRequest({ atime: OLD, mtime: OLD }));
  const before = await Promise.all(inos.map(async (ino) => fs.getattr(ROOT, ino)));
  await tick();
  await op();
  const after = await Promise.all(inos.map(async (ino) => fs.getattr(ROOT, ino)));
  return { before, after };
}

/** setattr in all its forms, and which times each operation moves. */
export const attributeSuite: Suite = (env, caps) => {
  it("changes the permission bits and keeps the type", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    const attr = await fs.setattr(ROOT, ino, setattrRequest({ mode: 0o4750 }));
    expect(attr.mode).toBe(S.IFREG | 0o4750);
    expect((await h.getattr(ino)).mode).toBe(S.IFREG | 0o4750);
    const dir = await h.mkdir("d");
    expect((await fs.setattr(ROOT, dir.ino, setattrRequest({ mode: 0o1777 }))).mode).toBe(S.IFDIR | 0o1777);
  });

  it("changes owner and group, together or alone", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    expect(await fs.setattr(ROOT, ino, setattrRequest({ uid: 1000, gid: 2000 }))).toMatchObject({ uid: 1000, gid: 2000 });
    expect(await fs.setattr(ROOT, ino, setattrRequest({ gid: 3000 }))).toMatchObject({ uid: 1000, gid: 3000 });
    expect(await fs.setattr(ROOT, ino, setattrRequest({ uid: 4000 }))).toMatchObject({ uid: 4000, gid: 3000 });
    expect(await h.getattr(ino)).toMatchObject({ uid: 4000, gid: 3000 });
  });

  it("clears setuid and group-executable setgid on chown, even by root", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "", 0o6755);
    expect((await fs.setattr(ROOT, ino, setattrRequest({ uid: 1000 }))).mode).toBe(S.IFREG | 0o755);
    const keep = await h.file("g", "", 0o2644);
    expect((await fs.setattr(ROOT, keep, setattrRequest({ gid: 1000 }))).mode).toBe(S.IFREG | 0o2644);
    const dir = await h.mkdir("d", 0o755);
    // mkdir keeps no setgid bit of its own (vfs_mkdir); chmod sets it.
    await fs.setattr(ROOT, dir.ino, setattrRequest({ mode: 0o2755 }));
    expect((await fs.setattr(ROOT, dir.ino, setattrRequest({ uid: 1000 }))).mode).toBe(S.IFDIR | 0o2755);
  });

  it("changes the owner of a symlink itself", async () => {
    const { h, fs } = env();
    const link = await h.symlink("target", "l");
    expect(await fs.setattr(ROOT, link.ino, setattrRequest({ uid: 1000, gid: 1000 }))).toMatchObject({ uid: 1000, gid: 1000, mode: S.IFLNK | 0o777 });
  });

  it("truncates down and up, zero-filling what grows", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "0123456789");
    expect((await fs.setattr(ROOT, ino, setattrRequest({ size: 4 }))).size).toBe(4);
    expect(await h.content(ino)).toBe("0123");
    expect((await fs.setattr(ROOT, ino, setattrRequest({ size: 8 }))).size).toBe(8);
    expect([...new TextEncoder().encode(await h.content(ino))]).toEqual([0x30, 0x31, 0x32, 0x33, 0, 0, 0, 0]);
    expect((await fs.setattr(ROOT, ino, setattrRequest({ size: 0 }))).size).toBe(0);
    expect(await h.content(ino)).toBe("");
  });

  it("does not resurrect truncated data when the file grows again", async () => {
    const { h, fs } = env();
    const ino = await h.file("f", "secret data here");
    await fs.setattr(ROOT, ino, setattrRequest({ size: 2 }));
    await fs.setattr(ROOT, ino, setattrRequest({ size: 16 }));
    const data = new TextEncoder().encode(await h.content(ino));
    expect(data.subarray(2).every((b) => b === 0)).toBe(true);
  });

  it("truncates through an open handle", async () => {
    const { h, fs } = env();
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, "abcdef");
    expect((await fs.setattr(ROOT, ino, setattrRequest({ size: 3, fh }))).size).toBe(3);
    expect(await h.readText(ino, fh)).toBe("abc");
  });

  it("refuses to truncate a directory with EISDIR", async () => {
    const { h, fs } = env();
    const d = await h.mkdir("d");
    await expectErrno(() => fs.setattr(ROOT, d.ino, setattrRequest({ size: 0 })), "EISDIR");
  });

  it("sets atime and mtime to given values with nanoseconds", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    const atime = { sec: 1_600_000_000, nsec: 123_456_789 };
    const mtime = { sec: 1_500_000_000, nsec: 987_654_321 };
    const attr = await fs.setattr(ROOT, ino, setattrRequest({ atime, mtime }));
    expect(attr.atime).toEqual(atime);
    expect(attr.mtime).toEqual(mtime);
    expect(await h.getattr(ino)).toMatchObject({ atime, mtime });
  });

  it("sets times to now with the *_NOW bits and leaves an omitted time alone", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await fs.setattr(ROOT, ino, setattrRequest({ atime: OLD, mtime: OLD }));
    const wall = Math.floor(Date.now() / 1000);
    const onlyMtime = await fs.setattr(ROOT, ino, setattrRequest({ mtime: "now" }));
    expect(onlyMtime.atime).toEqual(OLD);
    expect(onlyMtime.mtime.sec).toBeGreaterThanOrEqual(wall - 2);
    const both = await fs.setattr(ROOT, ino, setattrRequest({ atime: "now" }));
    expect(both.atime.sec).toBeGreaterThanOrEqual(wall - 2);
    expect(both.mtime).toEqual(onlyMtime.mtime);
  });

  it("sets times before 1970 and far in the future", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    const past = { sec: -86_400, nsec: 0 };
    const future = { sec: 4_102_444_800, nsec: 1 };
    const attr = await fs.setattr(ROOT, ino, setattrRequest({ atime: past, mtime: future }));
    expect(attr.atime).toEqual(past);
    expect(attr.mtime).toEqual(future);
  });

  it("moves ctime on every setattr", async () => {
    const e = env();
    const ino = await e.h.file("f");
    for (const change of [{ mode: 0o600 }, { uid: 5 }, { size: 3 }, { atime: OLD }] as const) {
      const before = await e.h.getattr(ino);
      await tick();
      const after = await e.fs.setattr(ROOT, ino, setattrRequest(change));
      expect(later(after.ctime, before.ctime), JSON.stringify(change)).toBe(true);
    }
  });

  it("moves mtime and ctime of a file on write and truncate, not on read", async () => {
    const e = env();
    const { ino, fh } = await e.h.create("f");
    await e.h.write(ino, fh, "abc");
    let r = await around(e, [ino], () => e.h.write(ino, fh, "x", 1));
    expect(later(r.after[0]!.mtime, r.before[0]!.mtime)).toBe(true);
    expect(later(r.after[0]!.ctime, r.before[0]!.ctime)).toBe(true);
    r = await around(e, [ino], async () => e.fs.setattr(ROOT, ino, setattrRequest({ size: 1 })));
    expect(later(r.after[0]!.mtime, r.before[0]!.mtime)).toBe(true);
    r = await around(e, [ino], () => e.h.read(ino, fh, 10, 0));
    expect(r.after[0]!.mtime).toEqual(r.before[0]!.mtime);
    expect(r.after[0]!.ctime).toEqual(r.before[0]!.ctime);
  });

  it("moves the parent's mtime and ctime when names are created or removed", async () => {
    const e = env();
    const d = await e.h.mkdir("d");
    const ops: [string, () => Promise<unknown>][] = [
      ["create", () => e.h.file("f", "", 0o644, d.ino)],
      ["mkdir", () => e.h.mkdir("sub", 0o755, d.ino)],
      ["symlink", () => e.h.symlink("t", "l", d.ino)],
      ["unlink", () => e.h.unlink("f", d.ino)],
      ["rmdir", () => e.h.rmdir("sub", d.ino)],
    ];
    if (caps.specialFiles) ops.push(["mknod", () => Promise.resolve(e.fs.mknod(ROOT, d.ino, n("p"), S.IFIFO | 0o644, 0, 0))]);
    for (const [name, op] of ops) {
      const r = await around(e, [d.ino], op);
      expect(later(r.after[0]!.mtime, r.before[0]!.mtime), `${name} mtime`).toBe(true);
      expect(later(r.after[0]!.ctime, r.before[0]!.ctime), `${name} ctime`).toBe(true);
    }
  });

  it("moves both parents' times and the moved inode's ctime on rename", async () => {
    const e = env();
    const a = await e.h.mkdir("a");
    const b = await e.h.mkdir("b");
    const f = await e.h.file("f", "", 0o644, a.ino);
    const r = await around(e, [a.ino, b.ino, f], () => e.h.rename("f", "g", 0, a.ino, b.ino));
    for (const i of [0, 1]) {
      expect(later(r.after[i]!.mtime, r.before[i]!.mtime)).toBe(true);
      expect(later(r.after[i]!.ctime, r.before[i]!.ctime)).toBe(true);
    }
    expect(later(r.after[2]!.ctime, r.before[2]!.ctime)).toBe(true);
    expect(r.after[2]!.mtime).toEqual(r.before[2]!.mtime);
  });

  if (caps.hardLinks) {
    it("moves the target's ctime and the new parent's mtime on link, and ctime on unlink", async () => {
      const e = env();
      const f = await e.h.file("f");
      const d = await e.h.mkdir("d");
      let r = await around(e, [f, d.ino], () => Promise.resolve(e.fs.link(ROOT, f, d.ino, n("g"))));
      expect(later(r.after[0]!.ctime, r.before[0]!.ctime)).toBe(true);
      expect(later(r.after[1]!.mtime, r.before[1]!.mtime)).toBe(true);
      r = await around(e, [f], () => e.h.unlink("g", d.ino));
      expect(later(r.after[0]!.ctime, r.before[0]!.ctime)).toBe(true);
    });
  }

  it("gives a new inode current times, equal for atime, mtime and ctime", async () => {
    const { h } = env();
    const wall = Date.now() / 1000;
    const attr = (await h.create("f")).entry.attr;
    expect(attr.mtime).toEqual(attr.ctime);
    expect(attr.atime).toEqual(attr.mtime);
    expect(Math.abs(attr.mtime.sec - wall)).toBeLessThan(5);
    expect(attr.mtime.nsec).toBeGreaterThanOrEqual(0);
    expect(attr.mtime.nsec).toBeLessThan(1e9);
  });

  it("keeps times monotonic across a sequence of writes", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("f");
    let previous = (await h.getattr(ino)).mtime;
    for (let i = 0; i < 5; i++) {
      await h.write(ino, fh, "x", i);
      const now = (await h.getattr(ino)).mtime;
      expect(notBefore(now, previous)).toBe(true);
      previous = now;
    }
  });

  it("reports size and blocks consistently for data written", async () => {
    const { h } = env();
    const { ino, fh } = await h.create("f");
    await h.write(ino, fh, new Uint8Array(100_000).fill(1));
    const attr = await h.getattr(ino, fh);
    expect(attr.size).toBe(100_000);
    expect(attr.blocks * 512).toBeGreaterThanOrEqual(100_000);
    expect(attr.blksize).toBeGreaterThan(0);
  });

  it("reports the size of a directory and a symlink sensibly", async () => {
    const { h } = env();
    const link = await h.symlink("abcdef", "l");
    expect((await h.getattr(link.ino)).size).toBe(6);
    expect((await h.getattr(ROOT_INO)).size).toBeGreaterThanOrEqual(0);
  });
};
