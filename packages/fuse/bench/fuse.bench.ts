// @msb/fuse against its references, in one run (`pnpm bench`): the same
// workloads on tmpfs, a host directory (the limit), Debian's bindfs over that
// directory (the peer), and our FUSE server with a MemFs and with a
// PassthroughFs over the same host directory. Goal: ahead of bindfs on every
// row. Needs root, /dev/fuse, bindfs and fio (scripts/apt-packages.txt).
//
// Workloads, each from a child process (this process serves the mounts):
// - create / stat / unlink of FILES empty files (synchronous calls in Node);
// - sequential write of SEQ_MIB MiB in 1 MiB blocks, fsync at the end (fio);
// - sequential read of it in 1 MiB blocks with O_DIRECT (fio): every byte
//   goes through the filesystem under test, not the page cache;
// - random 4 KiB O_DIRECT reads of it for RANDOM_SECONDS (fio).
//
// Environment: MSB_BENCH_FILES (10000), MSB_BENCH_SEQ_MIB (1024),
// MSB_BENCH_RANDOM_SECONDS (5), MSB_BENCH_READERS (the `readers` option).
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { mountFuse, type FuseMount } from "../src/index.js";

const FILES = Number(process.env.MSB_BENCH_FILES ?? 10_000);
const SEQ_MIB = Number(process.env.MSB_BENCH_SEQ_MIB ?? 1024);
const RANDOM_SECONDS = Number(process.env.MSB_BENCH_RANDOM_SECONDS ?? 5);
const READERS = process.env.MSB_BENCH_READERS === undefined ? undefined : Number(process.env.MSB_BENCH_READERS);

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const workload = fileURLToPath(new URL("./files.workload.ts", import.meta.url));
const tsx = pathToFileURL(require.resolve("tsx")).href;

interface Row {
  readonly name: string;
  readonly unit: string;
  readonly values: Map<string, number>;
}

const rows: Row[] = ["create", "stat", "unlink"].map((op) => ({ name: `${op} ${FILES} files`, unit: "ops/s", values: new Map() }));
rows.push(
  { name: `sequential write ${SEQ_MIB} MiB`, unit: "MiB/s", values: new Map() },
  { name: `sequential read ${SEQ_MIB} MiB`, unit: "MiB/s", values: new Map() },
  { name: "random 4 KiB reads", unit: "ops/s", values: new Map() },
);

/** One fio job's result: bandwidth in MiB/s and IOPS of its read or write side. */
async function fio(dir: string, side: "read" | "write", args: readonly string[]): Promise<{ mibs: number; iops: number }> {
  const { stdout } = await run("fio", ["--name=bench", `--directory=${dir}`, "--filename=seq.bin", "--ioengine=psync", "--output-format=json", ...args], {
    maxBuffer: 1 << 24,
  });
  const job = (JSON.parse(stdout) as { jobs: { read: { bw_bytes: number; iops: number }; write: { bw_bytes: number; iops: number } }[] }).jobs[0]!;
  return { mibs: job[side].bw_bytes / 1048576, iops: job[side].iops };
}

async function measure(target: string, dir: string): Promise<void> {
  process.stdout.write(`  ${target} ...`);
  const { stdout } = await run(process.execPath, ["--import", tsx, workload, dir, String(FILES)]);
  const files = JSON.parse(stdout) as Record<"create" | "stat" | "unlink", number>;
  rows[0]!.values.set(target, files.create);
  rows[1]!.values.set(target, files.stat);
  rows[2]!.values.set(target, files.unlink);
  const size = `--size=${SEQ_MIB}M`;
  rows[3]!.values.set(target, (await fio(dir, "write", ["--rw=write", "--bs=1M", size, "--end_fsync=1"])).mibs);
  rows[4]!.values.set(target, (await fio(dir, "read", ["--rw=read", "--bs=1M", size, "--direct=1"])).mibs);
  rows[5]!.values.set(target, (await fio(dir, "read", ["--rw=randread", "--bs=4k", size, "--direct=1", "--time_based", `--runtime=${RANDOM_SECONDS}`])).iops);
  await run("rm", ["-f", join(dir, "seq.bin")]);
  process.stdout.write(" done\n");
}

const format = (n: number | undefined): string => (n === undefined ? "-" : n >= 100 ? n.toFixed(0) : n.toFixed(1));
const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? "-" : `${(a / b).toFixed(2)}x`);

const base = mkdtempSync("/tmp/msb-fuse-bench-");
const dirs = Object.fromEntries(["tmpfs", "host", "bindfs", "memfs", "passthrough"].map((name) => [name, join(base, name)])) as Record<string, string>;
for (const dir of Object.values(dirs)) mkdirSync(dir);
const mounts: FuseMount[] = [];
let tmpfsMounted = false;
let bindfsMounted = false;
try {
  console.log(`@msb/fuse bench: ${FILES} files, ${SEQ_MIB} MiB sequential, ${RANDOM_SECONDS} s of random reads${READERS === undefined ? "" : `, readers: ${READERS}`}`);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${SEQ_MIB + 256}M`, "tmpfs", dirs.tmpfs!]);
  tmpfsMounted = true;
  await measure("tmpfs", dirs.tmpfs!);
  await measure("host", dirs.host!);
  // bindfs mirrors the host directory; no options: its defaults are what Debian users get.
  execFileSync("bindfs", [dirs.host!, dirs.bindfs!]);
  bindfsMounted = true;
  await measure("bindfs", dirs.bindfs!);
  execFileSync("umount", [dirs.bindfs!]);
  bindfsMounted = false;
  const options = READERS === undefined ? {} : { readers: READERS };
  mounts.push(await mountFuse(new MemFs({ capacity: `${SEQ_MIB + 256}MiB` }), dirs.memfs!, options));
  await measure("memfs", dirs.memfs!);
  mounts.push(await mountFuse(new PassthroughFs({ rootDir: dirs.host! }), dirs.passthrough!, options));
  await measure("passthrough", dirs.passthrough!);

  const header = ["workload", "unit", "tmpfs", "host", "bindfs", "memfs", "passthrough", "memfs/bindfs", "passthrough/bindfs", "passthrough/host"];
  const table = rows.map((row) => {
    const v = (target: string): number | undefined => row.values.get(target);
    return [
      row.name,
      row.unit,
      ...["tmpfs", "host", "bindfs", "memfs", "passthrough"].map((t) => format(v(t))),
      ratio(v("memfs"), v("bindfs")),
      ratio(v("passthrough"), v("bindfs")),
      ratio(v("passthrough"), v("host")),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`\n${line(header)}\n${table.map(line).join("\n")}`);
  const behind = rows.filter((row) => (row.values.get("memfs") ?? 0) < (row.values.get("bindfs") ?? 0) || (row.values.get("passthrough") ?? 0) < (row.values.get("bindfs") ?? 0));
  console.log(behind.length === 0 ? "\ngoal met: ahead of bindfs on every row" : `\ngoal NOT met: behind bindfs on ${behind.map((r) => r.name).join(", ")}`);
} finally {
  for (const m of mounts) await m.unmount();
  if (bindfsMounted) execFileSync("umount", [dirs.bindfs!]);
  if (tmpfsMounted) execFileSync("umount", [dirs.tmpfs!]);
  rmSync(base, { recursive: true, force: true });
}
