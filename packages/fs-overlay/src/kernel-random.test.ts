// Seeded random differential test: random lower layers (files, directories,
// symlinks, hard links, xattrs, whiteouts, opaque directories) are built
// twice, in the OCI form for OverlayFs (PassthroughFs lowers) and in the
// kernel's form (0:0 character devices, trusted.overlay.opaque) for
// `mount -t overlay`; then the same random operations run on both, one by
// one. Every answer (result or errno) must match, and so must the final
// trees. About a third of the ops run as an unprivileged caller (the kernel
// side switches its effective ids around the syscall). On a divergence the
// seed and the op log are printed.
//
// MSB_OVERLAY_DIFF_SEEDS=<count> runs more seeds (default 10, of 1000 ops
// each), MSB_OVERLAY_DIFF_SEED=<n> starts at another seed (default 1).
//
// Symlinks only ever carry the names l0 and l1, which no generated path uses
// before its last component, so an op walks through directories only; that
// lets unlink, rmdir and setxattr go to OverlayFs by inode without a second
// path resolver. The kernel calls are the real syscalls.
import { createHash } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  chownSync,
  closeSync,
  constants as fsConstants,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  rmdirSync,
  statSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsError, O, PathFs, RENAME, ROOT_INO, S, splitPath, type Attr, type Context, type DynFileSystem } from "@msb/fs";
import { PassthroughFs } from "@msb/fs-passthrough";
import * as native from "@msb/native";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OverlayFs } from "./index.js";
import { canMountOverlay, mountOverlay, unmount } from "./kernel.fixture.js";

const ROOT: Context = { uid: 0, gid: 0, pid: 1 };
/** The unprivileged caller some ops run as, one of the owners the layers use. */
const USER: Context = { uid: 1000, gid: 1000, pid: 1, groups: [1000] };
/**
 * Ops that always run as root, for checks that are not the filesystem's:
 * `link` meets the kernel's fs.protected_hardlinks (a VFS policy, applied
 * above a FUSE filesystem too); `read` would meet PathFs's EISDIR before the
 * EACCES the kernel's open of an unreadable directory gives; `setxattr`
 * would meet the `@msb/fs` xattr checks, which miss the kernel's EPERM for
 * user.* on a sticky directory the caller does not own.
 */
const ROOT_ONLY = new Set<Op[0]>(["link", "read", "setxattr"]);
const UMASK = 0o022;
const OPS_PER_SEED = 1000;
const SEEDS = Number(process.env.MSB_OVERLAY_DIFF_SEEDS ?? 10);
const FIRST_SEED = Number(process.env.MSB_OVERLAY_DIFF_SEED ?? 1);
/** Names of files and directories; paths are up to three of them deep. */
const NAMES = ["a", "b", "c", "d"];
/** The only names symlinks get. */
const LINK_NAMES = ["l0", "l1"];
// No target has `..`: the kernel's `..` at the mount's root leaves the mount,
// and PathFs climbs `..` without the search permission check the kernel makes.
const SYMLINK_TARGETS = ["a", "b/c", "missing", ".", "l0", "l1"];
const MODES = [0o644, 0o600, 0o755, 0o700, 0o444, 0o4755, 0o2755, 0o1777, 0o000];
const DIR_MODES = [0o755, 0o700, 0o1777, 0o2755, 0o555];
const OWNERS = [0, 1000, 1001];
const USER_XATTRS = ["user.a", "user.b"];
// Only on plain names: on a symlink, PassthroughFs keeps trusted.* in a host user.* xattr, which Linux refuses on symlinks (EPERM).
const TRUSTED_XATTR = "trusted.t";

/** A small seeded generator (mulberry32), so a seed replays exactly. */
class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

// ---- lower layers ---------------------------------------------------------

type LayerEntry =
  | { readonly kind: "file"; readonly content: string; readonly mode: number; readonly uid: number; readonly gid: number; readonly xattr: string | undefined }
  | { readonly kind: "dir"; readonly mode: number; readonly uid: number; readonly gid: number; readonly opaque: boolean }
  | { readonly kind: "symlink"; readonly target: string }
  | { readonly kind: "hardlink"; readonly to: string }
  | { readonly kind: "whiteout" };

/** One lower layer: paths (parents first) and what they are. */
type Layer = [path: string, entry: LayerEntry][];

const join2 = (dir: string, name: string): string => (dir === "" ? name : `${dir}/${name}`);

/**
 * A random layer over `below` (the directories the layers under it show).
 * Whiteouts go only into directories that merge with one below: the kernel
 * hides whiteouts only there, and a diff tool writes them only there.
 */
function randomLayer(random: Random, below: ReadonlySet<string> | undefined): Layer {
  const layer: Layer = [];
  const files: string[] = [];
  const dirs: string[] = [""];
  const fill = (dir: string, depth: number, merges: boolean): void => {
    for (const name of NAMES) {
      const path = join2(dir, name);
      const roll = random.next();
      if (roll < 0.3) continue;
      if (roll < 0.55) {
        const xattr = random.chance(0.2) ? `x${random.below(100)}` : undefined;
        layer.push([path, { kind: "file", content: `${path}@${random.below(1000)}\n`.repeat(random.below(4)), mode: random.pick(MODES), uid: random.pick(OWNERS), gid: random.pick(OWNERS), xattr }]);
        files.push(path);
      } else if (roll < 0.8 && depth < 2) {
        const opaque = below !== undefined && random.chance(0.15);
        layer.push([path, { kind: "dir", mode: random.pick(DIR_MODES), uid: random.pick(OWNERS), gid: random.pick(OWNERS), opaque }]);
        dirs.push(path);
        fill(path, depth + 1, !opaque && below?.has(path) === true);
      } else if (merges && roll < 0.92) {
        layer.push([path, { kind: "whiteout" }]);
      }
    }
    for (const name of LINK_NAMES) {
      if (random.chance(0.25)) layer.push([join2(dir, name), { kind: "symlink", target: random.pick(SYMLINK_TARGETS) }]);
    }
  };
  fill("", 0, below !== undefined);
  const taken = new Set(layer.map(([path]) => path));
  for (let i = 0; i < 2 && files.length > 0; i++) {
    const path = join2(random.pick(dirs), random.pick(NAMES));
    if (!taken.has(path)) {
      taken.add(path);
      layer.push([path, { kind: "hardlink", to: random.pick(files) }]);
    }
  }
  return layer;
}

/** The directories the merged view of `layers` (bottom first) shows. */
function mergedDirs(layers: readonly Layer[]): Set<string> {
  const dirs = new Set<string>([""]);
  const drop = (path: string): void => {
    for (const d of [...dirs]) if (d === path || d.startsWith(`${path}/`)) dirs.delete(d);
  };
  for (const layer of layers) {
    for (const [path, e] of layer) {
      if (e.kind !== "dir" || e.opaque) drop(path);
      if (e.kind === "dir") dirs.add(path);
    }
  }
  return dirs;
}

/** Writes `layer` under `dir`, whiteouts and opaque markers in the OCI form or in the kernel's. */
function materialise(layer: Layer, dir: string, form: "oci" | "kernel"): void {
  mkdirSync(dir);
  const at = (path: string): string => join(dir, path);
  const dirModes: [string, number][] = [];
  for (const [path, e] of layer) {
    switch (e.kind) {
      case "file":
        writeFileSync(at(path), e.content);
        if (e.xattr !== undefined) native.setxattr(at(path), "user.x", Buffer.from(e.xattr));
        chownSync(at(path), e.uid, e.gid);
        chmodSync(at(path), e.mode);
        break;
      case "dir":
        mkdirSync(at(path));
        chownSync(at(path), e.uid, e.gid);
        dirModes.push([at(path), e.mode]);
        if (e.opaque && form === "oci") writeFileSync(join(at(path), ".wh..wh..opq"), "");
        if (e.opaque && form === "kernel") native.setxattr(at(path), "trusted.overlay.opaque", Buffer.from("y"));
        break;
      case "symlink":
        symlinkSync(e.target, at(path));
        break;
      case "hardlink":
        linkSync(at(e.to), at(path));
        break;
      case "whiteout": {
        const slash = path.lastIndexOf("/");
        if (form === "oci") writeFileSync(join(dir, path.slice(0, slash + 1), `.wh.${path.slice(slash + 1)}`), "");
        else native.mknodat(native.constants.AT_FDCWD, at(path), S.IFCHR | 0o000, 0);
        break;
      }
    }
  }
  for (const [path, mode] of dirModes) chmodSync(path, mode);
}

// ---- operations -----------------------------------------------------------

type Op =
  | ["write", string, string, number, boolean]
  | ["append", string, string]
  | ["truncate", string, number]
  | ["rename", string, string, number]
  | ["link", string, string]
  | ["symlink", string, string]
  | ["unlink", string]
  | ["rmdir", string]
  | ["mkdir", string, number]
  | ["chmod", string, number]
  | ["chown", string, number, number, boolean]
  | ["utimens", string, number, number]
  | ["setxattr", string, string, string]
  | ["read", string]
  | ["list", string]
  | ["lstat", string]
  /** Opens a file for reading, appends to it by name (a copy-up, for a lower file), then reads it all through the first handle. */
  | ["readAcrossAppend", string, string];

/** What an op answered: its result, or its errno name. */
type Answer = unknown;

/** Picks paths: often ones that existed or were made, else any of the pool. */
class Paths {
  readonly #random: Random;
  readonly #known: string[];

  constructor(random: Random, lowers: readonly Layer[]) {
    this.#random = random;
    this.#known = [...new Set(lowers.flatMap((layer) => layer.filter(([, e]) => e.kind !== "whiteout").map(([path]) => path)))];
  }

  /** A path whose last name is a file or directory name. */
  plain(): string {
    if (this.#random.chance(0.6)) {
      const known = this.#known.filter((p) => !LINK_NAMES.includes(p.slice(p.lastIndexOf("/") + 1)));
      if (known.length > 0) return this.#random.pick(known);
    }
    const depth = 1 + this.#random.below(3);
    return Array.from({ length: depth }, () => this.#random.pick(NAMES)).join("/");
  }

  /** A path whose last name is a symlink name. */
  link(): string {
    const depth = this.#random.below(3);
    return [...Array.from({ length: depth }, () => this.#random.pick(NAMES)), this.#random.pick(LINK_NAMES)].join("/");
  }

  any(): string {
    return this.#random.chance(0.8) ? this.plain() : this.link();
  }

  /** Two paths of the same kind, so a rename or link never puts a symlink under a plain name. */
  pair(): [string, string] {
    return this.#random.chance(0.85) ? [this.plain(), this.plain()] : [this.link(), this.link()];
  }

  made(path: string): void {
    if (!this.#known.includes(path)) this.#known.push(path);
  }
}

/** One op, or a few that remove a name and make it again in another form. */
function randomOps(random: Random, paths: Paths): Op[] {
  const data = (): string => "w".repeat(random.below(40)) + String(random.below(10));
  const roll = random.below(100);
  if (roll < 8) {
    const path = paths.plain();
    return random.pick<Op[]>([
      [["unlink", path], ["write", path, data(), random.pick(MODES), false], ["lstat", path]],
      [["rmdir", path], ["mkdir", path, random.pick(DIR_MODES)], ["list", path]],
      [["unlink", path], ["mkdir", path, random.pick(DIR_MODES)], ["list", path]],
      [["rmdir", path], ["write", path, data(), random.pick(MODES), true], ["read", path]],
      [["rename", path, paths.plain(), 0], ["mkdir", path, random.pick(DIR_MODES)], ["list", path]],
      [["rename", path, paths.plain(), 0], ["write", path, data(), random.pick(MODES), false], ["read", path]],
    ]);
  }
  const one = (): Op => {
    const [from, to] = paths.pair();
    if (roll < 20) return ["write", paths.plain(), data(), random.pick(MODES), random.chance(0.3)];
    if (roll < 27) return ["append", paths.plain(), data()];
    if (roll < 32) return ["truncate", paths.any(), random.below(20)];
    if (roll < 42) return ["rename", from, to, random.pick([0, 0, 0, RENAME.NOREPLACE, RENAME.EXCHANGE])];
    if (roll < 47) return ["link", from, to];
    if (roll < 51) return ["symlink", random.pick(SYMLINK_TARGETS), paths.link()];
    if (roll < 58) return ["unlink", paths.any()];
    if (roll < 64) return ["rmdir", paths.plain()];
    if (roll < 70) return ["mkdir", paths.plain(), random.pick(DIR_MODES)];
    if (roll < 74) return ["chmod", paths.any(), random.pick(MODES)];
    if (roll < 78) return ["chown", paths.any(), random.pick(OWNERS), random.pick(OWNERS), random.chance(0.5)];
    if (roll < 81) return ["utimens", paths.any(), 1_000_000 + random.below(1000), 2_000_000 + random.below(1000)];
    if (roll < 85) {
      const trusted = random.chance(0.3);
      return ["setxattr", trusted ? paths.plain() : paths.any(), trusted ? TRUSTED_XATTR : random.pick(USER_XATTRS), `v${random.below(100)}`];
    }
    if (roll < 88) return ["read", paths.any()];
    if (roll < 90) return ["readAcrossAppend", paths.plain(), data()];
    if (roll < 95) return ["list", random.chance(0.2) ? "" : paths.plain()];
    return ["lstat", paths.any()];
  };
  return [one()];
}

const hash = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex").slice(0, 16);

/** What the final trees and `lstat` compare. A directory's size is left out: each side's host filesystem picks it. */
function describeAttr(a: { mode: number; uid: number; gid: number; size: number; nlink: number }): string {
  const type = a.mode & S.IFMT;
  const base = `${(type >> 12).toString(8)} ${(a.mode & 0o7777).toString(8)} ${a.uid}:${a.gid} nlink ${a.nlink}`;
  return type === S.IFDIR ? base : `${base} size ${a.size}`;
}

const DIR_NLINK = /^(4 \S+ \S+ nlink )(\d+)/;

/**
 * True when both sides answered alike. One difference is intended: the
 * kernel answers nlink 1 for a merged directory (and for a renamed lower
 * one, which its redirect keeps merged), OverlayFs its top layer's count, as
 * the conformance kit asks (>= 2, and counting mkdir and rmdir).
 */
function agree(kernel: unknown, ours: unknown): boolean {
  if (JSON.stringify(kernel) === JSON.stringify(ours)) return true;
  if (typeof kernel !== "string" || typeof ours !== "string" || DIR_NLINK.exec(kernel)?.[2] !== "1") return false;
  return ours.replace(DIR_NLINK, "$11") === kernel;
}

/** Runs `call` with `caller`'s effective uid, gid and groups (this process is root). */
function asCaller<T>(caller: Context, call: () => T): T {
  if (caller.uid === 0) return call();
  const groups = process.getgroups!();
  process.setgroups!([...(caller.groups ?? [])]);
  process.setegid!(caller.gid);
  process.seteuid!(caller.uid);
  try {
    return call();
  } finally {
    process.seteuid!(0);
    process.setegid!(0);
    process.setgroups!(groups);
  }
}

/** Runs one op on the kernel's overlayfs mounted at `root`. */
function kernelOp(root: string, op: Op): Answer {
  const p = (path: string): string => join(root, path);
  switch (op[0]) {
    case "write": {
      const fd = openSync(p(op[1]), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | (op[4] ? fsConstants.O_EXCL : 0), op[3]);
      try {
        writeSync(fd, op[2]);
      } finally {
        closeSync(fd);
      }
      return "ok";
    }
    case "append":
      appendFileSync(p(op[1]), op[2]);
      return "ok";
    case "truncate":
      truncateSync(p(op[1]), op[2]);
      return "ok";
    case "rename":
      native.renameat2(native.constants.AT_FDCWD, p(op[1]), native.constants.AT_FDCWD, p(op[2]), op[3]);
      return "ok";
    case "link":
      linkSync(p(op[1]), p(op[2]));
      return "ok";
    case "symlink":
      symlinkSync(op[1], p(op[2]));
      return "ok";
    case "unlink":
      unlinkSync(p(op[1]));
      return "ok";
    case "rmdir":
      rmdirSync(p(op[1]));
      return "ok";
    case "mkdir":
      mkdirSync(p(op[1]), op[2]);
      return "ok";
    case "chmod":
      chmodSync(p(op[1]), op[2]);
      return "ok";
    case "chown":
      (op[4] ? chownSync : lchownSync)(p(op[1]), op[2], op[3]);
      return "ok";
    case "utimens":
      utimesSync(p(op[1]), op[2], op[3]);
      return Math.floor(statSync(p(op[1])).mtimeMs / 1000);
    case "setxattr":
      native.lsetxattr(p(op[1]), op[2], Buffer.from(op[3]));
      return "ok";
    case "read":
      return hash(readFileSync(p(op[1])));
    case "list":
      return readdirSync(p(op[1])).sort();
    case "lstat":
      return describeAttr(lstatSync(p(op[1])));
    case "readAcrossAppend": {
      const fd = openSync(p(op[1]), fsConstants.O_RDONLY);
      try {
        appendFileSync(p(op[1]), op[2]);
        return hash(readFileSync(fd));
      } finally {
        closeSync(fd);
      }
    }
  }
}

/** Runs `use` on the parent directory of `path` (walked by lookup: plain names only) and its last name. */
async function inParent<T>(fs: DynFileSystem, ctx: Context, path: string, use: (parent: number, name: Uint8Array) => Promise<T>): Promise<T> {
  const parts = splitPath(path);
  const held: number[] = [];
  try {
    let dir = ROOT_INO;
    for (const part of parts.slice(0, -1)) {
      dir = (await fs.lookup(ctx, dir, part)).ino;
      held.push(dir);
    }
    return await use(dir, parts[parts.length - 1]!);
  } finally {
    for (const ino of held) await fs.forget(ctx, ino, 1);
  }
}

/** Runs one op on OverlayFs, as the caller `files` runs as. */
async function overlayOp(fs: OverlayFs, files: PathFs, ctx: Context, op: Op): Promise<Answer> {
  switch (op[0]) {
    case "write":
      await files.writeFile(op[1], op[2], { mode: op[3], exclusive: op[4] });
      return "ok";
    case "append":
      await files.appendFile(op[1], op[2]);
      return "ok";
    case "truncate":
      await files.truncate(op[1], op[2]);
      return "ok";
    case "rename":
      await files.rename(op[1], op[2], op[3]);
      return "ok";
    case "link":
      await files.link(op[1], op[2]);
      return "ok";
    case "symlink":
      await files.symlink(op[1], op[2]);
      return "ok";
    case "unlink":
      await inParent(fs, ctx, op[1], (dir, name) => fs.unlink(ctx, dir, name));
      return "ok";
    case "rmdir":
      await inParent(fs, ctx, op[1], (dir, name) => fs.rmdir(ctx, dir, name));
      return "ok";
    case "mkdir":
      await files.mkdir(op[1], { mode: op[2] });
      return "ok";
    case "chmod":
      await files.chmod(op[1], op[2]);
      return "ok";
    case "chown":
      await (op[4] ? files.chown(op[1], op[2], op[3]) : files.lchown(op[1], op[2], op[3]));
      return "ok";
    case "utimens":
      await files.utimes(op[1], op[2], op[3]);
      return (await files.stat(op[1])).mtime.sec;
    case "setxattr": {
      const [path, name, value] = [op[1], op[2], op[3]];
      await inParent(fs, ctx, path, async (dir, last) => {
        const entry = await fs.lookup(ctx, dir, last);
        try {
          await fs.setxattr(ctx, entry.ino, new TextEncoder().encode(name), new TextEncoder().encode(value), 0);
        } finally {
          await fs.forget(ctx, entry.ino, 1);
        }
      });
      return "ok";
    }
    case "read":
      return hash(await files.readFile(op[1]));
    case "list":
      return (await files.readdir(op[1])).map((e) => e.name).sort();
    case "lstat":
      return describeAttr(await files.lstat(op[1]));
    case "readAcrossAppend":
      return inParent(fs, ctx, op[1], async (dir, last) => {
        const { ino } = await fs.lookup(ctx, dir, last);
        try {
          const { fh } = await fs.open(ctx, ino, O.RDONLY);
          try {
            await files.appendFile(op[1], op[2]);
            const chunks: Uint8Array[] = [];
            for (let chunk = await fs.read(ctx, ino, fh, 64 * 1024, 0); chunk.length > 0; chunk = await fs.read(ctx, ino, fh, 64 * 1024, sizeOf(chunks))) chunks.push(chunk);
            return hash(Buffer.concat(chunks));
          } finally {
            await fs.release(ctx, ino, fh, O.RDONLY);
          }
        } finally {
          await fs.forget(ctx, ino, 1);
        }
      });
  }
}

const sizeOf = (chunks: readonly Uint8Array[]): number => chunks.reduce((sum, c) => sum + c.length, 0);

const errnoOf = (error: unknown): string =>
  FsError.isInstance(error) ? error.code : typeof (error as { code?: unknown }).code === "string" ? `${(error as { code: string }).code}` : String(error);

// ---- final trees ----------------------------------------------------------

/** Path → description (attributes, content hash or link target, xattrs), and the hard-link groups. */
interface Tree {
  readonly entries: Record<string, string>;
  readonly linked: string[];
}

const xattrText = (pairs: [string, Uint8Array][]): string =>
  pairs
    .map(([name, value]) => `${name}=${Buffer.from(value).toString()}`)
    .sort()
    .join(",");

function groups(byIno: Map<number, string[]>): string[] {
  return [...byIno.values()]
    .filter((paths) => paths.length > 1)
    .map((paths) => paths.sort().join(" = "))
    .sort();
}

function kernelTree(root: string): Tree {
  const entries: Record<string, string> = {};
  const byIno = new Map<number, string[]>();
  const visit = (rel: string): void => {
    const path = join(root, rel);
    const attr = lstatSync(path);
    const type = attr.mode & S.IFMT;
    const xattrs = native.llistxattr(path).map((name): [string, Uint8Array] => [name.toString(), native.lgetxattr(path, name)]);
    const what = type === S.IFREG ? hash(readFileSync(path)) : type === S.IFLNK ? `-> ${readlinkSync(path)}` : "";
    entries[rel] = `${describeAttr(attr)} ${what} [${xattrText(xattrs)}]`;
    if (type !== S.IFDIR) byIno.set(attr.ino, [...(byIno.get(attr.ino) ?? []), rel]);
    if (type === S.IFDIR) for (const name of readdirSync(path)) visit(join2(rel, name));
  };
  visit("");
  return { entries, linked: groups(byIno) };
}

async function overlayTree(fs: OverlayFs, files: PathFs): Promise<Tree> {
  const entries: Record<string, string> = {};
  const byIno = new Map<number, string[]>();
  for await (const e of files.walk("/")) {
    const attr: Attr = e.attr;
    const type = attr.mode & S.IFMT;
    const xattrs: [string, Uint8Array][] = [];
    for (const name of await fs.listxattr(ROOT, attr.ino)) xattrs.push([new TextDecoder().decode(name), await fs.getxattr(ROOT, attr.ino, name)]);
    const what = type === S.IFREG ? hash(await files.readFile(`/${e.path}`)) : type === S.IFLNK ? `-> ${await files.readlink(`/${e.path}`)}` : "";
    entries[e.path] = `${describeAttr(attr)} ${what} [${xattrText(xattrs)}]`;
    if (type !== S.IFDIR) byIno.set(attr.ino, [...(byIno.get(attr.ino) ?? []), e.path]);
  }
  return { entries, linked: groups(byIno) };
}

// ---- the test -------------------------------------------------------------

/** Runs one seed; answers the op log and `undefined`, or the op log and where the two sides first differed. */
async function runSeed(base: string, seed: number): Promise<{ log: string[]; divergence: string | undefined }> {
  const random = new Random(seed);
  const layers: Layer[] = [];
  for (let count = 2 + random.below(2); layers.length < count; ) layers.push(randomLayer(random, layers.length === 0 ? undefined : mergedDirs(layers)));
  const dir = join(base, `seed-${seed}`);
  mkdirSync(dir);
  const ociDirs = layers.map((layer, i) => {
    materialise(layer, join(dir, `oci-${i}`), "oci");
    return join(dir, `oci-${i}`);
  });
  const kernelDirs = layers.map((layer, i) => {
    materialise(layer, join(dir, `kernel-${i}`), "kernel");
    return join(dir, `kernel-${i}`);
  });
  for (const d of ["upper", "work", "mnt", "ours"]) mkdirSync(join(dir, d));
  const mnt = join(dir, "mnt");
  mountOverlay(kernelDirs, join(dir, "upper"), join(dir, "work"), mnt, ["index=on"]);
  const fs = new OverlayFs({
    lowers: ociDirs.map((rootDir) => new PassthroughFs({ rootDir, readOnly: true })),
    upper: new PassthroughFs({ rootDir: join(dir, "ours") }),
  });
  await fs.init();
  const callers = [ROOT, USER].map((ctx) => ({ ctx, files: new PathFs(fs, { ctx, umask: UMASK }) }));
  const files = callers[0]!.files;
  const log = layers.map((layer, i) => `lower ${i}: ${JSON.stringify(layer)}`);
  try {
    const paths = new Paths(random, layers);
    for (let done = 0; done < OPS_PER_SEED; ) {
      const caller = random.chance(0.3) ? callers[1]! : callers[0]!;
      for (const op of randomOps(random, paths)) {
        done++;
        const as = ROOT_ONLY.has(op[0]) ? callers[0]! : caller;
        let kernel: Answer;
        let ours: Answer;
        try {
          kernel = asCaller(as.ctx, () => kernelOp(mnt, op));
        } catch (error) {
          kernel = errnoOf(error);
        }
        try {
          ours = await overlayOp(fs, as.files, as.ctx, op);
        } catch (error) {
          ours = errnoOf(error);
        }
        log.push(`${as.ctx.uid === 0 ? "" : `as ${as.ctx.uid}: `}${JSON.stringify(op)} -> ${JSON.stringify(kernel)}`);
        if (!agree(kernel, ours)) {
          return { log, divergence: `op ${done}: kernel ${JSON.stringify(kernel)}, OverlayFs ${JSON.stringify(ours)}` };
        }
        if (kernel === "ok" && (op[0] === "write" || op[0] === "mkdir" || op[0] === "symlink" || op[0] === "link" || op[0] === "rename")) {
          paths.made(op[0] === "write" || op[0] === "mkdir" ? op[1] : op[2]);
        }
      }
    }
    const kernelFinal = kernelTree(mnt);
    const ourFinal = await overlayTree(fs, files);
    const diff = Object.keys({ ...kernelFinal.entries, ...ourFinal.entries })
      .sort()
      .filter((path) => !agree(kernelFinal.entries[path], ourFinal.entries[path]))
      .map((path) => `  ${path}: kernel ${kernelFinal.entries[path] ?? "(none)"}, OverlayFs ${ourFinal.entries[path] ?? "(none)"}`);
    if (JSON.stringify(kernelFinal.linked) !== JSON.stringify(ourFinal.linked)) {
      diff.push(`  hard links: kernel ${JSON.stringify(kernelFinal.linked)}, OverlayFs ${JSON.stringify(ourFinal.linked)}`);
    }
    return { log, divergence: diff.length === 0 ? undefined : `final trees differ:\n${diff.join("\n")}` };
  } finally {
    await fs.destroy();
    unmount(mnt);
    rmSync(dir, { recursive: true, force: true });
  }
}

const skip = canMountOverlay();
if (skip !== undefined) console.warn(`OverlayFs random differential test skipped: ${skip}`);

describe.skipIf(skip !== undefined)("OverlayFs against the kernel's overlayfs, seeded random ops", () => {
  let base = "";
  let umask = 0;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), "msb-ovl-random-"));
    // The unprivileged caller must reach the mount point.
    chmodSync(base, 0o755);
    umask = process.umask(UMASK);
  });
  afterAll(() => {
    process.umask(umask);
    rmSync(base, { recursive: true, force: true });
  });

  const seeds = Array.from({ length: SEEDS }, (_, i) => FIRST_SEED + i);
  it.each(seeds)(`seed %i: ${OPS_PER_SEED} ops answer alike and leave the same tree`, { timeout: 60_000 }, async (seed) => {
    const { log, divergence } = await runSeed(base, seed);
    if (divergence !== undefined) {
      console.error(`OverlayFs diverged from the kernel, seed ${seed} (MSB_OVERLAY_DIFF_SEED=${seed} MSB_OVERLAY_DIFF_SEEDS=1 replays it):\n${log.join("\n")}\n${divergence}`);
    }
    expect(divergence, `seed ${seed}`).toBeUndefined();
  });
});
