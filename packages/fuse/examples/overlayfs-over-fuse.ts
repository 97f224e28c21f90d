// Serves an in-memory filesystem with @msb/fuse (read from two cloned /dev/fuse descriptors) and
// stacks the kernel's overlayfs on it: the FUSE mount is the read-only lower,
// a tmpfs holds the upper. A shell in a child process reads through, writes
// (copy-up) and removes (whiteout); the lower stays as it was. Needs root
// and /dev/fuse. Run it with: pnpm exec tsx packages/fuse/examples/overlayfs-over-fuse.ts
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { MemFs } from "@msb/fs-memfs";
import { mountFuse } from "@msb/fuse";

const run = promisify(execFile);
const sh = async (script: string): Promise<string> => (await run("/bin/sh", ["-c", script])).stdout;

export async function main(): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), "msb-example-"));
  const [lower, tmp, merged] = ["lower", "tmp", "merged"].map((name) => join(base, name)) as [string, string, string];
  await Promise.all([lower, tmp, merged].map((dir) => mkdir(dir)));
  const mounted = await mountFuse(new MemFs({ capacity: "64MiB" }), lower, { readers: 2 });
  try {
    // Mount and unmount overlayfs from a child process: the kernel asks the
    // FUSE lower (served by this thread) while it sets the overlay up.
    await sh(`set -e
      echo "from the FUSE lower" > ${lower}/motd
      echo "removed in the overlay" > ${lower}/old
      mount -t tmpfs tmpfs ${tmp} && mkdir ${tmp}/upper ${tmp}/work
      mount -t overlay overlay -o lowerdir=${lower},upperdir=${tmp}/upper,workdir=${tmp}/work ${merged}`);
    try {
      return await sh(`set -e; cd ${merged}
        cat motd
        echo "changed in the overlay" >> motd; rm old
        echo "merged: $(ls | tr '\\n' ' ')"
        echo "lower:  $(ls ${lower} | tr '\\n' ' ')"
        echo "upper:  $(ls ${tmp}/upper | tr '\\n' ' ')($(stat -c %F ${tmp}/upper/old) whiteout)"`);
    } finally {
      await sh(`umount ${merged}; umount ${tmp}`);
    }
  } finally {
    await mounted.unmount();
    await rm(base, { recursive: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(await main());
}
