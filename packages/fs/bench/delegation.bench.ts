// What wrapping costs on the hot path: a 4 KiB read straight from a backend
// (the reference), through an FsBackend that delegates, and through withHooks
// with a pass-through hook. vitest prints each variant's ratio to the reference.
import { bench, describe } from "vitest";
import { FsBackend, withHooks, type Context } from "../src/index.js";
import { TreeFs } from "../src/tree-fs.fixture.js";

const ctx: Context = { uid: 0, gid: 0, pid: 1 };
const tree = new TreeFs();
const { entry, fh } = tree.create(ctx, 1, new TextEncoder().encode("f"), 0o644, 1, 0);
tree.write(ctx, entry.ino, fh, new Uint8Array(64 * 1024), 0);

class Delegating extends FsBackend {}
const delegating = new Delegating(tree);
const hooked = withHooks(tree, { onRead: (data) => data, onWrite: (data) => data });

describe("4 KiB read", () => {
  bench("backend directly (reference)", () => {
    tree.read(ctx, entry.ino, fh, 4096, 8192);
  });
  bench("through FsBackend delegation", () => {
    void delegating.read(ctx, entry.ino, fh, 4096, 8192);
  });
  bench("through withHooks", () => {
    void hooked.read(ctx, entry.ino, fh, 4096, 8192);
  });
});
