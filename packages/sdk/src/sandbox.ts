// Sandboxes as SDK users know them (e2b, Vercel Sandbox, microsandbox): create
// from an image with volumes, scripts and patches; exec, shell, execStream;
// the fs API; stop with `await using`.
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { constants } from "node:os";
import { join } from "node:path";
import type { DynFileSystem } from "@msb/fs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { ImageStore, OciError, defaultHome, importOciLayout, pull, type ImageConfig, type ImageDetails, type PullOptions } from "@msb/oci";
import { MicroVm, VmmError, findGuestAssets, type AgentClient, type BootTimings, type ExecExit, type ExecProcess, type VmDisk, type VmMount } from "@msb/vmm";
import { SandboxError } from "./errors.js";
import { PatchBuilder, SCRIPTS_DIR, applyPatches, scriptPatches, type PatchOp } from "./patch.js";
import { SandboxFs } from "./sandbox-fs.js";
import { StateStore, type LabelFilter, type SandboxRecord } from "./state.js";
import { checkDetachable, remoteHost, spawnSupervisor } from "./supervisor.js";
import { volumeBackend, volumeSpec, type VolumeBackend, type VolumeBuilder, type VolumeSpec } from "./volume.js";

/** The reference the built-in image is stored under: busybox, assembled by setup from Debian's busybox-static. */
export const BUILTIN_IMAGE = "msb.local/busybox:latest";

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** When to pull the image: always, only when it is not in the store (default), or never. */
export type PullPolicy = "always" | "missing" | "never";

/** Options of {@link Sandbox.create}. */
export interface SandboxOptions {
  /** Unique name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, ≤ 63); default a random `sbx-…`. */
  readonly name?: string;
  /** Image reference; default {@link BUILTIN_IMAGE}. Ignored with `rootfs`. */
  readonly image?: string;
  /** A host directory to use as the root, read-write, instead of an image. */
  readonly rootfs?: string;
  /** vCPUs (default 1). */
  readonly cpus?: number;
  /** Guest memory in MiB (default 256). */
  readonly memoryMiB?: number;
  /** Environment for every exec, over the image's. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory of every exec; default the image's, else `/`. */
  readonly workdir?: string;
  /** User of every exec (name, uid, `user:group`); default the image's, else root. */
  readonly user?: string;
  readonly hostname?: string;
  /** Volumes by guest path, as {@link VolumeSpec}s (see {@link SandboxBuilder.volume}). */
  readonly volumes?: readonly VolumeSpec[];
  /** Scripts put in `/.msb/scripts/NAME` (mode 0755, on PATH). */
  readonly scripts?: Readonly<Record<string, string>>;
  /** Patches applied in order to the root before boot. */
  readonly patches?: readonly PatchOp[];
  /** Default `missing`. */
  readonly pullPolicy?: PullPolicy;
  /** Registry options for a pull (`insecure`, `caCert`, `platform`, …). */
  readonly pull?: PullOptions;
  /** Labels, for listing and filtering. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Replace a sandbox of the same name held by this process. */
  readonly replace?: boolean;
  /**
   * Keep the sandbox running after this process exits: a supervisor process
   * holds it, and `Sandbox.get(name)` or `msb exec NAME` reconnect from any
   * process. Backend volumes and hooks cannot go there. Default false: the
   * sandbox dies with this process.
   */
  readonly detached?: boolean;
}

/** Per-exec options. */
export interface ExecOptions {
  readonly cwd?: string;
  /** Added to the sandbox's environment. */
  readonly env?: Readonly<Record<string, string>>;
  readonly user?: string | number;
  /** Kill the process after this long; the exec then rejects with `ERR_MSB_EXEC_TIMEOUT`. */
  readonly timeoutMs?: number;
  /** Kill the process when aborted; the exec then rejects with `ERR_MSB_EXEC_ABORTED`. */
  readonly signal?: AbortSignal;
  /** Bytes or text for stdin (closed after); default none (/dev/null). */
  readonly stdin?: string | Uint8Array;
}

/** Options of {@link Sandbox.execStream}. */
export interface ExecStreamOptions extends Omit<ExecOptions, "stdin" | "timeoutMs"> {
  /** Run on a pseudo-terminal of this size (output then all comes as stdout). */
  readonly tty?: { readonly rows: number; readonly cols: number };
  /** Open stdin for {@link ExecStream.write}; default false (/dev/null). */
  readonly stdin?: boolean;
}

/** What {@link Sandbox.exec} returns. */
export interface ExecResult {
  readonly exitCode: number;
  readonly success: boolean;
  /** The signal that killed the process, or null. */
  readonly signal: number | null;
  /** stdout decoded as UTF-8. */
  readonly stdout: string;
  readonly stderr: string;
  readonly stdoutBytes: Uint8Array;
  readonly stderrBytes: Uint8Array;
}

/** An event of {@link ExecStream}. */
export type ExecStreamEvent =
  | { readonly type: "started"; readonly pid: number }
  | { readonly type: "stdout"; readonly data: Uint8Array }
  | { readonly type: "stderr"; readonly data: Uint8Array }
  | { readonly type: "exited"; readonly exitCode: number; readonly signal: number | null };


/** Turns what the VM layer throws into the SDK's errors; others pass through. */
function execError(error: unknown, command: string): unknown {
  if (!VmmError.is(error)) return error;
  if (error.code === "ERR_VMM_AGENT" && error.kind !== undefined) {
    return new SandboxError("ERR_MSB_EXEC_FAILED", command, `the command could not start (${error.kind}): ${error.message}`, { cause: error, errno: error.agentCode });
  }
  return new SandboxError("ERR_MSB_STATE", command, `the sandbox failed: ${error.message}`, { cause: error });
}

/**
 * A running process started by {@link Sandbox.execStream}: iterate it for
 * events; write stdin, signal, resize, kill.
 */
export class ExecStream implements AsyncIterable<ExecStreamEvent> {
  private killed = false;

  /** @internal */
  constructor(private readonly proc: ExecProcess) {}

  /** After {@link ExecStream.kill}, the agent's "cancelled" is the expected end, reported as SIGKILL. */
  private wasKilled(error: unknown): boolean {
    return this.killed && VmmError.is(error) && error.agentCode === "ECANCELED";
  }

  /** The guest pid, once started. */
  get pid(): Promise<number> {
    return this.proc.pid.catch((error: unknown) => {
      throw execError(error, this.proc.command);
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ExecStreamEvent> {
    try {
      for await (const event of this.proc) {
        yield event.type === "exited" ? { type: "exited", exitCode: event.code, signal: event.signal } : event;
      }
    } catch (error) {
      if (!this.wasKilled(error)) throw execError(error, this.proc.command);
      yield { type: "exited", exitCode: 137, signal: 9 };
    }
  }

  /** Resolves with the exit once the process has ended (consume the events too, or output stalls the process). */
  async wait(): Promise<{ exitCode: number; signal: number | null }> {
    const exit: ExecExit = await this.proc.exit.catch((error: unknown) => {
      if (this.wasKilled(error)) return { code: 137, signal: 9 };
      throw execError(error, this.proc.command);
    });
    return { exitCode: exit.code, signal: exit.signal };
  }

  /** Writes to stdin (`stdin: true`). */
  write(data: string | Uint8Array): Promise<void> {
    return this.proc.write(typeof data === "string" ? Buffer.from(data) : data);
  }

  /** Closes stdin. */
  closeStdin(): Promise<void> {
    return this.proc.closeStdin();
  }

  /** Sends a signal by number or name (`"SIGTERM"`). */
  signal(signal: number | string): Promise<void> {
    // Linux numbers by name, as Node knows them (the guest is Linux on the same architecture).
    const signo = typeof signal === "number" ? signal : Object.hasOwn(constants.signals, signal) ? constants.signals[signal as NodeJS.Signals] : undefined;
    if (signo === undefined) throw new SandboxError("ERR_MSB_INVALID_CONFIG", String(signal), "unknown signal; use a number or a name such as SIGTERM");
    return this.proc.signal(signo);
  }

  /** Kills the process at once. */
  kill(): void {
    this.killed = true;
    this.proc.kill();
  }

  /** Resizes the tty. */
  resize(rows: number, cols: number): Promise<void> {
    return this.proc.resize(rows, cols);
  }
}

/** Resolves the image: local, or pulled according to the policy. */
async function resolveImage(ref: string, policy: PullPolicy, pullOptions: PullOptions): Promise<ImageDetails> {
  const store = new ImageStore(pullOptions);
  if (ref === BUILTIN_IMAGE && (await store.getImage(ref)) === undefined) {
    // The built-in image comes with the guest assets, not from a registry.
    await importOciLayout(store, (await findGuestAssets()).busyboxLayout, BUILTIN_IMAGE);
  }
  if (policy === "always" && ref !== BUILTIN_IMAGE) return pull(ref, pullOptions);
  try {
    return await store.inspectImage(ref);
  } catch (error) {
    if (!OciError.is(error) || error.code !== "ERR_OCI_IMAGE_NOT_FOUND") throw error;
    if (policy === "never") throw new SandboxError("ERR_MSB_IMAGE_NOT_FOUND", ref, "the image is not in the local store and pullPolicy is \"never\"", { cause: error });
  }
  try {
    return await pull(ref, pullOptions);
  } catch (error) {
    if (OciError.is(error) && (error.code === "ERR_OCI_NOT_FOUND" || error.code === "ERR_OCI_IMAGE_NOT_FOUND")) throw new SandboxError("ERR_MSB_IMAGE_NOT_FOUND", ref, "no such image", { cause: error });
    throw error;
  }
}

const envList = (env: Readonly<Record<string, string>> | undefined): string[] => Object.entries(env ?? {}).map(([k, v]) => `${k}=${v}`);

/** Merges `KEY=VALUE` lists; later entries win, in order of first appearance. */
export function mergeEnv(...lists: readonly (readonly string[])[]): string[] {
  const merged = new Map<string, string>();
  for (const list of lists) {
    for (const entry of list) {
      const eq = entry.indexOf("=");
      if (eq > 0) merged.set(entry.slice(0, eq), entry);
    }
  }
  return [...merged.values()];
}

/** The command an image runs: ENTRYPOINT + (the given command, else CMD), as Docker composes them. */
export function imageCommand(config: Pick<ImageConfig, "entrypoint" | "cmd"> | undefined, command: readonly string[]): string[] {
  return [...(config?.entrypoint ?? []), ...(command.length > 0 ? command : (config?.cmd ?? []))];
}

/** What every exec of a sandbox starts from. */
export interface ExecDefaults {
  readonly env: readonly string[];
  readonly cwd: string | undefined;
  readonly user: string | undefined;
}

/** What {@link Sandbox.metrics} reports. */
export interface SandboxMetrics {
  readonly accel: string;
  /** Milliseconds to each boot step, and whether the VM started from a saved state. */
  readonly boot: BootTimings;
  readonly hostRssBytes: number | undefined;
  /** Proportional set size: pages shared with other VMs count divided among them. */
  readonly hostPssBytes: number | undefined;
}

/** What a Sandbox runs on: a VM in this process, or one a supervisor process holds. */
export interface SandboxHost {
  readonly agent: AgentClient;
  readonly defaults: ExecDefaults;
  stop(): Promise<void>;
  kill(): Promise<void>;
  logs(): Promise<string>;
  metrics(): Promise<SandboxMetrics>;
}

/** A VM in this process; `release` undoes what creating it set up. */
function localHost(vm: MicroVm, defaults: ExecDefaults, release: () => Promise<void>): SandboxHost {
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      try {
        await vm.stop();
      } finally {
        await release();
      }
    })());
  return {
    agent: vm.agent,
    defaults,
    stop,
    kill: async () => {
      await vm.kill();
      await stop();
    },
    logs: () => readFile(vm.consoleLog, "utf8").catch(() => ""),
    metrics: async () => {
      const memory = await vm.memory();
      return { accel: vm.accel, boot: vm.timings, hostRssBytes: memory?.rss, hostPssBytes: memory?.pss };
    },
  };
}

/** Sandboxes this process holds, by name. */
const live = new Map<string, Sandbox>();

/** This process's open state databases, by home, with the inode each was opened on. */
const stores = new Map<string, { readonly store: StateStore; readonly ino: number }>();

/**
 * Runs `use` on the state database of `home`. The connection stays open for
 * the next call: closing the last connection to a WAL database checkpoints
 * it, an fsync or two on every sandbox start and stop. A database file that
 * was replaced meanwhile (its home removed and made again) is reopened.
 */
function withStore<T>(home: string, use: (store: StateStore) => T): T {
  const cached = stores.get(home);
  const ino = (path: string): number | undefined => statSync(path, { throwIfNoEntry: false })?.ino;
  if (cached !== undefined && ino(cached.store.path) === cached.ino) return use(cached.store);
  cached?.store.close();
  stores.delete(home);
  const store = new StateStore({ home });
  const opened = ino(store.path);
  if (opened === undefined) {
    try {
      return use(store);
    } finally {
      store.close();
    }
  }
  stores.set(home, { store, ino: opened });
  return use(store);
}

/**
 * A microVM sandbox. Create it with {@link Sandbox.create} or
 * {@link Sandbox.builder}; `await using` stops it.
 *
 * @example
 * ```ts
 * await using sandbox = await Sandbox.create({ image: "python:3.12-slim", memoryMiB: 512 });
 * const { stdout } = await sandbox.exec("python3", ["-c", "print(6 * 7)"]);
 * await sandbox.fs.write("/tmp/hello.txt", "hi");
 * ```
 */
export class Sandbox implements AsyncDisposable {
  /** The fs API: files in the guest, streamed over the agent. */
  readonly fs: SandboxFs;
  private stopping: Promise<void> | undefined;

  /** @internal */
  constructor(
    /** The sandbox's unique name. */
    readonly name: string,
    private readonly host: SandboxHost,
    /** The image's config (Env, Cmd, Entrypoint, …); undefined for a `rootfs` sandbox. */
    readonly imageConfig: ImageConfig | undefined,
    /** The labels it was created with. */
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.fs = new SandboxFs(host.agent);
  }

  /** @internal The defaults every exec starts from, for a supervisor to hand to its clients. */
  get execDefaults(): ExecDefaults {
    return this.host.defaults;
  }

  /**
   * Creates and boots a sandbox: resolves (and pulls) the image, builds its
   * root (the image's layers under a fresh upper), applies scripts and
   * patches, attaches the volumes and starts the VM.
   *
   * @example
   * ```ts
   * const sandbox = await Sandbox.create({ name: "worker", env: { MODE: "test" } });
   * console.log((await sandbox.shell("echo $MODE")).stdout); // "test\n"
   * await sandbox.stop();
   * ```
   */
  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const name = options.name ?? `sbx-${randomBytes(4).toString("hex")}`;
    if (!NAME.test(name)) throw new SandboxError("ERR_MSB_INVALID_CONFIG", name, "a sandbox name is 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit");
    const existing = live.get(name);
    if (existing !== undefined) {
      if (options.replace !== true) throw new SandboxError("ERR_MSB_SANDBOX_EXISTS", name, "a sandbox of this name is running; stop it or pass replace: true");
      await existing.stop();
    }
    if (options.detached === true) {
      checkDetachable(options);
      const socketPath = await spawnSupervisor({ ...options, name, detached: false }, false);
      return Sandbox.connect(name, socketPath);
    }
    return createHere({ ...options, name }, { persist: false, restart: false });
  }

  /**
   * Starts a stopped detached sandbox again, on the root it had (its upper
   * is kept while it is stopped), under a new supervisor.
   *
   * @example
   * ```ts
   * await (await Sandbox.get("web")).stop();
   * const web = await Sandbox.start("web"); // what it wrote before is still there
   * ```
   */
  static async start(name: string): Promise<Sandbox> {
    const record = withStore(defaultHome(), (store) => {
      store.reconcile();
      return store.getSandbox(name);
    });
    if (record === undefined) throw new SandboxError("ERR_MSB_SANDBOX_NOT_FOUND", name, "no such sandbox");
    if (record.status === "running" || record.status === "creating") throw new SandboxError("ERR_MSB_SANDBOX_EXISTS", name, "the sandbox is running already");
    if (record.config.persist !== true) throw new SandboxError("ERR_MSB_INVALID_CONFIG", name, "only detached sandboxes keep their root to be started again");
    const socketPath = await spawnSupervisor({ ...(record.config.options as SandboxOptions), name }, true);
    return Sandbox.connect(name, socketPath);
  }

  /**
   * A fluent builder, the way the seeds spell it.
   *
   * @example
   * ```ts
   * const sandbox = await Sandbox.builder("dev")
   *   .image("busybox")
   *   .volume("/data", (v) => v.named("dev-data").quota("1GiB"))
   *   .script("hello", "#!/bin/sh\necho hello\n")
   *   .create();
   * ```
   */
  static builder(name: string): SandboxBuilder {
    return new SandboxBuilder(name);
  }

  /**
   * Reconnects to a sandbox by name: one this process holds, or a detached
   * one a supervisor holds (from any process).
   *
   * @example
   * ```ts
   * const sandbox = await Sandbox.get("worker");
   * console.log((await sandbox.exec("uptime")).stdout);
   * ```
   */
  static async get(name: string): Promise<Sandbox> {
    const held = live.get(name);
    if (held !== undefined) return held;
    const record = withStore(defaultHome(), (store) => {
      store.reconcile();
      return store.getSandbox(name);
    });
    if (record === undefined) throw new SandboxError("ERR_MSB_SANDBOX_NOT_FOUND", name, "no such sandbox");
    if (record.status !== "running") throw new SandboxError("ERR_MSB_SANDBOX_NOT_FOUND", name, `the sandbox is ${record.status}`);
    if (record.socketPath === null || record.socketPath === "") {
      throw new SandboxError("ERR_MSB_STATE", name, `the sandbox is attached to process ${String(record.supervisorPid)}; only detached sandboxes can be reached from other processes`);
    }
    return Sandbox.connect(name, record.socketPath);
  }

  /** A handle on the sandbox a supervisor serves at `socketPath`. */
  private static async connect(name: string, socketPath: string): Promise<Sandbox> {
    const { host, info } = await remoteHost(name, socketPath);
    const imageConfig = typeof info.imageConfig === "string" ? (JSON.parse(info.imageConfig) as ImageConfig) : undefined;
    const labels = typeof info.labels === "string" ? (JSON.parse(info.labels) as Record<string, string>) : {};
    return new Sandbox(name, host, imageConfig, labels);
  }

  /** @internal The agent connection, for a supervisor to relay. */
  get agentClient(): AgentClient {
    return this.host.agent;
  }

  /** @internal Records the supervisor's socket so other processes can reconnect. */
  recordSupervisor(socketPath: string): void {
    withStore(defaultHome(), (store) => store.markRunning(this.name, { supervisorPid: process.pid, socketPath }));
  }

  /**
   * Every sandbox in the state database (of this and other processes), after
   * marking those whose process died as `crashed`.
   *
   * @example
   * ```ts
   * for (const record of Sandbox.list({ label: "team=ml" })) console.log(record.name, record.status);
   * ```
   */
  static list(filter: LabelFilter = {}): SandboxRecord[] {
    return withStore(defaultHome(), (store) => {
      store.reconcile();
      return store.listSandboxes(filter);
    });
  }

  /**
   * Removes a sandbox: stops it if this process holds it or a supervisor
   * does, then removes its record and files (also of one stopped or
   * crashed). One attached to another process is refused with
   * `ERR_MSB_SANDBOX_EXISTS`.
   *
   * @example
   * ```ts
   * await Sandbox.remove("worker");
   * ```
   */
  static async remove(name: string): Promise<void> {
    const held = live.get(name);
    if (held !== undefined) return held.stop();
    const home = defaultHome();
    const outcome = withStore(home, (store) => {
      store.reconcile();
      const record = store.getSandbox(name);
      if (record === undefined) throw new SandboxError("ERR_MSB_SANDBOX_NOT_FOUND", name, "no such sandbox");
      if (record.status === "creating" || record.status === "running") {
        if (record.status === "running" && record.socketPath !== null && record.socketPath !== "") return "detached";
        throw new SandboxError("ERR_MSB_SANDBOX_EXISTS", name, `the sandbox is running in process ${String(record.supervisorPid)}`);
      }
      store.removeSandbox(name);
      return "removed";
    });
    if (outcome === "detached") {
      // Its supervisor stops it (keeping it as stopped); then it goes for good.
      await (await Sandbox.get(name)).stop();
      return Sandbox.remove(name);
    }
    await rm(join(home, "sandboxes", name), { recursive: true, force: true });
  }

  /**
   * Runs a command to completion and collects its output. A non-zero exit is
   * a result, not an error; a command that cannot start rejects with
   * `ERR_MSB_EXEC_FAILED`.
   *
   * @example
   * ```ts
   * const { exitCode, stdout } = await sandbox.exec("ls", ["-l", "/"], { cwd: "/tmp", timeoutMs: 5000 });
   * ```
   */
  async exec(command: string, args: readonly string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    const proc = this.start([command, ...args], { ...options, stdin: options.stdin !== undefined });
    let expired: "timeout" | "aborted" | undefined;
    const kill = (why: "timeout" | "aborted") => {
      expired ??= why;
      proc.kill();
    };
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => kill("timeout"), options.timeoutMs);
    const onAbort = () => kill("aborted");
    if (options.signal?.aborted === true) onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (options.stdin !== undefined) {
        const data = typeof options.stdin === "string" ? Buffer.from(options.stdin) : options.stdin;
        void proc.pid.then(async () => {
          await proc.write(data);
          await proc.closeStdin();
        }).catch(() => undefined);
      }
      const out = await proc.output();
      return { exitCode: out.code, success: out.code === 0, signal: out.signal, stdout: Buffer.from(out.stdout).toString("utf8"), stderr: Buffer.from(out.stderr).toString("utf8"), stdoutBytes: out.stdout, stderrBytes: out.stderr };
    } catch (error) {
      if (expired === "timeout") throw new SandboxError("ERR_MSB_EXEC_TIMEOUT", command, `killed after ${String(options.timeoutMs)} ms`, { cause: error });
      if (expired === "aborted") throw new SandboxError("ERR_MSB_EXEC_ABORTED", command, "killed: the exec's AbortSignal fired", { cause: error });
      throw execError(error, command);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Runs a shell script with `sh -c` (scripts from `/.msb/scripts` are on PATH).
   *
   * @example
   * ```ts
   * const { stdout } = await sandbox.shell("echo $((6 * 7)) | tee /tmp/answer");
   * ```
   */
  shell(script: string, options: ExecOptions = {}): Promise<ExecResult> {
    return this.exec("sh", ["-c", script], options);
  }

  /**
   * Starts a command and streams its events; write stdin, signal, resize.
   *
   * @example
   * ```ts
   * const proc = await sandbox.execStream("sh", ["-c", "read x; echo got $x"], { stdin: true });
   * await proc.write("hello\n");
   * for await (const event of proc) if (event.type === "stdout") process.stdout.write(event.data);
   * ```
   */
  execStream(command: string, args: readonly string[] = [], options: ExecStreamOptions = {}): Promise<ExecStream> {
    const stream = new ExecStream(this.start([command, ...args], { ...options, stdin: options.stdin === true }));
    return Promise.resolve(stream);
  }

  /** The guest's console log (kernel and agent messages). */
  logs(): Promise<string> {
    return this.host.logs();
  }

  /** Boot timings, accelerator, and the host memory of the VM process (RSS, and PSS with shared pages divided). */
  metrics(): Promise<SandboxMetrics> {
    return this.host.metrics();
  }

  /** Stops the sandbox cleanly (the guest syncs and powers off); idempotent. */
  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      try {
        await this.host.stop();
      } finally {
        if (live.get(this.name) === this) live.delete(this.name);
      }
    })());
  }

  /** Kills the VM at once, without a clean guest shutdown. */
  async kill(): Promise<void> {
    await this.host.kill();
    await this.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  private start(argv: readonly string[], options: Omit<ExecStreamOptions, "stdin"> & { stdin: boolean }): ExecProcess {
    if (this.stopping !== undefined) throw new SandboxError("ERR_MSB_SANDBOX_NOT_FOUND", this.name, "the sandbox is stopped");
    const { defaults } = this.host;
    const cwd = options.cwd ?? defaults.cwd;
    const user = options.user ?? defaults.user;
    try {
      return this.host.agent.exec({
        argv,
        env: mergeEnv(defaults.env, envList(options.env), options.tty === undefined ? [] : ["TERM=xterm-256color"]),
        ...(cwd === undefined ? {} : { cwd }),
        ...(user === undefined ? {} : { user }),
        ...(options.tty === undefined ? {} : { tty: options.tty }),
        stdin: options.stdin ? "pipe" : "null",
      });
    } catch (error) {
      throw execError(error, argv[0] ?? "");
    }
  }
}

/**
 * Creates a sandbox whose VM runs in this process. `persist` (a supervisor's
 * sandbox): the record and the root's upper stay when it stops, so it can be
 * started again; `restart`: start such a stopped sandbox on its kept upper
 * (patches and scripts are in it already).
 */
export async function createHere(options: SandboxOptions & { readonly name: string }, mode: { readonly persist: boolean; readonly restart: boolean }): Promise<Sandbox> {
  const { name } = options;
  const home = defaultHome();
  const dir = join(home, "sandboxes", name);
  // The state database makes the name unique across processes and records the named volumes in use.
  const named = (options.volumes ?? []).flatMap((v) => (v.kind === "named" ? [v] : []));
  withStore(home, (store) => {
    for (const volume of named) store.ensureVolume(volume.name, volume.quota === undefined ? {} : { quota: volume.quota });
    // No `replace` here: what this process held is stopped above, a crashed
    // one is replaced by the store, and another live process keeps its own.
    const summary = { image: options.image ?? (options.rootfs === undefined ? BUILTIN_IMAGE : null), rootfs: options.rootfs ?? null, cpus: options.cpus ?? 1, memoryMiB: options.memoryMiB ?? 256 };
    // A persistent sandbox keeps the options it can be started again with (JSON: no functions).
    const startable: SandboxOptions = { ...options, pull: {} };
    store.createSandbox(name, mode.persist ? { ...summary, persist: true, options: JSON.parse(JSON.stringify(startable)) as unknown } : summary, { labels: options.labels ?? {}, volumes: named.map((v) => v.name) });
  });
  // On failure or stop: a persistent sandbox is marked stopped and keeps its root; any other goes.
  const forget = (): void => withStore(home, (store) => void (mode.persist ? store.markStopped(name) : store.removeSandbox(name)));
  const cleanups: (() => Promise<void>)[] = [() => Promise.resolve(forget())];
  const undo = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  };
  try {
    // A new sandbox starts from an empty root; the directory itself stays (a supervisor's log is in it already).
    if (!mode.restart) await rm(join(dir, "upper"), { recursive: true, force: true });
    await mkdir(join(dir, "upper"), { recursive: true, mode: 0o700 });
    if (!mode.persist) cleanups.push(() => rm(dir, { recursive: true, force: true }));
    let makeRoot: () => DynFileSystem;
    let config: ImageConfig | undefined;
    if (options.rootfs !== undefined) {
      const rootDir = options.rootfs;
      makeRoot = () => new PassthroughFs({ rootDir });
    } else {
      const image = await resolveImage(options.image ?? BUILTIN_IMAGE, options.pullPolicy ?? "missing", options.pull ?? {});
      config = image.imageConfig;
      const upperDir = join(dir, "upper");
      makeRoot = () => new OverlayFs({ lowers: image.layerDirs.map((rootDir) => new PassthroughFs({ rootDir, readOnly: true, cache: "always" })), upper: new PassthroughFs({ rootDir: upperDir }) });
    }
    const scripts = options.scripts ?? {};
    // A restarted sandbox's upper holds its scripts and patches already.
    const patches = mode.restart ? [] : [...scriptPatches(scripts), ...(options.patches ?? [])];
    if (patches.length > 0) {
      // Patches go through an instance of their own: the one the guest is
      // served from is initialised by the FUSE server, and only once.
      const patchRoot = makeRoot();
      await patchRoot.init();
      try {
        await applyPatches(patchRoot, patches);
      } finally {
        await patchRoot.destroy();
      }
    }
    const root = makeRoot();

    const mounts: VmMount[] = [{ target: "/", fs: root }];
    const tmpfs: { target: string; size?: number }[] = [];
    const disks: VmDisk[] = [];
    for (const spec of options.volumes ?? []) {
      const backend: VolumeBackend = await volumeBackend(spec, { home });
      if (spec.kind === "disk") disks.push({ path: spec.imagePath, target: spec.guestPath, fstype: spec.fstype, readonly: spec.readonly });
      cleanups.push(() => backend.cleanup());
      if (backend.fs !== undefined) mounts.push({ target: spec.guestPath, fs: backend.fs, readonly: spec.readonly });
      else if (backend.tmpfs !== undefined) tmpfs.push(backend.tmpfs.size === undefined ? { target: backend.tmpfs.target } : { target: backend.tmpfs.target, size: backend.tmpfs.size });
    }
    const vm = await MicroVm.start({
      mounts,
      ...(tmpfs.length > 0 ? { tmpfs } : {}),
      ...(disks.length > 0 ? { disks } : {}),
      memoryMiB: options.memoryMiB ?? 256,
      cpus: options.cpus ?? 1,
      hostname: options.hostname ?? name,
      // Sockets go to a short temp dir: unix socket paths are limited to 107 bytes.
    }).catch((error: unknown) => {
      throw execError(error, name);
    });
    const imagePath = config?.env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
    const env = mergeEnv(config?.env ?? [], [`PATH=${Object.keys(scripts).length > 0 ? `${imagePath}:${SCRIPTS_DIR}` : imagePath}`], envList(options.env));
    const defaults = { env, cwd: options.workdir ?? config?.workingDir, user: options.user ?? config?.user };
    const sandbox = new Sandbox(name, localHost(vm, defaults, undo), config, options.labels ?? {});
    live.set(name, sandbox);
    // An attached sandbox has no socket for other processes: "" says so.
    withStore(home, (store) => store.markRunning(name, { supervisorPid: process.pid, socketPath: "" }));
    return sandbox;
  } catch (error) {
    await undo();
    throw error;
  }
}

/**
 * Builds {@link SandboxOptions} fluently; {@link SandboxBuilder.create} boots.
 *
 * @example
 * ```ts
 * const sandbox = await Sandbox.builder("api").image("busybox").cpus(2).memory(512).env("PORT", "8080").create();
 * ```
 */
export class SandboxBuilder {
  private options: { -readonly [K in keyof SandboxOptions]: SandboxOptions[K] };
  private readonly volumes: VolumeSpec[] = [];
  private readonly scripts: Record<string, string> = {};
  private readonly environment: Record<string, string> = {};
  private readonly patches = new PatchBuilder();

  /** @internal */
  constructor(name: string) {
    this.options = { name };
  }

  image(reference: string): this {
    this.options.image = reference;
    return this;
  }
  rootfs(hostDir: string): this {
    this.options.rootfs = hostDir;
    return this;
  }
  cpus(count: number): this {
    this.options.cpus = count;
    return this;
  }
  /** Guest memory in MiB. */
  memory(mib: number): this {
    this.options.memoryMiB = mib;
    return this;
  }
  env(key: string, value: string): this {
    this.environment[key] = value;
    return this;
  }
  envs(values: Readonly<Record<string, string>>): this {
    Object.assign(this.environment, values);
    return this;
  }
  workdir(path: string): this {
    this.options.workdir = path;
    return this;
  }
  user(user: string): this {
    this.options.user = user;
    return this;
  }
  hostname(name: string): this {
    this.options.hostname = name;
    return this;
  }
  /** A volume at `guestPath`: `v => v.named(n) | v.bind(dir) | v.tmpfs(size) | v.memfs(cap) | v.backend(fs)`, with `.readonly()`, `.quota(bytes)`. */
  volume(guestPath: string, configure: (volume: VolumeBuilder) => VolumeBuilder): this {
    this.volumes.push(volumeSpec(guestPath, configure));
    return this;
  }
  /** A script at `/.msb/scripts/NAME`, mode 0755, on PATH. */
  script(name: string, content: string): this {
    this.scripts[name] = content;
    return this;
  }
  /** Patches applied in order before boot: `p => p.text(...).mkdir(...)`. */
  patch(configure: (patch: PatchBuilder) => PatchBuilder): this {
    configure(this.patches);
    return this;
  }
  label(key: string, value: string): this {
    this.options.labels = { ...this.options.labels, [key]: value };
    return this;
  }
  pullPolicy(policy: PullPolicy): this {
    this.options.pullPolicy = policy;
    return this;
  }
  replace(replace = true): this {
    this.options.replace = replace;
    return this;
  }
  /** Keep it running after this process exits (see {@link SandboxOptions.detached}). */
  detached(detached = true): this {
    this.options.detached = detached;
    return this;
  }

  /** The options built so far. */
  build(): SandboxOptions {
    return { ...this.options, env: { ...this.environment }, volumes: [...this.volumes], scripts: { ...this.scripts }, patches: [...this.patches.ops] };
  }

  /** Creates and boots the sandbox. */
  create(): Promise<Sandbox> {
    return Sandbox.create(this.build());
  }
}

