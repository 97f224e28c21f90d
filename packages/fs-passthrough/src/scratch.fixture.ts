// Helpers shared by this package's tests: scratch host directories, the
// backend over one, fd counting, and byte-exact snapshots of a host tree.
import { createHash } from "node:crypto";
import { lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llistxattr, lgetxattr } from "@msb/native";
import { O, ROOT_INO, S, toBytes, type Context, type Entry } from "@msb/fs";
import { afterEach } from "vitest";
import { PassthroughFs, type PassthroughFsOptions } from "./index.js";

export const ROOT: Context = { uid: 0, gid: 0, pid: 1 };
export const ALICE: Context = { uid: 1000, gid: 1000, pid: 2, groups: [1000] };
export const n = toBytes;

/** Directories removed after each test of the file that calls this at its top level. */
export function useScratch(base?: string): () => string {
  const made: string[] = [];
  afterEach(() => {
    for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(base ?? tmpdir(), "msb-passthrough-"));
    made.push(dir);
    return dir;
  };
}

/** A backend over `rootDir`, destroyed after the test. */
export function useBackends(): (options: PassthroughFsOptions) => PassthroughFs {
  const made: PassthroughFs[] = [];
  afterEach(() => {
    for (const fs of made.splice(0)) fs.destroy();
  });
  return (options) => {
    const fs = new PassthroughFs(options);
    made.push(fs);
    return fs;
  };
}

/** Creates `name` in `parent` with `content` as root and closes it; returns its entry. */
export function writeFile(fs: PassthroughFs, name: string, content: string | Uint8Array = "", parent = ROOT_INO, mode = 0o644): Entry {
  const { entry, fh } = fs.create(ROOT, parent, n(name), S.IFREG | mode, O.RDWR | O.CREAT, 0);
  const data = toBytes(content);
  if (data.length > 0) fs.write(ROOT, entry.ino, fh, data, 0, 0);
  fs.release(ROOT, entry.ino, fh, O.RDWR);
  return entry;
}

/** Reads all of file `ino`. */
export function readFile(fs: PassthroughFs, ino: number): string {
  const fh = fs.open(ROOT, ino, O.RDONLY).fh;
  try {
    return new TextDecoder().decode(fs.read(ROOT, ino, fh, 1 << 20, 0));
  } finally {
    fs.release(ROOT, ino, fh, O.RDONLY);
  }
}

/** How many fds this process has open. */
export const openFds = (): number => readdirSync("/proc/self/fd").length;

/**
 * Everything about a host tree a hostile guest might change, byte for byte:
 * per entry its type, mode, owner, size, mtime, content hash or link target,
 * and xattrs. Equal snapshots mean nothing was written, created, removed or
 * re-permissioned there.
 */
export function snapshotTree(dir: string): string {
  const lines: string[] = [];
  const walk = (path: string, rel: string): void => {
    const st = lstatSync(path, { bigint: true });
    let extra = "";
    if (st.isSymbolicLink()) extra = `-> ${readlinkSync(path)}`;
    else if (st.isFile()) extra = createHash("sha256").update(readFileSync(path)).digest("hex");
    const xattrs = st.isSymbolicLink()
      ? []
      : llistxattr(path).map((name) => `${name.toString()}=${lgetxattr(path, name).toString("hex")}`).sort();
    lines.push(`${rel} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeNs} ${st.nlink} ${extra} [${xattrs.join(",")}]`);
    if (st.isDirectory()) for (const name of readdirSync(path).sort()) walk(join(path, name), `${rel}/${name}`);
  };
  walk(dir, ".");
  return lines.join("\n");
}
