// PassthroughFs in a process without privileges, as it runs in production:
// the built package (dist) is imported by a child node process running as
// nobody (setpriv), which works on a scratch dir it owns and reports JSON.
import { S, makedev } from "@msb/fs";
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = join(packageDir, "dist", "index.js");
const NOBODY = 65534;
const setpriv = spawnSync("setpriv", ["--version"]).status === 0;
const isRoot = process.getuid!() === 0;

// Runs in the child, as an ES module; argv: the dist URL, the scratch dir.
const CHILD = `
import { O, ROOT_INO, S, makedev, setattrRequest } from "@msb/fs";
import { getxattr } from "@msb/native";
import { lstatSync } from "node:fs";
const [distUrl, dir] = process.argv.slice(1);
const { PassthroughFs } = await import(distUrl);
const root = { uid: 0, gid: 0, pid: 1 };
const name = (text) => new TextEncoder().encode(text);
const errno = (run) => { try { run(); return "ok"; } catch (error) { return error.code; } };
const host = (path) => { const st = lstatSync(dir + "/" + path); return { type: st.mode & S.IFMT, perms: st.mode & 0o7777, uid: st.uid }; };
const fs = new PassthroughFs({ rootDir: dir });
const file = fs.create(root, ROOT_INO, name("file"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0);
fs.write(root, file.entry.ino, file.fh, name("hello"), 0, 0);
fs.release(root, file.entry.ino, file.fh, O.RDWR);
const chowned = fs.setattr(root, file.entry.ino, setattrRequest({ uid: 1234, gid: 5678, mode: 0o4755 }));
const device = fs.mknod(root, ROOT_INO, name("null"), S.IFCHR | 0o666, makedev(1, 3), 0);
const dir1 = fs.mkdir(root, ROOT_INO, name("dir"), S.IFDIR | 0o1777, 0);
const link = fs.symlink(root, name("file"), ROOT_INO, name("link"));
fs.setxattr(root, file.entry.ino, name("trusted.note"), name("kept"), 0);
const { fh } = fs.opendir(root, ROOT_INO, O.RDONLY);
const listing = fs.readdir(root, ROOT_INO, fh, 0, 1 << 16).map((e) => [new TextDecoder().decode(e.name), e.ino, e.type]);
fs.releasedir(root, ROOT_INO, fh, O.RDONLY);
const again = new PassthroughFs({ rootDir: dir });
console.log(JSON.stringify({
  uid: process.getuid(),
  chowned: { uid: chowned.uid, gid: chowned.gid, mode: chowned.mode },
  device: { mode: device.attr.mode, rdev: device.attr.rdev, ino: device.ino },
  dir: { mode: dir1.attr.mode, ino: dir1.ino },
  symlinkChown: errno(() => fs.setattr(root, link.ino, setattrRequest({ uid: 1234 }))),
  trusted: new TextDecoder().decode(fs.getxattr(root, file.entry.ino, name("trusted.note"))),
  listing,
  reopened: again.lookup(root, ROOT_INO, name("null")).attr.mode,
  host: { file: host("file"), null: host("null"), dir: host("dir"), link: host("link"), override: [...getxattr(dir + "/null", "user.msb.override_stat")] },
}));
`;

describe("PassthroughFs without privileges", () => {
  const made: string[] = [];
  afterEach(() => {
    for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  const title = "keeps ownership, modes, device nodes and trusted xattrs in host user xattrs, as nobody";
  it.skipIf(isRoot && !setpriv)(isRoot && !setpriv ? `${title} (skipped: setpriv is missing, so no user to switch to)` : title, () => {
    expect(existsSync(dist), `${dist} is missing: run "pnpm --filter @msb/fs-passthrough build" first`).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), "msb-unprivileged-"));
    made.push(dir);
    const user = isRoot ? NOBODY : process.getuid!();
    if (isRoot) chownSync(dir, NOBODY, NOBODY);
    const command = isRoot ? "setpriv" : process.execPath;
    const prefix = isRoot ? [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath] : [];
    const child = spawnSync(command, [...prefix, "--input-type=module", "-e", CHILD, pathToFileURL(dist).href, dir], {
      cwd: packageDir,
      encoding: "utf8",
    });
    expect(child.stderr).toBe("");
    expect(child.status).toBe(0);
    const report = JSON.parse(child.stdout) as {
      uid: number;
      chowned: { uid: number; gid: number; mode: number };
      device: { mode: number; rdev: number; ino: number };
      dir: { mode: number; ino: number };
      symlinkChown: string;
      trusted: string;
      listing: [string, number, number][];
      reopened: number;
      host: Record<"file" | "null" | "dir" | "link", { type: number; perms: number; uid: number }> & { override: number[] };
    };
    expect(report.uid).toBe(user);
    // The guest view: whatever root in the guest asked for.
    expect(report.chowned).toEqual({ uid: 1234, gid: 5678, mode: S.IFREG | 0o4755 });
    expect(report.device).toMatchObject({ mode: S.IFCHR | 0o666, rdev: makedev(1, 3) });
    expect(report.dir.mode).toBe(S.IFDIR | 0o1777);
    expect(report.trusted).toBe("kept");
    expect(report.reopened).toBe(S.IFCHR | 0o666);
    expect(Object.fromEntries(report.listing.map(([name, , type]) => [name, type]))).toMatchObject({ ".": 4, "..": 4, file: 8, null: 2, dir: 4, link: 10 });
    expect(report.listing.find(([name]) => name === "null")?.[1]).toBe(report.device.ino);
    // Symlinks carry no user xattrs: only a privileged backend could give one away.
    expect(report.symlinkChown).toBe("EPERM");
    // The host view: the backend's own private files, nothing setuid, no device node.
    expect(report.host.file).toEqual({ type: S.IFREG, perms: 0o600, uid: user });
    expect(report.host.null).toEqual({ type: S.IFREG, perms: 0o600, uid: user });
    expect(report.host.dir).toEqual({ type: S.IFDIR, perms: 0o700, uid: user });
    expect(report.host.link.type).toBe(S.IFLNK);
    expect(report.host.override).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb6, 0x21, 0, 0, 0x03, 0x01, 0, 0]);
  });
});
