// `msb run`: boot a microVM on an image (or a host directory), run one
// command in it with the terminal attached, exit with the command's status.
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { DynFileSystem } from "@msb/fs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { ImageStore, OciError, defaultHome, importOciLayout, type ImageConfig } from "@msb/oci";
import { MicroVm, VmmError, findGuestAssets, type ExecProcess } from "@msb/vmm";
import { UsageError } from "./cli-images.js";

/** The reference the built-in image is stored under; `msb run` without IMAGE uses it. */
export const BUILTIN_IMAGE = "msb.local/busybox:latest";

/** Exit status for a failure of msb itself (not of the command), as Docker uses it. */
export const EXIT_MSB_ERROR = 125;

const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Options of `msb run` that take a value; the splitter needs them to find IMAGE. */
const VALUE_OPTIONS = new Set(["--rootfs", "--memory", "-m", "--cpus", "--env", "-e", "--workdir", "-w", "--user", "-u", "--hostname"]);

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
  };
}

/** Merges environments `KEY=VALUE` lists; later entries win, order of first appearance kept. */
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
  const entrypoint = config?.entrypoint ?? [];
  const args = command.length > 0 ? command : (config?.cmd ?? []);
  return [...entrypoint, ...args];
}

/** The root filesystem of a run, and what to clean up after. */
interface RunRoot {
  readonly fs: DynFileSystem;
  readonly config: ImageConfig | undefined;
  readonly cleanup: () => Promise<void>;
}

/**
 * The built-in image: imported into this MSB_HOME's store from the guest
 * assets the first time it is used (setup built it from Debian's busybox-static).
 */
async function builtinImage(store: ImageStore): Promise<void> {
  if ((await store.getImage(BUILTIN_IMAGE)) !== undefined) return;
  const assets = await findGuestAssets();
  await importOciLayout(store, assets.busyboxLayout, BUILTIN_IMAGE);
}

async function imageRoot(request: RunRequest): Promise<RunRoot> {
  if (request.rootfs !== undefined) {
    return { fs: new PassthroughFs({ rootDir: request.rootfs }), config: undefined, cleanup: async () => {} };
  }
  const store = new ImageStore();
  const ref = request.image ?? BUILTIN_IMAGE;
  if (request.image === undefined) await builtinImage(store);
  const details = await store.inspectImage(ref).catch((error: unknown) => {
    if (OciError.is(error) && error.code === "ERR_OCI_IMAGE_NOT_FOUND") throw new OciError("ERR_OCI_IMAGE_NOT_FOUND", ref, `image not found locally; run "msb pull ${ref}" first`, { cause: error });
    throw error;
  });
  const sandboxDir = join(defaultHome(), "sandboxes", `run-${randomBytes(6).toString("hex")}`);
  const upperDir = join(sandboxDir, "upper");
  await mkdir(upperDir, { recursive: true, mode: 0o700 });
  const lowers = details.layerDirs.map((rootDir) => new PassthroughFs({ rootDir, readOnly: true, cache: "always" }));
  const fs = new OverlayFs({ lowers, upper: new PassthroughFs({ rootDir: upperDir }) });
  return { fs, config: details.imageConfig, cleanup: () => rm(sandboxDir, { recursive: true, force: true }) };
}

/** Copies guest output to our stdout/stderr, waiting when they are full. */
async function pump(proc: ExecProcess): Promise<number> {
  const write = (stream: NodeJS.WriteStream, data: Uint8Array): Promise<void> =>
    stream.write(data) ? Promise.resolve() : new Promise((resolve) => stream.once("drain", resolve));
  for await (const event of proc) {
    if (event.type === "stdout") await write(process.stdout, event.data);
    else if (event.type === "stderr") await write(process.stderr, event.data);
    else if (event.type === "exited") return event.code;
  }
  throw new VmmError("ERR_VMM_PROTOCOL", proc.command, "the exec ended without an exit status");
}

/** Feeds our stdin to the guest process until end-of-file. */
async function feedStdin(proc: ExecProcess): Promise<void> {
  try {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) await proc.write(chunk);
    await proc.closeStdin();
  } catch (error) {
    // The process exited first: what it did not read does not matter.
    if (!VmmError.is(error)) throw error;
  }
}

/** `msb run`; resolves with the command's exit status. */
export async function runCommand(args: string[]): Promise<number> {
  const request = parseRunArgs(args);
  const root = await imageRoot(request);
  let vm: MicroVm | undefined;
  try {
    const config = root.config;
    const argv = imageCommand(config, request.command);
    if (argv.length === 0) throw new UsageError("run: no command given and the image has no CMD or ENTRYPOINT");
    vm = await MicroVm.start({ mounts: [{ target: "/", fs: root.fs }], memoryMiB: request.memoryMiB, cpus: request.cpus, hostname: request.hostname ?? "msb" });
    const env = mergeEnv([DEFAULT_PATH], config?.env ?? [], request.tty ? ["TERM=xterm-256color"] : [], request.env);
    const user = request.user ?? config?.user;
    const cwd = request.workdir ?? config?.workingDir;
    const tty = request.tty ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 } : undefined;
    const proc = vm.agent.exec({
      argv,
      env,
      ...(cwd === undefined ? {} : { cwd }),
      ...(user === undefined ? {} : { user }),
      ...(tty === undefined ? {} : { tty }),
      stdin: request.interactive ? "pipe" : "null",
    });
    const forward = (signal: NodeJS.Signals): void => void proc.signal(signal === "SIGINT" ? 2 : signal === "SIGHUP" ? 1 : 15).catch(() => undefined);
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
    if (VmmError.is(error) && error.code === "ERR_VMM_AGENT" && error.kind !== undefined) {
      process.stderr.write(`msb: ${error.message}\n`);
      // Docker's statuses: 127 command not found, 126 not executable, 125 anything else.
      return error.kind === "not_found" ? 127 : error.kind === "permission_denied" ? 126 : EXIT_MSB_ERROR;
    }
    throw error;
  } finally {
    await vm?.stop();
    await root.cleanup();
  }
}
