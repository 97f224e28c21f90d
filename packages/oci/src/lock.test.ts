import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acquireLock, withLock } from "./lock.js";

const dir = mkdtempSync(join(tmpdir(), "msb-oci-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("lock files", () => {
  it("serialises holders in one process", async () => {
    const path = join(dir, "a.lock");
    const order: string[] = [];
    await Promise.all(
      ["x", "y", "z"].map((name) =>
        withLock(path, async () => {
          order.push(`${name}+`);
          await new Promise((resolve) => setTimeout(resolve, 5));
          order.push(`${name}-`);
        }),
      ),
    );
    for (let i = 0; i < order.length; i += 2) expect(order[i]!.slice(0, 1)).toBe(order[i + 1]!.slice(0, 1));
    expect(existsSync(path)).toBe(false);
  });

  it("breaks a lock whose owner is dead", async () => {
    const path = join(dir, "stale.lock");
    const dead = spawnSync(process.execPath, ["-e", "process.pid"]).pid;
    writeFileSync(path, `${dead}\n${hostname()}\nold\n`);
    const lock = await acquireLock(path, 1000);
    await lock.release();
    await lock.release();
    expect(existsSync(path)).toBe(false);
  });

  it("times out on a live owner with ERR_OCI_LOCK", async () => {
    const path = join(dir, "live.lock");
    writeFileSync(path, `${process.pid}\n${hostname()}\nlive\n`);
    await expect(acquireLock(path, 50)).rejects.toMatchObject({ code: "ERR_OCI_LOCK", input: path });
  });
});
