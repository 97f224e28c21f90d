import { FsError, O, PathFs, RENAME, ROOT_INO, S, setattrRequest, toBytes, type Context } from "@msb/fs";
import { ALICE, expectErrno } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { describe, expect, it } from "vitest";
import { OverlayFs } from "./index.js";
import { CountingFs, JitteryFs, memLayer, overlay, snapshot, tree } from "./overlay.fixture.js";

const ROOT: Context = { uid: 0, gid: 0, pid: 1 };
const n = toBytes;

/** Three lowers (bottom first) exercising merges, whiteouts and opaque directories. */
async function threeLowers(): Promise<MemFs[]> {
  return [
    await memLayer({ "/etc/passwd": "root:x:0:0\n", "/etc/group": "root:x:0:\n", "/usr/bin/sh": "elf", "/var/cache/old": "stale", "/gone": "x" }),
    await memLayer({ "/etc/hosts": "127.0.0.1 localhost\n", "/usr/lib/libc.so": "lib", "/.wh.gone": "", "/var/cache/.wh..wh..opq": "", "/var/cache/new": "fresh" }),
    await memLayer({ "/etc/.wh.group": "", "/etc/passwd": "root:x:0:0:top\n", "/home/user/": "" }),
  ];
}

describe("merging", () => {
  it("merges lookups and listings across three lowers, the topmost object winning", async () => {
    const { files } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    expect((await files.readdir("/etc")).map((e) => e.name).sort()).toEqual(["hosts", "passwd"]);
    expect(await files.readFile("/etc/passwd", "utf8")).toBe("root:x:0:0:top\n");
    expect(await files.readFile("/etc/hosts", "utf8")).toBe("127.0.0.1 localhost\n");
    expect((await files.readdir("/usr")).map((e) => e.name).sort()).toEqual(["bin", "lib"]);
    expect((await files.readdir("/")).map((e) => e.name).sort()).toEqual(["etc", "home", "usr", "var"]);
  });

  it("never shows whiteouts, what they hide, or what an opaque directory hides", async () => {
    const { fs, files } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    expect(await files.exists("/gone")).toBe(false);
    expect(await files.exists("/etc/group")).toBe(false);
    expect((await files.readdir("/var/cache")).map((e) => e.name)).toEqual(["new"]);
    expect(await files.exists("/var/cache/old")).toBe(false);
    for (const name of [".wh.gone", ".wh.usr", ".wh..wh..opq"]) await expectErrno(() => fs.lookup(ROOT, ROOT_INO, n(name)), "ENOENT");
    const etc = await fs.lookup(ROOT, ROOT_INO, n("etc"));
    await expectErrno(() => fs.lookup(ROOT, etc.ino, n(".wh.group")), "ENOENT");
    const listed = (await tree(files)).filter((p) => p.includes(".wh."));
    expect(listed).toEqual([]);
  });

  it("gives back every lookup it takes on the layers", async () => {
    const lowers = (await threeLowers()).map((l) => new CountingFs(l));
    const upper = new CountingFs(new MemFs());
    const { fs, files } = await overlay({ lowers, upper });
    await tree(files);
    await files.writeFile("/etc/passwd", "changed");
    await files.rm("/usr", { recursive: true });
    await files.rename("/var", "/var2");
    await files.mkdir("/usr/local", { recursive: true });
    await files.writeFile("/home/user/a", "a");
    await files.link("/home/user/a", "/home/user/b");
    await files.rename("/home/user/a", "/etc/hosts", RENAME.EXCHANGE);
    const e = await fs.lookup(ROOT, ROOT_INO, n("home"));
    expect(lowers.some((l) => l.held > 0)).toBe(true);
    await fs.forget(ROOT, e.ino, 1);
    expect(lowers.map((l) => l.held)).toEqual([0, 0, 0]);
    // The upper keeps one: the staging directory's.
    expect(upper.held).toBe(1);
  });

  it("merges, whites out and lists names that are not UTF-8", async () => {
    const odd = new Uint8Array([0x66, 0xff, 0xfe, 0x41]);
    const base = new MemFs();
    const made = base.create(ROOT, ROOT_INO, odd, S.IFREG | 0o644, O.WRONLY, 0);
    base.release(ROOT, made.entry.ino, made.fh, O.WRONLY);
    const upper = new MemFs();
    const { fs } = await overlay({ lowers: [base], upper });
    const listed = async (): Promise<Uint8Array[]> => (await new PathFs(fs).readdir("/")).map((e) => e.nameBytes);
    expect(await listed()).toEqual([odd]);
    await fs.unlink(ROOT, ROOT_INO, odd);
    expect(await listed()).toEqual([]);
    const wh = new Uint8Array([...n(".wh."), ...odd]);
    expect((await new PathFs(upper).readdir("/")).map((e) => e.nameBytes)).toContainEqual(wh);
  });
});

describe("changes", () => {
  it("writes a whiteout in the upper when a lower file is removed", async () => {
    const upper = new MemFs();
    const { files, upper: up } = await overlay({ lowers: await threeLowers(), upper });
    await files.rm("/etc/hosts");
    expect(await files.exists("/etc/hosts")).toBe(false);
    expect(await up.exists("/etc/.wh.hosts")).toBe(true);
    expect((await files.readdir("/etc")).map((e) => e.name)).toEqual(["passwd"]);
    // An upper-only file leaves no whiteout.
    await files.writeFile("/etc/new", "x");
    await files.rm("/etc/new");
    expect(await up.exists("/etc/.wh.new")).toBe(false);
  });

  it("makes a directory created where a lower one was removed opaque", async () => {
    const { files, upper } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    await expectErrno(() => files.rm("/usr"), "ENOTEMPTY");
    await files.rm("/usr", { recursive: true });
    expect(await upper.exists("/.wh.usr")).toBe(true);
    await files.mkdir("/usr");
    expect(await files.readdir("/usr")).toEqual([]);
    expect(await upper.exists("/usr/.wh..wh..opq")).toBe(true);
    expect(await upper.exists("/.wh.usr")).toBe(false);
  });

  it("sees ENOTEMPTY on the merged view", async () => {
    const { files } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    await files.mkdir("/home/user/sub");
    await files.rm("/home/user/sub");
    await expectErrno(() => files.rm("/etc"), "ENOTEMPTY");
    await files.rm("/etc/passwd");
    await files.rm("/etc/hosts");
    await files.rm("/etc");
    expect(await files.exists("/etc")).toBe(false);
  });

  it("copies up data, mode, owner, times and xattrs, keeping the overlay inode number", async () => {
    const base = await memLayer({ "/data/big": "" });
    const paths = new PathFs(base);
    const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 31) & 0xff);
    await paths.writeFile("/data/big", big);
    await paths.chmod("/data/big", 0o4751);
    await paths.chown("/data/big", 1000, 3000);
    await paths.chmod("/data/big", 0o4751);
    await paths.utimes("/data/big", { sec: 1_000_000, nsec: 5 }, { sec: 2_000_000, nsec: 7 });
    const ino = (await paths.stat("/data/big")).ino;
    base.setxattr(ROOT, ino, n("user.origin"), n("base"), 0);
    await paths.chown("/data", 1000, 1000);
    const upper = new MemFs();
    const { fs, files, upper: up } = await overlay({ lowers: [base], upper });
    const entry = await fs.lookup(ROOT, ROOT_INO, n("data"));
    const file = await fs.lookup(ROOT, entry.ino, n("big"));
    const before = await fs.getattr(ROOT, file.ino);
    // A setxattr is a change: the file is copied up, whole.
    await fs.setxattr(ROOT, file.ino, n("user.more"), n("1"), 0);
    const after = await fs.getattr(ROOT, file.ino);
    expect(after.ino).toBe(before.ino);
    expect(after).toMatchObject({ mode: S.IFREG | 0o4751, uid: 1000, gid: 3000, size: big.length, atime: before.atime, mtime: before.mtime });
    expect(Buffer.from(await files.readFile("/data/big")).equals(big)).toBe(true);
    const upperAttr = await up.stat("/data/big");
    expect(upperAttr).toMatchObject({ mode: S.IFREG | 0o4751, uid: 1000, gid: 3000, mtime: { sec: 2_000_000, nsec: 7 } });
    expect((await up.stat("/data")).uid).toBe(1000);
    const upperFile = upper.lookup(ROOT, (await up.stat("/data")).ino, n("big"));
    expect(new TextDecoder().decode(upper.getxattr(ROOT, upperFile.ino, n("user.origin")))).toBe("base");
    // The lower is untouched, and a later lookup still answers the same number.
    expect(Buffer.from(await paths.readFile("/data/big")).equals(big)).toBe(true);
    expect((await fs.lookup(ROOT, entry.ino, n("big"))).ino).toBe(file.ino);
  });

  it("copies up on open for writing, and checks the caller's rights first", async () => {
    const { fs, files, upper } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    const etc = await fs.lookup(ROOT, ROOT_INO, n("etc"));
    const hosts = await fs.lookup(ROOT, etc.ino, n("hosts"));
    await expectErrno(() => fs.open(ALICE, hosts.ino, O.WRONLY), "EACCES");
    expect(await upper.exists("/etc")).toBe(false);
    const { fh } = await fs.open(ROOT, hosts.ino, O.WRONLY | O.APPEND);
    await fs.write(ROOT, hosts.ino, fh, n("::1 localhost\n"), 0, 0);
    await fs.release(ROOT, hosts.ino, fh, O.WRONLY);
    expect(await files.readFile("/etc/hosts", "utf8")).toBe("127.0.0.1 localhost\n::1 localhost\n");
    expect(await upper.readdir("/etc").then((l) => l.map((e) => e.name))).toEqual(["hosts"]);
  });

  it("checks the caller's rights on lower objects before changing anything", async () => {
    const base = await memLayer({ "/etc/shadow": "secret", "/tmp/alices": "a", "/tmp/bobs": "b" });
    const paths = new PathFs(base);
    await paths.chmod("/tmp", 0o1777);
    await paths.chown("/tmp/alices", 1000, 1000);
    await paths.chown("/tmp/bobs", 2000, 2000);
    const { fs, upper } = await overlay({ lowers: [base], upper: new MemFs() });
    const etc = await fs.lookup(ROOT, ROOT_INO, n("etc"));
    const tmp = await fs.lookup(ROOT, ROOT_INO, n("tmp"));
    const shadow = await fs.lookup(ROOT, etc.ino, n("shadow"));
    await expectErrno(() => fs.unlink(ALICE, etc.ino, n("shadow")), "EACCES");
    await expectErrno(() => fs.setattr(ALICE, shadow.ino, { ...setattrRequest({ mode: 0o777 }) }), "EPERM");
    await expectErrno(() => fs.setxattr(ALICE, shadow.ino, n("user.x"), n("1"), 0), "EACCES");
    await expectErrno(() => fs.unlink(ALICE, tmp.ino, n("bobs")), "EPERM");
    await expectErrno(() => fs.rename(ALICE, tmp.ino, n("bobs"), tmp.ino, n("mine"), 0), "EPERM");
    expect((await upper.readdir("/")).map((e) => e.name)).toEqual([".msb-staging"]);
    await fs.unlink(ALICE, tmp.ino, n("alices"));
    expect(await upper.exists("/tmp/.wh.alices")).toBe(true);
    await expectErrno(() => fs.access(ALICE, shadow.ino, 2), "EACCES");
    await fs.access(ALICE, shadow.ino, 4);
    await fs.access(ROOT, shadow.ino, 2);
  });

  it("renames a lower file over another lower file, whiting out the old name", async () => {
    const { files, upper } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    await files.rename("/etc/hosts", "/etc/passwd");
    expect(await files.readFile("/etc/passwd", "utf8")).toBe("127.0.0.1 localhost\n");
    expect((await files.readdir("/etc")).map((e) => e.name)).toEqual(["passwd"]);
    expect(await tree(upper, [".msb-staging"])).toEqual(["etc/", "etc/.wh.hosts", "etc/passwd"]);
    await expectErrno(() => files.rename("/usr/bin", "/usr/lib", RENAME.NOREPLACE), "EEXIST");
    await expectErrno(() => files.rename("/home/user", "/usr/lib/libc.so"), "ENOTDIR");
    await expectErrno(() => files.rename("/etc", "/usr"), "ENOTEMPTY");
    expect(await tree(upper, [".msb-staging"])).toEqual(["etc/", "etc/.wh.hosts", "etc/passwd"]);
  });

  it("keeps hard links of a lower inode one inode across copy-up", async () => {
    const base = await memLayer({ "/a": "shared" });
    await new PathFs(base).link("/a", "/b");
    const { fs, files, upper } = await overlay({ lowers: [base], upper: new MemFs() });
    const a = await fs.lookup(ROOT, ROOT_INO, n("a"));
    await files.appendFile("/a", "+more");
    expect(await files.readFile("/b", "utf8")).toBe("shared+more");
    expect((await fs.lookup(ROOT, ROOT_INO, n("b"))).ino).toBe(a.ino);
    expect((await upper.stat("/a")).ino).toBe((await upper.stat("/b")).ino);
  });

  // The kernel's overlayfs (index=on) answers the same counts and contents.
  it("links a lower inode's other names to its copy after the copied name is let go, counting every name", async () => {
    const base = await memLayer({ "/a": "shared", "/d/": "" });
    await new PathFs(base).link("/a", "/b");
    await new PathFs(base).link("/a", "/d/c");
    const { files, upper } = await overlay({ lowers: [base], upper: new MemFs() });
    await files.writeFile("/a", "new");
    expect((await files.stat("/a")).nlink).toBe(3);
    expect(await files.readFile("/b", "utf8")).toBe("new");
    expect((await files.stat("/b")).nlink).toBe(3);
    expect((await upper.stat("/a")).ino).toBe((await upper.stat("/b")).ino);
    await files.rm("/d/c");
    expect((await files.stat("/a")).nlink).toBe(2);
  });

  it("exchanges a lower directory with a lower file that has another name inside that directory", async () => {
    const base = await memLayer({ "/d/x": "shared" });
    await new PathFs(base).link("/d/x", "/f");
    const { files, upper } = await overlay({ lowers: [base], upper: new MemFs() });
    await files.rename("/d", "/f", RENAME.EXCHANGE);
    expect(await snapshot(files)).toEqual({ "": "dir", f: "dir", "f/x": "shared", d: "shared" });
    expect((await files.stat("/d")).nlink).toBe(2);
    expect((await upper.stat("/d")).ino).toBe((await upper.stat("/f/x")).ino);
  });

  // As the kernel's overlayfs does: its files reopen their real file after a copy-up.
  it("moves a read handle opened before a copy-up to the copy", async () => {
    const { fs, files } = await overlay({ lowers: [await memLayer({ "/f": "original" })], upper: new MemFs() });
    const f = await fs.lookup(ROOT, ROOT_INO, n("f"));
    const { fh } = await fs.open(ROOT, f.ino, O.RDONLY);
    expect(new TextDecoder().decode(await fs.read(ROOT, f.ino, fh, 64, 0))).toBe("original");
    await files.writeFile("/f", "changed!!");
    expect(new TextDecoder().decode(await fs.read(ROOT, f.ino, fh, 64, 0))).toBe("changed!!");
    expect((await fs.getattr(ROOT, f.ino, fh)).size).toBe(9);
    await fs.release(ROOT, f.ino, fh, O.RDONLY);
    await fs.forget(ROOT, f.ino, 1);
  });

  it("keeps what a hard-linked lower inode's copy holds when its copied-up names are all removed", async () => {
    const base = await memLayer({ "/a": "shared" });
    await new PathFs(base).link("/a", "/b");
    const { files } = await overlay({ lowers: [base], upper: new MemFs() });
    await files.writeFile("/a", "changed");
    await files.rm("/a");
    expect(await files.readFile("/b", "utf8")).toBe("changed");
    expect((await files.stat("/b")).nlink).toBe(1);
  });

  it("renames a lower directory, its merged contents coming along", async () => {
    const { fs, files, upper } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    const etc = await fs.lookup(ROOT, ROOT_INO, n("etc"));
    await files.rename("/etc", "/etc.old");
    expect(await files.exists("/etc")).toBe(false);
    expect((await files.readdir("/etc.old")).map((e) => e.name).sort()).toEqual(["hosts", "passwd"]);
    expect(await files.readFile("/etc.old/passwd", "utf8")).toBe("root:x:0:0:top\n");
    expect((await fs.lookup(ROOT, ROOT_INO, n("etc.old"))).ino).toBe(etc.ino);
    expect(await upper.exists("/.wh.etc")).toBe(true);
    // Onto a name a lower has: the moved directory is opaque there.
    await files.rename("/etc.old", "/usr", 0).catch((error: unknown) => {
      expect(FsError.isInstance(error) && error.code).toBe("ENOTEMPTY");
    });
    await files.rm("/usr", { recursive: true });
    await files.rename("/etc.old", "/usr");
    expect((await files.readdir("/usr")).map((e) => e.name).sort()).toEqual(["hosts", "passwd"]);
    expect(await upper.exists("/usr/.wh..wh..opq")).toBe(true);
  });

  it("exchanges a lower file and an upper directory", async () => {
    const { files } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    await files.mkdir("/etc/d");
    await files.writeFile("/etc/d/x", "x");
    await files.rename("/etc/hosts", "/etc/d", RENAME.EXCHANGE);
    expect(await files.readFile("/etc/d", "utf8")).toBe("127.0.0.1 localhost\n");
    expect((await files.readdir("/etc/hosts")).map((e) => e.name)).toEqual(["x"]);
  });

  it("refuses guest names in the whiteout namespace with EINVAL and never finds them", async () => {
    const { fs } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    const f = await fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o644, O.RDWR, 0);
    const wh = n(".wh.f");
    await expectErrno(() => fs.create(ROOT, ROOT_INO, wh, S.IFREG | 0o644, O.RDWR, 0), "EINVAL");
    await expectErrno(() => fs.mkdir(ROOT, ROOT_INO, wh, S.IFDIR | 0o755, 0), "EINVAL");
    await expectErrno(() => fs.mknod(ROOT, ROOT_INO, wh, S.IFIFO | 0o644, 0, 0), "EINVAL");
    await expectErrno(() => fs.symlink(ROOT, n("f"), ROOT_INO, wh), "EINVAL");
    await expectErrno(() => fs.link(ROOT, f.entry.ino, ROOT_INO, wh), "EINVAL");
    await expectErrno(() => fs.rename(ROOT, ROOT_INO, n("f"), ROOT_INO, wh, 0), "EINVAL");
    await expectErrno(() => fs.rename(ROOT, ROOT_INO, n(".wh..wh..opq"), ROOT_INO, n("g"), 0), "ENOENT");
    await expectErrno(() => fs.lookup(ROOT, ROOT_INO, wh), "ENOENT");
  });

  it("hides the staging directory, refuses its name, and empties it at init", async () => {
    const upper = await memLayer({ "/.msb-staging/copyup-7": "half", "/.msb-staging/dir/x": "" });
    const { fs, files, upper: up } = await overlay({ lowers: await threeLowers(), upper });
    expect(await up.readdir("/.msb-staging")).toEqual([]);
    await expectErrno(() => fs.lookup(ROOT, ROOT_INO, n(".msb-staging")), "ENOENT");
    expect((await files.readdir("/")).map((e) => e.name)).not.toContain(".msb-staging");
    await expectErrno(() => fs.mkdir(ROOT, ROOT_INO, n(".msb-staging"), S.IFDIR | 0o755, 0), "EPERM");
    await files.writeFile("/f", "x");
    await expectErrno(() => fs.rename(ROOT, ROOT_INO, n("f"), ROOT_INO, n(".msb-staging"), 0), "EPERM");
    // Elsewhere the name is an ordinary one.
    await files.mkdir("/etc/.msb-staging");
    const custom = await overlay({ lowers: [], upper: new MemFs(), staging: "work" });
    expect(await custom.upper.exists("/work")).toBe(true);
  });

  it("leaves the upper as the OCI change set of what was done", async () => {
    const { files, upper } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    await files.writeFile("/etc/hosts", "changed\n"); // modified lower file: copied up with its parent
    await files.rm("/etc/passwd"); // lower file removed: whiteout
    await files.writeFile("/new", "n"); // added
    await files.writeFile("/tmpfile", "t");
    await files.rm("/tmpfile"); // added then removed: nothing
    await files.rm("/usr", { recursive: true }); // lower tree removed: `.wh.usr` (inner whiteouts go with their directories)
    await files.mkdir("/usr/local", { recursive: true }); // re-created: opaque, and `.wh.usr` goes
    await files.rename("/home/user", "/home/admin"); // lower dir renamed: copied up, old name whited out
    await files.chmod("/var/cache/new", 0o600); // metadata change: copied up
    expect(await tree(upper, [".msb-staging"])).toEqual([
      "etc/",
      "etc/.wh.passwd",
      "etc/hosts",
      "home/",
      "home/.wh.user",
      "home/admin/",
      "new",
      "usr/",
      "usr/.wh..wh..opq",
      "usr/local/",
      "var/",
      "var/cache/",
      "var/cache/new",
    ]);
  });

  it("shows the same tree when mounted again on the same layers", async () => {
    const lowers = await threeLowers();
    const upper = new MemFs();
    const { files } = await overlay({ lowers, upper });
    await files.writeFile("/etc/hosts", "changed\n");
    await files.rm("/etc/passwd");
    await files.rm("/usr", { recursive: true });
    await files.mkdir("/usr/local", { recursive: true });
    await files.rename("/var", "/srv");
    await files.mkdir("/var");
    await files.symlink("/srv/cache", "/var/cache");
    await files.rename("/home/user", "/etc/user", 0);
    await files.rename("/etc/hosts", "/etc/user", RENAME.EXCHANGE);
    const again = await overlay({ lowers, upper });
    expect(await snapshot(again.files)).toEqual(await snapshot(files));
  });
});

describe("concurrency", () => {
  it("keeps a consistent tree and balanced lookups under racing changes", async () => {
    const lowers = (await threeLowers()).map((l) => new CountingFs(l));
    const upper = new JitteryFs(new MemFs());
    const { fs, files } = await overlay({ lowers, upper });
    const ops: (() => Promise<unknown>)[] = [
      () => files.rename("/etc", "/etc2"),
      () => files.rename("/etc2", "/etc"),
      () => files.writeFile("/etc/hosts", "x"),
      () => files.rm("/etc/passwd"),
      () => files.mkdir("/etc/sub"),
      () => files.rm("/usr", { recursive: true }),
      () => files.mkdir("/usr"),
      () => files.rename("/var/cache", "/etc/cache"),
      () => files.appendFile("/usr/bin/sh", "!"),
      () => files.readdir("/etc"),
      () => files.link("/etc/hosts", "/home/hosts"),
    ];
    const outcomes = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => ops[(i * 7) % ops.length]!()));
    for (const outcome of outcomes) {
      if (outcome.status === "rejected") expect(FsError.isInstance(outcome.reason), String(outcome.reason)).toBe(true);
    }
    const paths = await tree(files);
    expect(paths.filter((p) => p.includes(".wh.") || p.includes(".msb-staging"))).toEqual([]);
    // What the overlay shows is what its layers hold: a new overlay on them shows the same.
    const again = new OverlayFs({ lowers, upper: upper });
    await again.init();
    expect(await snapshot(new PathFs(again))).toEqual(await snapshot(files));
    const e = await fs.lookup(ROOT, ROOT_INO, n("home"));
    await fs.forget(ROOT, e.ino, 1);
    expect(lowers.map((l) => l.held)).toEqual([0, 0, 0]);
  });
});

describe("hostile callers", () => {
  it("answers malformed calls with an FsError only", async () => {
    const { fs } = await overlay({ lowers: await threeLowers(), upper: new MemFs() });
    const etc = await fs.lookup(ROOT, ROOT_INO, n("etc"));
    const hosts = await fs.lookup(ROOT, etc.ino, n("hosts"));
    const bad = "hosts" as unknown as Uint8Array;
    await expectErrno(() => fs.lookup(ROOT, etc.ino, bad), "EINVAL");
    await expectErrno(() => fs.unlink(ROOT, etc.ino, bad), "EINVAL");
    await expectErrno(() => fs.rename(ROOT, etc.ino, n("hosts"), etc.ino, bad, 0), "EINVAL");
    await expectErrno(() => fs.setattr(ROOT, hosts.ino, null as never), "EINVAL");
    await expectErrno(() => fs.setxattr(ROOT, hosts.ino, bad, n("v"), 0), "EINVAL");
    await expectErrno(() => fs.removexattr(ROOT, hosts.ino, bad), "EINVAL");
    await expectErrno(() => fs.lookup(ROOT, etc.ino, n("a/b")), "EINVAL");
    await expectErrno(() => fs.lookup(ROOT, 999_999, n("x")), "ENOENT");
    await expectErrno(() => fs.read(ROOT, hosts.ino, 12345, 10, 0), "EBADF");
    await expectErrno(() => fs.readdir(ROOT, etc.ino, 12345, 0, 4096), "EBADF");
    await expectErrno(() => fs.open(ROOT, hosts.ino, 1.5), "EINVAL");
    await expectErrno(() => fs.rename(ROOT, etc.ino, n("hosts"), etc.ino, n("x"), 1 << 9), "EINVAL");
    await expectErrno(() => fs.lookup(ROOT, hosts.ino, n("x")), "ENOTDIR");
  });
});

describe("options", () => {
  it("refuses bad options with a TypeError naming them", () => {
    expect(() => new OverlayFs({ lowers: [], upper: {} as MemFs })).toThrow(/upper/);
    expect(() => new OverlayFs({ lowers: [{} as MemFs], upper: new MemFs() })).toThrow(/lowers/);
    expect(() => new OverlayFs({ lowers: [], upper: new MemFs(), staging: "a/b" })).toThrow(/staging/);
    expect(() => new OverlayFs({ lowers: [], upper: new MemFs(), staging: ".wh.x" })).toThrow(/staging/);
    expect(() => new OverlayFs({ lowers: [], upper: new MemFs(), extra: 1 } as never)).toThrow(/extra/);
    expect(new OverlayFs({ lowers: [], upper: new MemFs(), cache: "never" }).cachePolicy).toBe("never");
  });
});
