// A copy-up in its own process, for the test that kills it: a MemFs lower
// holding /data/big (slow to read, so the copy takes a while), a
// PassthroughFs upper on argv[2]; prints "ready", then copies the file up by
// appending to it, then prints "done".
import { FsBackend, PathFs, type Context } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { OverlayFs } from "./index.js";
import { BIG_SIZE, bigContent } from "./copy-up-kill.fixture.js";

class SlowReads extends FsBackend {
  override async read(ctx: Context, ino: number, fh: number, size: number, offset: number): Promise<Uint8Array> {
    await new Promise((resolve) => setTimeout(resolve, 40));
    return super.read(ctx, ino, fh, size, offset);
  }
}

const rootDir = process.argv[2];
if (rootDir === undefined) throw new Error("usage: copy-up-child.fixture.ts <upper dir>");
const lower = new MemFs();
await new PathFs(lower).mkdir("/data");
await new PathFs(lower).writeFile("/data/big", bigContent());
const fs = new OverlayFs({ lowers: [new SlowReads(lower)], upper: new PassthroughFs({ rootDir }) });
await fs.init();
process.stdout.write(`ready ${BIG_SIZE}\n`);
await new PathFs(fs).appendFile("/data/big", "tail");
process.stdout.write("done\n");
