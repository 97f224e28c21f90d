// A microVM: QEMU plus the host ends of its virtio-serial ports: the agent's
// control connection and one FUSE server per filesystem.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { DynFileSystem } from "@msb/fs";
import { serveStream, type FuseLogger, type FuseStream } from "@msb/fuse";
import { tscKhzAsync } from "@msb/native";
import { detectAccelerator, type Accelerator } from "./accel.js";
import { AgentClient } from "./agent.js";
import { findGuestAssets, type GuestAssets } from "./assets.js";
import { VmmError } from "./errors.js";
import { makeRunDir } from "./run-dir.js";
import { consoleTail, defaultQemuBinary, qemuFailed, startQemu, type QemuConfig, type QemuExit, type QemuProcess } from "./qemu.js";
import { defaultStateDir, listenPorts, loadSavedState, pruneSavedStates, restoreArgs, saveVmState, savedStatePath, vmPorts, type SavedState } from "./snapshot.js";

/** A filesystem the guest mounts, served from the host. */
export interface VmMount {
  /** Absolute guest path; exactly one mount (the first) is `/`. */
  readonly target: string;
  readonly fs: DynFileSystem;
  readonly readonly?: boolean;
}

/** A disk image the guest mounts. */
export interface VmDisk {
  /** Host path of the image. */
  readonly path: string;
  /** Default: qcow2 when the image starts with its magic, else raw. */
  readonly format?: "raw" | "qcow2";
  /** Absolute guest path. */
  readonly target: string;
  /** The filesystem in the image, as the guest kernel names it (`ext4`, `vfat`). */
  readonly fstype: string;
  readonly readonly?: boolean;
}

/** qcow2 images start with "QFI\xfb". */
async function imageFormat(path: string): Promise<"raw" | "qcow2"> {
  const handle = await open(path, "r");
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(4), 0, 4, 0);
    return bytesRead === 4 && buffer.equals(Buffer.from([0x51, 0x46, 0x49, 0xfb])) ? "qcow2" : "raw";
  } finally {
    await handle.close();
  }
}

/** Options of {@link MicroVm.start}. */
export interface MicroVmOptions {
  /** Filesystems to serve; the first is the root `/`. */
  readonly mounts: readonly VmMount[];
  /** Guest tmpfs mounts (in guest memory). */
  readonly tmpfs?: readonly { readonly target: string; readonly size?: number }[];
  /**
   * Disk images on virtio-blk, mounted by the guest kernel at `target`. A VM
   * with disks boots cold: a saved state holds the devices it was saved with.
   */
  readonly disks?: readonly VmDisk[];
  /** Guest memory in MiB. Default 256. */
  readonly memoryMiB?: number;
  /** vCPUs. Default 1. */
  readonly cpus?: number;
  /** Default `msb`. */
  readonly hostname?: string;
  /** Where sockets and the console log go; default a fresh temp dir, removed at stop. */
  readonly runDir?: string;
  /** Guest kernel and initramfs; default {@link findGuestAssets}. */
  readonly assets?: GuestAssets;
  /** Default: {@link detectAccelerator}. */
  readonly accel?: Accelerator;
  /** Give up when the agent has not answered by then. Default 60 s (TCG boots take ~1–2 s). */
  readonly bootTimeoutMs?: number;
  /** Where FUSE servers log. Default: warnings to the console. */
  readonly fuseLogger?: FuseLogger;
  /** QEMU binary; default `MSB_QEMU` or `qemu-system-x86_64`. */
  readonly qemuBinary?: string;
  /**
   * Start from a saved VM state (made on first use for this guest-asset
   * version and machine shape; ~10× faster than a cold boot under TCG).
   * `false` always boots cold. Default true.
   */
  readonly savedState?: boolean;
  /** Where saved states are kept. Default `$MSB_HOME/cache/vm-states`. */
  readonly stateDir?: string;
}

/**
 * The saved state for this machine, made now if missing. A state that cannot
 * be made (say, an accelerator without migration support) is not fatal: the
 * VM then boots cold.
 */
async function ensureSavedState(machine: Omit<QemuConfig, "extraArgs" | "consoleLog" | "ports" | "memoryFile">, fsPorts: number, stateDir: string, assetsVersion: string): Promise<SavedState | undefined> {
  const state = savedStatePath(stateDir, { assetsVersion, accel: machine.accel, memoryMiB: machine.memoryMiB, cpus: machine.cpus, fsPorts, qemuBinary: machine.binary ?? defaultQemuBinary() });
  if (existsSync(state.devices) && existsSync(state.ram)) return state;
  // VMs started together share one save instead of each booting its own.
  let saving = savesInFlight.get(state.devices);
  if (saving === undefined) {
    saving = (async () => {
      try {
        await saveVmState(await booting(machine), fsPorts, state);
        await pruneSavedStates(stateDir, assetsVersion);
        return state;
      } catch (error) {
        process.emitWarning(`msb: booting cold, the VM state could not be saved: ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      } finally {
        savesInFlight.delete(state.devices);
      }
    })();
    savesInFlight.set(state.devices, saving);
  }
  return saving;
}

/** The host's TSC rate in kHz: measured (0.1 s, on the threadpool) for the first VM of this process that boots its kernel. */
let hostTscKhz: Promise<number> | undefined;

/**
 * `machine` set up to boot its kernel: the command line gains the host's
 * TSC rate. The guest reads the host's TSC under TCG and cannot calibrate
 * it on a microvm (no HPET, no PM timer); a guessed rate drifted its clock
 * by the error (0.15%, two minutes a day, on this machine). A VM restored
 * from a saved state keeps the rate of the boot that saved it.
 */
export async function booting<T extends { readonly cmdline: string }>(machine: T): Promise<T> {
  const khz = await (hostTscKhz ??= tscKhzAsync());
  return { ...machine, cmdline: `${machine.cmdline} tsc_early_khz=${String(khz)}` };
}

/** Saves under way in this process, by device-state path. */
const savesInFlight = new Map<string, Promise<SavedState | undefined>>();

/** Milliseconds from the start of {@link MicroVm.start} to each boot step. */
export interface BootTimings {
  /** Started from a saved VM state rather than a cold boot. */
  readonly restored: boolean;
  /** QEMU connected to every port socket. */
  readonly qemuStarted: number;
  /** The agent answered `hello`. */
  readonly agentReady: number;
  /** `setup` done: the root and volumes are mounted. */
  readonly rootMounted: number;
}

const SOCKET_PATH_MAX = 107;

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(onTimeout()), ms)))]).finally(() => clearTimeout(timer));
}

/**
 * A running microVM with its agent. Start it with {@link MicroVm.start};
 * `await using` stops it.
 *
 * @example
 * ```ts
 * await using vm = await MicroVm.start({ mounts: [{ target: "/", fs: rootFs }] });
 * const { code, stdout } = await vm.agent.exec({ argv: ["echo", "hi"] }).output();
 * ```
 */
export class MicroVm implements AsyncDisposable {
  /** The accelerator in use, and why it was chosen. */
  readonly accel: Accelerator;
  readonly accelReason: string;
  /** Resolves when QEMU has exited (after {@link MicroVm.stop}, or a crash). */
  readonly exited: Promise<QemuExit>;
  private stopping: Promise<void> | undefined;

  private constructor(
    /** The agent's control connection. */
    readonly agent: AgentClient,
    private readonly qemu: QemuProcess,
    private readonly servers: readonly FuseStream[],
    /** Where the sockets and `console.log` are. */
    readonly runDir: string,
    private readonly ownsRunDir: boolean,
    accel: { accel: Accelerator; reason: string },
    /** How long each boot step took. */
    readonly timings: BootTimings,
    /** The guest asset version this VM booted. */
    readonly assetsVersion: string,
  ) {
    this.accel = accel.accel;
    this.accelReason = accel.reason;
    this.exited = qemu.exited;
    // A FUSE server only closes on its own when the guest broke the FUSE
    // protocol (or QEMU went away): the guest has lost a filesystem it cannot
    // get back, so the whole VM goes.
    servers.forEach((server, index) => {
      void server.closed.then(() => {
        if (this.stopping !== undefined) return;
        agent.close(new VmmError("ERR_VMM_PROTOCOL", `fs${String(index)}`, "the guest broke the FUSE protocol on a filesystem port; the VM was stopped"));
        void this.kill();
      });
    });
  }

  /** The guest's serial console log. */
  get consoleLog(): string {
    return join(this.runDir, "console.log");
  }

  /** Boots QEMU, connects the agent and mounts the filesystems. */
  static async start(options: MicroVmOptions): Promise<MicroVm> {
    const started = performance.now();
    const elapsed = (): number => performance.now() - started;
    const mounts = options.mounts;
    if (mounts.length === 0 || mounts[0]?.target !== "/") throw new VmmError("ERR_VMM_INVALID", String(mounts[0]?.target), "the first mount must be the root /");
    for (const mount of mounts.slice(1)) {
      if (!mount.target.startsWith("/") || mount.target === "/") throw new VmmError("ERR_VMM_INVALID", mount.target, "a volume target must be an absolute path other than /");
    }
    const assets = options.assets ?? (await findGuestAssets());
    const accel = options.accel === undefined ? await detectAccelerator() : { accel: options.accel, reason: "chosen by the caller" };
    const ownsRunDir = options.runDir === undefined;
    const runDir = options.runDir ?? (await makeRunDir("msb-vm"));
    await mkdir(runDir, { recursive: true, mode: 0o700 });
    const binary = options.qemuBinary ?? defaultQemuBinary();

    const ports = vmPorts(runDir, mounts.length);
    for (const port of ports) {
      if (Buffer.byteLength(port.socketPath) > SOCKET_PATH_MAX) throw new VmmError("ERR_VMM_INVALID", port.socketPath, `socket path is longer than ${String(SOCKET_PATH_MAX)} bytes; choose a shorter runDir`);
    }
    const machine = {
      binary,
      accel: accel.accel,
      memoryMiB: options.memoryMiB ?? 256,
      cpus: options.cpus ?? 1,
      kernel: assets.kernel,
      initramfs: assets.initramfs,
      // The agent mounts each filesystem port at boot, before the saved state is taken.
      cmdline: `${assets.cmdline} msb.fs_ports=${String(mounts.length)}`,
    };
    const disks = await Promise.all(
      (options.disks ?? []).map(async (disk, index) => ({ path: disk.path, format: disk.format ?? (await imageFormat(disk.path)), readonly: disk.readonly === true, serial: `msb-disk${String(index)}` })),
    );
    const savedState = options.savedState === false || disks.length > 0 ? undefined : await ensureSavedState(machine, mounts.length, options.stateDir ?? defaultStateDir(), assets.version);
    const listeners = await listenPorts(ports);
    const cleanup: (() => Promise<void> | void)[] = [() => listeners.forEach((l) => l.server.close())];
    let qemu: QemuProcess | undefined;
    const servers: FuseStream[] = [];
    try {
      const qmpPath = join(runDir, "qmp.sock");
      const qemuMachine = savedState === undefined ? await booting(machine) : machine;
      const devices = savedState === undefined ? undefined : await open(savedState.devices, "r");
      try {
        qemu = startQemu({
          ...qemuMachine,
          consoleLog: join(runDir, "console.log"),
          ports,
          disks,
          ...(savedState === undefined || devices === undefined ? {} : { memoryFile: { path: savedState.ram, shared: false }, extraArgs: restoreArgs(qmpPath), inheritFds: [devices.fd] }),
        });
      } finally {
        // QEMU has its own copy of the descriptor.
        await devices?.close();
      }
      const loading = savedState === undefined ? Promise.resolve() : loadSavedState(qmpPath);
      // Awaited below; a failure after QEMU died or the boot timed out is already reported.
      loading.catch(() => undefined);
      const running = qemu;
      cleanup.push(() => running.kill());
      const early = running.exited.then(async (exit) => {
        throw qemuFailed(exit, `${running.stderr()}\n${await consoleTail(join(runDir, "console.log"))}`, binary);
      });
      early.catch(() => undefined);
      const bootTimeoutMs = options.bootTimeoutMs ?? 60_000;
      // Each boot step races QEMU's exit and what is left of the boot timeout.
      const step = <T>(name: string, promise: Promise<T>): Promise<T> =>
        withTimeout(Promise.race([promise, early]), Math.max(1, bootTimeoutMs - elapsed()), () => new VmmError("ERR_VMM_BOOT", runDir, `the guest did not reach "${name}" within ${String(bootTimeoutMs)} ms under ${accel.accel}`));
      try {
        const [sockets] = await step("QEMU connected", Promise.all([Promise.all(listeners.map((l) => l.connection)), loading]));
        const qemuStarted = elapsed();
        const [agentSocket, ...fsSockets] = sockets;
        if (agentSocket === undefined) throw new VmmError("ERR_VMM_QEMU", binary, "QEMU did not connect the agent port");
        fsSockets.forEach((socket, i) => {
          const mount = mounts[i];
          if (mount !== undefined) servers.push(serveStream(mount.fs, socket, options.fuseLogger === undefined ? {} : { logger: options.fuseLogger }));
        });
        cleanup.push(() => Promise.all(servers.map((s) => s.close())).then(() => undefined));
        const agent = await step("agent ready", AgentClient.connect(agentSocket));
        cleanup.push(() => agent.close());
        // QEMU dying fails every pending call at once instead of leaving it to time out.
        void running.exited.then((exit) => agent.close(new VmmError("ERR_VMM_GONE", binary, `QEMU exited (${exit.signal ?? String(exit.code)})`)));
        const agentReady = elapsed();
        await step(
          "root mounted",
          agent.setup({
            hostname: options.hostname ?? "msb",
            entropy: randomBytes(64),
            timeNs: BigInt(Date.now()) * 1_000_000n,
            mounts: mounts.map((m, i) => ({ tag: `fs${String(i)}`, target: m.target, readonly: m.readonly === true })),
            ...(options.tmpfs === undefined ? {} : { tmpfs: options.tmpfs }),
            ...(disks.length === 0 ? {} : { disks: (options.disks ?? []).map((d, i) => ({ serial: `msb-disk${String(i)}`, target: d.target, fstype: d.fstype, readonly: d.readonly === true })) }),
          }),
        );
        return new MicroVm(agent, running, servers, runDir, ownsRunDir, accel, { restored: savedState !== undefined, qemuStarted, agentReady, rootMounted: elapsed() }, assets.version);
      } catch (error) {
        if (VmmError.is(error) && error.code === "ERR_VMM_BOOT") {
          throw new VmmError("ERR_VMM_BOOT", runDir, `${error.message}; guest console:\n${await consoleTail(join(runDir, "console.log"))}`);
        }
        throw error;
      }
    } catch (error) {
      for (const step of cleanup.reverse()) await step();
      if (qemu !== undefined) await qemu.exited;
      if (ownsRunDir) await rm(runDir, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * Stops the VM: the agent shuts the guest down cleanly (processes stopped,
   * filesystems synced and unmounted), then QEMU exits; after `timeoutMs`
   * QEMU is killed. Idempotent.
   */
  stop(timeoutMs = 10_000): Promise<void> {
    return (this.stopping ??= (async () => {
      const exited = this.qemu.exited.then(() => true);
      const clean = this.agent.shutdown().then(() => exited, () => false);
      const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref());
      if (!(await Promise.race([clean, timer]))) this.qemu.kill("SIGKILL");
      await this.qemu.exited;
      this.agent.close();
      await Promise.all(this.servers.map((s) => s.close()));
      if (this.ownsRunDir) await rm(this.runDir, { recursive: true, force: true });
    })());
  }

  /**
   * Host memory of the QEMU process in bytes: `rss` (resident) and `pss`
   * (proportional: pages shared with other VMs, such as a saved state's RAM
   * and the QEMU binary, count divided among them). Undefined once it exited.
   */
  async memory(): Promise<{ rss: number; pss: number } | undefined> {
    const rollup = await readFile(`/proc/${String(this.qemu.pid)}/smaps_rollup`, "utf8").catch(() => "");
    const field = (name: string): number | undefined => {
      const kib = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(rollup)?.[1];
      return kib === undefined ? undefined : Number(kib) * 1024;
    };
    const rss = field("Rss");
    const pss = field("Pss");
    return rss === undefined || pss === undefined ? undefined : { rss, pss };
  }

  /** Kills QEMU at once (no guest shutdown), then releases everything. */
  async kill(): Promise<void> {
    this.qemu.kill("SIGKILL");
    await this.stop(0);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
