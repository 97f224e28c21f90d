// Saved VM states: boot once per guest-asset version and machine shape, save
// the VM when the agent has opened its port (before any filesystem exists on
// the host side), and start later VMs from that state with -incoming. Every
// restored guest gets fresh entropy and the clock at `setup`.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Accelerator } from "./accel.js";
import { VmmError } from "./errors.js";
import { QmpClient } from "./qmp.js";
import { consoleTail, qemuFailed, startQemu, type QemuConfig, type SerialPort } from "./qemu.js";

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
  const home = env.MSB_HOME !== undefined && env.MSB_HOME !== "" ? env.MSB_HOME : join(env.HOME ?? tmpdir(), ".msb");
  return join(home, "cache", "vm-states");
}

/** The file a saved state for `key` lives in. */
export function savedStatePath(dir: string, key: SavedStateKey): string {
  const digest = createHash("sha256").update(JSON.stringify([key.assetsVersion, key.accel, key.memoryMiB, key.cpus, key.fsPorts, key.qemuBinary])).digest("hex");
  return join(dir, `${digest.slice(0, 24)}.vmstate`);
}

/** The `-incoming` URI that loads a saved state (QEMU runs it through /bin/sh). */
export function incomingUri(path: string): string {
  return `exec:cat '${path.replaceAll("'", "'\\''")}'`;
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
 * saves its state to `path` (temp file + rename). `config` is the machine
 * the state will be restored into, minus `extraArgs`.
 */
export async function saveVmState(config: Omit<QemuConfig, "extraArgs" | "consoleLog" | "ports">, fsPorts: number, path: string, timeoutMs = 60_000): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true });
  const runDir = await mkdtemp(join(tmpdir(), "msb-save-"));
  const temp = `${path}.${String(process.pid)}.tmp`;
  const ports = vmPorts(runDir, fsPorts);
  const listeners = await listenPorts(ports);
  const qmpPath = join(runDir, "qmp.sock");
  const consoleLog = join(runDir, "console.log");
  // wait=on: QEMU does not run the guest before we are on QMP, so no event is missed.
  const qemu = startQemu({ ...config, consoleLog, ports, extraArgs: ["-qmp", `unix:${qmpPath},server=on,wait=on`] });
  const session: { qmp?: QmpClient } = {};
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = (async () => {
      for (let attempt = 0; !existsSync(qmpPath); attempt++) {
        if (attempt > 2000) throw new VmmError("ERR_VMM_QEMU", qmpPath, "QEMU did not create its QMP socket");
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const qmp = (session.qmp = await QmpClient.connect(qmpPath));
      await qmp.waitForEvent("VSERPORT_CHANGE", (event) => event.data?.id === "vport0" && event.data.open === true);
      await qmp.execute("migrate", { uri: `exec:cat > '${temp.replaceAll("'", "'\\''")}'` });
      for (;;) {
        const status = (await qmp.execute("query-migrate")) as { status?: string; "error-desc"?: string };
        if (status.status === "completed") break;
        if (status.status === "failed" || status.status === "cancelled") throw new VmmError("ERR_VMM_QEMU", path, `saving the VM state ${status.status}: ${status["error-desc"] ?? ""}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const early = qemu.exited.then((exit) => {
      throw qemuFailed(exit, qemu.stderr(), config.binary ?? "qemu");
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => void consoleTail(consoleLog).then((tail) => reject(new VmmError("ERR_VMM_BOOT", path, `no agent to save within ${String(timeoutMs)} ms; guest console:\n${tail}`))), timeoutMs);
    });
    await Promise.race([work, early, timeout]);
    await rename(temp, path);
  } finally {
    clearTimeout(timer);
    session.qmp?.close();
    qemu.kill();
    await qemu.exited;
    for (const listener of listeners) {
      listener.server.close();
      void listener.connection.then((socket) => socket.destroy());
    }
    await rm(temp, { force: true });
    await rm(runDir, { recursive: true, force: true });
  }
}
