// A FUSE server in its own process, for tests that kill it: mounts a MemFs
// on argv[2], prints "ready", and serves until killed.
import { MemFs } from "@msb/fs-memfs";
import { mountFuse } from "./mount.js";

const mountpoint = process.argv[2];
if (mountpoint === undefined) throw new Error("usage: child-server.fixture.ts <mountpoint>");
await mountFuse(new MemFs({ rootMode: 0o777 }), mountpoint, { allowOther: true });
process.stdout.write("ready\n");
