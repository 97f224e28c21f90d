// Which accelerator QEMU can really use here. /dev/kvm alone proves little:
// nested setups expose it without hardware virtualisation (kvm_pvm), where a
// stock kernel crawls and then dies. KVM is chosen only when the CPU has
// vmx/svm, a hardware KVM module is loaded and /dev/kvm opens read-write.
import { constants } from "node:fs";
import { access, readFile } from "node:fs/promises";

/** The accelerator a VM runs under. */
export type Accelerator = "kvm" | "tcg";

/** The outcome of {@link detectAccelerator}: the choice and why. */
export interface AcceleratorChoice {
  readonly accel: Accelerator;
  readonly reason: string;
}

/** Where the probe looks; tests point it at fixtures. */
export interface AcceleratorProbeOptions {
  /** `MSB_ACCEL=kvm|tcg` forces a choice. Default: `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  readonly cpuinfo?: string;
  readonly sysModule?: string;
  readonly kvmDevice?: string;
}

const exists = (path: string, mode = constants.F_OK): Promise<boolean> => access(path, mode).then(() => true, () => false);

/**
 * Picks KVM where it is hardware virtualisation, else TCG, and says why.
 * `MSB_ACCEL=kvm` or `MSB_ACCEL=tcg` in the environment overrides the probe.
 *
 * @example
 * ```ts
 * const { accel, reason } = await detectAccelerator();
 * console.log(`running under ${accel}: ${reason}`);
 * ```
 */
export async function detectAccelerator(options: AcceleratorProbeOptions = {}): Promise<AcceleratorChoice> {
  const env = options.env ?? process.env;
  const forced = env.MSB_ACCEL;
  if (forced === "kvm" || forced === "tcg") return { accel: forced, reason: `MSB_ACCEL=${forced}` };
  const kvmDevice = options.kvmDevice ?? "/dev/kvm";
  if (!(await exists(kvmDevice, constants.R_OK | constants.W_OK))) return { accel: "tcg", reason: `${kvmDevice} is missing or not read-write for this user` };
  const cpuinfo = await readFile(options.cpuinfo ?? "/proc/cpuinfo", "utf8").catch(() => "");
  const flags = new Set(/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/) ?? []);
  if (!flags.has("vmx") && !flags.has("svm")) return { accel: "tcg", reason: "the CPU has no vmx/svm flag: /dev/kvm is not hardware virtualisation here" };
  const sysModule = options.sysModule ?? "/sys/module";
  const [intel, amd] = await Promise.all([exists(`${sysModule}/kvm_intel`), exists(`${sysModule}/kvm_amd`)]);
  if (!intel && !amd) return { accel: "tcg", reason: "neither kvm_intel nor kvm_amd is loaded" };
  return { accel: "kvm", reason: `hardware virtualisation (${intel ? "kvm_intel" : "kvm_amd"})` };
}
