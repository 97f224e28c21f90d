import { describe, expect, it } from "vitest";
import { FsError, PathFs } from "./index.js";
import { StaticFs, main } from "../examples/static-fs.js";

describe("examples/static-fs", () => {
  it("runs and prints every file through the hook", async () => {
    expect(await main()).toEqual(["motd.txt: HELLO FROM MSB", "version: 0.1.0"]);
  });

  it("is read-only", async () => {
    const files = new PathFs(new StaticFs({ a: "x" }));
    const error: unknown = await files.writeFile("/a", "y").catch((e: unknown) => e);
    expect(FsError.isInstance(error) && error.code).toBe("EROFS");
  });
});
