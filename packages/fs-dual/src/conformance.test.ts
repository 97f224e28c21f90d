import { rm } from "node:fs/promises";
import { describeConformance, populate } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { DualFs, type DualPolicyFunction, type DualPolicyName } from "./index.js";

// The kit needs a filesystem that starts empty, so backend B's populated
// root is hidden by whiteouts in backend A: every root lookup, create and
// listing still goes through both backends and the whiteouts.
const hiddenB = { "/etc/hostname": "b\n", "/srv/data/x": "x", "/f": "b-file" };
const whiteoutsInA = { "/.msb-wh.etc": "", "/.msb-wh.srv": "", "/.msb-wh.f": "" };

for (const policy of ["ReadBackendBWriteBackendA", "BackendAFallbackToBackendBRead", "MergeReadsBackendAPrecedence"] as const satisfies readonly DualPolicyName[]) {
  describeConformance({
    name: `DualFs ${policy} (MemFs A, populated MemFs B hidden at the root)`,
    create: async () => ({
      fs: new DualFs({ backendA: await populate(new MemFs(), whiteoutsInA), backendB: await populate(new MemFs(), hiddenB), policy }),
    }),
  });
}

describeConformance({
  name: "DualFs BackendAOnly (populated MemFs B never asked)",
  create: async () => ({ fs: new DualFs({ backendA: new MemFs(), backendB: await populate(new MemFs(), hiddenB), policy: "BackendAOnly" }) }),
});

// A user policy that is the mirror of the default one (reads prefer A, every
// change goes to B), with A populated and hidden by whiteouts in B: copies
// and whiteouts run in the other direction. (A policy that splits the tree
// between the backends answers EXDEV for links and renames between the two
// halves, which the kit's single-tree cases do not expect; dual.test.ts covers it.)
const mirrored: DualPolicyFunction = (kind) => (kind === "lookup" || kind === "readdir" ? ["a", "b"] : "b");
describeConformance({
  name: "DualFs user policy (reads prefer A, changes go to B)",
  create: async () => ({
    fs: new DualFs({ backendA: await populate(new MemFs(), hiddenB), backendB: await populate(new MemFs(), whiteoutsInA), policy: mirrored }),
  }),
});

describeConformance({
  name: "DualFs MergeReadsBackendAPrecedence (MemFs A, PassthroughFs B on a host dir)",
  create: async (scratch) => {
    const rootDir = await scratch.subdir("b");
    return {
      fs: new DualFs({
        backendA: await populate(new MemFs(), whiteoutsInA),
        backendB: await populate(new PassthroughFs({ rootDir }), hiddenB),
        policy: "MergeReadsBackendAPrecedence",
      }),
      cleanup: () => rm(rootDir, { recursive: true, force: true }),
    };
  },
});

// Nesting, both ways: an overlay whose lower and upper are DualFs of (MemFs,
// PassthroughFs), and a DualFs whose backend A is an overlay.
describeConformance({
  name: "OverlayFs over DualFs (lower and upper each a DualFs of MemFs and PassthroughFs)",
  create: async (scratch) => {
    const lowerDir = await scratch.subdir("lower-b");
    const upperDir = await scratch.subdir("upper-b");
    return {
      fs: new OverlayFs({
        lowers: [new DualFs({ backendA: new MemFs(), backendB: await populate(new PassthroughFs({ rootDir: lowerDir }), { "/.keep": "" }), policy: "BackendAOnly" })],
        upper: new DualFs({ backendA: new MemFs(), backendB: new PassthroughFs({ rootDir: upperDir }), policy: "MergeReadsBackendAPrecedence" }),
      }),
    };
  },
});

describeConformance({
  name: "DualFs of (OverlayFs over MemFs layers, MemFs)",
  create: async () => ({
    fs: new DualFs({
      backendA: new OverlayFs({ lowers: [await populate(new MemFs(), { "/opt/x": "x" })], upper: await populate(new MemFs(), { "/.wh.opt": "", ...whiteoutsInA }) }),
      backendB: await populate(new MemFs(), hiddenB),
      policy: "ReadBackendBWriteBackendA",
    }),
  }),
});
