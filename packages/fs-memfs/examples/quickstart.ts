// A MemFs with limits, used through PathFs, then filled until it is full.
// Run it with `pnpm exec tsx packages/fs-memfs/examples/quickstart.ts`.
import { FsError, O, PathFs, ROOT_INO } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";

export async function main(): Promise<string[]> {
  const memfs = new MemFs({ capacity: "1MiB", maxInodes: 1000, maxFileSize: 512 * 1024 });
  const files = new PathFs(memfs);

  await files.mkdir("/etc/app", { recursive: true });
  await files.writeFile("/etc/app/config.json", JSON.stringify({ debug: true }));
  await files.symlink("app/config.json", "/etc/config.json");
  const lines = [`config: ${await files.readFile("/etc/config.json", "utf8")}`];

  // The inode API as FUSE uses it; readInto fills a buffer the caller keeps (no new array per read).
  const root = { uid: 0, gid: 0, pid: 0 };
  const { ino } = await files.stat("/etc/app/config.json");
  const { fh } = memfs.open(root, ino, O.RDONLY);
  const buffer = new Uint8Array(4096);
  const count = memfs.readInto(root, ino, fh, buffer, 0);
  memfs.release(root, ino, fh, 0);
  lines.push(`readInto: ${count} bytes, ${new TextDecoder().decode(buffer.subarray(0, count))}`);

  // Files are sparse: a write far out takes one small page, not the gap.
  await files.writeFile("/sparse", "");
  await files.truncate("/sparse", 500 * 1024);
  lines.push(`sparse: ${(await files.stat("/sparse")).size} bytes, ${memfs.usage.bytes} bytes held`);

  // The capacity is a hard limit: writing past it fails with ENOSPC.
  const chunk = new Uint8Array(256 * 1024);
  try {
    for (let i = 0; ; i++) await files.writeFile(`/blob${i}`, chunk);
  } catch (error) {
    if (!FsError.isInstance(error)) throw error;
    lines.push(`full: ${error.code}`);
  }
  const st = memfs.statfs(root, ROOT_INO);
  lines.push(`statfs: ${st.blocks} blocks of ${st.bsize} bytes, ${st.bfree} free`);
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log((await main()).join("\n"));
}
