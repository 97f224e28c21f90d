import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PathFs } from "@msb/fs";
import { createScratchDir, killMidCopy, populate } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { describe, expect, it } from "vitest";
import { BIG_SIZE } from "./copy-kill.fixture.js";
import { DualFs } from "./index.js";

describe("a copy across under SIGKILL", () => {
  it("leaves backend A without the file, never half of it, and the next copy empties the staging directory", async () => {
    const scratch = await createScratchDir("msb-dual-kill-");
    try {
      const root = await scratch.subdir("a");
      const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
      const fixture = fileURLToPath(new URL("./copy-kill.fixture.ts", import.meta.url));
      const { output, partial } = await killMidCopy(["--import", tsx, fixture, root], join(root, ".msb-dual-staging"), BIG_SIZE);
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
