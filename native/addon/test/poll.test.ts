import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { fuseBackingOpen, pollClose, pollReadable, readNonBlocking } from "../index.js";
import { expectErrno, thrown, useTmpDir } from "./helpers.js";

/** Lets one turn of the event loop run. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("pollReadable / readNonBlocking", () => {
  const tmp = useTmpDir();
  const fds: number[] = [];
  afterEach(() => {
    for (const fd of fds.splice(0)) fs.closeSync(fd);
  });

  /** Both ends of a FIFO in one non-blocking descriptor (O_RDWR on a FIFO never blocks on Linux). */
  function fifo(): number {
    const path = tmp.join("fifo");
    execFileSync("mkfifo", [path]);
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    fds.push(fd);
    return fd;
  }

  it("calls back on this thread while data is there, reads it without blocking, and stops on close", async () => {
    const fd = fifo();
    const buffer = new Uint8Array(16);
    expect(readNonBlocking(fd, buffer)).toBeNull();
    const seen: string[] = [];
    const poll = pollReadable(fd, (status) => {
      expect(status).toBe(0);
      const n = readNonBlocking(fd, buffer);
      if (n !== null) seen.push(Buffer.from(buffer.subarray(0, n)).toString());
      // Promise reactions queued here run when the callback returns.
      void Promise.resolve().then(() => seen.push("microtask"));
    });
    fs.writeSync(fd, "abc");
    while (seen.length < 2) await turn();
    expect(seen).toEqual(["abc", "microtask"]);
    pollClose(poll);
    pollClose(poll); // idempotent
    fs.writeSync(fd, "def");
    await turn();
    await turn();
    expect(seen).toEqual(["abc", "microtask"]);
    expect(readNonBlocking(fd, buffer)).toBe(3);
  });

  it("a worker ending while it polls closes the poll (no handle outlives its loop)", async () => {
    const fd = fifo();
    const addon = createRequire(import.meta.url).resolve("../index.js");
    const worker = new Worker(
      `const { pollReadable } = require(${JSON.stringify(addon)});
       pollReadable(${fd}, () => {});
       require("node:worker_threads").parentPort.postMessage("polling");`,
      { eval: true },
    );
    await new Promise((resolve) => worker.once("message", resolve));
    expect(await worker.terminate()).toBe(1);
    // This thread's own polls still work afterwards.
    const poll = pollReadable(fd, () => {});
    pollClose(poll);
  });

  it("checks its arguments and reports read errors", () => {
    expect(thrown(() => pollReadable(-1, () => {})).code).toBe("ERR_OUT_OF_RANGE");
    expect(thrown(() => pollReadable(0, "no" as unknown as () => void)).code).toBe("ERR_INVALID_ARG_TYPE");
    expect(thrown(() => pollClose({} as never)).code).toBe("ERR_INVALID_ARG_TYPE");
    expect(thrown(() => readNonBlocking(0, new Float64Array(2) as unknown as Uint8Array)).code).toBe("ERR_INVALID_ARG_TYPE");
    expectErrno(() => readNonBlocking(2 ** 30, new Uint8Array(1)), "EBADF", "read");
  });

  it("fuseBackingOpen needs a FUSE connection that negotiated passthrough", () => {
    const fd = fs.openSync("/dev/null", "r");
    fds.push(fd);
    // Not a /dev/fuse descriptor: the ioctl is not known there.
    expect(["ENOTTY", "EINVAL"]).toContain(thrown(() => fuseBackingOpen(fd, fd)).code);
  });
});
