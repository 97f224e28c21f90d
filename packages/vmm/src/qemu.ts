// QEMU's command line for an msb microVM, and the process around it.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import type { Accelerator } from "./accel.js";
import { VmmError } from "./errors.js";

/** A virtio-serial port and the host unix socket QEMU connects it to. */
export interface SerialPort {
  /** The port name the guest finds in /sys/class/virtio-ports/STAR/name. */
  readonly name: string;
  /** A unix socket the host listens on; QEMU connects to it at start. */
  readonly socketPath: string;
}

/** Everything that decides QEMU's command line. */
export interface QemuConfig {
  readonly binary?: string;
  readonly accel: Accelerator;
  readonly memoryMiB: number;
  readonly cpus: number;
  readonly kernel: string;
  readonly initramfs: string;
  readonly cmdline: string;
  /** The guest's serial console goes to this file. */
  readonly consoleLog: string;
  readonly ports: readonly SerialPort[];
  /**
   * Guest RAM backed by this file: `shared` writes the RAM into it (a VM
   * whose state is being saved), otherwise it is mapped copy-on-write (a VM
   * restored from it). Default: anonymous memory.
   */
  readonly memoryFile?: { readonly path: string; readonly shared: boolean };
  /** Disk images on virtio-blk, found in the guest by `serial`. */
  readonly disks?: readonly QemuDisk[];
  /** Extra arguments (e.g. `-incoming` for a saved state), appended last. */
  readonly extraArgs?: readonly string[];
  /** Open descriptors QEMU inherits as fd 3, 4, ... (for `-incoming fd:3`). */
  readonly inheritFds?: readonly number[];
}

/** A disk image attached as a virtio-blk device. */
export interface QemuDisk {
  readonly path: string;
  readonly format: "raw" | "qcow2";
  readonly readonly: boolean;
  /** The serial the guest sees in /sys/block/vdX/serial (ASCII letters, digits, `-`; ≤ 20). */
  readonly serial: string;
}

/** Escapes a value for QEMU's comma-separated option lists. */
const optionValue = (value: string): string => value.replaceAll(",", ",,");

/** The default QEMU binary; `MSB_QEMU` overrides it. */
export const defaultQemuBinary = (env: NodeJS.ProcessEnv = process.env): string => env.MSB_QEMU ?? "qemu-system-x86_64";

/**
 * The vCPU model per accelerator. Under TCG: qemu64 with ARAT (the APIC timer
 * keeps running when idle). Without ARAT the kernel expects the LAPIC timer to
 * stop in deep idle, finds no broadcast timer on microvm and stays in periodic
 * low-resolution mode: 4 ms timers and a tick on every idle CPU. A saved state
 * only restores on the model it was saved with, so its key includes this.
 */
export const CPU_MODEL: Readonly<Record<Accelerator, string>> = { kvm: "host", tcg: "qemu64,+arat" };

/**
 * QEMU's arguments for a microVM: `-M microvm` without option ROMs (the
 * kernel enters through PVH), the legacy devices the measured TCG boot needs
 * (serial, RTC, PIT, PIC), no default devices, and one virtio-serial device
 * carrying every port. Multi-threaded TCG when there are several vCPUs.
 */
export function qemuArgs(config: QemuConfig): string[] {
  const accel = ["-accel", config.accel === "kvm" ? "kvm" : config.cpus > 1 ? "tcg,thread=multi" : "tcg", "-cpu", CPU_MODEL[config.accel]];
  const ports = config.ports.flatMap((port, index) => [
    "-chardev",
    `socket,id=port${String(index)},path=${optionValue(port.socketPath)}`,
    "-device",
    `virtserialport,chardev=port${String(index)},name=${port.name},id=vport${String(index)}`,
  ]);
  const memory = config.memoryFile === undefined ? [] : ["-object", `memory-backend-file,id=ram,size=${String(config.memoryMiB)}M,mem-path=${optionValue(config.memoryFile.path)},share=${config.memoryFile.shared ? "on" : "off"}`];
  return [
    "-M", `microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on${memory.length > 0 ? ",memory-backend=ram" : ""}`,
    ...memory,
    ...accel,
    "-m", String(config.memoryMiB),
    "-smp", String(config.cpus),
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    "-kernel", config.kernel,
    "-initrd", config.initramfs,
    "-append", config.cmdline,
    "-chardev", `file,id=console,path=${optionValue(config.consoleLog)}`,
    "-serial", "chardev:console",
    "-device", "virtio-serial-device",
    ...ports,
    ...(config.disks ?? []).flatMap((disk, index) => [
      "-drive",
      `file=${optionValue(disk.path)},if=none,id=disk${String(index)},format=${disk.format},readonly=${disk.readonly ? "on" : "off"}`,
      "-device",
      `virtio-blk-device,drive=disk${String(index)},serial=${disk.serial}`,
    ]),
    ...(config.extraArgs ?? []),
  ];
}

/** How QEMU ended. */
export interface QemuExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A running QEMU process. */
export interface QemuProcess {
  readonly pid: number;
  /** Resolves when QEMU has exited. */
  readonly exited: Promise<QemuExit>;
  /** QEMU's own stderr so far (its error messages, not the guest's console). */
  stderr(): string;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts QEMU. It runs under `setpriv --pdeathsig SIGKILL`, so it dies with
 * the process that started it even when that process is SIGKILLed: no
 * orphaned VMs.
 */
export function startQemu(config: QemuConfig): QemuProcess {
  const binary = config.binary ?? defaultQemuBinary();
  const child: ChildProcess = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", binary, ...qemuArgs(config)], { stdio: ["ignore", "ignore", "pipe", ...(config.inheritFds ?? [])] });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    // Keep the tail: it holds the reason QEMU gave up.
    stderr = (stderr + chunk).slice(-16 * 1024);
  });
  const exited = new Promise<QemuExit>((resolve) => {
    child.once("error", (cause) => {
      stderr += `\n${cause.message}`;
      resolve({ code: 127, signal: null });
    });
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  return {
    pid: child.pid ?? -1,
    exited,
    stderr: () => stderr,
    kill: (signal: NodeJS.Signals = "SIGKILL") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** The last `bytes` of the guest console log, for error messages. */
export async function consoleTail(path: string, bytes = 4096): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.slice(-bytes);
}

/** A VmmError for QEMU ending before the VM was up. */
export function qemuFailed(exit: QemuExit, stderr: string, binary: string): VmmError {
  const how = exit.signal === null ? `exit code ${String(exit.code)}` : `signal ${exit.signal}`;
  const hint = exit.code === 127 ? ` (is ${binary} installed? bash scripts/setup.sh installs qemu-system-x86)` : "";
  return new VmmError("ERR_VMM_QEMU", binary, `QEMU ended with ${how}${hint}: ${stderr.trim().slice(-2000)}`);
}
