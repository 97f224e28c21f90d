import { expect, it } from "vitest";
import { DT, O, RENAME, ROOT_INO, S } from "../../constants.js";
import { bytesToString, isDotOrDotDot } from "../../names.js";
import { ROOT, expectErrno, n } from "../harness.js";
import type { Suite } from "../index.js";

/** mkdir/rmdir, readdir/readdirplus, rename in all its forms. */
export const directorySuite: Suite = (env, caps) => {
  it("creates directories with nlink 2 and counts them in the parent's nlink", async () => {
    const { h } = env();
    const before = (await h.getattr(ROOT_INO)).nlink;
    const d = await h.mkdir("d", 0o750);
    expect(d.attr).toMatchObject({ mode: S.IFDIR | 0o750, nlink: 2 });
    expect((await h.getattr(ROOT_INO)).nlink).toBe(before + 1);
    await h.mkdir("sub", 0o755, d.ino);
    expect((await h.getattr(d.ino)).nlink).toBe(3);
    await h.rmdir("sub", d.ino);
    expect((await h.getattr(d.ino)).nlink).toBe(2);
  });

  it("applies the umask to mkdir and keeps the sticky bit", async () => {
    const { h } = env();
    expect((await h.mkdir("a", 0o777, ROOT_INO, 0o022)).attr.mode).toBe(S.IFDIR | 0o755);
    expect((await h.mkdir("t", 0o1777)).attr.mode).toBe(S.IFDIR | 0o1777);
  });

  it("removes an empty directory, and not a full one (ENOTEMPTY)", async () => {
    const { h } = env();
    const d = await h.mkdir("d");
    await h.file("f", "", 0o644, d.ino);
    await expectErrno(() => h.rmdir("d"), "ENOTEMPTY");
    await h.unlink("f", d.ino);
    await h.rmdir("d");
    await expectErrno(() => h.lookup("d"), "ENOENT");
  });

  it("refuses rmdir of a file (ENOTDIR), unlink of a directory (EISDIR), and of what is missing (ENOENT)", async () => {
    const { h } = env();
    await h.file("f");
    await h.mkdir("d");
    await expectErrno(() => h.rmdir("f"), "ENOTDIR");
    await expectErrno(() => h.unlink("d"), "EISDIR");
    await expectErrno(() => h.rmdir("missing"), "ENOENT");
    await expectErrno(() => h.unlink("missing"), "ENOENT");
  });

  it("refuses rmdir of . with EINVAL and of .. with ENOTEMPTY", async () => {
    const { h } = env();
    const d = await h.mkdir("d");
    await expectErrno(() => h.rmdir(".", d.ino), "EINVAL");
    await expectErrno(() => h.rmdir("..", d.ino), ["ENOTEMPTY", "EINVAL", "EBUSY"]);
  });

  it("keeps a removed directory's inode answering with nlink 0 and no entries", async () => {
    const { h } = env();
    const d = await h.mkdir("d");
    await h.rmdir("d");
    const attr = await h.getattr(d.ino);
    expect(attr.nlink).toBe(0);
    await expectErrno(() => h.file("x", "", 0o644, d.ino), "ENOENT");
  });

  it("lists . and .. first, then every entry once with its type and inode", async () => {
    const { h } = env();
    const d = await h.mkdir("d");
    const f = await h.file("f", "", 0o644, d.ino);
    const s = await h.mkdir("s", 0o755, d.ino);
    const l = await h.symlink("x", "l", d.ino);
    const entries = await h.readdirAll(d.ino);
    expect(entries.slice(0, 2).map((e) => bytesToString(e.name))).toEqual([".", ".."]);
    expect(entries[0]!.type).toBe(DT.DIR);
    const rest = Object.fromEntries(entries.slice(2).map((e) => [bytesToString(e.name), [e.ino, e.type]]));
    expect(rest).toEqual({ f: [f, DT.REG], s: [s.ino, DT.DIR], l: [l.ino, DT.LNK] });
  });

  it("pages through a large directory with a small buffer, seeing each entry exactly once", async () => {
    const { h } = env();
    const d = await h.mkdir("big");
    const names = Array.from({ length: 300 }, (_, i) => `entry-${i.toString().padStart(4, "0")}-${"x".repeat(i % 40)}`);
    for (const name of names) await h.file(name, "", 0o644, d.ino);
    const listed = (await h.readdirAll(d.ino, 512)).map((e) => bytesToString(e.name)).filter((x) => x !== "." && x !== "..");
    expect(listed.length).toBe(names.length);
    expect(new Set(listed)).toEqual(new Set(names));
  });

  it("returns nothing after the last offset", async () => {
    const { h, fs } = env();
    await h.file("only");
    const { fh } = await fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const all = await fs.readdir(ROOT, ROOT_INO, fh, 0, 1 << 16);
    const last = all[all.length - 1]!.offset;
    expect(await fs.readdir(ROOT, ROOT_INO, fh, last, 1 << 16)).toEqual([]);
    await fs.releasedir(ROOT, ROOT_INO, fh, 0);
  });

  it("resumes from a cookie after entries were removed and added, skipping nothing that stayed", async () => {
    const { h, fs } = env();
    const d = await h.mkdir("d");
    const names = Array.from({ length: 40 }, (_, i) => `f${i}`);
    for (const name of names) await h.file(name, "", 0o644, d.ino);
    const { fh } = await fs.opendir(ROOT, d.ino, O.RDONLY);
    const seen: string[] = [];
    const removed = new Set<string>();
    const removedUnseen: string[] = [];
    let offset = 0;
    let round = 0;
    for (;;) {
      const batch = await fs.readdir(ROOT, d.ino, fh, offset, 200);
      if (batch.length === 0) break;
      for (const e of batch) seen.push(bytesToString(e.name));
      offset = batch[batch.length - 1]!.offset;
      // Between calls: remove one name already listed, one not listed yet, and add one.
      // Which is which depends on the listing order, which is the backend's (tmpfs lists
      // newest first, ext4 in hash order), so the victims are picked from what was seen.
      if (round < 5) {
        const listed = names.find((x) => seen.includes(x) && !removed.has(x));
        const unlisted = [...names].reverse().find((x) => !seen.includes(x) && !removed.has(x));
        for (const victim of [listed, unlisted]) {
          if (victim === undefined) continue;
          removed.add(victim);
          await h.unlink(victim, d.ino);
        }
        if (unlisted !== undefined) removedUnseen.push(unlisted);
        await h.file(`new${round}`, "", 0o644, d.ino);
      }
      round++;
    }
    await fs.releasedir(ROOT, d.ino, fh, 0);
    const listed = seen.filter((x) => x !== "." && x !== "..");
    expect(new Set(listed).size).toBe(listed.length);
    // Every name that existed throughout was listed; removed-before-reached ones were not.
    expect(removedUnseen.length).toBeGreaterThan(0);
    for (const name of names) if (!removed.has(name)) expect(listed).toContain(name);
    for (const name of removedUnseen) expect(listed).not.toContain(name);
  });

  it("gives stable cookies: reading from the same offset twice gives the same entries", async () => {
    const { h, fs } = env();
    for (const name of ["a", "b", "c", "d", "e", "f"]) await h.file(name);
    const { fh } = await fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    const first = await fs.readdir(ROOT, ROOT_INO, fh, 0, 1 << 16);
    const mid = first[3]!.offset;
    const a = await fs.readdir(ROOT, ROOT_INO, fh, mid, 1 << 16);
    const b = await fs.readdir(ROOT, ROOT_INO, fh, mid, 1 << 16);
    expect(a.map((e) => bytesToString(e.name))).toEqual(b.map((e) => bytesToString(e.name)));
    expect(a.map((e) => bytesToString(e.name))).toEqual(first.slice(4).map((e) => bytesToString(e.name)));
    await fs.releasedir(ROOT, ROOT_INO, fh, 0);
  });

  it("refuses opendir of a file with ENOTDIR", async () => {
    const { h, fs } = env();
    const ino = await h.file("f");
    await expectErrno(() => fs.opendir(ROOT, ino, O.RDONLY), "ENOTDIR");
  });

  it("accepts fsyncdir on an open directory", async () => {
    const { fs } = env();
    const { fh } = await fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    await fs.fsyncdir(ROOT, ROOT_INO, fh, false);
    await fs.releasedir(ROOT, ROOT_INO, fh, 0);
  });

  if (caps.readdirplus) {
    it("returns entries with attributes from readdirplus, counting lookups for real names", async () => {
      const { h, fs } = env();
      const f = await h.file("f", "12345");
      const d = await h.mkdir("d");
      const { fh } = await fs.opendir(ROOT, ROOT_INO, O.RDONLY);
      const all = [];
      let offset = 0;
      for (;;) {
        const batch = await fs.readdirplus(ROOT, ROOT_INO, fh, offset, 4096);
        if (batch.length === 0) break;
        all.push(...batch);
        offset = batch[batch.length - 1]!.offset;
      }
      await fs.releasedir(ROOT, ROOT_INO, fh, 0);
      const byName = Object.fromEntries(all.map((e) => [bytesToString(e.name), e]));
      expect(byName.f?.entry.ino).toBe(f);
      expect(byName.f?.entry.attr.size).toBe(5);
      expect((byName.d?.entry.attr.mode ?? 0) & S.IFMT).toBe(S.IFDIR);
      expect(byName["."]?.ino).toBe(ROOT_INO);
      // The lookups readdirplus counted can be given back.
      await fs.batchForget(ROOT, all.filter((e) => !isDotOrDotDot(e.name)).map((e) => [e.entry.ino, 1] as const));
      expect((await h.lookup("f")).ino).toBe(f);
      expect(d.ino).toBe(byName.d?.ino);
    });
  }

  it("renames a file within a directory and across directories", async () => {
    const { h } = env();
    const ino = await h.file("a", "content");
    const d = await h.mkdir("d");
    await h.rename("a", "b");
    expect((await h.lookup("b")).ino).toBe(ino);
    await expectErrno(() => h.lookup("a"), "ENOENT");
    await h.rename("b", "c", 0, ROOT_INO, d.ino);
    expect((await h.lookup("c", d.ino)).ino).toBe(ino);
    expect(await h.names()).toEqual(["d"]);
    expect(await h.content(ino)).toBe("content");
  });

  it("replaces an existing file on rename, keeping the replaced one open-able until release", async () => {
    const { h } = env();
    const a = await h.file("a", "new");
    const b = await h.file("b", "old");
    const fh = await h.open(b, O.RDONLY);
    await h.rename("a", "b");
    expect((await h.lookup("b")).ino).toBe(a);
    expect(await h.readText(b, fh)).toBe("old");
    expect((await h.getattr(b, fh)).nlink).toBe(0);
    await h.release(b, fh, O.RDONLY);
  });

  it("renames a directory, updating .. and both parents' link counts", async () => {
    const { h } = env();
    const p1 = await h.mkdir("p1");
    const p2 = await h.mkdir("p2");
    const d = await h.mkdir("d", 0o755, p1.ino);
    await h.file("inside", "x", 0o644, d.ino);
    await h.rename("d", "moved", 0, p1.ino, p2.ino);
    expect((await h.getattr(p1.ino)).nlink).toBe(2);
    expect((await h.getattr(p2.ino)).nlink).toBe(3);
    expect((await h.lookup("..", d.ino)).ino).toBe(p2.ino);
    const dotdot = (await h.readdirAll(d.ino)).find((e) => bytesToString(e.name) === "..");
    expect(dotdot?.ino).toBe(p2.ino);
    expect(await h.names(d.ino)).toEqual(["inside"]);
  });

  it("renames a directory over an empty one, and not over a full one (ENOTEMPTY)", async () => {
    const { h } = env();
    const src = await h.mkdir("src");
    await h.mkdir("empty");
    const full = await h.mkdir("full");
    await h.file("f", "", 0o644, full.ino);
    await expectErrno(() => h.rename("src", "full"), "ENOTEMPTY");
    await h.rename("src", "empty");
    expect((await h.lookup("empty")).ino).toBe(src.ino);
    expect(await h.names()).toEqual(["empty", "full"]);
  });

  it("refuses file onto directory (EISDIR) and directory onto file (ENOTDIR)", async () => {
    const { h } = env();
    await h.file("f");
    await h.mkdir("d");
    await expectErrno(() => h.rename("f", "d"), "EISDIR");
    await expectErrno(() => h.rename("d", "f"), "ENOTDIR");
  });

  it("refuses to move a directory into its own subtree with EINVAL", async () => {
    const { h } = env();
    const a = await h.mkdir("a");
    const b = await h.mkdir("b", 0o755, a.ino);
    await expectErrno(() => h.rename("a", "x", 0, ROOT_INO, b.ino), "EINVAL");
    await expectErrno(() => h.rename("a", "x", 0, ROOT_INO, a.ino), "EINVAL");
  });

  it("refuses a missing source with ENOENT and a missing target directory with ENOENT", async () => {
    const { h, fs } = env();
    await h.file("f");
    await expectErrno(() => h.rename("missing", "x"), "ENOENT");
    await expectErrno(() => fs.rename(ROOT, ROOT_INO, n("f"), 987_654_321, n("x"), 0), ["ENOENT", "ESTALE"]);
  });

  it("treats renaming a name onto itself, or onto a hard link of the same inode, as done", async () => {
    const { h, fs } = env();
    const ino = await h.file("a", "x");
    await h.rename("a", "a");
    expect((await h.lookup("a")).ino).toBe(ino);
    if (caps.hardLinks) {
      await fs.link(ROOT, ino, ROOT_INO, n("b"));
      await h.rename("a", "b");
      // POSIX: both names stay.
      expect(await h.names()).toEqual(["a", "b"]);
    }
  });

  it("refuses rename of . or .. ", async () => {
    const { h } = env();
    const d = await h.mkdir("d");
    await expectErrno(() => h.rename(".", "x", 0, d.ino), ["EINVAL", "EBUSY"]);
    await expectErrno(() => h.rename("x", "..", 0, d.ino), ["EINVAL", "EBUSY", "ENOENT"]);
  });

  it("honours RENAME_NOREPLACE", async () => {
    const { h } = env();
    await h.file("a", "a");
    await h.file("b", "b");
    await expectErrno(() => h.rename("a", "b", RENAME.NOREPLACE), "EEXIST");
    expect(await h.content((await h.lookup("b")).ino)).toBe("b");
    await h.rename("a", "c", RENAME.NOREPLACE);
    expect(await h.names()).toEqual(["b", "c"]);
  });

  it("refuses unknown rename flags and NOREPLACE with EXCHANGE with EINVAL", async () => {
    const { h } = env();
    await h.file("a");
    await h.file("b");
    await expectErrno(() => h.rename("a", "b", RENAME.NOREPLACE | RENAME.EXCHANGE), "EINVAL");
    await expectErrno(() => h.rename("a", "c", 1 << 20), "EINVAL");
  });

  if (caps.renameExchange) {
    it("swaps two names with RENAME_EXCHANGE, files and directories alike", async () => {
      const { h } = env();
      const f = await h.file("f", "file");
      const d = await h.mkdir("d");
      const other = await h.mkdir("other");
      await h.rename("f", "d", RENAME.EXCHANGE);
      expect((await h.lookup("d")).ino).toBe(f);
      expect((await h.lookup("f")).ino).toBe(d.ino);
      // Across directories: the directory moves under `other` and `..` follows.
      await h.file("g", "", 0o644, other.ino);
      await h.rename("f", "g", RENAME.EXCHANGE, ROOT_INO, other.ino);
      expect((await h.lookup("g", other.ino)).ino).toBe(d.ino);
      expect((await h.lookup("..", d.ino)).ino).toBe(other.ino);
    });

    it("refuses RENAME_EXCHANGE when either name is missing with ENOENT", async () => {
      const { h } = env();
      await h.file("a");
      await expectErrno(() => h.rename("a", "missing", RENAME.EXCHANGE), "ENOENT");
      await expectErrno(() => h.rename("missing", "a", RENAME.EXCHANGE), "ENOENT");
    });
  }

  if (caps.renameWhiteout) {
    it("leaves a 0:0 character device behind with RENAME_WHITEOUT", async () => {
      const { h } = env();
      const ino = await h.file("a", "x");
      await h.rename("a", "b", RENAME.WHITEOUT);
      expect((await h.lookup("b")).ino).toBe(ino);
      const wh = await h.lookup("a");
      expect(wh.attr.mode & S.IFMT).toBe(S.IFCHR);
      expect(wh.attr.rdev).toBe(0);
    });
  }
};
