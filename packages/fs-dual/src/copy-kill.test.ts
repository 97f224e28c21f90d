import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PathFs } from "@msb/fs";
import { createScratchDir, populate } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { describe, expect, it } from "vitest";
import { BIG_SIZE } from "./copy-kill.fixture.js";
import { DualFs } from "./index.js";

/** Sizes of the regular files in backend A's staging directory (host dir `root`). */
function staged(root: string): number[] {
  const staging = join(root, ".msb-dual-staging");
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

describe("a copy across under SIGKILL", () => {
  it("leaves backend A without the file, never half of it, and the next copy empties the staging directory", async () => {
    const scratch = await createScratchDir("msb-dual-kill-");
    try {
      const root = await scratch.subdir("a");
      const require = createRequire(import.meta.url);
      const child = spawn(
        process.execPath,
        ["--import", pathToFileURL(require.resolve("tsx")).href, fileURLToPath(new URL("./copy-kill.fixture.ts", import.meta.url)), root],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      const exited = new Promise((resolve) => child.once("exit", resolve));
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      let partial: number | undefined;
      while (partial === undefined && !output.includes("done")) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        partial = staged(root).find((size) => size > 0 && size < BIG_SIZE);
      }
      child.kill("SIGKILL");
      await exited;
      expect(output).not.toContain("done");
      expect(partial).toBeGreaterThan(0);
      // Never renamed into place: the parent directory may be there, the file is not.
      expect(existsSync(join(root, "data", "big"))).toBe(false);

      const fs = new DualFs({ backendA: new PassthroughFs({ rootDir: root }), backendB: await populate(new MemFs(), { "/data/big": "old", "/x": "x" }) });
      await fs.init();
      const files = new PathFs(fs);
      expect(await files.readFile("/data/big", "utf8")).toBe("old");
      await files.appendFile("/x", "y");
      expect(readdirSync(join(root, ".msb-dual-staging"))).toEqual([]);
      await fs.destroy();
    } finally {
      await scratch.cleanup();
    }
  }, 60_000);
});
