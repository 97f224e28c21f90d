// AgentClient against a scripted guest on a real unix socket pair: what the
// host does with well-behaved, slow and hostile agents.
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentClient, STREAM_WINDOW } from "./agent.js";
import { isCborMap, type CborMap, type CborValue } from "./cbor.js";
import { VmmError } from "./errors.js";
import { FLAG_CANCEL, FLAG_END, FrameReader, MAX_CHUNK, encodeFrame, type Frame } from "./frame.js";

/** The guest end: receives frames, answers with whatever a test scripts. */
class FakeGuest {
  readonly frames: Frame[] = [];
  private readonly reader = new FrameReader();
  private waiters: (() => void)[] = [];
  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.frames.push(...this.reader.push(chunk));
      for (const wake of this.waiters.splice(0)) wake();
    });
  }
  send(id: number, flags: number, body: CborValue): void {
    this.socket.write(encodeFrame(id, flags, body));
  }
  /** Waits for a frame matching `match` and removes it from the inbox. */
  async next(match: (frame: Frame, body: CborMap) => boolean = () => true): Promise<Frame & { body: CborMap }> {
    for (;;) {
      const index = this.frames.findIndex((f) => (isCborMap(f.body) ? match(f, f.body) : match(f, {})));
      if (index >= 0) return this.frames.splice(index, 1)[0] as Frame & { body: CborMap };
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
  type(t: string): Promise<Frame & { body: CborMap }> {
    return this.next((_, body) => body.t === t);
  }
}

let dir: string | undefined;
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function pair(): Promise<{ host: Socket; guest: FakeGuest }> {
  dir = await mkdtemp(join(tmpdir(), "msb-agent-test-"));
  const path = join(dir, "agent.sock");
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const host = connect(path);
  const guestSocket = await accepted;
  server.close();
  return { host, guest: new FakeGuest(guestSocket) };
}

/** A connected client whose hello the fake guest answered. */
async function connected(): Promise<{ client: AgentClient; guest: FakeGuest }> {
  const { host, guest } = await pair();
  const connecting = AgentClient.connect(host);
  const hello = await guest.type("hello");
  expect(hello.body.versions).toEqual([1]);
  guest.send(hello.id, FLAG_END, { t: "hello", version: 1, agent: "fake 1" });
  return { client: await connecting, guest };
}

const expectCode = async (promise: Promise<unknown>, code: string): Promise<VmmError> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(VmmError.is(error), String(error)).toBe(true);
  expect((error as VmmError).code).toBe(code);
  return error as VmmError;
};

describe("AgentClient", () => {
  it("negotiates the version and reports the agent", async () => {
    const { client } = await connected();
    expect(client.version).toBe(1);
    expect(client.agentName).toBe("fake 1");
    client.close();
  });

  it("refuses a version it did not offer", async () => {
    const { host, guest } = await pair();
    const connecting = AgentClient.connect(host);
    const hello = await guest.type("hello");
    guest.send(hello.id, FLAG_END, { t: "hello", version: 7, agent: "future" });
    await expectCode(connecting, "ERR_VMM_PROTOCOL");
  });

  it("runs an exec: started, output in order, exit; acks what it consumed", async () => {
    const { client, guest } = await connected();
    const proc = client.exec({ argv: ["sh", "-c", "echo hi"], env: ["A=1"], cwd: "/tmp", user: "nobody" });
    const request = await guest.type("exec");
    expect(request.body).toEqual({ t: "exec", argv: ["sh", "-c", "echo hi"], env: ["A=1"], cwd: "/tmp", user: "nobody", stdin: "null" });
    guest.send(request.id, 0, { t: "started", pid: 42 });
    guest.send(request.id, 0, { t: "stdout", data: Buffer.from("hi\n") });
    guest.send(request.id, 0, { t: "stderr", data: Buffer.from("warn\n") });
    const events = proc[Symbol.asyncIterator]();
    expect(await events.next()).toEqual({ done: false, value: { type: "started", pid: 42 } });
    expect(await events.next()).toEqual({ done: false, value: { type: "stdout", data: new Uint8Array(Buffer.from("hi\n")) } });
    expect((await guest.type("ack")).body.bytes).toBe(3);
    expect(await events.next()).toEqual({ done: false, value: { type: "stderr", data: new Uint8Array(Buffer.from("warn\n")) } });
    expect((await guest.type("ack")).body.bytes).toBe(5);
    guest.send(request.id, FLAG_END, { t: "exited", code: 3, signal: null });
    expect(await events.next()).toEqual({ done: false, value: { type: "exited", code: 3, signal: null } });
    expect((await events.next()).done).toBe(true);
    expect(await proc.exit).toEqual({ code: 3, signal: null });
    expect(await proc.pid).toBe(42);
    client.close();
  });

  it("collects output with output()", async () => {
    const { client, guest } = await connected();
    const proc = client.exec({ argv: ["x"] });
    const request = await guest.type("exec");
    guest.send(request.id, 0, { t: "started", pid: 1 });
    guest.send(request.id, 0, { t: "stdout", data: Buffer.from("a") });
    guest.send(request.id, 0, { t: "stdout", data: Buffer.from("b") });
    guest.send(request.id, 0, { t: "stderr", data: Buffer.from("c") });
    guest.send(request.id, FLAG_END, { t: "exited", code: 137, signal: 9 });
    const out = await proc.output();
    expect(Buffer.from(out.stdout).toString()).toBe("ab");
    expect(Buffer.from(out.stderr).toString()).toBe("c");
    expect(out).toMatchObject({ code: 137, signal: 9 });
    client.close();
  });

  it("reports a spawn failure with its kind", async () => {
    const { client, guest } = await connected();
    const proc = client.exec({ argv: ["nope"] });
    const request = await guest.type("exec");
    guest.send(request.id, FLAG_END, { t: "error", code: "ENOENT", errno: 2, message: "nope: not found", kind: "not_found" });
    const error = await expectCode(proc.pid, "ERR_VMM_AGENT");
    expect(error.kind).toBe("not_found");
    expect(error.agentCode).toBe("ENOENT");
    await expectCode(proc.output(), "ERR_VMM_AGENT");
    client.close();
  });

  it("sends stdin in chunks, closes it with END, and cancels on kill", async () => {
    const { client, guest } = await connected();
    const proc = client.exec({ argv: ["cat"], stdin: "pipe" });
    const request = await guest.type("exec");
    guest.send(request.id, 0, { t: "started", pid: 7 });
    await proc.pid;
    await proc.write(new Uint8Array(600 * 1024));
    await proc.closeStdin();
    const chunks = [await guest.type("stdin"), await guest.type("stdin"), await guest.type("stdin"), await guest.type("stdin")];
    expect(chunks.map((c) => (c.body.data as Uint8Array).length)).toEqual([256 * 1024, 256 * 1024, 88 * 1024, 0]);
    expect(chunks.map((c) => c.flags)).toEqual([0, 0, 0, FLAG_END]);
    proc.kill();
    const cancel = await guest.next((f) => (f.flags & FLAG_CANCEL) !== 0);
    expect(cancel.id).toBe(request.id);
    await expectCode(proc.exit, "ERR_VMM_AGENT");
    // Output still in flight for the cancelled stream is ignored, not a violation.
    guest.send(request.id, 0, { t: "stdout", data: Buffer.from("late") });
    guest.send(request.id, FLAG_END, { t: "error", code: "ECANCELED", errno: 125, message: "cancelled" });
    const ping = client.ping();
    guest.send((await guest.type("ping")).id, FLAG_END, { t: "pong" });
    await ping;
    client.close();
  });

  it("stops sending stdin at the window until the guest acks", async () => {
    const { client, guest } = await connected();
    const proc = client.exec({ argv: ["cat"], stdin: "pipe" });
    const request = await guest.type("exec");
    guest.send(request.id, 0, { t: "started", pid: 7 });
    let done = false;
    const writing = proc.write(new Uint8Array(STREAM_WINDOW + 1024)).then(() => (done = true));
    let received = 0;
    while (received < STREAM_WINDOW) received += ((await guest.type("stdin")).body.data as Uint8Array).length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(done).toBe(false);
    guest.send(request.id, 0, { t: "ack", bytes: STREAM_WINDOW });
    await writing;
    expect(((await guest.type("stdin")).body.data as Uint8Array).length).toBe(1024);
    client.close();
  });

  it("treats output past the window as a violation and fails every pending call", async () => {
    const { client, guest } = await connected();
    const proc = client.exec({ argv: ["yes"] });
    const other = client.readFileBytes("/etc/passwd");
    const request = await guest.type("exec");
    await guest.type("fs.read");
    guest.send(request.id, 0, { t: "started", pid: 9 });
    for (let sent = 0; sent <= STREAM_WINDOW; sent += MAX_CHUNK) guest.send(request.id, 0, { t: "stdout", data: new Uint8Array(MAX_CHUNK) });
    await expectCode(proc.exit, "ERR_VMM_PROTOCOL");
    await expectCode(other, "ERR_VMM_PROTOCOL");
    expect((await client.closed)?.code).toBe("ERR_VMM_PROTOCOL");
    await expectCode(client.ping(), "ERR_VMM_PROTOCOL");
  });

  it.each([
    ["garbage bytes", Buffer.from("\x05\x00\x00\x00\x01\x00\x00\x00\x00garbage!")],
    ["an oversized length", Buffer.from([0xff, 0xff, 0xff, 0x7f])],
    ["a frame on a stream never opened", Buffer.from(encodeFrame(999, FLAG_END, { t: "ok" }))],
    ["a body without t", Buffer.from(encodeFrame(1, FLAG_END, { x: 1 }))],
    ["a CANCEL from the guest", Buffer.from(encodeFrame(1, FLAG_CANCEL, undefined))],
    ["a reply of the wrong type", Buffer.from(encodeFrame(2, FLAG_END, { t: "entries", entries: [] }))],
    ["a field of the wrong type", Buffer.from(encodeFrame(2, FLAG_END, { t: "stat", type: "file", size: "big" }))],
  ])("closes the connection on %s", async (_, bytes) => {
    const { client, guest } = await connected();
    const pending = client.stat("/x");
    await guest.type("fs.stat");
    guest.socket.write(bytes);
    await expectCode(pending, "ERR_VMM_PROTOCOL");
  });

  it("fails pending calls with ERR_VMM_GONE when the guest disconnects", async () => {
    const { client, guest } = await connected();
    const proc = client.exec({ argv: ["sleep", "100"] });
    await guest.type("exec");
    guest.socket.destroy();
    await expectCode(proc.exit, "ERR_VMM_GONE");
    expect(await client.closed).toBeUndefined();
  });

  it("streams a file write in chunks of at most 3 MiB and returns the bytes written", async () => {
    const { client, guest } = await connected();
    const data = new Uint8Array(7 * 1024 * 1024).fill(1);
    const writing = client.writeFile("/big", data, { mode: 0o600 });
    const request = await guest.type("fs.write");
    expect(request.body).toEqual({ t: "fs.write", path: "/big", mode: 0o600 });
    const sizes: number[] = [];
    for (;;) {
      const frame = await guest.type("data");
      sizes.push((frame.body.data as Uint8Array).length);
      guest.send(request.id, 0, { t: "ack", bytes: (frame.body.data as Uint8Array).length });
      if ((frame.flags & FLAG_END) !== 0) break;
    }
    expect(sizes).toEqual([MAX_CHUNK, MAX_CHUNK, 1024 * 1024, 0]);
    guest.send(request.id, FLAG_END, { t: "ok", bytes: data.length });
    expect(await writing).toBe(data.length);
    client.close();
  });

  it("stops a write the guest refused early", async () => {
    const { client, guest } = await connected();
    const writing = client.writeFile("/dir", new Uint8Array(10 * 1024 * 1024));
    const request = await guest.type("fs.write");
    guest.send(request.id, FLAG_END, { t: "error", code: "EISDIR", errno: 21, message: "is a directory" });
    const error = await expectCode(writing, "ERR_VMM_AGENT");
    expect(error.agentCode).toBe("EISDIR");
    expect(error.errno).toBe(21);
    // The connection stays usable.
    const ping = client.ping();
    guest.send((await guest.type("ping")).id, FLAG_END, { t: "pong" });
    await ping;
    client.close();
  });

  it("parses list and stat replies", async () => {
    const { client, guest } = await connected();
    const listing = client.list("/");
    guest.send((await guest.type("fs.list")).id, FLAG_END, {
      t: "entries",
      entries: [{ name: "bin", type: "dir", size: 4096, mode: 0o755, mtime: [1700000000, 500000000] }, { name: Uint8Array.from([0xff]), type: "file", size: 1, mode: 0o644, mtime: [0, 0] }],
    });
    const entries = await listing;
    expect(entries[0]).toEqual({ name: "bin", type: "dir", size: 4096, mode: 0o755, mtimeMs: 1700000000500 });
    expect(entries[1]?.name).toEqual(Uint8Array.from([0xff]));
    const stat = client.stat("/l", { follow: false });
    guest.send((await guest.type("fs.stat")).id, FLAG_END, {
      t: "stat", type: "symlink", size: 3, mode: 0o777, uid: 0, gid: 0, mtime: [1, 0], atime: [2, 0], ctime: [3, 0], nlink: 1, ino: 2n ** 63n, target: "bin",
    });
    expect(await stat).toMatchObject({ type: "symlink", target: "bin", ino: 2n ** 63n, atimeMs: 2000 });
    client.close();
  });
});
