import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PathFs } from "@msb/fs";
import { killMidCopy, stagedFileSizes } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterEach, describe, expect, it } from "vitest";
import { OverlayFs } from "./index.js";
import { BIG_SIZE } from "./copy-up-kill.fixture.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("copy-up under SIGKILL", () => {
  it("leaves the upper with the old view, never half a file, and the next init empties the staging directory", async () => {
    const upper = mkdtempSync(join(tmpdir(), "msb-overlay-kill-"));
    dirs.push(upper);
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
    const fixture = fileURLToPath(new URL("./copy-up-child.fixture.ts", import.meta.url));
    // The parent directory's copy passes through the staging directory too: only a partial file counts.
    const { output, partial } = await killMidCopy(["--import", tsx, fixture, upper], join(upper, ".msb-staging"), BIG_SIZE);
    expect(output).not.toContain("done");
    expect(partial).toBeGreaterThan(0);
    // The file was never renamed into place: the upper shows the lower's (old) view.
    expect(existsSync(join(upper, "data", "big"))).toBe(false);
    expect(stagedFileSizes(join(upper, ".msb-staging")).length).toBeGreaterThan(0);

    const fs = new OverlayFs({ lowers: [new MemFs()], upper: new PassthroughFs({ rootDir: upper }) });
    await fs.init();
    expect(readdirSync(join(upper, ".msb-staging"))).toEqual([]);
    expect(await new PathFs(fs).exists("/data/big")).toBe(false);
    await fs.destroy();
  }, 60_000);
});
