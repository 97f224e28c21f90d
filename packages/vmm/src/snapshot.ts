// Saved VM states: boot once per guest-asset version and machine shape, save
// the VM when the agent has opened its port (before any filesystem exists on
// the host side), and start later VMs from that state. The guest's RAM lives
// in a file: the saving VM maps it shared (so the file holds the RAM), every
// restored VM maps it private (copy-on-write) and migration carries only the
// device state (QEMU's x-ignore-shared). A restore then reads ~60 KB instead
// of the guest's memory, and idle sandboxes share the template's pages.
// Every restored guest gets fresh entropy and the clock at `setup`.
import { createHash } from "node:crypto";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { Accelerator } from "./accel.js";
import { VmmError } from "./errors.js";
import { QmpClient } from "./qmp.js";
import { makeRunDir } from "./run-dir.js";
import { consoleTail, CPU_MODEL, qemuFailed, startQemu, type QemuConfig, type SerialPort } from "./qemu.js";

/** What a saved state is only valid for: restoring needs the same machine. */
export interface SavedStateKey {
  readonly assetsVersion: string;
  readonly accel: Accelerator;
  readonly memoryMiB: number;
  readonly cpus: number;
  /** Number of filesystem ports (`fs0`…); the device list must match on restore. */
  readonly fsPorts: number;
  readonly qemuBinary: string;
}

/** The default directory of saved states: `$MSB_HOME/cache/vm-states` (else `~/.msb/...`). */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  // The same home as @msb/oci's defaultHome (this package does not depend on that one).
  const home = env.MSB_HOME !== undefined && env.MSB_HOME !== "" ? env.MSB_HOME : join(homedir(), ".msb");
  return join(home, "cache", "vm-states");
}

/** A saved state's two files: the guest RAM and QEMU's device state. */
export interface SavedState {
  /** The guest's RAM, mapped by restored VMs copy-on-write. */
  readonly ram: string;
  /** QEMU's migration stream without the RAM. */
  readonly devices: string;
}

/**
 * Where the saved state for `key` lives in `dir`. Names start with the asset
 * version, so states of other versions can be told apart and pruned.
 */
export function savedStatePath(dir: string, key: SavedStateKey): SavedState {
  const digest = createHash("sha256").update(JSON.stringify([key.assetsVersion, key.accel, CPU_MODEL[key.accel], key.memoryMiB, key.cpus, key.fsPorts, key.qemuBinary])).digest("hex");
  const base = join(dir, `${key.assetsVersion.slice(0, 16)}-${digest.slice(0, 16)}`);
  return { ram: `${base}.ram`, devices: `${base}.dev` };
}

/** Quotes a path for the `exec:` migration URIs, which QEMU runs through /bin/sh. */
const shellQuote = (path: string): string => `'${path.replaceAll("'", "'\\''")}'`;

/**
 * Connects to QEMU's QMP socket, polling while QEMU is still creating it
 * (the file appears at bind(), connections succeed after listen()).
 */
export async function connectQmp(path: string, timeoutMs = 30_000): Promise<QmpClient> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await QmpClient.connect(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== "ENOENT" && code !== "ECONNREFUSED") || performance.now() > deadline) {
        throw new VmmError("ERR_VMM_QEMU", path, "cannot connect to QEMU's QMP socket", { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}

/** How long a VM being saved runs on after its agent port opened. */
const SETTLE_MS = 1000;

/** The migration capability that leaves file-backed shared RAM out of the stream. */
const IGNORE_SHARED = { capabilities: [{ capability: "x-ignore-shared", state: true }] };

/**
 * QEMU arguments that start a VM waiting to load a saved state (see
 * {@link loadSavedState}); the caller opens the state's device file as the
 * inherited fd 3, and the RAM is the memory file's.
 */
export function restoreArgs(qmpPath: string): string[] {
  return ["-qmp", `unix:${qmpPath},server=on,wait=off`, "-incoming", "defer"];
}

/**
 * Loads the device state from QEMU's fd 3 into a VM started with
 * {@link restoreArgs}; it then runs by itself. (The capability needs QMP in
 * QEMU 7.2; reading an inherited descriptor spares the `exec:` URI's shell
 * and `cat`.)
 */
export async function loadSavedState(qmpPath: string): Promise<void> {
  const qmp = await connectQmp(qmpPath);
  try {
    await qmp.execute("migrate-set-capabilities", IGNORE_SHARED);
    await qmp.execute("migrate-incoming", { uri: "fd:3" });
  } finally {
    qmp.close();
  }
}

/** Removes saved states of other guest-asset versions from `dir`. */
export async function pruneSavedStates(dir: string, assetsVersion: string): Promise<void> {
  const keep = `${assetsVersion.slice(0, 16)}-`;
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((name) => /\.(ram|dev)$/.test(name) && !name.startsWith(keep)).map((name) => rm(join(dir, name), { force: true })));
}

/** The ports of a VM with `fsPorts` filesystem ports, sockets under `runDir`. */
export function vmPorts(runDir: string, fsPorts: number): SerialPort[] {
  return [{ name: "agent", socketPath: join(runDir, "agent.sock") }, ...Array.from({ length: fsPorts }, (_, i) => ({ name: `fs${String(i)}`, socketPath: join(runDir, `fs${String(i)}.sock`) }))];
}

/** A listening port socket and the one connection QEMU makes to it. */
export interface PortListener {
  readonly server: Server;
  /** QEMU's connection; any later connection is refused. */
  readonly connection: Promise<Socket>;
}

/** Listens on every port socket; QEMU connects to each once, at start. */
export async function listenPorts(ports: readonly SerialPort[]): Promise<PortListener[]> {
  const listeners: PortListener[] = [];
  for (const port of ports) {
    await rm(port.socketPath, { force: true });
    const server = createServer();
    const connection = new Promise<Socket>((resolve) => {
      server.once("connection", (socket) => {
        resolve(socket);
        // Only QEMU may connect, and only once: stop listening.
        server.close();
      });
    });
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port.socketPath, resolve));
    listeners.push({ server, connection });
  }
  return listeners;
}

/**
 * Boots a VM to the point where the agent waits for its first frame and
 * saves its state to `state` (temp files, then renamed: the device file
 * last, so its presence means the pair is complete). `config` is the machine
 * the state will be restored into, minus what the save adds.
 */
export async function saveVmState(config: Omit<QemuConfig, "extraArgs" | "consoleLog" | "ports" | "memoryFile">, fsPorts: number, state: SavedState, timeoutMs = 60_000): Promise<void> {
  await mkdir(dirname(state.devices), { recursive: true });
  const runDir = await makeRunDir("msb-save");
  const suffix = `.${String(process.pid)}.tmp`;
  const temp = { ram: state.ram + suffix, devices: state.devices + suffix };
  const ports = vmPorts(runDir, fsPorts);
  const listeners = await listenPorts(ports);
  const qmpPath = join(runDir, "qmp.sock");
  const consoleLog = join(runDir, "console.log");
  // wait=on: QEMU does not run the guest before we are on QMP, so no event is missed.
  const qemu = startQemu({ ...config, consoleLog, ports, memoryFile: { path: temp.ram, shared: true }, extraArgs: ["-qmp", `unix:${qmpPath},server=on,wait=on`] });
  const session: { qmp?: QmpClient } = {};
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = (async () => {
      const qmp = (session.qmp = await connectQmp(qmpPath));
      await qmp.waitForEvent("VSERPORT_CHANGE", (event) => event.data?.id === "vport0" && event.data.open === true);
      // The agent opens its port last; let it reach its wait for the first
      // frame, so a restored VM does not redo (and TCG translate anew) the
      // end of its boot.
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      await qmp.execute("migrate-set-capabilities", IGNORE_SHARED);
      await qmp.execute("migrate", { uri: `exec:cat > ${shellQuote(temp.devices)}` });
      for (;;) {
        const status = (await qmp.execute("query-migrate")) as { status?: string; "error-desc"?: string };
        if (status.status === "completed") break;
        if (status.status === "failed" || status.status === "cancelled") throw new VmmError("ERR_VMM_QEMU", state.devices, `saving the VM state ${status.status}: ${status["error-desc"] ?? ""}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const early = qemu.exited.then((exit) => {
      throw qemuFailed(exit, qemu.stderr(), config.binary ?? "qemu");
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => void consoleTail(consoleLog).then((tail) => reject(new VmmError("ERR_VMM_BOOT", state.devices, `no agent to save within ${String(timeoutMs)} ms; guest console:\n${tail}`))), timeoutMs);
    });
    await Promise.race([work, early, timeout]);
    // The RAM file is only complete once QEMU has let go of its shared mapping.
    qemu.kill();
    await qemu.exited;
    await rename(temp.ram, state.ram);
    await rename(temp.devices, state.devices);
  } finally {
    clearTimeout(timer);
    session.qmp?.close();
    qemu.kill();
    await qemu.exited;
    for (const listener of listeners) {
      listener.server.close();
      void listener.connection.then((socket) => socket.destroy());
    }
    await rm(temp.ram, { force: true });
    await rm(temp.devices, { force: true });
    await rm(runDir, { recursive: true, force: true });
  }
}
