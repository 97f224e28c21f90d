// DualFs (default policy: backend B read in place, changes in backend A) against
// one MemFs holding the same tree, doing the same work side by side: the
// ratio is what the routing, the whiteout checks and the inode mapping cost.
// Both sides are called as a FUSE server would: by inode, lookups forgotten.
import { O, PathFs, ROOT_INO, S, type Context, type DynFileSystem } from "@msb/fs";
import { populate } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { bench, describe } from "vitest";
import { DualFs } from "../src/index.js";

const ctx: Context = { uid: 0, gid: 0, pid: 1 };
const name = (text: string): Uint8Array => new TextEncoder().encode(text);
const tree: Record<string, string> = { "/etc/hostname": "bench\n" };
for (let i = 0; i < 100; i++) tree[`/listed/entry-${i}`] = "";
const COPY_SIZE = 8 * 1024 * 1024;

async function setup(fs: DynFileSystem, files: PathFs): Promise<{ etc: number; listed: number; hostname: number; data: number }> {
  await fs.init();
  await files.writeFile("/data", new Uint8Array(64 * 1024).fill(0x61));
  const etc = (await fs.lookup(ctx, ROOT_INO, name("etc"))).ino;
  const listed = (await fs.lookup(ctx, ROOT_INO, name("listed"))).ino;
  const hostname = (await fs.lookup(ctx, etc, name("hostname"))).ino;
  const data = (await fs.lookup(ctx, ROOT_INO, name("data"))).ino;
  return { etc, listed, hostname, data };
}

const plain = await populate(new MemFs(), tree);
const plainInos = await setup(plain, new PathFs(plain));
const backendB = await populate(new MemFs(), tree);
await new PathFs(backendB).writeFile("/data", new Uint8Array(64 * 1024).fill(0x61));
const dual = new DualFs({ backendA: new MemFs(), backendB });
await dual.init();
const dualInos = {
  etc: (await dual.lookup(ctx, ROOT_INO, name("etc"))).ino,
  listed: (await dual.lookup(ctx, ROOT_INO, name("listed"))).ino,
  hostname: 0,
  data: (await dual.lookup(ctx, ROOT_INO, name("data"))).ino,
};
dualInos.hostname = (await dual.lookup(ctx, dualInos.etc, name("hostname"))).ino;
const plainFh = plain.open(ctx, plainInos.data, O.RDONLY).fh;
const dualFh = (await dual.open(ctx, dualInos.data, O.RDONLY)).fh;

const lookupForget = async (fs: DynFileSystem, dir: number): Promise<void> => {
  const entry = await fs.lookup(ctx, dir, name("hostname"));
  await fs.forget(ctx, entry.ino, 1);
};

const listAll = async (fs: DynFileSystem, dir: number): Promise<void> => {
  const { fh } = await fs.opendir(ctx, dir, O.RDONLY | O.DIRECTORY);
  for (let offset = 0; ; ) {
    const batch = await fs.readdir(ctx, dir, fh, offset, 64 * 1024);
    if (batch.length === 0) break;
    offset = batch[batch.length - 1]!.offset;
  }
  await fs.releasedir(ctx, dir, fh, O.RDONLY);
};

let created = 0;
const createUnlink = async (fs: DynFileSystem): Promise<void> => {
  const file = name(`c${created++}`);
  const { entry, fh } = await fs.create(ctx, ROOT_INO, file, S.IFREG | 0o644, O.WRONLY | O.CREAT | O.EXCL, 0);
  await fs.release(ctx, entry.ino, fh, O.WRONLY);
  await fs.forget(ctx, entry.ino, 1);
  await fs.unlink(ctx, ROOT_INO, file);
};

describe("lookup + forget of a file in backend B", () => {
  bench("MemFs (reference)", () => lookupForget(plain, plainInos.etc));
  bench("DualFs", () => lookupForget(dual, dualInos.etc));
});

describe("getattr", () => {
  bench("MemFs (reference)", () => void plain.getattr(ctx, plainInos.hostname));
  bench("DualFs", async () => void (await dual.getattr(ctx, dualInos.hostname)));
});

describe("read 4 KiB through an open handle", () => {
  bench("MemFs (reference)", () => void plain.read(ctx, plainInos.data, plainFh, 4096, 8192));
  bench("DualFs", async () => void (await dual.read(ctx, dualInos.data, dualFh, 4096, 8192)));
});

describe("readdir of 100 entries", () => {
  bench("MemFs (reference)", () => listAll(plain, plainInos.listed));
  bench("DualFs", () => listAll(dual, dualInos.listed));
});

describe("create + release + unlink (in backend A)", () => {
  bench("MemFs (reference)", () => createUnlink(plain));
  bench("DualFs", () => createUnlink(dual));
});

// A copy across: appending to an 8 MiB file of B copies it into A first; the
// reference copies the same bytes between two MemFs with PathFs.
const copies = { plain: 0, dual: 0 };
const payload = new Uint8Array(COPY_SIZE).fill(0x62);
const copySource = await populate(new MemFs(), {});
await new PathFs(copySource).writeFile("/big", payload);
const copyB = await populate(new MemFs(), {});
for (let i = 0; i < 50; i++) await new PathFs(copyB).writeFile(`/big-${i}`, payload);
const copyDual = new DualFs({ backendA: new MemFs(), backendB: copyB });
await copyDual.init();
const copyTarget = new MemFs();
describe("copy an 8 MiB file to the other backend", () => {
  bench("MemFs → MemFs with PathFs (reference)", async () => {
    await new PathFs(copyTarget).writeFile(`/big-${copies.plain++}`, await new PathFs(copySource).readFile("/big"));
  }, { iterations: 20, time: 0 });
  bench("DualFs copy across on append", async () => {
    await new PathFs(copyDual).appendFile(`/big-${copies.dual++}`, "!");
  }, { iterations: 20, time: 0 });
});
