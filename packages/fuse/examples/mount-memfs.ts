// Mounts an in-memory filesystem with @msb/fuse, uses it from a shell in a
// child process, and unmounts. Needs root (or CAP_SYS_ADMIN) and /dev/fuse.
// Run it with: pnpm exec tsx packages/fuse/examples/mount-memfs.ts
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { MemFs } from "@msb/fs-memfs";
import { mountFuse } from "@msb/fuse";

const run = promisify(execFile);

export async function main(): Promise<string> {
  const mountpoint = await mkdtemp(join(tmpdir(), "msb-example-"));
  const mounted = await mountFuse(new MemFs({ capacity: "64MiB" }), mountpoint);
  try {
    // Touch the mount only from other processes (or async fs calls): this
    // thread serves it, so a synchronous call from here would wait for itself.
    const { stdout } = await run("/bin/sh", [
      "-c",
      `cd ${mountpoint} && mkdir -p docs && echo "hello from msb" > docs/hello.txt && cat docs/hello.txt && df -h . | tail -1 | awk '{print $1, $2}'`,
    ]);
    return stdout;
  } finally {
    await mounted.unmount();
    await rm(mountpoint, { recursive: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(await main());
}
