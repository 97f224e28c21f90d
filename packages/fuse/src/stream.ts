import type { Duplex } from "node:stream";
import type { DynFileSystem } from "@msb/fs";
import { consoleLogger, describeError } from "./log.js";
import { Size, maxRequestSize } from "./protocol.js";
import { FuseServer, type FuseConnectionInfo, type FuseServerOptions } from "./server.js";

/** Options of {@link serveStream}. */
export interface StreamServeOptions extends FuseServerOptions {
  /** Requests served at once before reading from the stream pauses. Default 1024. */
  readonly maxInflight?: number;
}

/** A filesystem served over a byte stream by {@link serveStream}. */
export interface FuseStream extends AsyncDisposable {
  /** Resolves once INIT has been answered. */
  readonly initialized: Promise<FuseConnectionInfo>;
  /** Resolves when the stream has ended and the backend is destroyed. */
  readonly closed: Promise<void>;
  /** Stops reading, waits for requests in flight, destroys the backend and ends the stream. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `fs` over a duplex byte stream that carries raw FUSE messages both
 * ways, as a guest relays them from its `/dev/fuse` (a virtio-serial port,
 * a socket). There is no extra framing: each message starts with its u32
 * little-endian length, which also delimits it. Messages are reassembled
 * across chunk boundaries; a length below the 40-byte request header or
 * above the largest request the negotiated `maxWrite` allows (see the
 * README) is a protocol violation: it is logged and the stream is closed.
 *
 * @example
 * ```ts
 * const served = serveStream(new MemFs(), guestPort);
 * await served.closed; // the guest went away
 * ```
 */
export function serveStream(fs: DynFileSystem, stream: Duplex, options: StreamServeOptions = {}): FuseStream {
  const log = options.logger ?? consoleLogger(options.debug === true);
  const maxInflight = options.maxInflight ?? 1024;
  if (!Number.isInteger(maxInflight) || maxInflight < 1) throw new TypeError(`serveStream: option maxInflight must be a positive integer, got ${String(maxInflight)}`);

  let writeBlocked = false;
  let stopped = false;
  const writable = (): boolean => !stream.destroyed && !stream.writableEnded;
  // Reading pauses while the peer does not drain our replies or too many requests are in flight.
  const updateFlow = (): void => {
    if (stopped) return;
    const blocked = writeBlocked || server.inflight >= maxInflight;
    if (blocked) stream.pause();
    else {
      if (buffered >= 4) pump();
      if (stream.isPaused() && !rejected) stream.resume();
    }
  };
  const server = new FuseServer(
    fs,
    (head, data) => {
      if (!writable()) return;
      let ok = stream.write(head);
      if (data !== undefined && data.length > 0) ok = stream.write(data) && ok;
      if (!ok && !writeBlocked) {
        writeBlocked = true;
        stream.once("drain", () => {
          writeBlocked = false;
          updateFlow();
        });
      }
      updateFlow();
    },
    { ...options, logger: log },
  );
  const maxFrame = maxRequestSize(server.maxWrite);

  // Chunks received but not yet cut into messages.
  const chunks: Uint8Array[] = [];
  let buffered = 0;
  let rejected = false;

  const peekLength = (): number => {
    const head = new Uint8Array(4);
    let filled = 0;
    for (const chunk of chunks) {
      const take = Math.min(4 - filled, chunk.length);
      head.set(chunk.subarray(0, take), filled);
      filled += take;
      if (filled === 4) break;
    }
    return new DataView(head.buffer).getUint32(0, true);
  };

  const take = (length: number): Uint8Array => {
    // Each message gets its own buffer, so a backend may keep a name or data without pinning a chunk.
    const message = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const chunk = chunks[0]!;
      const part = Math.min(length - filled, chunk.length);
      message.set(chunk.subarray(0, part), filled);
      filled += part;
      if (part === chunk.length) chunks.shift();
      else chunks[0] = chunk.subarray(part);
    }
    buffered -= length;
    return message;
  };

  const reject = (reason: string): void => {
    rejected = true;
    log.warn(`FUSE stream closed: ${reason}`);
    chunks.length = 0;
    buffered = 0;
    stream.destroy();
  };

  /**
   * Serves every complete message buffered, until the in-flight limit. Not
   * re-entered from a reply sent while it runs, so a chunk of many messages
   * to a synchronous backend is a loop, not a recursion.
   */
  let pumping = false;
  const pump = (): void => {
    if (pumping) return;
    pumping = true;
    try {
      while (buffered >= 4 && !rejected && server.inflight < maxInflight) {
        const length = peekLength();
        if (length < Size.IN_HEADER || length > maxFrame) {
          return reject(`message length ${length} outside ${Size.IN_HEADER}..${maxFrame}`);
        }
        if (buffered < length) break;
        server.handle(take(length));
      }
    } finally {
      pumping = false;
    }
  };

  stream.on("data", (chunk: Uint8Array | string) => {
    if (rejected) return;
    if (typeof chunk === "string") return reject("the stream delivers strings, not bytes (it has an encoding set)");
    chunks.push(chunk);
    buffered += chunk.length;
    pump();
    updateFlow();
  });

  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      stopped = true;
      stream.pause();
      await server.close();
      if (writable()) stream.end();
      resolveClosed();
    })());
  stream.once("end", () => void close());
  stream.once("close", () => void close());
  stream.once("error", (error) => {
    log.warn(`FUSE stream failed: ${describeError(error)}`);
    void close();
  });

  return { initialized: server.initialized, closed, close, [Symbol.asyncDispose]: close };
}
