import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PathFs } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterEach, describe, expect, it } from "vitest";
import { OverlayFs } from "./index.js";
import { BIG_SIZE } from "./copy-up-kill.fixture.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Sizes of the regular files in the staging directory of host dir `upper` (the parent directory's copy passes through it too). */
function staged(upper: string): number[] {
  const staging = join(upper, ".msb-staging");
  if (!existsSync(staging)) return [];
  const sizes: number[] = [];
  for (const name of readdirSync(staging)) {
    try {
      const st = statSync(join(staging, name));
      if (st.isFile()) sizes.push(st.size);
    } catch {
      // Renamed into place between the listing and the stat.
    }
  }
  return sizes;
}

describe("copy-up under SIGKILL", () => {
  it("leaves the upper with the old view, never half a file, and the next init empties the staging directory", async () => {
    const upper = mkdtempSync(join(tmpdir(), "msb-overlay-kill-"));
    dirs.push(upper);
    const require = createRequire(import.meta.url);
    const child = spawn(
      process.execPath,
      ["--import", pathToFileURL(require.resolve("tsx")).href, fileURLToPath(new URL("./copy-up-child.fixture.ts", import.meta.url)), upper],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise((resolve) => child.once("exit", resolve));
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    // Kill it once part of the copy is in the staging directory.
    let partial: number | undefined;
    while (partial === undefined && !output.includes("done")) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      partial = staged(upper).find((size) => size > 0 && size < BIG_SIZE);
    }
    child.kill("SIGKILL");
    await exited;
    expect(output).not.toContain("done");
    expect(partial).toBeGreaterThan(0);
    // The file was never renamed into place: the upper shows the lower's (old) view.
    expect(existsSync(join(upper, "data", "big"))).toBe(false);
    expect(staged(upper).length).toBeGreaterThan(0);

    const fs = new OverlayFs({ lowers: [new MemFs()], upper: new PassthroughFs({ rootDir: upper }) });
    await fs.init();
    expect(readdirSync(join(upper, ".msb-staging"))).toEqual([]);
    expect(await new PathFs(fs).exists("/data/big")).toBe(false);
    await fs.destroy();
  }, 60_000);
});
