import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../examples/sandbox.js";

const home = mkdtempSync(join(tmpdir(), "msb-example-home-"));
process.env.MSB_HOME = home;
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe("examples/sandbox", () => {
  it("runs: a script, a patch, a memfs volume, a timeout", async () => {
    expect(await main()).toEqual(["hello, world", "welcome to the sandbox", "kept in a MemFs on the host", "ERR_MSB_EXEC_TIMEOUT"]);
  }, 120_000);
});
