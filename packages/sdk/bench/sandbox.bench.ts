// Sandbox figures next to their goals, in one run (`pnpm bench`):
// - Sandbox.create() → exec("true") with warm caches (image pulled, VM
//   state saved): goal ≤ 250 ms under TCG here, ≤ 150 ms on a KVM host;
// - 20 sandboxes created at once;
// - host memory per idle 128 MiB sandbox (PSS: pages shared between VMs,
//   such as the saved state's RAM, count once) and how many fit this machine
//   (goal ≥ 100).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detectAccelerator } from "@msb/vmm";
import { Sandbox } from "../src/index.js";

const RUNS = Number(process.env.MSB_BENCH_RUNS ?? 20);
const IDLE = Number(process.env.MSB_BENCH_IDLE ?? 10);
const home = mkdtempSync(join(tmpdir(), "msb-sdk-bench-"));
process.env.MSB_HOME = home;

const quantile = (values: readonly number[], q: number): number => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(q * values.length))] ?? NaN;
const ms = (n: number): string => `${n.toFixed(0)} ms`;
const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;
const verdict = (ok: boolean): string => (ok ? "goal met" : "goal NOT met");
/** Proportional set size of this process (the host side of every sandbox: FUSE servers, agent clients). */
const ownPss = (): number => Number(/^Pss:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/smaps_rollup", "utf8"))?.[1] ?? 0) * 1024;

try {
  const accel = await detectAccelerator();
  console.log(`@msb/sdk bench: ${accel.accel} (${accel.reason}); ${String(RUNS)} runs`);
  // Warm the caches: the built-in image imported, the VM state saved for this shape.
  await (await Sandbox.create({ name: "warmup", memoryMiB: 128 })).stop();
  await (await Sandbox.create({ name: "warmup", memoryMiB: 256 })).stop();

  const createToExec: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const sandbox = await Sandbox.create({ name: `run-${String(i)}` });
    await sandbox.exec("true");
    createToExec.push(performance.now() - t0);
    await sandbox.stop();
  }
  const median = quantile(createToExec, 0.5);
  const goal = accel.accel === "kvm" ? 150 : 250;
  console.log(`\nSandbox.create() → exec("true"), warm: median ${ms(median)}, p95 ${ms(quantile(createToExec, 0.95))} (goal ≤ ${String(goal)} ms under ${accel.accel}: ${verdict(median <= goal)})`);

  const t0 = performance.now();
  const many = await Promise.all(Array.from({ length: 20 }, (_, i) => Sandbox.create({ name: `many-${String(i)}` })));
  const created = performance.now() - t0;
  const results = await Promise.all(many.map((s) => s.exec("true")));
  console.log(`20 sandboxes created at once: ${ms(created)} until all were up (${ms(created / 20)} each on average); all exec'd: ${String(results.every((r) => r.success))}`);
  await Promise.all(many.map((s) => s.stop()));

  const idle = [];
  for (let i = 0; i < IDLE; i++) idle.push(await Sandbox.create({ name: `idle-${String(i)}`, memoryMiB: 128 }));
  await Promise.all(idle.map((s) => s.exec("true")));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const metrics = await Promise.all(idle.map((s) => s.metrics()));
  const qemuPss = metrics.reduce((sum, m) => sum + (m.hostPssBytes ?? 0), 0) / IDLE;
  const qemuRss = metrics.reduce((sum, m) => sum + (m.hostRssBytes ?? 0), 0) / IDLE;
  // This process serves every sandbox's filesystems: its whole PSS (Node's own baseline included) is charged to them, an upper bound.
  const hostSide = ownPss() / IDLE;
  const perSandbox = qemuPss + hostSide;
  const available = Number(/^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0) * 1024;
  const fit = Math.floor((available + perSandbox * IDLE) / perSandbox);
  console.log(`\nidle 128 MiB sandboxes (${String(IDLE)} measured): QEMU PSS ${mib(qemuPss)} (RSS ${mib(qemuRss)}), host side ≤ ${mib(hostSide)} (this process's PSS / ${String(IDLE)}) → ${mib(perSandbox)} each`);
  console.log(`  fit in this machine's available memory: ~${String(fit)} (goal ≥ 100: ${verdict(fit >= 100)})`);
  await Promise.all(idle.map((s) => s.stop()));
} finally {
  rmSync(home, { recursive: true, force: true });
}
