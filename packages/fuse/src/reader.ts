import { pollClose, pollReadable, pollUnref, readNonBlocking } from "@msb/native";
import { describeError } from "./log.js";

/** How the reading ended: `undefined` for the connection's normal end, else what went wrong. */
export type ReaderEnd = string | undefined;

/** Reading of one /dev/fuse descriptor, started by {@link startReader}. */
export interface Reader {
  /** Stops reading; no message is delivered after this returns. Idempotent. */
  stop(): void;
  /** Reading no longer keeps the process alive. */
  unref(): void;
}

/**
 * Requests read per readiness callback at most: the kernel's queue is
 * bounded anyway (one request per blocked caller plus max_background), but
 * a cap lets timers and completions run between batches of a busy mount.
 */
const BATCH = 64;

/** Polling before yielding, see {@link startReader}. */
export interface ReaderSpin {
  /** How long to keep polling, in microseconds; 0 never polls. */
  readonly micros: number;
  /** Whether nothing else waits for this thread (no backend call pending): only then is polling worth it. */
  readonly idle: () => boolean;
}

/**
 * Reads requests from a /dev/fuse descriptor (opened `O_NONBLOCK`, mounted
 * or cloned from one) on this thread: whenever the descriptor is readable
 * (a libuv poll on Node's own loop), the requests queued there are read
 * one by one until none is left, each given to `onMessage` with the
 * descriptor it came from as a view of `buffer`: lent, valid only until
 * `onMessage` returns (the next request is read into the same bytes).
 * `buffer` (at least `maxRequestSize` bytes) may be shared by the readers
 * of one thread. `onEnd` is called once when the connection ends
 * or reading fails, after which nothing more is read.
 *
 * Read errors: ENOENT (the request was interrupted while being read; the
 * kernel dropped it) is skipped; ENODEV (or ECONNABORTED) is the connection's
 * normal end (unmount or abort).
 *
 * With `spin`, a batch that served requests and found the queue empty keeps
 * reading (non-blocking) for up to `spin.micros` while `spin.idle()`, before
 * going back to the event loop: the caller it just answered often sends its
 * next request within microseconds, and catching it here saves the wake-up
 * of a thread (and on a VM, of an idle vCPU) that costs more than serving it.
 */
export function startReader(fd: number, buffer: Uint8Array, onMessage: (message: Uint8Array, fd: number) => void, onEnd: (end: ReaderEnd) => void, spin?: ReaderSpin): Reader {
  const spinMs = (spin?.micros ?? 0) / 1000;
  let ended = false;
  const end = (why: ReaderEnd): void => {
    if (ended) return;
    ended = true;
    pollClose(poll);
    onEnd(why);
  };
  // A poll error (libuv reports POLLERR as EBADF, and /dev/fuse reports POLLERR once the
  // connection is gone) is explained by the read that follows: ENODEV is the normal end.
  const drain = (status: number): void => {
    for (let i = 0; i < BATCH && !ended; i++) {
      let n: number | null;
      try {
        n = readNonBlocking(fd, buffer);
        if (n === null && i > 0 && spinMs > 0 && spin?.idle() === true) {
          const until = performance.now() + spinMs;
          do n = readNonBlocking(fd, buffer);
          while (n === null && performance.now() < until);
        }
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (code === "ENOENT") continue;
        return end(code === "ENODEV" || code === "ECONNABORTED" ? undefined : `reading /dev/fuse failed: ${describeError(error)}`);
      }
      if (n === null) {
        if (status < 0) end(`polling /dev/fuse failed (libuv error ${status})`);
        return;
      }
      if (n === 0) return end("read returned 0 bytes");
      onMessage(buffer.subarray(0, n), fd);
    }
  };
  const poll = pollReadable(fd, drain);
  return {
    stop: () => {
      ended = true;
      pollClose(poll);
    },
    unref: () => pollUnref(poll),
  };
}
