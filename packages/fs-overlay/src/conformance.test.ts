import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { describeConformance } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { memLayer } from "./overlay.fixture.js";
import { OverlayFs } from "./index.js";

describeConformance({ name: "OverlayFs (no lowers)", create: () => ({ fs: new OverlayFs({ lowers: [], upper: new MemFs() }) }) });

// The kit needs a filesystem that starts empty (its "starts empty" case and
// several root listings), so the populated lowers are hidden at the root by
// whiteouts from the top lower and from the upper: every root lookup, create
// and listing still goes through all three layers and their whiteouts.
describeConformance({
  name: "OverlayFs (two populated lowers, hidden at the root)",
  create: async () => ({
    fs: new OverlayFs({
      lowers: [
        await memLayer({ "/usr/lib/os-release": "ID=base\n", "/etc/hostname": "base\n" }),
        await memLayer({ "/.wh.usr": "", "/etc/motd": "hi\n", "/opt/app/run": "#!/bin/sh\n" }),
      ],
      upper: await memLayer({ "/.wh.etc": "", "/.wh.opt": "" }),
    }),
  }),
});

// A host directory as the upper, as an OCI sandbox runs it. On ext4 a 64 KiB
// xattr value answers ENOSPC (one ~4 KiB xattr block per inode), as the
// upper's own conformance run documents; tmpfs stores it.
const upperBase = existsSync("/dev/shm") ? "/dev/shm" : undefined;
describeConformance({
  name: `OverlayFs (PassthroughFs upper on ${upperBase ?? "the temp dir"}, MemFs lower)`,
  create: async (scratch) => {
    const rootDir = upperBase === undefined ? await scratch.subdir("upper") : await mkdtemp(join(upperBase, "msb-overlay-"));
    return {
      fs: new OverlayFs({ lowers: [await memLayer({ "/.wh.x": "" })], upper: new PassthroughFs({ rootDir }) }),
      cleanup: () => rm(rootDir, { recursive: true, force: true }),
    };
  },
  capabilities: { largeXattrValues: upperBase !== undefined },
});

// Nested: an overlay as the upper of another (with its own staging name: the
// outer one's is reserved in it), and as a lower.
describeConformance({
  name: "OverlayFs (nested: an OverlayFs upper and an OverlayFs lower)",
  create: async () => ({
    fs: new OverlayFs({
      lowers: [new OverlayFs({ lowers: [await memLayer({ "/opt/x": "x" })], upper: await memLayer({ "/.wh.opt": "" }) })],
      upper: new OverlayFs({ lowers: [await memLayer({ "/srv/y": "y" })], upper: await memLayer({ "/.wh.srv": "" }), staging: ".inner-staging" }),
    }),
  }),
});
