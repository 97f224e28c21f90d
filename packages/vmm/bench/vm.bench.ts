// @msb/vmm side by side with its limits, in one run (`pnpm bench`):
// - cold start → `true` → stop, with a breakdown, next to a bare QEMU boot of
//   the same kernel to an init that only powers off;
// - the same from a saved VM state (goal: create → first exec ≤ 250 ms);
// - exec round trip on a running VM next to the guest's own spawn-to-exit
//   time and an agent ping over the same port;
// - guest sequential write/read of a file on the FUSE root next to a guest
//   tmpfs, and a stat rate on each.
// Runs under KVM where the host has it, else TCG; prints which.
import { execFileSync, spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { detectAccelerator } from "../src/accel.js";
import { findGuestAssets, type GuestAssets } from "../src/assets.js";
import { qemuArgs } from "../src/qemu.js";
import { connectQmp } from "../src/snapshot.js";
import { booting, MicroVm, type VmMount } from "../src/vm.js";
import { BUSYBOX, buildBusyboxRoot } from "../src/vm-root.fixture.js";

const RUNS = Number(process.env.MSB_BENCH_RUNS ?? 20);
const FILE_MIB = Number(process.env.MSB_BENCH_FILE_MIB ?? 1024);
// MSB_BENCH_ONLY=io runs only the guest I/O sections (file read/write, stat rate).
const ONLY_IO = process.env.MSB_BENCH_ONLY === "io";
/** A bare boot takes about a second under TCG; one that has not powered off after this hangs. */
const BARE_BOOT_TIMEOUT_MS = 60_000;
const PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

const quantile = (values: readonly number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
};
const ms = (n: number): string => `${n.toFixed(n < 10 ? 2 : 0)} ms`;
const row = (label: string, values: readonly number[]): string => `  ${label.padEnd(34)} median ${ms(quantile(values, 0.5)).padStart(9)}   p95 ${ms(quantile(values, 0.95)).padStart(9)}`;
const verdict = (ok: boolean): string => (ok ? "goal met" : "goal NOT met");

const assets = await findGuestAssets();
const accel = await detectAccelerator();
console.log(`@msb/vmm bench: ${accel.accel} (${accel.reason}); ${String(RUNS)} runs; guest assets ${assets.version.slice(0, 12)}`);

const work = await mkdtemp(join(tmpdir(), "msb-vm-bench-"));
const lower = join(work, "lower");
const stateDir = join(work, "states");
const imageLikeRoot = async (): Promise<VmMount[]> => {
  const upper = await mkdtemp(join(work, "upper-"));
  return [{ target: "/", fs: new OverlayFs({ lowers: [new PassthroughFs({ rootDir: lower, readOnly: true, cache: "always" })], upper: new PassthroughFs({ rootDir: upper }) }) }];
};
try {
  await mkdir(lower);
  await buildBusyboxRoot(lower);
  if (!ONLY_IO) await startupSection();

  // One running VM for the exec round trips and the I/O sections.
  const vm = await MicroVm.start({ mounts: await imageLikeRoot(), memoryMiB: 256 + FILE_MIB + 256, tmpfs: [{ target: "/t", size: (FILE_MIB + 64) << 20 }], disks: [{ path: await ext4Image(), target: "/blk", fstype: "ext4", readonly: true }], stateDir });
  try {
    if (!ONLY_IO) await execSection(vm);
    await ioSection(vm);
  } finally {
    await vm.stop();
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

/** Cold and saved-state starts next to a bare QEMU boot of the same kernel (the limit). */
async function startupSection(): Promise<void> {
  // The limit: the same kernel and modules to an init that only powers off.
  // The bare boot gets the host's TSC rate on its command line as every booted VM does (without it, TCG boots can hang).
  const bare = await bareAssets(await booting(assets));
  const bareBoot: number[] = [];
  for (let i = 0; i < RUNS; i++) bareBoot.push(await bareBootOnce(bare, accel.accel));

  const runTrue = async (savedState: boolean) => {
    const t0 = performance.now();
    const vm = await MicroVm.start({ mounts: await imageLikeRoot(), savedState, stateDir });
    await vm.agent.exec({ argv: ["true"], env: [PATH] }).output();
    const execDone = performance.now() - t0;
    const translated = savedState && accel.accel === "tcg" ? await translatedBlocks(vm) : undefined;
    await vm.stop();
    return { ...vm.timings, execDone, translated, stopped: performance.now() - t0 };
  };
  const series = async (savedState: boolean) => {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await runTrue(savedState));
    return runs;
  };
  const cold = await series(false);
  await runTrue(true); // makes the saved state once, outside the measured runs
  const restored = await series(true);

  const report = (label: string, runs: Awaited<ReturnType<typeof series>>) => {
    console.log(`\n${label}`);
    console.log(row("QEMU started (ports connected)", runs.map((r) => r.qemuStarted)));
    console.log(row("agent ready (hello answered)", runs.map((r) => r.agentReady)));
    console.log(row("root mounted (setup done)", runs.map((r) => r.rootMounted)));
    console.log(row("exec `true` done", runs.map((r) => r.execDone)));
    console.log(row("stopped (QEMU exited)", runs.map((r) => r.stopped)));
  };
  console.log("\nbare QEMU boot, init = poweroff (the limit)");
  console.log(row("QEMU spawn → exit", bareBoot));
  report("cold start → exec true → stop", cold);
  report("saved-state start → exec true → stop", restored);
  const coldRatio = quantile(cold.map((r) => r.execDone), 0.5) / quantile(bareBoot, 0.5);
  const restoredFirstExec = quantile(restored.map((r) => r.execDone), 0.5);
  console.log(`\n  cold start→exec / bare boot: ${coldRatio.toFixed(2)}× (goal ≤ 1.3×: ${verdict(coldRatio <= 1.3)})`);
  console.log(`  saved-state create→first exec: ${ms(restoredFirstExec)} (goal ≤ 250 ms under TCG: ${verdict(restoredFirstExec <= 250)})`);
  const translated = restored.flatMap((r) => (r.translated === undefined ? [] : [r.translated]));
  // Under TCG a restored VM translates every guest instruction it runs anew: most of its start.
  if (translated.length > 0) console.log(`  guest code blocks TCG translated from restore to the first exec's end: median ${String(quantile(translated, 0.5))}`);
}

/** The number of translation blocks QEMU's TCG has made in `vm` so far (QMP `info jit`). */
async function translatedBlocks(vm: MicroVm): Promise<number | undefined> {
  const qmp = await connectQmp(join(vm.runDir, "qmp.sock"));
  try {
    const info = String(await qmp.execute("human-monitor-command", { "command-line": "info jit" }));
    const count = /TB count\s+(\d+)/.exec(info)?.[1];
    return count === undefined ? undefined : Number(count);
  } finally {
    qmp.close();
  }
}

/** Exec round trips on a running VM next to the guest's own spawn time and an agent ping. */
async function execSection(vm: MicroVm): Promise<void> {
  const execs: number[] = [];
  const agentSide: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const t0 = performance.now();
    const out = await vm.agent.exec({ argv: ["/bin/true"], env: [PATH] }).output();
    execs.push(performance.now() - t0);
    if (out.guestMicros !== undefined) agentSide.push(out.guestMicros / 1000);
  }
  const pings: number[] = [];
  for (let i = 0; i < 1000; i++) pings.push(await vm.agent.ping());
  // The guest's own cost of fork+exec+wait of /bin/true, measured in the guest.
  const guestLoop = await guestSeconds(vm, "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done");
  const shellSpawn = guestLoop; // seconds for 1000 spawns = milliseconds per spawn
  console.log("\nexec round trip on a running VM (1000×)");
  console.log(row("exec /bin/true (host round trip)", execs));
  console.log(row("agent's own fork→reap (guest_us)", agentSide));
  console.log(`  ${"shell fork+exec+wait (sh loop)".padEnd(34)} mean   ${ms(shellSpawn).padStart(9)}`);
  console.log(row("agent ping (same port)", pings));
  const overhead = (quantile(execs, 0.5) - quantile(agentSide, 0.5)) / quantile(pings, 0.5);
  console.log(`  (exec − agent's fork→reap) / ping: ${overhead.toFixed(2)}× (goal ≤ 2×: ${verdict(overhead <= 2)})`);
}

/** Guest sequential file I/O and stat rate on the FUSE root next to a guest tmpfs. */
async function ioSection(vm: MicroVm): Promise<void> {
  console.log(`\nguest sequential I/O, ${String(FILE_MIB)} MiB file, dd bs=1M`);
  const io: Record<string, { write: number; read: number }> = {};
  for (const [label, dir] of [["FUSE root", "/bench"], ["guest tmpfs", "/t"]] as const) {
    await vm.agent.mkdir(dir, { parents: true });
    const write = await guestSeconds(vm, `dd if=/dev/zero of=${dir}/f bs=1M count=${String(FILE_MIB)} conv=fsync 2>/dev/null`);
    await guestSeconds(vm, "sync; echo 3 > /proc/sys/vm/drop_caches");
    const read = await guestSeconds(vm, `dd if=${dir}/f of=/dev/null bs=1M 2>/dev/null`);
    io[label] = { write: FILE_MIB / write, read: FILE_MIB / read };
    console.log(`  ${label.padEnd(12)} write ${(FILE_MIB / write).toFixed(0).padStart(6)} MiB/s   read ${(FILE_MIB / read).toFixed(0).padStart(6)} MiB/s`);
    await vm.agent.remove(`${dir}/f`);
  }
  // The kernel's own block path under the same accelerator, for scale: data lands in the page cache by DMA, no guest copy.
  await guestSeconds(vm, "sync; echo 3 > /proc/sys/vm/drop_caches");
  const blockRead = FILE_MIB / (await guestSeconds(vm, "dd if=/blk/f of=/dev/null bs=1M 2>/dev/null"));
  console.log(`  ${"virtio-blk".padEnd(12)} ${"(ext4, ro)".padEnd(21)}read ${blockRead.toFixed(0).padStart(6)} MiB/s`);
  const tmpfsRead = io["guest tmpfs"]?.read ?? 1;
  const readShare = (io["FUSE root"]?.read ?? 0) / tmpfsRead;
  console.log(`  FUSE-root read / tmpfs read: ${(readShare * 100).toFixed(0)}% (goal ≥ 50%: ${verdict(readShare >= 0.5)}); virtio-blk read / tmpfs read: ${((blockRead / tmpfsRead) * 100).toFixed(0)}%`);

  console.log("\nguest stat rate, 1000 files, ls -l × 20");
  for (const [label, dir] of [["FUSE root", "/bench/s"], ["guest tmpfs", "/t/s"]] as const) {
    await guestSeconds(vm, `mkdir -p ${dir} && cd ${dir} && i=0; while [ $i -lt 1000 ]; do : > f$i; i=$((i+1)); done`);
    const seconds = await guestSeconds(vm, `i=0; while [ $i -lt 20 ]; do ls -l ${dir} > /dev/null; i=$((i+1)); done`);
    console.log(`  ${label.padEnd(12)} ${(20_000 / seconds).toFixed(0).padStart(8)} stats/s`);
  }
}

/** A read-only ext4 image holding /f, FILE_MIB MiB of random bytes (zeros would be stored as a hole). */
async function ext4Image(): Promise<string> {
  const content = join(work, "ext4-content");
  await mkdir(content);
  execFileSync("sh", ["-c", `head -c ${String(FILE_MIB << 20)} /dev/urandom > "$0"`, join(content, "f")]);
  const image = join(work, "ext4.img");
  execFileSync("mkfs.ext4", ["-q", "-d", content, image, `${String(FILE_MIB + 64)}M`]);
  await rm(content, { recursive: true });
  return image;
}

/** Seconds a guest shell snippet takes, measured inside the guest. */
async function guestSeconds(vm: MicroVm, script: string): Promise<number> {
  // busybox date has no %N: /proc/uptime gives centiseconds, enough for runs of a
  // second or more; %.0f because busybox awk's %d is 32-bit.
  const out = await vm.agent.exec({ argv: ["sh", "-c", `read s _ < /proc/uptime; ${script}; read e _ < /proc/uptime; awk -v s=$s -v e=$e 'BEGIN { printf "%.0f\\n", (e - s) * 1e9 }'`], env: [PATH] }).output();
  const nanos = Number(Buffer.from(out.stdout).toString().trim().split("\n").pop());
  if (out.code !== 0 || !Number.isFinite(nanos)) throw new Error(`guest script failed (${String(out.code)}): ${script}\n${Buffer.from(out.stderr).toString()}`);
  return nanos / 1e9;
}

/** The real initramfs with a second archive whose /sbin/poweroff is busybox, booted with rdinit=/sbin/poweroff -f. */
async function bareAssets(real: GuestAssets): Promise<GuestAssets> {
  const dir = join(work, "bare");
  await mkdir(join(dir, "bin"), { recursive: true });
  await mkdir(join(dir, "sbin"));
  await copyFile(BUSYBOX, join(dir, "bin/busybox"));
  await symlink("/bin/busybox", join(dir, "sbin/poweroff"));
  const extra = execFileSync("sh", ["-c", "find . | cpio -o -H newc --owner 0:0 2>/dev/null"], { cwd: dir, maxBuffer: 64 << 20 });
  const initramfs = join(work, "bare.cpio");
  await writeFile(initramfs, Buffer.concat([await readFile(real.initramfs), extra]));
  return { ...real, initramfs, cmdline: `${real.cmdline} rdinit=/sbin/poweroff -- -f` };
}

/** Milliseconds from spawning QEMU to its exit for the power-off-only guest. */
function bareBootOnce(assets: GuestAssets, accel: "kvm" | "tcg"): Promise<number> {
  const args = qemuArgs({ accel, memoryMiB: 256, cpus: 1, kernel: assets.kernel, initramfs: assets.initramfs, cmdline: assets.cmdline, consoleLog: "/dev/null", ports: [] });
  const t0 = performance.now();
  const child = spawn("qemu-system-x86_64", args, { stdio: "ignore" });
  return new Promise((resolve, reject) => {
    const hung = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the bare boot did not power off within ${String(BARE_BOOT_TIMEOUT_MS / 1000)} s: ${args.join(" ")}`));
    }, BARE_BOOT_TIMEOUT_MS);
    child.once("error", reject);
    child.once("exit", () => {
      clearTimeout(hung);
      resolve(performance.now() - t0);
    });
  });
}
