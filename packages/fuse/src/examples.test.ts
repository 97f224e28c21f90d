import { accessSync, constants } from "node:fs";
import { describe, expect, it } from "vitest";
import { main } from "../examples/mount-memfs.js";
import { main as overlayfsOverFuse } from "../examples/overlayfs-over-fuse.js";

function canMount(): boolean {
  try {
    accessSync("/dev/fuse", constants.R_OK | constants.W_OK);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

describe.skipIf(!canMount())("examples/mount-memfs (needs root and /dev/fuse)", () => {
  it("mounts, is used by a shell, and unmounts", async () => {
    expect(await main()).toBe("hello from msb\nmsb 64M\n");
  });
});

describe.skipIf(!canMount())("examples/overlayfs-over-fuse (needs root and /dev/fuse)", () => {
  it("stacks kernel overlayfs on a FUSE lower: reads, copy-up, whiteout", async () => {
    expect(await overlayfsOverFuse()).toBe(
      [
        "from the FUSE lower",
        "merged: motd ",
        "lower:  motd old ",
        "upper:  motd old (character special file whiteout)",
        "",
      ].join("\n"),
    );
  });
});
