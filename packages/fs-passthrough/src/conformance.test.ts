// The whole conformance kit against PassthroughFs over real host directories:
// once on tmpfs (/dev/shm), which stores xattr values up to 64 KiB as the kit
// asks, and once on the default temp dir, usually ext4, where one case differs
// exactly as ext4 itself does (a 64 KiB xattr value answers ENOSPC: ext4 keeps
// an inode's xattrs in one ~4 KiB block).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { statfs } from "@msb/native";
import { describeConformance } from "@msb/fs/testing";
import { PassthroughFs } from "./index.js";

const TMPFS_MAGIC = 0x01021994;
const isTmpfs = (dir: string): boolean => {
  try {
    return statfs(dir).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
};

if (isTmpfs("/dev/shm")) {
  describeConformance({
    name: "PassthroughFs on tmpfs",
    create: async () => {
      const rootDir = await mkdtemp(join("/dev/shm", "msb-passthrough-"));
      return { fs: new PassthroughFs({ rootDir }), cleanup: () => rm(rootDir, { recursive: true, force: true }) };
    },
  });
} else {
  console.warn("PassthroughFs conformance on tmpfs skipped: /dev/shm is not a tmpfs on this machine");
}

describeConformance({
  name: `PassthroughFs on ${tmpdir()}`,
  create: (scratch) => ({ fs: new PassthroughFs({ rootDir: scratch.path }) }),
  capabilities: { largeXattrValues: isTmpfs(process.env.MSB_TEST_TMPDIR ?? tmpdir()) },
});
