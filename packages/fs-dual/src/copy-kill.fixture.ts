// A copy across in its own process, for the test that kills it: backend B a
// MemFs holding /data/big (slow to read, so the copy takes a while), backend A
// a PassthroughFs on argv[2]; prints "ready", then appends to the file (which
// copies it to A), then prints "done".
import { PathFs } from "@msb/fs";
import { withSlowReads } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { DualFs } from "./index.js";

/** Size of the file the killed child copies: 32 chunks of 1 MiB. */
export const BIG_SIZE = 32 * 1024 * 1024;

async function main(rootDir: string): Promise<void> {
  const backendB = new MemFs();
  await new PathFs(backendB).mkdir("/data");
  await new PathFs(backendB).writeFile("/data/big", new Uint8Array(BIG_SIZE).fill(7));
  const fs = new DualFs({ backendA: new PassthroughFs({ rootDir }), backendB: withSlowReads(backendB, 40) });
  await fs.init();
  process.stdout.write("ready\n");
  await new PathFs(fs).appendFile("/data/big", "tail");
  process.stdout.write("done\n");
}

const rootDir = process.argv[2];
if (rootDir !== undefined) await main(rootDir);
