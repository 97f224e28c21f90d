import { Worker } from "node:worker_threads";

// The reader thread: blocking read(2)s of /dev/fuse, each request copied into
// its own ArrayBuffer and transferred to the main thread. It runs in a worker
// so that waiting for the kernel never holds one of libuv's four threadpool
// threads (which the backends' own async I/O needs). Kept as source text so
// the same code runs from src/ under vitest and from dist/ after tsup.
//   EINTR: a signal; ENOENT: the request was interrupted while being read
//   (the kernel drops it); both are retried. ENODEV (or ECONNABORTED): the
//   connection ended (unmount or abort), the normal way out.
const READER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { readSync } = require("node:fs");
const { fd, size } = workerData;
const buffer = Buffer.allocUnsafe(size);
for (;;) {
  let n;
  try {
    n = readSync(fd, buffer, 0, size, null);
  } catch (error) {
    if (error.code === "EINTR" || error.code === "ENOENT" || error.code === "EAGAIN") continue;
    const ended = error.code === "ENODEV" || error.code === "ECONNABORTED";
    parentPort.postMessage({ end: ended ? null : String(error.code) + ": " + error.message });
    break;
  }
  if (n === 0) {
    parentPort.postMessage({ end: "read returned 0 bytes" });
    break;
  }
  const message = new Uint8Array(n);
  message.set(buffer.subarray(0, n));
  parentPort.postMessage(message, [message.buffer]);
}
`;

/** How the reader thread ended: `undefined` for the connection's normal end, else what went wrong. */
export type ReaderEnd = string | undefined;

/**
 * Starts the reader thread on a /dev/fuse descriptor already mounted (or
 * cloned from one): `onMessage` gets each request (its own buffer, safe to
 * keep) and the descriptor it was read from, `onEnd` is called once when the
 * connection ends or reading fails.
 */
export function startReader(fd: number, bufferSize: number, onMessage: (message: Uint8Array, fd: number) => void, onEnd: (end: ReaderEnd) => void): Worker {
  const worker = new Worker(READER_SOURCE, { eval: true, workerData: { fd, size: bufferSize }, name: "msb-fuse-reader" });
  let ended = false;
  const end = (why: ReaderEnd): void => {
    if (ended) return;
    ended = true;
    onEnd(why);
  };
  worker.on("message", (message: unknown) => {
    if (message instanceof Uint8Array) onMessage(message, fd);
    else end((message as { end: ReaderEnd }).end ?? undefined);
  });
  worker.on("error", (error) => end(`reader thread failed: ${error.message}`));
  worker.on("exit", (code) => end(code === 0 ? undefined : `reader thread exited with code ${code}`));
  return worker;
}
