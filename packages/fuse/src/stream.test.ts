import { mkdtempSync, rmSync } from "node:fs";
import { createServer, createConnection, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsBackend, O, type Context } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { afterEach, describe, expect, it } from "vitest";
import { Bytes, initRequest, parseReply, request, type Reply } from "./client.fixture.js";
import { collectingLogger, type LogLine } from "./harness.fixture.js";
import { Op, maxRequestSize } from "./protocol.js";
import { serveStream, type FuseStream, type StreamServeOptions } from "./stream.js";
import type { DynFileSystem } from "@msb/fs";

/** The guest side: writes request bytes to a socket, cuts the reply stream into messages. */
class Client {
  private buffer = Buffer.alloc(0);
  private readonly replies = new Map<bigint, Reply>();
  private readonly waiters = new Map<bigint, (r: Reply) => void>();
  readonly ended: Promise<void>;

  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 4 && this.buffer.length >= this.buffer.readUInt32LE(0)) {
        const length = this.buffer.readUInt32LE(0);
        const reply = parseReply(Uint8Array.prototype.slice.call(this.buffer, 0, length));
        this.buffer = this.buffer.subarray(length);
        const waiter = this.waiters.get(reply.unique);
        if (waiter === undefined) this.replies.set(reply.unique, reply);
        else waiter(reply);
      }
    });
    this.ended = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  /** Writes `message` in pieces of at most `piece` bytes, one event-loop turn apart. */
  async write(message: Uint8Array, piece = message.length): Promise<void> {
    for (let at = 0; at < message.length; at += piece) {
      this.socket.write(message.subarray(at, at + piece));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  reply(unique: number): Promise<Reply> {
    const key = BigInt(unique);
    const ready = this.replies.get(key);
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiters.set(key, resolve));
  }

  async call(message: Uint8Array, piece?: number): Promise<Reply> {
    const unique = Number(new DataView(message.buffer, message.byteOffset).getBigUint64(8, true));
    await this.write(message, piece);
    return this.reply(unique);
  }
}

// Every socket directory and listener of a test (some connect twice).
const dirs: string[] = [];
const listeners: Server[] = [];
afterEach(() => {
  listeners.splice(0).forEach((listener) => listener.close());
  dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true }));
});

/** A unix socket pair: the server end runs serveStream, the client end is returned. */
async function connect(fs: DynFileSystem, options: StreamServeOptions = {}): Promise<{ client: Client; served: FuseStream; logs: LogLine[] }> {
  const dir = mkdtempSync(join(tmpdir(), "msb-fuse-stream-"));
  dirs.push(dir);
  const path = join(dir, "sock");
  const logs: LogLine[] = [];
  let listener!: Server;
  const accepted = new Promise<FuseStream>((resolve) => {
    listener = createServer((socket) => resolve(serveStream(fs, socket, { logger: collectingLogger(logs), ...options })));
  });
  listeners.push(listener);
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  const socket = createConnection(path);
  await new Promise((resolve) => socket.once("connect", resolve));
  return { client: new Client(socket), served: await accepted, logs };
}

const u64 = (r: Reply, at: number): number => Number(r.view.getBigUint64(at, true));

describe("serveStream", () => {
  it("serves real request bytes split across chunks and coalesced into one", async () => {
    const { client, served } = await connect(new MemFs({ rootMode: 0o777 }));
    expect((await client.call(initRequest(), 7)).error).toBe(0);
    expect((await served.initialized).minor).toBe(45);

    const created = await client.call(request(Op.CREATE, new Bytes().u32(O.RDWR | O.CREAT).u32(0o100644).u32(0o022).u32(0).cstr("f"), { unique: 4 }), 13);
    expect(created.error).toBe(0);
    const [ino, fh] = [u64(created, 0), u64(created, 128)];

    // A 1 MiB WRITE, delivered in 64 KiB pieces.
    const data = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 7) & 0xff);
    const write = await client.call(request(Op.WRITE, new Bytes().u64(fh).u64(0).u32(data.length).u32(0).u64(0).u32(O.RDWR).u32(0).raw(data), { unique: 6, nodeid: ino }), 65536);
    expect(write.view.getUint32(0, true)).toBe(1 << 20);

    // Three requests in one write.
    const three = [8, 10, 12].map((unique, i) => request(Op.READ, new Bytes().u64(fh).u64(i * 1000).u32(100).u32(0).u64(0).u32(0).u32(0), { unique, nodeid: ino }));
    await client.write(Uint8Array.from(three.flatMap((m) => [...m])));
    for (const [i, unique] of [8, 10, 12].entries()) {
      const read = await client.reply(unique);
      expect([...read.body]).toEqual([...data.subarray(i * 1000, i * 1000 + 100)]);
    }
    client.socket.end();
    await served.closed;
  });

  it("closes the stream on a length below the header or above the largest request", async () => {
    for (const length of [39, maxRequestSize(1 << 20) + 1]) {
      const { client, served, logs } = await connect(new MemFs());
      await client.call(initRequest());
      await client.write(new Bytes().u32(length).zeros(36).build());
      await client.ended;
      await served.closed;
      expect(logs.filter((l) => l.level === "warn").map((l) => l.message).join()).toMatch(new RegExp(`message length ${length}`));
    }
  });

  it("destroys the backend once when the peer goes away", async () => {
    let destroyed = 0;
    class Counted extends FsBackend {
      override destroy() {
        destroyed++;
        return super.destroy();
      }
    }
    const { client, served } = await connect(new Counted(new MemFs()));
    await client.call(initRequest());
    client.socket.destroy();
    await served.closed;
    await served.close();
    expect(destroyed).toBe(1);
  });

  it("stops reading at maxInflight and resumes as requests complete", async () => {
    const gates: (() => void)[] = [];
    let peak = 0;
    let running = 0;
    class Slow extends FsBackend {
      override async getattr(ctx: Context, ino: number, fh?: number) {
        peak = Math.max(peak, ++running);
        await new Promise<void>((resolve) => gates.push(resolve));
        running--;
        return super.getattr(ctx, ino, fh);
      }
    }
    const { client, served } = await connect(new Slow(new MemFs()), { maxInflight: 4 });
    await client.call(initRequest());
    const uniques = Array.from({ length: 20 }, (_, i) => 100 + 2 * i);
    await client.write(Uint8Array.from(uniques.flatMap((unique) => [...request(Op.GETATTR, new Bytes().zeros(16), { unique })])));
    const replies = Promise.all(uniques.map((u) => client.reply(u)));
    for (let released = 0; released < 20; ) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      while (gates.length > 0) {
        gates.shift()!();
        released++;
      }
    }
    expect((await replies).every((r) => r.error === 0)).toBe(true);
    expect(peak).toBe(4);
    await served.close();
  });
});
