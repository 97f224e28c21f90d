// What the backend leaves on the host, and what of the host it shows: the
// override xattr, host modes it never changes, hidden and remapped xattrs,
// host metadata where no override exists, and the fallback for corrupt ones.
import {
  DT,
  O,
  OVERRIDE_STAT_XATTR,
  ROOT_INO,
  S,
  XATTR,
  bytesToString,
  decodeOverrideStat,
  encodeOverrideStat,
  makedev,
  setattrRequest,
} from "@msb/fs";
import { expectErrno } from "@msb/fs/testing";
import { getxattr, lgetxattr, listxattr, setxattr } from "@msb/native";
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, lstatSync, mkdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ALICE, ROOT, n, useBackends, useScratch, writeFile } from "./scratch.fixture.js";

const scratch = useScratch();
const backend = useBackends();
const names = (list: Uint8Array[]): string[] => list.map(bytesToString).sort();

describe("the host side of PassthroughFs", () => {
  it("creates files and special files as private host regular files carrying the guest view", () => {
    const dir = scratch();
    const fs = backend({ rootDir: dir });
    writeFile(fs, "exe", "#!/bin/sh", ROOT_INO, 0o4755);
    fs.mknod(ROOT, ROOT_INO, n("fifo"), S.IFIFO | 0o640, 0, 0);
    fs.mknod(ROOT, ROOT_INO, n("null"), S.IFCHR | 0o666, makedev(1, 3), 0);
    fs.mknod(ROOT, ROOT_INO, n("sock"), S.IFSOCK | 0o777, 0, 0);
    fs.mkdir(ROOT, ROOT_INO, n("dir"), S.IFDIR | 0o1777, 0);
    for (const [name, type, guest] of [
      ["exe", "file", { uid: 0, gid: 0, mode: S.IFREG | 0o4755, rdev: 0 }],
      ["fifo", "file", { uid: 0, gid: 0, mode: S.IFIFO | 0o640, rdev: 0 }],
      ["null", "file", { uid: 0, gid: 0, mode: S.IFCHR | 0o666, rdev: makedev(1, 3) }],
      ["sock", "file", { uid: 0, gid: 0, mode: S.IFSOCK | 0o777, rdev: 0 }],
      ["dir", "dir", { uid: 0, gid: 0, mode: S.IFDIR | 0o1777, rdev: 0 }],
    ] as const) {
      const st = lstatSync(join(dir, name));
      expect(type === "dir" ? st.isDirectory() : st.isFile(), name).toBe(true);
      // Never setuid, group- or world-accessible on the host, whatever the guest asked for.
      expect(st.mode & 0o7777, name).toBe(type === "dir" ? 0o700 : 0o600);
      expect(st.uid).toBe(process.getuid!());
      expect(Buffer.from(getxattr(join(dir, name), OVERRIDE_STAT_XATTR))).toEqual(Buffer.from(encodeOverrideStat(guest)));
    }
    const types: Record<string, number> = {};
    const { fh } = fs.opendir(ROOT, ROOT_INO, O.RDONLY);
    for (const e of fs.readdir(ROOT, ROOT_INO, fh, 0, 1 << 16)) types[bytesToString(e.name)] = e.type;
    expect(types).toMatchObject({ exe: DT.REG, fifo: DT.FIFO, null: DT.CHR, sock: DT.SOCK, dir: DT.DIR });
  });

  it("keeps chmod and chown in the xattr and leaves host modes and owners alone", () => {
    const dir = scratch();
    const fs = backend({ rootDir: dir });
    const f = writeFile(fs, "f", "x");
    const before = statSync(join(dir, "f"));
    const attr = fs.setattr(ROOT, f.ino, setattrRequest({ uid: 1234, gid: 5678, mode: 0o751 }));
    expect(attr).toMatchObject({ uid: 1234, gid: 5678, mode: S.IFREG | 0o751 });
    const after = statSync(join(dir, "f"));
    expect([after.mode, after.uid, after.gid]).toEqual([before.mode, before.uid, before.gid]);
    expect(decodeOverrideStat(getxattr(join(dir, "f"), OVERRIDE_STAT_XATTR))).toEqual({ uid: 1234, gid: 5678, mode: S.IFREG | 0o751, rdev: 0 });
  });

  it("hides user.msb.override_stat (and all of user.msb.*) from the guest", async () => {
    const fs = backend({ rootDir: scratch() });
    const f = writeFile(fs, "f");
    fs.setxattr(ROOT, f.ino, n("user.visible"), n("v"), 0);
    expect(names(fs.listxattr(ROOT, f.ino))).toEqual(["user.visible"]);
    for (const name of [OVERRIDE_STAT_XATTR, "user.msb.other"]) {
      await expectErrno(() => fs.getxattr(ROOT, f.ino, n(name)), "ENODATA");
      await expectErrno(() => fs.removexattr(ROOT, f.ino, n(name)), "ENODATA");
      await expectErrno(() => fs.setxattr(ROOT, f.ino, n(name), encodeOverrideStat({ uid: 0, gid: 0, mode: S.IFCHR | 0o666, rdev: 0 }), 0), "EPERM");
      await expectErrno(() => fs.setxattr(ROOT, f.ino, n(name), n("x"), XATTR.CREATE), "EPERM");
    }
    expect(fs.getattr(ROOT, f.ino).mode).toBe(S.IFREG | 0o644);
  });

  it("stores guest trusted.* and security.* xattrs under host user.msb.* and never as host trusted.* or security.*", async () => {
    const dir = scratch();
    const fs = backend({ rootDir: dir });
    const f = writeFile(fs, "f");
    fs.setxattr(ROOT, f.ino, n("trusted.overlay.opaque"), n("y"), 0);
    fs.setxattr(ROOT, f.ino, n("security.capability"), n("caps"), 0);
    const host = listxattr(join(dir, "f")).map(String).sort();
    expect(host).toEqual([OVERRIDE_STAT_XATTR, "user.msb.security.capability", "user.msb.trusted.overlay.opaque"]);
    expect(names(fs.listxattr(ROOT, f.ino))).toEqual(["security.capability", "trusted.overlay.opaque"]);
    expect(bytesToString(fs.getxattr(ROOT, f.ino, n("trusted.overlay.opaque")))).toBe("y");
    await expectErrno(() => fs.setxattr(ALICE, f.ino, n("security.selinux"), n("x"), 0), "EPERM");
    fs.removexattr(ROOT, f.ino, n("trusted.overlay.opaque"));
    expect(listxattr(join(dir, "f")).map(String)).not.toContain("user.msb.trusted.overlay.opaque");
  });

  it("does not show the host's own trusted.* or security.* xattrs", async () => {
    if (process.getuid!() !== 0) return;
    const dir = scratch();
    writeFileSync(join(dir, "f"), "");
    setxattr(join(dir, "f"), "trusted.host", Buffer.from("secret"));
    const fs = backend({ rootDir: dir });
    const f = fs.lookup(ROOT, ROOT_INO, n("f"));
    expect(names(fs.listxattr(ROOT, f.ino))).toEqual([]);
    await expectErrno(() => fs.getxattr(ROOT, f.ino, n("trusted.host")), "ENODATA");
  });

  it("shows host metadata for files without an override, and a 0:0 0755 root", () => {
    const dir = scratch();
    chmodSync(dir, 0o700);
    writeFileSync(join(dir, "plain"), "abc", { mode: 0o640 });
    mkdirSync(join(dir, "sub"), { mode: 0o711 });
    symlinkSync("plain", join(dir, "link"));
    if (process.getuid!() === 0) chownSync(join(dir, "plain"), 1234, 5678);
    const fs = backend({ rootDir: dir });
    expect(fs.getattr(ROOT, ROOT_INO)).toMatchObject({ uid: 0, gid: 0, mode: S.IFDIR | 0o755 });
    const plain = fs.lookup(ROOT, ROOT_INO, n("plain"));
    const st = statSync(join(dir, "plain"));
    expect(plain.attr).toMatchObject({ uid: st.uid, gid: st.gid, mode: S.IFREG | 0o640, size: 3 });
    expect(fs.lookup(ROOT, ROOT_INO, n("sub")).attr.mode).toBe(S.IFDIR | 0o711);
    expect(fs.lookup(ROOT, ROOT_INO, n("link")).attr.mode).toBe(S.IFLNK | 0o777);
    // A guest chmod starts an override from the host metadata.
    expect(fs.setattr(ROOT, plain.ino, setattrRequest({ mode: 0o600 }))).toMatchObject({ uid: st.uid, gid: st.gid, mode: S.IFREG | 0o600 });
    expect(statSync(join(dir, "plain")).mode & 0o777).toBe(0o640);
  });

  it("honours an override on the root directory itself", () => {
    const dir = scratch();
    setxattr(dir, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: 42, gid: 43, mode: S.IFDIR | 0o750, rdev: 0 }));
    expect(backend({ rootDir: dir }).getattr(ROOT, ROOT_INO)).toMatchObject({ uid: 42, gid: 43, mode: S.IFDIR | 0o750 });
  });

  describe("a corrupt override", () => {
    const CASES: [string, string, (path: string) => void][] = [
      ["too short", "19 bytes", (p) => setxattr(p, OVERRIDE_STAT_XATTR, Buffer.alloc(19))],
      ["too long", "21 bytes", (p) => setxattr(p, OVERRIDE_STAT_XATTR, Buffer.alloc(21, 1))],
      // Longer than what a lookup reads at first: read again whole, to say what it is.
      ["far too long", "4000 bytes", (p) => setxattr(p, OVERRIDE_STAT_XATTR, Buffer.alloc(4000, 1))],
      ["of an unknown version", "version 2", (p) => setxattr(p, OVERRIDE_STAT_XATTR, Buffer.from([2, 0, 0, 0, ...Buffer.alloc(16)]))],
      ["with non-zero padding", "padding", (p) => setxattr(p, OVERRIDE_STAT_XATTR, Buffer.from(encodeOverrideStat({ uid: 1, gid: 1, mode: S.IFREG | 0o777, rdev: 0 })).fill(9, 1, 4))],
      ["claiming a directory on a host file", "cannot be stored", (p) => setxattr(p, OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: 1, gid: 1, mode: S.IFDIR | 0o777, rdev: 0 }))],
    ];
    for (const [what, reason, spoil] of CASES) {
      it(`${what} falls back to host metadata and is logged, never thrown`, () => {
        const dir = scratch();
        writeFileSync(join(dir, "f"), "data", { mode: 0o604 });
        spoil(join(dir, "f"));
        const lines: string[] = [];
        const fs = backend({ rootDir: dir, logger: (line) => lines.push(line) });
        const { fh } = fs.opendir(ROOT, ROOT_INO, O.RDONLY);
        const listed = fs.readdir(ROOT, ROOT_INO, fh, 0, 1 << 16).find((e) => bytesToString(e.name) === "f");
        expect(listed?.type).toBe(DT.REG);
        const entry = fs.lookup(ROOT, ROOT_INO, n("f"));
        const st = statSync(join(dir, "f"));
        expect(entry.attr).toMatchObject({ mode: S.IFREG | 0o604, uid: st.uid, gid: st.gid, size: 4 });
        expect(lines.length).toBeGreaterThanOrEqual(1);
        expect(lines.every((line) => line.includes(OVERRIDE_STAT_XATTR) && line.includes(reason))).toBe(true);
        // The guest can repair it by setting attributes again.
        fs.setattr(ROOT, entry.ino, setattrRequest({ mode: 0o640 }));
        expect(decodeOverrideStat(lgetxattr(join(dir, "f"), OVERRIDE_STAT_XATTR)).mode).toBe(S.IFREG | 0o640);
      });
    }

    it("on a directory claiming to be a file is ignored too", () => {
      const dir = scratch();
      mkdirSync(join(dir, "d"), { mode: 0o705 });
      setxattr(join(dir, "d"), OVERRIDE_STAT_XATTR, encodeOverrideStat({ uid: 0, gid: 0, mode: S.IFREG | 0o777, rdev: 0 }));
      const lines: string[] = [];
      const fs = backend({ rootDir: dir, logger: (line) => lines.push(line) });
      expect(fs.lookup(ROOT, ROOT_INO, n("d")).attr.mode).toBe(S.IFDIR | 0o705);
      expect(lines).toHaveLength(1);
    });
  });

  it("shows real host special files as what they are and never opens them", async () => {
    if (process.getuid!() !== 0) return;
    const dir = scratch();
    const fs = backend({ rootDir: dir });
    execFileSync("mkfifo", [join(dir, "fifo")]);
    execFileSync("mknod", [join(dir, "null"), "c", "1", "3"]);
    const fifo = fs.lookup(ROOT, ROOT_INO, n("fifo"));
    const nul = fs.lookup(ROOT, ROOT_INO, n("null"));
    expect(fifo.attr.mode & S.IFMT).toBe(S.IFIFO);
    expect(nul.attr).toMatchObject({ rdev: makedev(1, 3) });
    expect(nul.attr.mode & S.IFMT).toBe(S.IFCHR);
    // Opening would block (FIFO) or reach a host device: refused.
    await expectErrno(() => fs.open(ROOT, fifo.ino, O.RDONLY), "ENXIO");
    await expectErrno(() => fs.open(ROOT, nul.ino, O.RDWR), "ENXIO");
    // Nor can their guest view be changed (they carry no user xattrs).
    await expectErrno(() => fs.setattr(ROOT, nul.ino, setattrRequest({ mode: 0o600 })), "EPERM");
  });
});
