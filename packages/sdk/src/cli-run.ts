// `msb run`: boot a microVM on an image (or a host directory), run one
// command in it with the terminal attached, exit with the command's status.
// `msb exec NAME` does the same in a running detached sandbox; `msb stop` and
// `msb rm` end sandboxes by name.
import { parseArgs } from "node:util";
import type { PullEvent } from "@msb/oci";
import { TtyProgress, UsageError } from "./cli-images.js";
import { SandboxError } from "./errors.js";
import { Sandbox, imageCommand, type ExecStream, type PullPolicy } from "./sandbox.js";
import { parseTmpfsFlag, parseVolumeFlag, type VolumeSpec } from "./volume.js";

/** Exit status for a failure of msb itself (not of the command), as Docker uses it. */
export const EXIT_MSB_ERROR = 125;

/** Options of `msb run` that take a value; the splitter needs them to find IMAGE. */
const VALUE_OPTIONS = new Set(["--rootfs", "--memory", "-m", "--cpus", "--env", "-e", "--workdir", "-w", "--user", "-u", "--hostname", "--pull", "--name", "--volume", "-v", "--tmpfs"]);

/** What `msb run` was asked to do. */
export interface RunRequest {
  readonly image: string | undefined;
  readonly rootfs: string | undefined;
  readonly command: readonly string[];
  readonly memoryMiB: number;
  readonly cpus: number;
  readonly env: readonly string[];
  readonly workdir: string | undefined;
  readonly user: string | undefined;
  readonly tty: boolean;
  readonly interactive: boolean;
  readonly hostname: string | undefined;
  readonly pull: PullPolicy;
  readonly name: string | undefined;
  readonly detach: boolean;
  readonly volumes: readonly VolumeSpec[];
  readonly insecure: boolean;
}

/** A `-v`/`--tmpfs` flag as a volume; a bad one is a usage error. */
function flagVolume(parse: (flag: string) => VolumeSpec, flag: string): VolumeSpec {
  try {
    return parse(flag);
  } catch (error) {
    throw new UsageError(`run: ${(error as Error).message}`);
  }
}

const positiveInt = (value: string | undefined, name: string, fallback: number, max: number): number => {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`run: ${name} must be an integer 1..${String(max)}, got ${JSON.stringify(value)}`);
  return n;
};

/**
 * Parses `msb run` arguments Docker's way: options come first; the first
 * other word is IMAGE (unless `--rootfs` is given), everything after it is the
 * command. A `--` ends the options; the command follows it.
 */
export function parseRunArgs(args: readonly string[]): RunRequest {
  let split = args.length;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    if (arg === "--") {
      split = i;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      split = i;
      break;
    }
    if (VALUE_OPTIONS.has(arg)) i++;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: args.slice(0, split),
      strict: true,
      allowPositionals: false,
      options: {
        rootfs: { type: "string" },
        memory: { type: "string", short: "m" },
        cpus: { type: "string" },
        env: { type: "string", short: "e", multiple: true },
        workdir: { type: "string", short: "w" },
        user: { type: "string", short: "u" },
        tty: { type: "boolean", short: "t" },
        interactive: { type: "boolean", short: "i" },
        hostname: { type: "string" },
        pull: { type: "string" },
        name: { type: "string" },
        detach: { type: "boolean", short: "d" },
        volume: { type: "string", short: "v", multiple: true },
        insecure: { type: "boolean" },
        tmpfs: { type: "string", multiple: true },
      },
    });
  } catch (error) {
    throw new UsageError(`run: ${(error as Error).message}`);
  }
  const { values } = parsed;
  let rest = args.slice(split);
  let image: string | undefined;
  if (rest[0] !== "--" && values.rootfs === undefined && rest.length > 0) {
    image = rest[0];
    rest = rest.slice(1);
  }
  if (rest[0] === "--") rest = rest.slice(1);
  const pull = values.pull ?? "missing";
  if (pull !== "always" && pull !== "missing" && pull !== "never") throw new UsageError(`run: --pull must be always, missing or never, got ${JSON.stringify(pull)}`);
  for (const entry of values.env ?? []) {
    if (!/^[^=]+=/.test(entry)) throw new UsageError(`run: -e needs KEY=VALUE, got ${JSON.stringify(entry)}`);
  }
  return {
    image,
    rootfs: values.rootfs,
    command: rest,
    memoryMiB: positiveInt(values.memory, "--memory (MiB)", 256, 1024 * 1024),
    cpus: positiveInt(values.cpus, "--cpus", 1, 256),
    env: values.env ?? [],
    workdir: values.workdir,
    user: values.user,
    tty: values.tty === true,
    interactive: values.interactive === true,
    hostname: values.hostname,
    pull,
    name: values.name,
    detach: values.detach === true,
    insecure: values.insecure === true,
    volumes: [...(values.volume ?? []).map((flag) => flagVolume(parseVolumeFlag, flag)), ...(values.tmpfs ?? []).map((flag) => flagVolume(parseTmpfsFlag, flag))],
  };
}

/** Copies guest output to our stdout/stderr, waiting when they are full. */
async function pump(proc: ExecStream): Promise<number> {
  const write = (stream: NodeJS.WriteStream, data: Uint8Array): Promise<void> =>
    stream.write(data) ? Promise.resolve() : new Promise((resolve) => stream.once("drain", resolve));
  for await (const event of proc) {
    if (event.type === "stdout") await write(process.stdout, event.data);
    else if (event.type === "stderr") await write(process.stderr, event.data);
    else if (event.type === "exited") return event.exitCode;
  }
  throw new SandboxError("ERR_MSB_STATE", "run", "the command ended without an exit status");
}

/** Feeds our stdin to the guest process until end-of-file. */
async function feedStdin(proc: ExecStream): Promise<void> {
  try {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) await proc.write(chunk);
    await proc.closeStdin();
  } catch {
    // The process exited first: what it did not read does not matter.
  }
}

/** `KEY=VALUE` flags as a record. */
const envRecord = (entries: readonly string[]): Record<string, string> => Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));

/** Runs `argv` in `sandbox` with our terminal attached; resolves with its exit status. */
async function attach(sandbox: Sandbox, argv: readonly string[], request: Pick<RunRequest, "workdir" | "user" | "tty" | "interactive" | "env">): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) throw new UsageError("no command given and the image has no CMD or ENTRYPOINT");
  const tty = request.tty ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 } : undefined;
  try {
    const proc = await sandbox.execStream(command, rest, {
      ...(request.workdir === undefined ? {} : { cwd: request.workdir }),
      ...(request.user === undefined ? {} : { user: request.user }),
      ...(tty === undefined ? {} : { tty }),
      env: envRecord(request.env),
      stdin: request.interactive,
    });
    const forward = (signal: NodeJS.Signals): void => void proc.signal(signal).catch(() => undefined);
    const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
    for (const signal of signals) process.on(signal, forward);
    const onResize = (): void => void proc.resize(process.stdout.rows || 24, process.stdout.columns || 80).catch(() => undefined);
    if (tty !== undefined) process.stdout.on("resize", onResize);
    const raw = request.tty && request.interactive && process.stdin.isTTY;
    if (raw) process.stdin.setRawMode(true);
    try {
      await proc.pid;
      if (request.interactive) void feedStdin(proc);
      return await pump(proc);
    } finally {
      if (raw) process.stdin.setRawMode(false);
      if (request.interactive) process.stdin.destroy();
      for (const signal of signals) process.off(signal, forward);
      process.stdout.off("resize", onResize);
    }
  } catch (error) {
    if (SandboxError.isInstance(error) && error.code === "ERR_MSB_EXEC_FAILED") {
      process.stderr.write(`msb: ${error.message}\n`);
      // Docker's statuses: 127 command not found, 126 cannot run it.
      return error.errno === "ENOENT" ? 127 : 126;
    }
    throw error;
  }
}

/** `msb run`; resolves with the command's exit status (`-d`: 0 once the sandbox runs). */
export async function runCommand(args: string[]): Promise<number> {
  const request = parseRunArgs(args);
  if (request.detach && (request.command.length > 0 || request.tty || request.interactive)) {
    throw new UsageError("run -d starts a sandbox in the background and takes no command, -t or -i; run one with msb exec NAME");
  }
  // A pull shows progress bars on a terminal's stderr (stdout is the command's).
  const bars = process.stderr.isTTY ? new TtyProgress((text) => void process.stderr.write(text)) : undefined;
  const sandbox = await Sandbox.create({
    pull: { ...(request.insecure ? { insecure: true } : {}), ...(bars === undefined ? {} : { onProgress: (event: PullEvent) => bars.event(event) }) },
    ...(request.name === undefined ? {} : { name: request.name }),
    ...(request.image === undefined ? {} : { image: request.image }),
    ...(request.rootfs === undefined ? {} : { rootfs: request.rootfs }),
    ...(request.hostname === undefined ? {} : { hostname: request.hostname }),
    memoryMiB: request.memoryMiB,
    cpus: request.cpus,
    pullPolicy: request.pull,
    detached: request.detach,
    volumes: request.volumes,
  });
  bars?.flush();
  if (request.detach) {
    process.stdout.write(`${sandbox.name}\n`);
    return 0;
  }
  try {
    return await attach(sandbox, imageCommand(sandbox.imageConfig, request.command), request);
  } finally {
    await sandbox.stop();
  }
}

/** `msb exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] NAME [--] CMD [ARGS...]` in a detached sandbox. */
export async function execCommand(args: string[]): Promise<number> {
  const request = parseRunArgs(args);
  const name = request.image;
  if (name === undefined || request.rootfs !== undefined || request.detach) throw new UsageError("exec needs a sandbox NAME and a command: msb exec NAME -- CMD [ARGS...]");
  if (request.command.length === 0) throw new UsageError("exec needs a command after the sandbox NAME");
  return attach(await Sandbox.get(name), request.command, request);
}

/** Runs `action` on each sandbox NAME of `args` in turn, printing each name once done. */
async function eachName(command: string, args: readonly string[], action: (name: string) => Promise<unknown>): Promise<number> {
  if (args.length === 0 || args.some((a) => a.startsWith("-"))) throw new UsageError(`${command} takes sandbox NAMEs`);
  for (const name of args) {
    await action(name);
    process.stdout.write(`${name}\n`);
  }
  return 0;
}

/** `msb rm NAME...`: stops sandboxes if they run, then removes them and their files. */
export const removeCommand = (args: string[]): Promise<number> => eachName("rm", args, (name) => Sandbox.remove(name));

/** `msb stop NAME...`: stops detached sandboxes, keeping them to be started again. */
export const stopCommand = (args: string[]): Promise<number> =>
  eachName("stop", args, async (name) => {
    const record = Sandbox.list().find((r) => r.name === name);
    if (record === undefined) throw new SandboxError("ERR_MSB_SANDBOX_NOT_FOUND", name, "no such sandbox");
    if (record.status === "running") await (await Sandbox.get(name)).stop();
  });

/** `msb start NAME...`: starts stopped detached sandboxes again on their kept roots. */
export const startCommand = (args: string[]): Promise<number> => eachName("start", args, (name) => Sandbox.start(name));

/** `msb create [OPTIONS] [IMAGE]`: `run -d` without a command: a detached sandbox, started. */
export function createCommand(args: string[]): Promise<number> {
  return runCommand(["-d", ...args]);
}

/** `msb logs NAME`: the guest console of a detached sandbox. */
export async function logsCommand(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || rest.length > 0) throw new UsageError("logs takes one sandbox NAME");
  const sandbox = await Sandbox.get(name);
  process.stdout.write(await sandbox.logs());
  return 0;
}

/** `msb inspect NAME`: the sandbox's record, image config and metrics as JSON. */
export async function inspectCommand(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || rest.length > 0) throw new UsageError("inspect takes one sandbox NAME");
  const record = Sandbox.list().find((r) => r.name === name);
  if (record === undefined) throw new SandboxError("ERR_MSB_SANDBOX_NOT_FOUND", name, "no such sandbox");
  const reachable = record.status === "running" && record.socketPath !== null && record.socketPath !== "";
  const sandbox = reachable ? await Sandbox.get(name) : undefined;
  const details = { ...record, imageConfig: sandbox?.imageConfig ?? null, metrics: sandbox === undefined ? null : await sandbox.metrics() };
  process.stdout.write(`${JSON.stringify(details, null, 2)}\n`);
  return 0;
}
