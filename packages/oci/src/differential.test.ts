// Differential test: the tree an image serves (an OverlayFs over its unpacked
// layers, read through the DynFileSystem API so owners and modes come from
// user.msb.override_stat) equals what `umoci unpack` (as root) makes of the
// same image: names, types, modes, owners, device numbers, sizes, content
// hashes, link targets, hard-link identity and xattrs.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { O, S, type Context, type DynFileSystem } from "@msb/fs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { lgetxattr, llistxattr } from "@msb/native";
import { afterAll, describe, expect, it } from "vitest";
import { sha256Digest } from "./digest.js";
import { importOciLayout } from "./layout.js";
import { pull } from "./pull.js";
import { ImageStore, type ImageDetails } from "./store.js";
import { buildTar, gnuLongNamesTar, paxFileTar, paxRecord, type TarEntry } from "./test-tar.js";
import { startTestbed, TESTBED } from "./test-registry.js";

function missingTools(): string | undefined {
  for (const tool of ["umoci", "skopeo"]) {
    try {
      execFileSync(tool, ["--version"], { stdio: "pipe" });
    } catch {
      return `${tool} is not installed (the testbed's install.sh installs it)`;
    }
  }
  if (process.getuid?.() !== 0) return "umoci unpack needs root to record owners and device nodes as files";
  return undefined;
}

// The testbed installs umoci and skopeo: start it first.
const skip = startTestbed() ?? missingTools();
if (skip !== undefined) console.warn(`skipping the umoci differential: ${skip}`);

const base = mkdtempSync(join(tmpdir(), "msb-oci-diff-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const scratch = (): string => {
  const dir = join(base, String(n++));
  mkdirSync(dir);
  return dir;
};

/** One name of a tree, as a guest would see it. */
interface TreeNode {
  readonly type: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev?: number;
  readonly size?: number;
  readonly sha256?: string;
  readonly target?: string;
  /** The first name (in walk order) of the same inode, for a hard-linked file. */
  readonly linkOf?: string;
  readonly xattrs: Readonly<Record<string, string>>;
}


const hash = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** What a walk found at one name: lstat's fields, or a served Attr's. */
interface Found {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly ino: number;
  readonly nlink: number;
}

/** Collects the nodes of a walk; a hard-linked file names the first path of its inode the walk met. */
class TreeBuilder {
  readonly tree = new Map<string, TreeNode>();
  readonly #firstName = new Map<number, string>();

  add(path: string, found: Found, xattrs: Record<string, string>, content: Uint8Array | undefined, target: string | undefined): void {
    const type = found.mode & S.IFMT;
    const linked = type === S.IFREG && found.nlink > 1;
    const linkOf = linked ? this.#firstName.get(found.ino) : undefined;
    if (linked && linkOf === undefined) this.#firstName.set(found.ino, path);
    this.tree.set(path, {
      type,
      mode: found.mode & 0o7777,
      uid: found.uid,
      gid: found.gid,
      ...(type === S.IFCHR || type === S.IFBLK ? { rdev: found.rdev } : {}),
      ...(content === undefined ? {} : { size: found.size, sha256: hash(content) }),
      ...(target === undefined ? {} : { target }),
      ...(linkOf === undefined ? {} : { linkOf }),
      xattrs,
    });
  }
}

/** The tree `umoci unpack` left on the host, by lstat. */
function hostTree(root: string): Map<string, TreeNode> {
  const builder = new TreeBuilder();
  const walk = (dir: string, prefix: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = lstatSync(path);
      const type = st.mode & S.IFMT;
      const xattrs: Record<string, string> = {};
      for (const key of llistxattr(path)) xattrs[key.toString("utf8")] = lgetxattr(path, key).toString("hex");
      builder.add(`${prefix}/${name}`, st, xattrs, type === S.IFREG ? readFileSync(path) : undefined, type === S.IFLNK ? readlinkSync(path) : undefined);
      if (type === S.IFDIR) walk(path, `${prefix}/${name}`);
    }
  };
  walk(root, "");
  return builder.tree;
}

const ROOT_CTX: Context = { uid: 0, gid: 0, pid: 0 };
const READ_CHUNK = 1 << 20;

async function readAll(fs: DynFileSystem, ino: number, size: number): Promise<Buffer> {
  const { fh } = await fs.open(ROOT_CTX, ino, O.RDONLY);
  try {
    const chunks: Uint8Array[] = [];
    for (let offset = 0; ; ) {
      const chunk = await fs.read(ROOT_CTX, ino, fh, READ_CHUNK, offset);
      if (chunk.length === 0) break;
      chunks.push(chunk);
      offset += chunk.length;
      if (offset > size) break;
    }
    return Buffer.concat(chunks);
  } finally {
    await fs.release(ROOT_CTX, ino, fh, 0);
  }
}

async function listDir(fs: DynFileSystem, ino: number): Promise<string[]> {
  const { fh } = await fs.opendir(ROOT_CTX, ino, O.RDONLY);
  const names: string[] = [];
  try {
    for (let offset = 0; ; ) {
      const batch = await fs.readdir(ROOT_CTX, ino, fh, offset, 1 << 16);
      if (batch.length === 0) break;
      for (const entry of batch) {
        const name = Buffer.from(entry.name).toString("utf8");
        if (name !== "." && name !== "..") names.push(name);
      }
      offset = batch[batch.length - 1]!.offset;
    }
  } finally {
    await fs.releasedir(ROOT_CTX, ino, fh, 0);
  }
  return names.sort();
}

/** The tree a filesystem serves, read through the DynFileSystem API alone. */
async function servedTree(fs: DynFileSystem): Promise<Map<string, TreeNode>> {
  const builder = new TreeBuilder();
  const walk = async (dirIno: number, prefix: string): Promise<void> => {
    for (const name of await listDir(fs, dirIno)) {
      const entry = await fs.lookup(ROOT_CTX, dirIno, Buffer.from(name));
      try {
        const { attr } = entry;
        const type = attr.mode & S.IFMT;
        const xattrs: Record<string, string> = {};
        for (const key of await fs.listxattr(ROOT_CTX, entry.ino)) {
          xattrs[Buffer.from(key).toString("utf8")] = Buffer.from(await fs.getxattr(ROOT_CTX, entry.ino, key)).toString("hex");
        }
        const content = type === S.IFREG ? await readAll(fs, entry.ino, attr.size) : undefined;
        const target = type === S.IFLNK ? Buffer.from(await fs.readlink(ROOT_CTX, entry.ino)).toString("utf8") : undefined;
        builder.add(`${prefix}/${name}`, attr, xattrs, content, target);
        if (type === S.IFDIR) await walk(entry.ino, `${prefix}/${name}`);
      } finally {
        await fs.forget(ROOT_CTX, entry.ino, 1);
      }
    }
  };
  await walk(1, "");
  return builder.tree;
}

/** The image as `msb mount` serves it: its layers read-only under an empty upper. */
async function imageTree(image: ImageDetails): Promise<Map<string, TreeNode>> {
  const upperDir = scratch();
  const fs = new OverlayFs({
    lowers: image.layerDirs.map((rootDir) => new PassthroughFs({ rootDir, readOnly: true })),
    upper: new PassthroughFs({ rootDir: upperDir }),
  });
  await fs.init();
  try {
    const tree = await servedTree(fs);
    // The upper's staging directory is the overlay's own, not the image's.
    tree.delete("/.msb-staging");
    return tree;
  } finally {
    await fs.destroy();
  }
}

/** `umoci unpack` of `layout:tag`, as root. */
function umociTree(layout: string, tag: string): Map<string, TreeNode> {
  const bundle = join(scratch(), "bundle");
  execFileSync("umoci", ["unpack", "--image", `${layout}:${tag}`, bundle], { stdio: "pipe" });
  return hostTree(join(bundle, "rootfs"));
}

function expectSameTree(served: Map<string, TreeNode>, reference: Map<string, TreeNode>): void {
  expect([...served.keys()]).toEqual([...reference.keys()]);
  for (const [path, node] of reference) expect({ path, ...served.get(path) }).toEqual({ path, ...node });
}

/** Writes an OCI image layout of `layers` (uncompressed tars, gzipped here), tagged `tag`. */
function writeLayout(dir: string, tag: string, layers: readonly Buffer[]): void {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  const blob = (bytes: Buffer, mediaType: string): { mediaType: string; digest: string; size: number } => {
    const digest = sha256Digest(bytes);
    writeFileSync(join(dir, "blobs", "sha256", digest.slice("sha256:".length)), bytes);
    return { mediaType, digest, size: bytes.length };
  };
  const config = blob(
    Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: layers.map((tar) => sha256Digest(tar)) } })),
    "application/vnd.oci.image.config.v1+json",
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config,
        layers: layers.map((tar) => blob(gzipSync(tar), "application/vnd.oci.image.layer.v1.tar+gzip")),
      }),
    ),
    "application/vnd.oci.image.manifest.v1+json",
  );
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": tag } }] }));
}

const dir = (name: string, mode = 0o755, owner = 0): TarEntry => ({ header: { name, type: "directory", mode, uid: owner, gid: owner } });
const file = (name: string, data: string, header: Partial<TarEntry["header"]> = {}): TarEntry => ({ header: { name, ...header }, data });
const LONG_DIR = `${"d".repeat(120)}/${"e".repeat(90)}`;

/** Layers exercising what an unpacker can get wrong, bottom first. */
async function handBuiltLayers(): Promise<Buffer[]> {
  const bottom = await buildTar([
    dir("etc/"),
    file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
    dir("home/", 0o755),
    dir("home/app/", 0o750, 1000),
    file("home/app/secret", "s3cret", { mode: 0o600, uid: 1000, gid: 1000 }),
    file("usr/bin/su", "#!su", { mode: 0o4755 }),
    file("usr/bin/wall", "#!wall", { mode: 0o2755, gid: 5 }),
    dir("tmp/", 0o1777),
    file("hard/one", "shared by three names"),
    { header: { name: "hard/two", type: "link", linkname: "hard/one" } },
    { header: { name: "hard/three", type: "link", linkname: "hard/one" } },
    { header: { name: "bin/sh", type: "symlink", linkname: "/usr/bin/busybox" } },
    { header: { name: "dangling", type: "symlink", linkname: "../nowhere/at/all" } },
    { header: { name: "dev/null", type: "character-device", mode: 0o666, devmajor: 1, devminor: 3 } },
    { header: { name: "dev/sda", type: "block-device", mode: 0o660, gid: 6, devmajor: 8, devminor: 0 } },
    { header: { name: "run/fifo", type: "fifo", mode: 0o644 } },
    file("xattr/file", "with xattrs", { pax: { "SCHILY.xattr.user.comment": "hello", "SCHILY.xattr.trusted.note": "kept" } }),
    file(`${LONG_DIR}/${"f".repeat(150)}`, "PAX long name"),
    file("gone", "whited out later"),
    dir("gonedir/"),
    file("gonedir/inner", "gone with its directory"),
    dir("redone/"),
    file("redone/old", "gone with the directory's first version"),
    dir("opaque/"),
    file("opaque/old", "hidden by the opaque marker"),
    file("replaced", "first version"),
    dir("empty/", 0o700),
  ]);
  const middle = gnuLongNamesTar(`gnu/${"g".repeat(140)}`, "GNU long name", `gnu/${"l".repeat(130)}`, `/target/${"t".repeat(120)}`);
  const top = await buildTar([
    file(".wh.gone", ""),
    file(".wh.gonedir", ""),
    // Removed from the layers below and made anew in this one.
    file(".wh.redone", ""),
    dir("redone/", 0o711),
    file("redone/new", "made again"),
    file("opaque/.wh..wh..opq", ""),
    file("opaque/new", "after the opaque marker"),
    file("replaced", "second version", { mode: 0o640, uid: 33, gid: 33 }),
    dir("etc/", 0o700),
  ]);
  const binaryXattrs = paxFileTar("xattr/binary", "binary xattr values", [
    paxRecord("SCHILY.xattr.user.bin", Buffer.from([0xff, 0x00, 0xfe, 0x80, 0x0a])),
    paxRecord("SCHILY.xattr.trusted.bin", Buffer.from([0xc3, 0x28, 0x00])),
  ]);
  return [bottom, middle, binaryXattrs, top];
}

/** Every repository:tag the testbed's plain registry serves. */
async function testbedImages(): Promise<string[]> {
  const get = async (path: string): Promise<unknown> => (await fetch(`http://${TESTBED.plain}${path}`)).json();
  const { repositories } = (await get("/v2/_catalog")) as { repositories: string[] };
  const images: string[] = [];
  for (const repo of repositories) {
    const { tags } = (await get(`/v2/${repo}/tags/list`)) as { tags: string[] | null };
    for (const tag of tags ?? []) images.push(`${repo}:${tag}`);
  }
  return images.sort();
}

describe.skipIf(skip !== undefined)("an image served by msb equals `umoci unpack` of it", () => {
  it("hand-built layers: whiteouts, opaque dirs, hard links, GNU and PAX long names, devices, set-id bits, text and binary xattrs", async () => {
    const layout = join(scratch(), "layout");
    writeLayout(layout, "test", await handBuiltLayers());
    const image = await importOciLayout(new ImageStore({ home: scratch() }), layout, "msb.local/differential:test");
    const served = await imageTree(image);
    expectSameTree(served, umociTree(layout, "test"));
    // The comparison covers what it claims to: each feature is really in the tree.
    expect(served.get("/hard/three")?.linkOf).toBe("/hard/one");
    expect(["/gone", "/gonedir", "/opaque/old", "/redone/old"].filter((path) => served.has(path))).toEqual([]);
    expect(["/opaque/new", "/redone/new", `/gnu/${"g".repeat(140)}`, `/${LONG_DIR}/${"f".repeat(150)}`].filter((path) => !served.has(path))).toEqual([]);
    expect(served.get("/dev/sda")).toMatchObject({ type: S.IFBLK, uid: 0, gid: 6 });
    expect(served.get("/xattr/binary")?.xattrs).toEqual({ "user.bin": "ff00fe800a", "trusted.bin": "c32800" });
    expect(served.get("/xattr/file")?.xattrs).toMatchObject({ "user.comment": Buffer.from("hello").toString("hex"), "trusted.note": Buffer.from("kept").toString("hex") });
  });

  it("every image of the testbed registry", async () => {
    const images = await testbedImages();
    expect(images).toEqual(expect.arrayContaining(["busybox:latest", "busybox:docker", "busybox:zstd"]));
    // Images with one config have the same layer tars (diff_ids): umoci unpacks each such tree once.
    const references = new Map<string, Map<string, TreeNode>>();
    for (const name of images) {
      const image = await pull(`${TESTBED.plain}/${name}`, { home: scratch(), insecure: [TESTBED.plain] });
      let reference = references.get(image.config.digest);
      if (reference === undefined) {
        const layout = join(scratch(), "layout");
        // umoci 0.4 reads gzip and plain tar layers only: zstd ones reach it recompressed, the same tar inside.
        const zstd = image.layers.some((layer) => layer.mediaType.endsWith("+zstd"));
        const recompress = zstd ? ["--dest-compress-format", "gzip", "--dest-compress"] : [];
        execFileSync("skopeo", ["copy", "-q", "--src-tls-verify=false", ...recompress, `docker://${TESTBED.plain}/${name}`, `oci:${layout}:image`], { stdio: "pipe" });
        reference = umociTree(layout, "image");
        references.set(image.config.digest, reference);
      }
      const served = await imageTree(image);
      expect(served.size, name).toBeGreaterThan(0);
      expectSameTree(served, reference);
    }
  }, 180_000);
});
