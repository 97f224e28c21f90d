// The host side of the agent protocol (PROTOCOL.md): one AgentClient per
// control connection, streams multiplexed by id, flow control both ways.
// Every frame from the guest is validated; a violation closes the connection
// and fails every pending call with ERR_VMM_PROTOCOL.
import type { Duplex } from "node:stream";
import { isCborMap, type CborMap, type CborValue } from "./cbor.js";
import { VmmError, type SpawnFailureKind } from "./errors.js";
import { FLAG_CANCEL, FLAG_END, FrameReader, MAX_CHUNK, encodeFrame, type Frame } from "./frame.js";

/** The protocol versions this client speaks. */
export const PROTOCOL_VERSIONS: readonly number[] = [1];
/** Unacknowledged data bytes per stream direction (PROTOCOL.md, flow control). */
export const STREAM_WINDOW = 8 * 1024 * 1024;
/** Streams open at once; the agent refuses more. */
export const MAX_STREAMS = 1024;
/** stdin is sent in chunks of at most this size, so a large write does not hold up other streams. */
const STDIN_CHUNK = 256 * 1024;

/** A path or argument as the protocol carries it: text, or bytes for what is not UTF-8. */
export type WireString = string | Uint8Array;

/** One FUSE filesystem to attach at `setup`. */
export interface SetupMount {
  /** The virtio-serial port name that carries its FUSE traffic (`fs0`, …). */
  readonly tag: string;
  /** Where it goes in the guest; the first mount is the root `/`. */
  readonly target: string;
  readonly readonly?: boolean;
}

/** What `setup` needs: PROTOCOL.md, setup. */
export interface SetupRequest {
  readonly hostname: string;
  /** Fresh random bytes the guest mixes into its RNG (a restored snapshot shares its RNG state). */
  readonly entropy: Uint8Array;
  /** The wall clock to set, in nanoseconds since the epoch. */
  readonly timeNs: bigint;
  readonly mounts: readonly SetupMount[];
  /** Guest tmpfs mounts; without `size`, the guest kernel's default (half its memory). */
  readonly tmpfs?: readonly { readonly target: string; readonly size?: number }[];
  /** virtio-blk disks to mount, by the serial QEMU gave them. */
  readonly disks?: readonly { readonly serial: string; readonly target: string; readonly fstype: string; readonly readonly?: boolean }[];
}

/** A resource limit for an exec; `null` is unlimited. */
export interface Rlimit {
  readonly resource: "as" | "core" | "cpu" | "data" | "fsize" | "memlock" | "nofile" | "nproc" | "stack";
  readonly soft: number | null;
  readonly hard: number | null;
}

/** An exec request: PROTOCOL.md, exec. */
export interface ExecRequest {
  readonly argv: readonly WireString[];
  /** The whole environment, `KEY=VALUE`; the agent adds nothing. */
  readonly env?: readonly WireString[];
  readonly cwd?: WireString;
  /** A user name, uid, or `user:group` / `uid:gid`. */
  readonly user?: string | number;
  readonly rlimits?: readonly Rlimit[];
  /** Run on a pseudo-terminal of this size; output then all comes as stdout. */
  readonly tty?: { readonly rows: number; readonly cols: number };
  /** `pipe` to write stdin through {@link ExecProcess.write}; default `null` (/dev/null). */
  readonly stdin?: "pipe" | "null";
}

/** How an exec ended. */
export interface ExecExit {
  /** The exit status, or 128 + the signal number when a signal killed it. */
  readonly code: number;
  /** The signal that killed it, or null. */
  readonly signal: number | null;
  /** Microseconds from fork to reaping, as the agent measured them (the guest's own cost of the process). */
  readonly guestMicros?: number;
}

/** An event of a running exec, in order. */
export type ExecEvent =
  | { readonly type: "started"; readonly pid: number }
  | { readonly type: "stdout"; readonly data: Uint8Array }
  | { readonly type: "stderr"; readonly data: Uint8Array }
  | ({ readonly type: "exited" } & ExecExit);

/** Collected output of an exec. */
export interface ExecOutput extends ExecExit {
  readonly stdout: Uint8Array;
  readonly stderr: Uint8Array;
}

/** The type of a guest file, as the fs operations report it. */
export type GuestFileType = "file" | "dir" | "symlink" | "fifo" | "socket" | "char" | "block";

/** A directory entry from `list`. */
export interface GuestDirEntry {
  readonly name: WireString;
  readonly type: GuestFileType;
  readonly size: number;
  /** Permission bits with suid/sgid/sticky, no type bits. */
  readonly mode: number;
  readonly mtimeMs: number;
}

/** File status from `stat`. */
export interface GuestStat {
  readonly type: GuestFileType;
  readonly size: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly nlink: number;
  readonly ino: bigint;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  /** The target of a symlink (stat without following). */
  readonly target?: WireString;
}

interface StreamState {
  /** A frame from the guest for this stream; throws VmmError on a violation. */
  onFrame(frame: Frame, body: CborMap): void;
  /** The connection is gone (or the stream was torn down): fail whatever waits. */
  onFail(error: VmmError): void;
}

/** A message's type for error messages (`t` is checked to be text on arrival). */
const tag = (body: CborMap): string => (typeof body.t === "string" ? body.t : "(untyped)");

const violation = (message: string, input = ""): VmmError => new VmmError("ERR_VMM_PROTOCOL", input, message);

function need<T>(ok: boolean, value: T, body: CborMap, key: string, what: string): T {
  if (!ok) throw violation(`field ${JSON.stringify(key)} of a ${tag(body)} message is not ${what}`);
  return value;
}
const int = (body: CborMap, key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
  const value = body[key];
  return need(typeof value === "number" && value >= min && value <= max, value as number, body, key, `an integer in ${String(min)}..${String(max)}`);
};
const bytes = (body: CborMap, key: string, max = MAX_CHUNK): Uint8Array => {
  const value = body[key];
  return need(value instanceof Uint8Array && value.length <= max, value as Uint8Array, body, key, `bytes of at most ${String(max)}`);
};
const text = (body: CborMap, key: string, max = 64 * 1024): string => {
  const value = body[key];
  return need(typeof value === "string" && value.length <= max, value as string, body, key, "text");
};
const wireString = (body: CborMap, key: string): WireString => {
  const value = body[key];
  return need(typeof value === "string" || value instanceof Uint8Array, value as WireString, body, key, "text or bytes");
};
const optional = <T>(body: CborMap, key: string, read: (body: CborMap, key: string) => T): T | undefined =>
  body[key] === undefined || body[key] === null ? undefined : read(body, key);
/** A `[sec, nsec]` time as milliseconds. */
const timeMs = (body: CborMap, key: string): number => {
  const value = body[key];
  const ok = Array.isArray(value) && value.length === 2 && (typeof value[0] === "number" || typeof value[0] === "bigint") && typeof value[1] === "number" && value[1] >= 0 && value[1] < 1e9;
  const [sec, nsec] = need(ok, value as [number | bigint, number], body, key, "a [sec, nsec] time");
  return Number(sec) * 1000 + Math.floor(nsec / 1e6);
};
const FILE_TYPES = new Set<string>(["file", "dir", "symlink", "fifo", "socket", "char", "block"]);
const fileType = (body: CborMap, key: string): GuestFileType => {
  const value = body[key];
  return need(typeof value === "string" && FILE_TYPES.has(value), value as GuestFileType, body, key, "a file type");
};
const SPAWN_KINDS = new Set<string>(["not_found", "permission_denied", "bad_cwd", "bad_user", "invalid"]);

/** Turns an `error` body into the VmmError the caller sees. */
function agentError(body: CborMap, input: string): VmmError {
  const code = text(body, "code", 64);
  const errno = int(body, "errno", 0, 4095);
  const message = typeof body.message === "string" ? body.message.slice(0, 4096) : code;
  const kind = typeof body.kind === "string" && SPAWN_KINDS.has(body.kind) ? (body.kind as SpawnFailureKind) : undefined;
  return new VmmError("ERR_VMM_AGENT", input, `${code}: ${message}`, { agentCode: code, errno, ...(kind === undefined ? {} : { kind }) });
}

/** Validates a `stat` reply. */
function parseStat(reply: CborMap): GuestStat {
  const ino = reply.ino;
  const target = optional(reply, "target", wireString);
  return {
    type: fileType(reply, "type"),
    size: int(reply, "size"),
    mode: int(reply, "mode", 0, 0o7777),
    uid: int(reply, "uid", 0, 0xffffffff),
    gid: int(reply, "gid", 0, 0xffffffff),
    nlink: int(reply, "nlink"),
    ino: BigInt(need(typeof ino === "number" || typeof ino === "bigint", ino as number | bigint, reply, "ino", "an integer")),
    atimeMs: timeMs(reply, "atime"),
    mtimeMs: timeMs(reply, "mtime"),
    ctimeMs: timeMs(reply, "ctime"),
    ...(target === undefined ? {} : { target }),
  };
}

const describe = (value: WireString): string => (typeof value === "string" ? value : Buffer.from(value).toString("latin1"));

/**
 * Data received on a stream, handed out in order. Bytes are acknowledged to
 * the guest as the consumer takes them, so an idle consumer stops the guest
 * after one window instead of growing this queue.
 */
class Inbox<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (value: IteratorResult<T>) => void; reject: (error: Error) => void } | undefined;
  private done = false;
  private error: Error | undefined;

  constructor(private readonly taken: (item: T) => void) {}

  push(item: T): void {
    if (this.waiter !== undefined) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      this.taken(item);
      resolve({ value: item, done: false });
    } else this.items.push(item);
  }

  end(error?: Error): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    if (this.waiter === undefined) return;
    const { resolve, reject } = this.waiter;
    this.waiter = undefined;
    if (error === undefined) resolve({ value: undefined, done: true });
    else reject(error);
  }

  next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) {
      this.taken(item);
      return Promise.resolve({ value: item, done: false });
    }
    if (this.done) return this.error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(this.error);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }
}

/** Counts data bytes sent and not yet acknowledged, and lets a sender wait for room. */
class SendWindow {
  private unacked = 0;
  private waiters: (() => void)[] = [];
  #failure: Error | (() => Error) | undefined;

  /** Why nothing more may be sent, if so. */
  get failure(): Error | undefined {
    if (typeof this.#failure === "function") this.#failure = this.#failure();
    return this.#failure;
  }

  sent(n: number): void {
    this.unacked += n;
  }

  acked(n: number): void {
    if (n > this.unacked) throw violation(`ack of ${String(n)} bytes exceeds the ${String(this.unacked)} sent`);
    this.unacked -= n;
    this.wake();
  }

  /** Ends sending with `error`, or with what `error` makes when first needed (an Error's stack is dear on a hot path). */
  fail(error: Error | (() => Error)): void {
    this.#failure = error;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  async room(): Promise<void> {
    while (this.#failure === undefined && this.unacked >= STREAM_WINDOW) await new Promise<void>((resolve) => this.waiters.push(resolve));
    const failure = this.failure;
    if (failure !== undefined) throw failure;
  }
}

/**
 * A running guest process. Iterate it for {@link ExecEvent}s, or call
 * {@link ExecProcess.output} to collect everything. Consume one way only.
 */
export class ExecProcess implements AsyncIterable<ExecEvent> {
  /** Resolves with the guest pid once started; rejects with the spawn failure. */
  readonly pid: Promise<number>;
  /** Resolves when the process has exited and all its output was received. */
  readonly exit: Promise<ExecExit>;
  private readonly events: Inbox<ExecEvent>;
  private readonly window = new SendWindow();
  private stdinOpen: boolean;
  private finished = false;

  /** @internal */
  constructor(
    private readonly client: AgentClient,
    readonly id: number,
    readonly command: string,
    stdin: boolean,
  ) {
    this.stdinOpen = stdin;
    this.events = new Inbox((event) => {
      if (event.type === "stdout" || event.type === "stderr") client.ack(id, event.data.length);
    });
    let started!: (pid: number) => void;
    let notStarted!: (error: Error) => void;
    let exited!: (exit: ExecExit) => void;
    let failed!: (error: Error) => void;
    this.pid = new Promise((resolve, reject) => ((started = resolve), (notStarted = reject)));
    this.exit = new Promise((resolve, reject) => ((exited = resolve), (failed = reject)));
    // Callers may only look at one of these; an unobserved rejection is not a crash.
    this.pid.catch(() => undefined);
    this.exit.catch(() => undefined);
    let hasStarted = false;
    const fail = (error: VmmError): void => {
      this.finished = true;
      this.window.fail(error);
      if (!hasStarted) notStarted(error);
      failed(error);
      this.events.end(error);
    };
    client.open(id, {
      onFrame: (frame, body) => {
        const end = (frame.flags & FLAG_END) !== 0;
        switch (body.t) {
          case "started":
            if (hasStarted || end) throw violation("unexpected started message", command);
            hasStarted = true;
            started(int(body, "pid", 1, 0x7fffffff));
            this.events.push({ type: "started", pid: int(body, "pid") });
            return;
          case "stdout":
          case "stderr":
            if (!hasStarted || end) throw violation(`unexpected ${body.t} message`, command);
            client.received(id, bytes(body, "data").length);
            this.events.push({ type: body.t, data: bytes(body, "data") });
            return;
          case "ack":
            this.window.acked(int(body, "bytes"));
            return;
          case "exited": {
            if (!hasStarted || !end) throw violation("exited before started, or not ending the stream", command);
            const guestMicros = optional(body, "guest_us", int);
            const exit = { code: int(body, "code", 0, 255), signal: optional(body, "signal", (b, k) => int(b, k, 1, 64)) ?? null, ...(guestMicros === undefined ? {} : { guestMicros }) };
            this.finished = true;
            this.window.fail(() => new VmmError("ERR_VMM_INVALID", command, "the process has exited"));
            this.events.push({ type: "exited", ...exit });
            this.events.end();
            exited(exit);
            return;
          }
          case "error":
            if (!end) throw violation("an error message must end its stream", command);
            fail(agentError(body, command));
            return;
          default:
            throw violation(`unexpected ${tag(body)} message on an exec stream`, command);
        }
      },
      onFail: fail,
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<ExecEvent> {
    return { next: () => this.events.next() };
  }

  /** Collects stdout, stderr and the exit. */
  async output(): Promise<ExecOutput> {
    const stdout: Uint8Array[] = [];
    const stderr: Uint8Array[] = [];
    for await (const event of this) {
      if (event.type === "stdout") stdout.push(event.data);
      else if (event.type === "stderr") stderr.push(event.data);
      else if (event.type === "exited") {
        const { type: _exited, ...exit } = event;
        return { ...exit, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
      }
    }
    throw violation("exec stream ended without exited", this.command);
  }

  /** Writes to stdin (exec with `stdin: "pipe"`); resolves when the guest window has room again. */
  async write(data: Uint8Array): Promise<void> {
    if (!this.stdinOpen) throw new VmmError("ERR_VMM_INVALID", this.command, "stdin is not open (exec with stdin: \"pipe\", and before closeStdin)");
    for (let offset = 0; offset < data.length; offset += STDIN_CHUNK) {
      await this.window.room();
      const chunk = data.subarray(offset, offset + STDIN_CHUNK);
      this.window.sent(chunk.length);
      await this.client.send(this.id, 0, { t: "stdin", data: chunk });
    }
  }

  /** Closes stdin: the process reads end-of-file. */
  async closeStdin(): Promise<void> {
    if (!this.stdinOpen) return;
    this.stdinOpen = false;
    if (!this.finished) await this.client.send(this.id, FLAG_END, { t: "stdin", data: new Uint8Array(0) });
  }

  /** Sends a signal (to the process group for a tty). */
  async signal(signo: number): Promise<void> {
    if (!Number.isInteger(signo) || signo < 1 || signo > 64) throw new VmmError("ERR_VMM_INVALID", String(signo), "signal must be 1..64");
    if (!this.finished) await this.client.send(this.id, 0, { t: "signal", signo });
  }

  /** Resizes the tty. */
  async resize(rows: number, cols: number): Promise<void> {
    if (![rows, cols].every((n) => Number.isInteger(n) && n > 0 && n <= 0xffff)) throw new VmmError("ERR_VMM_INVALID", `${String(rows)}x${String(cols)}`, "rows and cols must be 1..65535");
    if (!this.finished) await this.client.send(this.id, 0, { t: "resize", rows, cols });
  }

  /** Abandons the exec: the agent SIGKILLs the process; pending reads reject. */
  kill(): void {
    if (this.finished) return;
    this.client.cancel(this.id, new VmmError("ERR_VMM_AGENT", this.command, "ECANCELED: killed", { agentCode: "ECANCELED", errno: 125 }));
  }
}

/** Options of {@link AgentClient.connect}. */
export interface AgentConnectOptions {
  /** Where protocol warnings go. Default: nowhere. */
  readonly onWarning?: (message: string) => void;
}

/**
 * A control connection to the guest agent. {@link AgentClient.connect} does
 * the `hello` exchange; then `setup`, `exec` and the fs operations run
 * concurrently over the one connection.
 *
 * @example
 * ```ts
 * const agent = await AgentClient.connect(socket);
 * const { code, stdout } = await agent.exec({ argv: ["echo", "hi"] }).output();
 * ```
 */
export class AgentClient {
  /** The protocol version agreed. */
  version = 0;
  /** The agent's name and version, from `hello`. */
  agentName = "";
  /** Resolves when the connection has closed; with the error that closed it, if any. */
  readonly closed: Promise<VmmError | undefined>;
  private readonly streams = new Map<number, StreamState>();
  /** Bytes received per stream since the last ack, to check the guest keeps within the window. */
  private readonly unackedIn = new Map<number, number>();
  private readonly cancelled = new Set<number>();
  private readonly reader = new FrameReader();
  private nextId = 1;
  private failure: VmmError | undefined;
  private resolveClosed!: (error: VmmError | undefined) => void;
  private drainWaiters: (() => void)[] = [];

  private constructor(
    private readonly socket: Duplex,
    private readonly onWarning: (message: string) => void,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.on("data", (chunk: Uint8Array) => this.onData(chunk));
    socket.on("drain", () => {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const wake of waiters) wake();
    });
    socket.once("error", (cause) => this.close(new VmmError("ERR_VMM_GONE", "agent", "the agent connection failed", { cause })));
    socket.once("close", () => this.close(new VmmError("ERR_VMM_GONE", "agent", "the agent connection closed")));
  }

  /** Wraps a connected socket to the agent's port and negotiates the version. */
  static async connect(socket: Duplex, options: AgentConnectOptions = {}): Promise<AgentClient> {
    const client = new AgentClient(socket, options.onWarning ?? (() => undefined));
    const hello = await client.request({ t: "hello", versions: [...PROTOCOL_VERSIONS] }, "hello", "hello", (reply) => {
      const version = int(reply, "version", 1, 0xffff);
      if (!PROTOCOL_VERSIONS.includes(version)) throw violation(`agent chose protocol version ${String(version)}, not one offered`);
      return { version, agent: text(reply, "agent", 256) };
    });
    client.version = hello.version;
    client.agentName = hello.agent;
    return client;
  }

  /** Attaches the filesystems (the guest's FUSE ports must already be served) and finishes boot. */
  async setup(request: SetupRequest): Promise<void> {
    const sec = request.timeNs / 1_000_000_000n;
    await this.request(
      {
        t: "setup",
        hostname: request.hostname,
        entropy: request.entropy,
        time: [sec, Number(request.timeNs - sec * 1_000_000_000n)],
        mounts: request.mounts.map((m) => ({ tag: m.tag, target: m.target, ro: m.readonly === true })),
        ...(request.tmpfs === undefined ? {} : { tmpfs: request.tmpfs.map((t) => (t.size === undefined ? { target: t.target } : { target: t.target, size: t.size })) }),
        ...(request.disks === undefined ? {} : { disks: request.disks.map((d) => ({ serial: d.serial, target: d.target, fstype: d.fstype, ro: d.readonly === true })) }),
      },
      "ok",
      "setup",
    );
  }

  /** One round trip; resolves with its duration in milliseconds. */
  async ping(): Promise<number> {
    const start = process.hrtime.bigint();
    await this.request({ t: "ping" }, "pong", "ping");
    return Number(process.hrtime.bigint() - start) / 1e6;
  }

  /** Asks the agent to stop every process, sync, unmount and power off. */
  async shutdown(): Promise<void> {
    await this.request({ t: "shutdown" }, "ok", "shutdown");
  }

  /** Starts a process in the guest. */
  exec(request: ExecRequest): ExecProcess {
    const command = request.argv.map(describe).join(" ");
    if (request.argv.length === 0) throw new VmmError("ERR_VMM_INVALID", command, "argv must not be empty");
    const id = this.allocate(command);
    const process = new ExecProcess(this, id, command, request.stdin === "pipe");
    const body: Record<string, CborValue> = { t: "exec", argv: [...request.argv] };
    if (request.env !== undefined) body.env = [...request.env];
    if (request.cwd !== undefined) body.cwd = request.cwd;
    if (request.user !== undefined) body.user = request.user;
    if (request.rlimits !== undefined) body.rlimits = request.rlimits.map((r) => ({ resource: r.resource, soft: r.soft, hard: r.hard }));
    if (request.tty !== undefined) body.tty = { rows: request.tty.rows, cols: request.tty.cols };
    body.stdin = request.stdin ?? "null";
    this.send(id, 0, body).catch(() => undefined);
    return process;
  }

  /** Streams a guest file's bytes (from `offset`, at most `length`). */
  readFile(path: WireString, options: { offset?: number; length?: number } = {}): AsyncIterable<Uint8Array> {
    const input = describe(path);
    const id = this.allocate(input);
    const inbox = new Inbox<Uint8Array>((data) => this.ack(id, data.length));
    this.open(id, {
      onFrame: (frame, body) => {
        const end = (frame.flags & FLAG_END) !== 0;
        if (body.t === "data" && !end) {
          const data = bytes(body, "data");
          this.received(id, data.length);
          inbox.push(data);
        } else if (body.t === "eof" && end) inbox.end();
        else if (body.t === "error" && end) inbox.end(agentError(body, input));
        else throw violation(`unexpected ${tag(body)} message on an fs.read stream`, input);
      },
      onFail: (error) => inbox.end(error),
    });
    this.send(id, FLAG_END, { t: "fs.read", path, offset: options.offset ?? 0, length: options.length ?? null }).catch(() => undefined);
    return { [Symbol.asyncIterator]: () => ({ next: () => inbox.next(), return: () => this.abandon(id, inbox) }) };
  }

  /** Reads a whole guest file. */
  async readFileBytes(path: WireString): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const part of this.readFile(path)) parts.push(part);
    return Buffer.concat(parts);
  }

  /**
   * Writes a guest file from bytes or a stream of chunks; the agent writes a
   * temporary file and renames it into place at the end (unless `append`).
   * Resolves with the number of bytes written.
   */
  async writeFile(path: WireString, source: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: { mode?: number; append?: boolean } = {}): Promise<number> {
    const input = describe(path);
    const id = this.allocate(input);
    const window = new SendWindow();
    let settle!: { resolve: (body: CborMap) => void; reject: (error: Error) => void };
    const reply = new Promise<CborMap>((resolve, reject) => (settle = { resolve, reject }));
    reply.catch(() => undefined);
    this.open(id, {
      onFrame: (frame, body) => {
        const end = (frame.flags & FLAG_END) !== 0;
        if (body.t === "ack" && !end) window.acked(int(body, "bytes"));
        else if (body.t === "ok" && end) settle.resolve(body);
        else if (body.t === "error" && end) {
          const error = agentError(body, input);
          window.fail(error);
          settle.reject(error);
        } else throw violation(`unexpected ${tag(body)} message on an fs.write stream`, input);
      },
      onFail: (error) => {
        window.fail(error);
        settle.reject(error);
      },
    });
    const body: Record<string, CborValue> = { t: "fs.write", path };
    if (options.mode !== undefined) body.mode = options.mode;
    if (options.append === true) body.append = true;
    try {
      await this.send(id, 0, body);
      const chunks = source instanceof Uint8Array ? [source] : source;
      for await (const chunk of chunks) {
        for (let offset = 0; offset < chunk.length; offset += MAX_CHUNK) {
          await window.room();
          const part = chunk.subarray(offset, offset + MAX_CHUNK);
          window.sent(part.length);
          await this.send(id, 0, { t: "data", data: part });
        }
      }
      await window.room().catch(() => undefined);
      if (window.failure === undefined) await this.send(id, FLAG_END, { t: "data", data: new Uint8Array(0) });
    } catch (error) {
      // Either the guest refused early (its error, already the reply, closed
      // the stream) or the source failed: then abandon the write.
      if (this.streams.has(id)) this.cancel(id, new VmmError("ERR_VMM_INVALID", input, "the write source failed", { cause: error }));
    }
    const ok = await reply;
    return int(ok, "bytes");
  }

  /** Lists a guest directory. */
  list(path: WireString): Promise<GuestDirEntry[]> {
    return this.request({ t: "fs.list", path }, "entries", describe(path), (reply) => {
      const entries = reply.entries;
      if (!Array.isArray(entries)) throw violation("fs.list entries is not an array", describe(path));
      return (entries as readonly CborValue[]).map((entry) => {
        if (!isCborMap(entry)) throw violation("fs.list entry is not a map", describe(path));
        return { name: wireString(entry, "name"), type: fileType(entry, "type"), size: int(entry, "size"), mode: int(entry, "mode", 0, 0o7777), mtimeMs: timeMs(entry, "mtime") };
      });
    });
  }

  /** Status of a guest path; `follow: false` describes a symlink itself. */
  stat(path: WireString, options: { follow?: boolean } = {}): Promise<GuestStat> {
    return this.request({ t: "fs.stat", path, follow: options.follow !== false }, "stat", describe(path), (reply) => parseStat(reply));
  }

  /** Creates a guest directory (`parents` like mkdir -p). */
  async mkdir(path: WireString, options: { mode?: number; parents?: boolean } = {}): Promise<void> {
    await this.request({ t: "fs.mkdir", path, mode: options.mode ?? 0o755, parents: options.parents === true }, "ok", describe(path));
  }

  /** Removes a guest file, or a directory (recursively with `recursive`). */
  async remove(path: WireString, options: { recursive?: boolean } = {}): Promise<void> {
    await this.request({ t: "fs.remove", path, recursive: options.recursive === true }, "ok", describe(path));
  }

  /** Renames a guest path. */
  async rename(from: WireString, to: WireString): Promise<void> {
    await this.request({ t: "fs.rename", from, to }, "ok", describe(from));
  }

  /** Copies a guest file, or a directory tree with `recursive`. */
  async copy(from: WireString, to: WireString, options: { recursive?: boolean } = {}): Promise<void> {
    await this.request({ t: "fs.copy", from, to, recursive: options.recursive === true }, "ok", describe(from));
  }

  /**
   * A request of a protocol extension (a supervisor's `sandbox.*` messages):
   * resolves with the reply of type `expect`; an `error` reply rejects.
   */
  call(body: CborMap, expect: string): Promise<CborMap> {
    return this.request(body, expect, tag(body));
  }

  /** Closes the connection; pending calls reject with `error` (default ERR_VMM_GONE). */
  close(error: VmmError = new VmmError("ERR_VMM_GONE", "agent", "the agent connection was closed")): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const stream of streams) stream.onFail(error);
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
    this.socket.destroy();
    this.resolveClosed(error.code === "ERR_VMM_GONE" ? undefined : error);
  }

  /**
   * Opens a stream whose frames pass through untouched, for a process that
   * relays the protocol to other clients (a sandbox supervisor): `send`
   * forwards a client's frames on the new id; `onFrame` gets the agent's, and
   * `onClose` the error that ended the connection. Bodies are still checked to
   * be message maps; flow control is the relayed client's business.
   */
  relay(onFrame: (flags: number, body: CborMap) => void, onClose: (error: VmmError) => void): { readonly id: number; send(flags: number, body: CborValue | undefined): Promise<void> } {
    const id = this.allocate("relay");
    this.open(id, { onFrame: (frame, body) => onFrame(frame.flags, body), onFail: onClose });
    return {
      id,
      send: (flags, body) => {
        if ((flags & FLAG_CANCEL) !== 0) {
          // The relayed client abandons the stream: so do we (the agent's late frames are then ignored).
          this.cancel(id, new VmmError("ERR_VMM_AGENT", "relay", "ECANCELED: cancelled by the relayed client", { agentCode: "ECANCELED", errno: 125 }));
          return Promise.resolve();
        }
        return this.send(id, flags, body);
      },
    };
  }

  /** @internal Registers a stream's handler. */
  open(id: number, state: StreamState): void {
    this.streams.set(id, state);
  }

  /** @internal Sends one frame; waits while the socket's buffer is full. */
  async send(id: number, flags: number, body: CborValue | undefined): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (!this.socket.write(encodeFrame(id, flags, body))) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
      // close() may have run while we waited.
      const failure = this.failure as VmmError | undefined;
      if (failure !== undefined) throw failure;
    }
  }

  /** @internal Acknowledges `n` data bytes consumed on a stream. */
  ack(id: number, n: number): void {
    const pending = this.unackedIn.get(id);
    if (pending !== undefined) this.unackedIn.set(id, pending - n);
    if (n > 0 && this.streams.has(id)) this.send(id, 0, { t: "ack", bytes: n }).catch(() => undefined);
  }

  /** @internal Counts data bytes received on a stream against its window. */
  received(id: number, n: number): void {
    const pending = (this.unackedIn.get(id) ?? 0) + n;
    if (pending > STREAM_WINDOW) throw violation(`stream ${String(id)} sent ${String(pending)} bytes past its window`);
    this.unackedIn.set(id, pending);
  }

  /** @internal Abandons a stream: CANCEL to the agent, `error` to its handler. */
  cancel(id: number, error: VmmError): void {
    const state = this.streams.get(id);
    this.forget(id);
    // Remembered until the agent's END; bounded, since an END may have crossed the CANCEL.
    if (this.cancelled.size >= MAX_STREAMS) this.cancelled.delete(this.cancelled.values().next().value ?? 0);
    this.cancelled.add(id);
    this.send(id, FLAG_CANCEL, undefined).catch(() => undefined);
    state?.onFail(error);
  }

  private abandon<T>(id: number, inbox: Inbox<T>): Promise<IteratorResult<T>> {
    if (this.streams.has(id)) this.cancel(id, new VmmError("ERR_VMM_INVALID", "", "the reader stopped early"));
    inbox.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  private forget(id: number): void {
    this.streams.delete(id);
    this.unackedIn.delete(id);
  }

  private allocate(input: string): number {
    if (this.failure !== undefined) throw this.failure;
    if (this.streams.size >= MAX_STREAMS) throw new VmmError("ERR_VMM_INVALID", input, `more than ${String(MAX_STREAMS)} streams open at once`);
    const id = this.nextId;
    if (id > 0xffffffff) throw new VmmError("ERR_VMM_GONE", input, "stream ids exhausted on this connection");
    this.nextId++;
    return id;
  }

  /**
   * A request answered by one message of type `expect` (or `error`) that ends
   * the stream. `parse` validates the reply; what it throws is a violation.
   */
  private request<T = CborMap>(body: CborMap, expect: string, input: string, parse: (reply: CborMap) => T = (reply) => reply as T): Promise<T> {
    const id = this.allocate(input);
    return new Promise<T>((resolve, reject) => {
      this.open(id, {
        onFrame: (frame, reply) => {
          if ((frame.flags & FLAG_END) === 0) throw violation(`a ${tag(reply)} reply to ${tag(body)} must end its stream`, input);
          if (reply.t === expect) resolve(parse(reply));
          else if (reply.t === "error") reject(agentError(reply, input));
          else throw violation(`unexpected ${tag(reply)} reply to ${tag(body)}`, input);
        },
        onFail: reject,
      });
      this.send(id, FLAG_END, body).catch(reject);
    });
  }

  private onData(chunk: Uint8Array): void {
    if (this.failure !== undefined) return;
    try {
      for (const frame of this.reader.push(chunk)) this.dispatch(frame);
    } catch (error) {
      this.close(VmmError.is(error) ? error : violation(error instanceof Error ? error.message : String(error)));
    }
  }

  private dispatch(frame: Frame): void {
    if ((frame.flags & FLAG_CANCEL) !== 0) throw violation(`the agent sent CANCEL on stream ${String(frame.id)}`);
    const body = frame.body;
    if (!isCborMap(body) || typeof body.t !== "string") throw violation(`frame on stream ${String(frame.id)} is not a message map with a "t"`);
    if (frame.id === 0) {
      // The agent could not attribute one of our frames to a stream: our bug, not the guest's.
      this.onWarning(`agent connection error: ${typeof body.code === "string" ? body.code : "?"}: ${typeof body.message === "string" ? body.message : ""}`);
      return;
    }
    const stream = this.streams.get(frame.id);
    if (stream === undefined) {
      if (!this.cancelled.has(frame.id)) throw violation(`frame on stream ${String(frame.id)}, which is not open`);
      if ((frame.flags & FLAG_END) !== 0) this.cancelled.delete(frame.id);
      return;
    }
    if ((frame.flags & FLAG_END) !== 0) this.forget(frame.id);
    try {
      stream.onFrame(frame, body);
    } catch (error) {
      // The stream may be forgotten already (END): fail it here, close() fails the rest.
      stream.onFail(VmmError.is(error) ? error : violation(String(error)));
      throw error;
    }
  }
}
