// The state commands of `msb`: `ls` and `ps` (sandboxes), `volume create | ls
// | rm`, and `doctor` (what this machine gives msb).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { parseBytes } from "@msb/fs";
import { defaultHome } from "@msb/oci";
import { detectAccelerator, findGuestAssets } from "@msb/vmm";
import { Sandbox } from "./sandbox.js";
import { StateStore } from "./state.js";
import { UsageError, formatTable, humanSize, parse, timeAgo, type Write } from "./cli-images.js";

const stdoutWrite: Write = (text) => void process.stdout.write(text);

/** `msb ls [--json] [--label K[=V]]`: every sandbox, with crashed ones marked. */
export function lsCommand(args: string[], write: Write = stdoutWrite): number {
  const { values, positionals } = parse("ls", args, { json: { type: "boolean" }, label: { type: "string" } });
  if (positionals.length > 0) throw new UsageError(`ls takes no arguments, got ${positionals.join(" ")}`);
  const records = Sandbox.list(typeof values.label === "string" ? { label: values.label } : {});
  if (values.json === true) {
    write(`${JSON.stringify(records.map((r) => ({ name: r.name, status: r.status, image: r.config.image ?? null, pid: r.supervisorPid, labels: r.labels, volumes: r.volumes, createdAt: r.createdAt })), null, 2)}\n`);
    return 0;
  }
  const now = Date.now();
  const source = (config: Record<string, unknown>): string => (typeof config.image === "string" ? config.image : typeof config.rootfs === "string" ? config.rootfs : "");
  const rows = records.map((r) => [r.name, r.status, source(r.config), r.supervisorPid === null ? "" : String(r.supervisorPid), timeAgo(r.createdAt, now)]);
  for (const line of formatTable([["NAME", "STATUS", "IMAGE", "PID", "CREATED"], ...rows])) write(`${line}\n`);
  return 0;
}

/** `msb volume create NAME [--quota SIZE] | ls [--json] | rm NAME [--force]`. */
export function volumeCommand(args: string[], write: Write = stdoutWrite): number {
  const [sub, ...rest] = args;
  const store = new StateStore();
  try {
    if (sub === "create") {
      const { values, positionals } = parse("volume create", rest, { quota: { type: "string" } });
      const [name] = positionals;
      if (name === undefined || positionals.length !== 1) throw new UsageError("volume create needs exactly one NAME");
      let quota: number | undefined;
      if (typeof values.quota === "string") {
        try {
          quota = parseBytes(values.quota);
        } catch (error) {
          throw new UsageError(`volume create: --quota ${values.quota}: ${(error as Error).message}`);
        }
      }
      store.createVolume(name, quota === undefined ? {} : { quota });
      write(`${name}\n`);
      return 0;
    }
    if (sub === "ls") {
      const { values } = parse("volume ls", rest, { json: { type: "boolean" } });
      const volumes = store.listVolumes();
      if (values.json === true) write(`${JSON.stringify(volumes, null, 2)}\n`);
      else {
        const now = Date.now();
        const rows = volumes.map((v) => [v.name, v.quota === null ? "-" : humanSize(v.quota), timeAgo(v.createdAt, now), v.path]);
        for (const line of formatTable([["NAME", "QUOTA", "CREATED", "PATH"], ...rows])) write(`${line}\n`);
      }
      return 0;
    }
    if (sub === "rm") {
      const { values, positionals } = parse("volume rm", rest, { force: { type: "boolean" } });
      if (positionals.length === 0) throw new UsageError("volume rm needs at least one NAME");
      for (const name of positionals) {
        store.removeVolume(name, { force: values.force === true });
        write(`${name}\n`);
      }
      return 0;
    }
    throw new UsageError(`volume needs a subcommand: create, ls or rm${sub === undefined ? "" : `, got ${JSON.stringify(sub)}`}`);
  } finally {
    store.close();
  }
}

/** `msb ps [--json]`: the running sandboxes. */
export function psCommand(args: string[], write: Write = stdoutWrite): number {
  const { values, positionals } = parse("ps", args, { json: { type: "boolean" } });
  if (positionals.length > 0) throw new UsageError(`ps takes no arguments, got ${positionals.join(" ")}`);
  const running = Sandbox.list().filter((r) => r.status === "running" || r.status === "creating");
  if (values.json === true) {
    write(`${JSON.stringify(running.map((r) => ({ name: r.name, status: r.status, pid: r.supervisorPid, detached: r.socketPath !== null && r.socketPath !== "" })), null, 2)}\n`);
    return 0;
  }
  const now = Date.now();
  const rows = running.map((r) => [r.name, r.socketPath !== null && r.socketPath !== "" ? "detached" : "attached", r.supervisorPid === null ? "" : String(r.supervisorPid), timeAgo(r.createdAt, now)]);
  for (const line of formatTable([["NAME", "MODE", "PID", "CREATED"], ...rows])) write(`${line}\n`);
  return 0;
}

/** `msb doctor [--json]`: what this machine gives msb (accelerator, QEMU, guest assets, FUSE); exit 1 when sandboxes cannot run. */
export async function doctorCommand(args: string[], write: Write = stdoutWrite): Promise<number> {
  const { values, positionals } = parse("doctor", args, { json: { type: "boolean" } });
  if (positionals.length > 0) throw new UsageError(`doctor takes no arguments, got ${positionals.join(" ")}`);
  const accel = await detectAccelerator();
  const qemuBinary = process.env.MSB_QEMU ?? "qemu-system-x86_64";
  const qemu = await new Promise<string | undefined>((resolve) =>
    execFile(qemuBinary, ["--version"], (error, stdout) => resolve(error === null ? stdout.split("\n")[0]?.trim() : undefined)),
  );
  const assets = await findGuestAssets().then(
    (found) => ({ ok: true as const, dir: found.dir, version: found.version, kernel: found.kernelVersion }),
    (error: unknown) => ({ ok: false as const, error: error instanceof Error ? error.message : String(error) }),
  );
  const fuse = existsSync("/dev/fuse");
  const report = { accelerator: accel, qemu: qemu ?? null, guestAssets: assets, fuse, home: defaultHome() };
  const ok = qemu !== undefined && assets.ok;
  if (values.json === true) write(`${JSON.stringify({ ok, ...report }, null, 2)}\n`);
  else {
    write(`accelerator:  ${accel.accel} (${accel.reason})\n`);
    write(`qemu:         ${qemu ?? `${qemuBinary} not found: bash scripts/setup.sh installs qemu-system-x86`}\n`);
    write(`guest assets: ${assets.ok ? `${assets.version.slice(0, 12)} (kernel ${assets.kernel}) in ${assets.dir}` : assets.error}\n`);
    write(`fuse:         ${fuse ? "/dev/fuse present (msb mount works)" : "/dev/fuse missing (msb mount cannot work; sandboxes still run)"}\n`);
    write(`msb home:     ${report.home}\n`);
    write(ok ? "sandboxes can run here\n" : "sandboxes cannot run here until the above is fixed\n");
  }
  return ok ? 0 : 1;
}
