// The state commands of `msb`: `ls` (sandboxes) and `volume create | ls | rm`.
import { parseBytes } from "@msb/fs";
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
