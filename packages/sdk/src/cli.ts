#!/usr/bin/env node
// The `msb` command. Exit codes: 0 done, 1 the operation failed, 2 bad usage or
// a bad spec (nothing was changed). `msb run` exits with the command's own
// status, or 125 when msb itself failed (Docker's convention).
import { parseArgs } from "node:util";
import { mountFuse, type FuseLogger } from "@msb/fuse";
import { OciError } from "@msb/oci";
import { UsageError, imagesCommand, loginCommand, pruneCommand, pullCommand, rmiCommand } from "./cli-images.js";
import { EXIT_MSB_ERROR, createCommand, execCommand, inspectCommand, logsCommand, removeCommand, runCommand, startCommand, stopCommand } from "./cli-run.js";
import { doctorCommand, lsCommand, psCommand, volumeCommand } from "./cli-state.js";
import { SpecError, fsFromSpecFile } from "./spec.js";

const USAGE = `usage: msb <command> [options]

commands:
  run [IMAGE | --rootfs DIR] [OPTIONS] [--] [COMMAND [ARG...]]
      Boot a microVM on IMAGE (default: the built-in busybox image) and run
      COMMAND (default: the image's ENTRYPOINT/CMD) in it; exits with its status.
      -e, --env K=V  -w, --workdir DIR  -u, --user USER[:GROUP]  -t, --tty
      -i, --interactive  -m, --memory MIB (256)  --cpus N (1)  --hostname NAME
      --pull always|missing|never  --name NAME  -d, --detach (keep it running; prints NAME)
      -v, --volume NAME:/path | /host/dir:/path[:ro]  --tmpfs /path[:SIZE]  --insecure (plain-HTTP registry)
  exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] NAME [--] COMMAND [ARG...]
      Run COMMAND in the detached sandbox NAME; exits with its status.
  create [OPTIONS] [IMAGE]
      A detached sandbox (run -d): prints its NAME.
  stop NAME... | start NAME... | rm NAME...
      Stop detached sandboxes (their roots are kept), start them again, remove them.
  logs NAME | inspect NAME
      A detached sandbox's guest console; a sandbox's record, image config and metrics (JSON).
  ls [--json] [--label KEY[=VALUE]]
      List sandboxes (of every process); those whose process died show as crashed.
  ps [--json]
      List running sandboxes, attached (to their creator) or detached.
  doctor [--json]
      Which accelerator (KVM or TCG) and why, QEMU, guest assets, FUSE; exit 1 if sandboxes cannot run.
  volume create NAME [--quota SIZE] | volume ls [--json] | volume rm NAME... [--force]
      Named volumes, kept in $MSB_HOME/volumes/NAME; rm refuses one a running sandbox uses.
  mount --spec SPEC.json MOUNTPOINT [--allow-other] [--debug]
      Serve the filesystem SPEC describes at MOUNTPOINT until SIGINT/SIGTERM.
      Prints "mounted MOUNTPOINT" once the mount is ready.
  pull REFERENCE [--platform OS/ARCH[/VARIANT]] [--insecure] [--ca-cert FILE] [--json]
      Pull an image into the store under $MSB_HOME (default ~/.msb).
      --insecure allows plain HTTP; --ca-cert trusts an extra PEM CA.
  images [--json]
      List the pulled images.
  rmi REFERENCE
      Remove an image; layers no other image uses are deleted.
  prune [--json]
      Delete blobs and layers no image uses, and what interrupted pulls left.
  login REGISTRY -u USER --password-stdin [--insecure] [--ca-cert FILE]
      Check the credentials against REGISTRY and save them in Docker's config.json
      ($DOCKER_CONFIG, else ~/.docker), where pulls and other OCI tools find them.`;

const stderrLogger: FuseLogger = {
  debug: () => {},
  warn: (message) => process.stderr.write(`msb: warning: ${message}\n`),
  error: (message) => process.stderr.write(`msb: error: ${message}\n`),
};

async function mount(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { spec: { type: "string" }, "allow-other": { type: "boolean" }, debug: { type: "boolean" } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.spec === undefined) throw new UsageError("mount needs --spec SPEC.json");
  if (positionals.length !== 1) throw new UsageError(`mount needs exactly one MOUNTPOINT, got ${positionals.length}`);
  const mountpoint = positionals[0]!;
  const fs = await fsFromSpecFile(values.spec);
  const logger: FuseLogger = values.debug === true ? { ...stderrLogger, debug: (m) => process.stderr.write(`msb: ${m}\n`) } : stderrLogger;
  const mounted = await mountFuse(fs, mountpoint, { allowOther: values["allow-other"] === true, logger });
  process.stdout.write(`mounted ${mountpoint}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    void mounted.closed.then(stop);
  });
  await mounted.unmount();
  return 0;
}

const COMMANDS: Readonly<Record<string, (args: string[]) => Promise<number>>> = {
  mount,
  run: runCommand,
  exec: execCommand,
  create: createCommand,
  start: startCommand,
  stop: stopCommand,
  rm: removeCommand,
  logs: logsCommand,
  inspect: inspectCommand,
  ls: (args) => Promise.resolve(lsCommand(args)),
  ps: (args) => Promise.resolve(psCommand(args)),
  doctor: (args) => doctorCommand(args),
  volume: (args) => Promise.resolve(volumeCommand(args)),
  pull: (args) => pullCommand(args),
  images: (args) => imagesCommand(args),
  rmi: (args) => rmiCommand(args),
  prune: (args) => pruneCommand(args),
  login: (args) => loginCommand(args),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
  return command(rest);
}

// Commands that run a guest command keep 1..124 for it: their own failures are 125.
const failureCode = process.argv[2] === "run" || process.argv[2] === "exec" ? EXIT_MSB_ERROR : 1;

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`msb: ${error.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    if (SpecError.isInstance(error)) {
      process.stderr.write(`msb: invalid spec: ${error.message}\n`);
      process.exit(2);
    }
    if (OciError.is(error)) {
      const hint = error.code === "ERR_OCI_INSECURE" ? "; pass --insecure to allow plain HTTP" : "";
      process.stderr.write(`msb: ${error.code}: ${error.message}${hint}\n`);
      process.exit(error.code === "ERR_OCI_REFERENCE" ? 2 : failureCode);
    }
    const code = typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? `${error.code}: ` : "";
    process.stderr.write(`msb: ${code}${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(failureCode);
  },
);
