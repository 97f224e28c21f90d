// Differential test: the same operations on the kernel's overlayfs (mounted on
// host directories) and on OverlayFs (PassthroughFs layers over the same lower
// directories) must give the same answers and leave the same merged tree.
// Deliberate differences stay out of
// the script: OverlayFs refuses guest names starting with `.wh.` (EINVAL),
// which the kernel's format (whiteouts are 0:0 devices) allows.
import * as host from "node:fs/promises";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsError, PathFs } from "@msb/fs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OverlayFs } from "./index.js";
import { canMountOverlay, hostSnapshot, lowerDir, mountOverlay, unmount } from "./kernel.fixture.js";
import { snapshot } from "./overlay.fixture.js";

/** One operation, on a path-level API both sides offer. */
interface Ops {
  write(path: string, data: string): Promise<void>;
  read(path: string): Promise<string>;
  rm(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(from: string, to: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  list(path: string): Promise<string[]>;
  stat(path: string): Promise<ReturnType<typeof statOf>>;
}

const SCRIPT: [keyof Ops, ...(string | number)[]][] = [
  ["list", "/"],
  ["list", "/etc"],
  ["read", "/etc/passwd"],
  ["write", "/etc/hosts", "changed\n"],
  ["read", "/etc/hosts"],
  ["rm", "/etc/passwd"],
  ["read", "/etc/passwd"],
  ["rmdir", "/usr"],
  ["rm", "/usr/bin/sh"],
  ["rmdir", "/usr/bin"],
  ["list", "/usr"],
  ["rm", "/usr/lib/libc.so"],
  ["rmdir", "/usr/lib"],
  ["rmdir", "/usr"],
  ["mkdir", "/usr"],
  ["list", "/usr"],
  ["rename", "/opt/app", "/opt/app2"],
  ["list", "/opt/app2"],
  ["read", "/opt/app2/run"],
  ["rename", "/etc/hosts", "/opt"],
  ["rename", "/opt", "/etc/hosts"],
  ["link", "/etc/group", "/etc/group2"],
  ["stat", "/etc/group"],
  ["chmod", "/etc/group", 0o600],
  ["stat", "/etc/group2"],
  ["symlink", "../etc/group", "/usr/g"],
  ["read", "/usr/g"],
  ["mkdir", "/etc"],
  ["rename", "/etc", "/etc.d"],
  ["list", "/etc.d"],
  ["stat", "/etc.d"],
  ["rm", "/etc.d/group"],
  ["read", "/etc.d/group2"],
  ["rename", "/opt/app2/conf", "/usr/conf"],
  ["read", "/usr/conf"],
  ["mkdir", "/d"],
  ["rename", "/d", "/usr"],
  ["rmdir", "/opt"],
  ["rm", "/opt/app2/run"],
  ["list", "/opt/app2"],
  ["rename", "/d", "/opt/app2"],
  ["list", "/opt/app2"],
  ["write", "/opt/app2/new", "n"],
  ["list", "/opt"],
  ["truncate", "/etc.d/passwd", 4],
  ["truncate", "/etc.d/group2", 4],
  ["read", "/etc.d/group2"],
  ["rename", "/etc.d/user", "/etc.d/group2"],
  ["rename", "/etc.d", "/opt/app2/etc"],
  ["list", "/opt/app2/etc"],
  ["rmdir", "/opt/app2/etc"],
];

/** Runs the script, answering each step with its result or its errno name. */
async function run(ops: Ops): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const [op, ...args] of SCRIPT) {
    try {
      const result: unknown = await (ops[op] as (...a: unknown[]) => Promise<unknown>)(...args);
      out.push([op, args[0], result === undefined ? "ok" : result]);
    } catch (error) {
      const code = FsError.isInstance(error) ? error.code : (error as NodeJS.ErrnoException).code;
      out.push([op, args[0], code ?? String(error)]);
    }
  }
  return out;
}

// A directory's nlink is left out: the kernel answers 1 for a merged directory, OverlayFs its upper's count.
const statOf = (a: { mode: number; uid: number; gid: number; size: number; nlink: number }) => ({
  mode: a.mode,
  uid: a.uid,
  gid: a.gid,
  size: a.size,
  nlink: (a.mode & 0o170000) === 0o040000 ? "dir" : a.nlink,
});

function kernelOps(root: string): Ops {
  const p = (path: string): string => join(root, path);
  return {
    write: (path, data) => host.writeFile(p(path), data),
    read: (path) => host.readFile(p(path), "utf8"),
    rm: (path) => host.unlink(p(path)),
    rmdir: (path) => host.rmdir(p(path)),
    mkdir: (path) => host.mkdir(p(path)),
    rename: (from, to) => host.rename(p(from), p(to)),
    link: (from, to) => host.link(p(from), p(to)),
    symlink: (target, path) => host.symlink(target, p(path)),
    chmod: (path, mode) => host.chmod(p(path), mode),
    truncate: (path, size) => host.truncate(p(path), size),
    list: async (path) => (await host.readdir(p(path))).sort(),
    stat: async (path) => statOf(await host.stat(p(path))),
  };
}

function overlayOps(files: PathFs): Ops {
  return {
    write: (path, data) => files.writeFile(path, data),
    read: (path) => files.readFile(path, "utf8"),
    rm: (path) => files.rm(path),
    rmdir: async (path) => {
      if (((await files.lstat(path)).mode & 0o170000) !== 0o040000) throw new FsError("ENOTDIR", { path });
      await files.rm(path);
    },
    mkdir: (path) => files.mkdir(path),
    rename: (from, to) => files.rename(from, to),
    link: (from, to) => files.link(from, to),
    symlink: (target, path) => files.symlink(target, path),
    chmod: (path, mode) => files.chmod(path, mode),
    truncate: (path, size) => files.truncate(path, size),
    list: async (path) => (await files.readdir(path)).map((e) => e.name).sort(),
    stat: async (path) => statOf(await files.stat(path)),
  };
}

const skip = canMountOverlay();
if (skip !== undefined) console.warn(`OverlayFs differential test skipped: ${skip}`);

describe.skipIf(skip !== undefined)("OverlayFs against the kernel's overlayfs", () => {
  let base = "";
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), "msb-ovl-diff-"));
  });
  afterAll(() => {
    unmount(join(base, "mnt"));
    rmSync(base, { recursive: true, force: true });
  });

  it("answers the same script the same way and ends with the same tree", async () => {
    const bottom = lowerDir(base, "bottom", { "etc/passwd": "root:x:0:0\n", "etc/group": "root:x:0:\n", "usr/bin/sh": "elf", "opt/app/run": "run\n" });
    const top = lowerDir(base, "top", { "etc/hosts": "127.0.0.1\n", "usr/lib/libc.so": "lib", "opt/app/conf": "conf\n" });
    for (const d of ["upper", "work", "mnt", "ours"]) mkdirSync(join(base, d));
    mountOverlay([bottom, top], join(base, "upper"), join(base, "work"), join(base, "mnt"));
    const kernel = await run(kernelOps(join(base, "mnt")));
    const kernelTree = await hostSnapshot(join(base, "mnt"));
    unmount(join(base, "mnt"));

    const fs = new OverlayFs({
      lowers: [new PassthroughFs({ rootDir: bottom, readOnly: true }), new PassthroughFs({ rootDir: top, readOnly: true })],
      upper: new PassthroughFs({ rootDir: join(base, "ours") }),
    });
    await fs.init();
    const ours = await run(overlayOps(new PathFs(fs)));
    const ourTree = await snapshot(new PathFs(fs));
    await fs.destroy();
    expect(ours).toEqual(kernel);
    expect(ourTree).toEqual(kernelTree);
  });
});
