import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeRunDir, sweepStaleRunDirs } from "./run-dir.js";

const base = mkdtempSync(join(tmpdir(), "msb-run-dir-test-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(child.stdout);
}

describe("run directories", () => {
  it("names a new directory after its owner's pid and sweeps those of owners that are gone", async () => {
    const stale = join(base, `msb-vm-${deadPid()}-abcDEF`);
    mkdirSync(stale);
    writeFileSync(join(stale, "console.log"), "left by a SIGKILLed owner");
    const live = join(base, `msb-vm-${process.ppid}-ghiJKL`);
    mkdirSync(live);
    const unrelated = join(base, "msb-vm-notapid-xyz123");
    mkdirSync(unrelated);

    const made = await makeRunDir("msb-vm", base);
    expect(made.startsWith(join(base, `msb-vm-${process.pid}-`))).toBe(true);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(unrelated)).toBe(true);
    // Our own directories are never swept, whatever kind asks.
    expect(await sweepStaleRunDirs("msb-vm", base)).toEqual([]);
    expect(readdirSync(base).sort()).toEqual([made.slice(base.length + 1), `msb-vm-${process.ppid}-ghiJKL`, "msb-vm-notapid-xyz123"].sort());
  });
});
