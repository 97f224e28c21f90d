// Real microVMs (TCG on machines without hardware KVM): the agent, exec and
// the fs API end to end over a FUSE root served by PassthroughFs/OverlayFs.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OverlayFs } from "@msb/fs-overlay";
import { tscKhz } from "@msb/native";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findGuestAssets } from "./assets.js";
import { VmmError } from "./errors.js";
import { MicroVm } from "./vm.js";
import { buildBusyboxRoot } from "./vm-root.fixture.js";

const text = (data: Uint8Array): string => Buffer.from(data).toString("utf8");
const PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

let work: string;
let rootDir: string;
let stateDir: string;
let vm: MicroVm;

const run = async (script: string, extra: { user?: string | number; cwd?: string; env?: string[] } = {}) =>
  vm.agent.exec({ argv: ["sh", "-c", script], env: extra.env ?? [PATH], ...(extra.user === undefined ? {} : { user: extra.user }), ...(extra.cwd === undefined ? {} : { cwd: extra.cwd }) }).output();

beforeAll(async () => {
  // Setup builds the assets; without them every test here fails, saying how to build them.
  await findGuestAssets();
  work = await mkdtemp(join(tmpdir(), "msb-vm-test-"));
  rootDir = join(work, "root");
  await mkdir(rootDir);
  await buildBusyboxRoot(rootDir);
  stateDir = join(work, "states");
  vm = await MicroVm.start({ mounts: [{ target: "/", fs: new PassthroughFs({ rootDir }) }], tmpfs: [{ target: "/scratch", size: 64 << 20 }], hostname: "testbox", stateDir });
}, 120_000);

afterAll(async () => {
  await vm?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe("MicroVm on a PassthroughFs root", () => {
  it("boots, says under which accelerator, and echoes", async () => {
    expect(["kvm", "tcg"]).toContain(vm.accel);
    expect(vm.accelReason).not.toBe("");
    expect(vm.timings.rootMounted).toBeGreaterThan(vm.timings.agentReady);
    const out = await vm.agent.exec({ argv: ["echo", "hi"], env: [PATH] }).output();
    expect(text(out.stdout)).toBe("hi\n");
    expect(out.code).toBe(0);
    // The agent reports its own fork-to-reap time, which benchmarks set against the round trip.
    expect(out.guestMicros).toBeGreaterThan(0);
    expect(await vm.agent.ping()).toBeGreaterThan(0);
  });

  it("gives the guest a high-resolution clock and timers (not 4 ms jiffies)", async () => {
    // Under TCG the TSC watchdog and a LAPIC timer without ARAT used to leave the
    // guest on jiffies: a 4 ms clock, periodic ticks, sleeps rounded to ticks.
    const out = await run("cat /sys/devices/system/clocksource/clocksource0/current_clocksource; grep -m1 'hres_active' /proc/timer_list");
    const [clocksource, hres] = text(out.stdout).trim().split("\n");
    expect(clocksource).not.toMatch(/jiffies/);
    expect(hres).toMatch(/hres_active\s*:\s*1/);
  });

  it("gives the guest kernel the host's TSC rate, so its clock keeps pace", async () => {
    // Under TCG the guest's TSC is the host's; a wrong rate on the command line drifts its clock by the error.
    const guestKhz = Number(/tsc_early_khz=(\d+)/.exec(text((await run("cat /proc/cmdline")).stdout))?.[1]);
    const hostKhz = tscKhz();
    // Within 0.1%: two measurements of one rate agree to a few parts per million; the old fixed guess was 0.15% off here.
    expect(Math.abs(guestKhz - hostKhz) / hostKhz).toBeLessThan(1e-3);
  });

  it("reads a host file through the FUSE root intact, uncached (replies arrive in many port buffers)", async () => {
    const data = randomBytes(24 << 20);
    await writeFile(join(rootDir, "big.bin"), data);
    const out = await run("echo 3 > /proc/sys/vm/drop_caches; sha256sum /big.bin");
    expect(text(out.stdout).split(" ")[0]).toBe(createHash("sha256").update(data).digest("hex"));
    await rm(join(rootDir, "big.bin"));
  });

  it("passes exit codes through, and 128+n for a signal", async () => {
    expect((await run("exit 3")).code).toBe(3);
    expect((await run("exit 0")).code).toBe(0);
    const killed = await run("kill -9 $$");
    expect(killed).toMatchObject({ code: 137, signal: 9 });
  });

  it("keeps 10 MiB of stdout and stderr apart and complete", async () => {
    const out = await run("head -c 10485760 /dev/zero | tr '\\0' o; head -c 10485760 /dev/zero | tr '\\0' e >&2");
    expect(out.code).toBe(0);
    expect(out.stdout.length).toBe(10 * 1024 * 1024);
    expect(out.stderr.length).toBe(10 * 1024 * 1024);
    expect(out.stdout.every((b) => b === 0x6f)).toBe(true);
    expect(out.stderr.every((b) => b === 0x65)).toBe(true);
  });

  it("pipes stdin through and closes it", async () => {
    const proc = vm.agent.exec({ argv: ["sh", "-c", "wc -c; echo done"], env: [PATH], stdin: "pipe" });
    await proc.write(new Uint8Array(3 * 1024 * 1024 + 7));
    await proc.closeStdin();
    const out = await proc.output();
    expect(text(out.stdout).trim().split(/\s+/)).toEqual([String(3 * 1024 * 1024 + 7), "done"]);
  });

  it("runs on a tty of the requested size", async () => {
    const out = await vm.agent.exec({ argv: ["sh", "-c", "stty size; tty; echo err >&2"], env: [PATH], tty: { rows: 33, cols: 101 } }).output();
    const lines = text(out.stdout).split(/\r?\n/);
    expect(lines[0]).toBe("33 101");
    expect(lines[1]).toMatch(/^\/dev\/pts\/\d+$/);
    expect(text(out.stdout)).toContain("err");
    expect(out.stderr.length).toBe(0);
  });

  it("delivers SIGTERM to a sleeping process", async () => {
    const proc = vm.agent.exec({ argv: ["sleep", "100"], env: [PATH] });
    await proc.pid;
    await proc.signal(15);
    expect(await proc.exit).toMatchObject({ code: 143, signal: 15 });
  });

  it("reaps every process: its own, and the orphans they leave, ended or still running", async () => {
    // Orphans become PID 1's: one ends at once, one while nothing of its session is left.
    const out = await run("(true >/dev/null 2>&1 &); sleep 0.3 >/dev/null 2>&1 & echo $!");
    expect(out.code).toBe(0);
    const orphan = text(out.stdout).trim();
    const zombiesOrOrphan = async () => text((await run(`for s in /proc/[0-9]*/stat; do read -r pid comm state rest < $s 2>/dev/null && { [ "$state" = Z ] || [ "$pid" = ${orphan} ]; } && echo "$pid $comm $state"; done`)).stdout);
    await expect.poll(zombiesOrOrphan, { timeout: 10_000, interval: 200 }).toBe("");
  });

  it("applies env, cwd and user", async () => {
    const out = await run('echo "$FOO"; pwd; id -u; id -g; id -G; echo "$HOME"', { env: [PATH, "FOO=bar baz"], cwd: "/tmp", user: "alice" });
    expect(text(out.stdout).split("\n")).toEqual(["bar baz", "/tmp", "1000", "1000", "1000 50", "/home/alice", ""]);
    const numeric = await run("id -u; id -g", { user: "65534:50" });
    expect(text(numeric.stdout)).toBe("65534\n50\n");
    expect(text((await run("hostname")).stdout)).toBe("testbox\n");
  });

  it("mounts the guest tmpfs with its size, and the FUSE root", async () => {
    const out = await run("stat -f -c %T /scratch; df -k /scratch | tail -1 | awk '{print $2}'; awk '$2 == \"/\" { print $3 }' /proc/mounts");
    expect(text(out.stdout).split("\n")).toEqual(["tmpfs", String(64 * 1024), "fuse", ""]);
  });

  it.each([
    ["not_found", { argv: ["no-such-command"] }],
    ["not_found", { argv: ["/no/such/path"] }],
    ["permission_denied", { argv: ["/etc/passwd"] }],
    ["bad_cwd", { argv: ["true"], cwd: "/no/such/dir" }],
    ["bad_user", { argv: ["true"], user: "mallory" }],
  ] as const)("reports a spawn failure as %s", async (kind, request) => {
    const error: unknown = await vm.agent.exec({ env: [PATH], ...request }).output().catch((e: unknown) => e);
    expect(VmmError.is(error) && error.kind).toBe(kind);
  });

  it("runs 20 execs at once", async () => {
    const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => run(`sleep 0.2; echo ${String(i)}`)));
    expect(outs.map((o) => text(o.stdout))).toEqual(Array.from({ length: 20 }, (_, i) => `${String(i)}\n`));
  });

  it("round-trips the fs API: write, read, list, stat, mkdir, rename, copy, remove", async () => {
    await vm.agent.mkdir("/work/a/b", { parents: true });
    expect(await vm.agent.writeFile("/work/a/b/f.txt", Buffer.from("hello"), { mode: 0o600 })).toBe(5);
    expect(text(await vm.agent.readFileBytes("/work/a/b/f.txt"))).toBe("hello");
    expect(await vm.agent.stat("/work/a/b/f.txt")).toMatchObject({ type: "file", size: 5, mode: 0o600 });
    await vm.agent.copy("/work/a", "/work/c", { recursive: true });
    await vm.agent.rename("/work/c/b/f.txt", "/work/c/b/g.txt");
    expect((await vm.agent.list("/work/c/b")).map((e) => e.name)).toEqual(["g.txt"]);
    const missing: unknown = await vm.agent.stat("/work/nope").catch((e: unknown) => e);
    expect(VmmError.is(missing) && missing.agentCode).toBe("ENOENT");
    await vm.agent.remove("/work/c", { recursive: true });
    await vm.agent.remove("/work/a", { recursive: true });
    expect(await vm.agent.list("/work")).toEqual([]);
  });

  it("streams 100 MiB through the fs API both ways, intact, onto the FUSE root", async () => {
    const chunk = new Uint8Array(1024 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0xff;
    const hash = createHash("sha256");
    const source = function* (): Generator<Uint8Array> {
      for (let i = 0; i < 100; i++) {
        hash.update(chunk);
        yield chunk;
      }
    };
    expect(await vm.agent.writeFile("/work/big", source())).toBe(100 * 1024 * 1024);
    const expected = hash.digest("hex");
    const back = createHash("sha256");
    let size = 0;
    for await (const part of vm.agent.readFile("/work/big")) {
      expect(part.length).toBeLessThanOrEqual(3 * 1024 * 1024);
      back.update(part);
      size += part.length;
    }
    expect(size).toBe(100 * 1024 * 1024);
    expect(back.digest("hex")).toBe(expected);
    expect(text((await run("sha256sum /work/big")).stdout).split(" ")[0]).toBe(expected);
    await vm.agent.remove("/work/big");
  }, 120_000);

  it("sees what exec wrote through the fs API, and the reverse, and on the host", async () => {
    await run("echo from-exec > /work/e.txt");
    expect(text(await vm.agent.readFileBytes("/work/e.txt"))).toBe("from-exec\n");
    await vm.agent.writeFile("/work/f.txt", Buffer.from("from-api"));
    expect(text((await run("cat /work/f.txt")).stdout)).toBe("from-api");
    expect(await readFile(join(rootDir, "work/e.txt"), "utf8")).toBe("from-exec\n");
  });
});

describe("MicroVm on an image-like OverlayFs root", () => {
  it("writes land in the upper; the layers stay untouched", async () => {
    const upperDir = join(work, "upper");
    await mkdir(upperDir);
    const before = (await readdir(rootDir, { recursive: true })).sort();
    const overlay = new OverlayFs({ lowers: [new PassthroughFs({ rootDir, readOnly: true, cache: "always" })], upper: new PassthroughFs({ rootDir: upperDir }) });
    const second = await MicroVm.start({ mounts: [{ target: "/", fs: overlay }] });
    try {
      const out = await second.agent.exec({ argv: ["sh", "-c", "echo new > /etc/motd && rm /etc/hostname && echo changed >> /etc/passwd && cat /etc/motd"], env: [PATH] }).output();
      expect(text(out.stdout)).toBe("new\n");
    } finally {
      await second.stop();
    }
    expect(await readFile(join(upperDir, "etc/motd"), "utf8")).toBe("new\n");
    expect(existsSync(join(upperDir, "etc/.wh.hostname"))).toBe(true);
    expect(await readFile(join(rootDir, "etc/hostname"), "utf8")).toBe("fixture\n");
    expect(await readFile(join(rootDir, "etc/passwd"), "utf8")).not.toContain("changed");
    expect((await readdir(rootDir, { recursive: true })).sort()).toEqual(before);
  }, 120_000);
});

describe("MicroVm starts", () => {
  const rootFs = () => [{ target: "/", fs: new PassthroughFs({ rootDir }) }];
  const guestRandom = async (machine: MicroVm): Promise<string> => text((await machine.agent.exec({ argv: ["sh", "-c", "head -c 32 /dev/urandom | od -An -tx1"], env: [PATH] }).output()).stdout).replace(/\s+/g, "");

  it("from one saved state get different random bytes and the current clock", async () => {
    const [a, b] = await Promise.all([MicroVm.start({ mounts: rootFs(), stateDir }), MicroVm.start({ mounts: rootFs(), stateDir })]);
    try {
      expect([a.timings.restored, b.timings.restored]).toEqual([true, true]);
      const [ra, rb] = await Promise.all([guestRandom(a), guestRandom(b)]);
      expect(ra).toMatch(/^[0-9a-f]{64}$/);
      expect(ra).not.toBe(rb);
      const guestNow = Number(text((await a.agent.exec({ argv: ["date", "+%s"], env: [PATH] }).output()).stdout));
      expect(Math.abs(guestNow - Date.now() / 1000)).toBeLessThan(10);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  }, 120_000);

  it("started together on a new machine shape share one save", async () => {
    const fresh = join(work, "fresh-states");
    const vms = await Promise.all([0, 1, 2].map(() => MicroVm.start({ mounts: rootFs(), stateDir: fresh, memoryMiB: 192 })));
    try {
      expect(vms.map((v) => v.timings.restored)).toEqual([true, true, true]);
      expect((await readdir(fresh)).filter((n) => n.endsWith(".dev") || n.endsWith(".ram")).length).toBe(2);
    } finally {
      await Promise.all(vms.map((v) => v.stop()));
    }
  }, 120_000);

  it("cold, without a saved state, when asked", async () => {
    const cold = await MicroVm.start({ mounts: rootFs(), savedState: false });
    try {
      expect(cold.timings.restored).toBe(false);
      expect(text((await cold.agent.exec({ argv: ["echo", "cold"], env: [PATH] }).output()).stdout)).toBe("cold\n");
    } finally {
      await cold.stop();
    }
  }, 120_000);
});

describe("MicroVm disks", () => {
  it("mounts ext4 images on virtio-blk, read-write and read-only", async () => {
    const rw = join(work, "rw.img");
    const ro = join(work, "ro.img");
    const given = join(work, "given.txt");
    await writeFile(given, "from the image\n");
    for (const image of [rw, ro]) {
      execFileSync("truncate", ["-s", "32M", image]);
      execFileSync("mkfs.ext4", ["-q", "-F", image]);
    }
    execFileSync("debugfs", ["-w", "-R", `write ${given} given.txt`, ro], { stdio: "ignore" });
    const disky = await MicroVm.start({
      mounts: [{ target: "/", fs: new PassthroughFs({ rootDir }) }],
      disks: [
        { path: rw, target: "/mnt/rw", fstype: "ext4" },
        { path: ro, target: "/mnt/ro", fstype: "ext4", readonly: true },
      ],
    });
    try {
      expect(disky.timings.restored).toBe(false);
      const out = await disky.agent.exec({ argv: ["sh", "-c", "echo written > /mnt/rw/f.txt && sync; cat /mnt/ro/given.txt; touch /mnt/ro/x 2>/dev/null || echo refused"], env: [PATH] }).output();
      expect(text(out.stdout)).toBe("from the image\nrefused\n");
    } finally {
      await disky.stop();
    }
    expect(execFileSync("debugfs", ["-R", "cat /f.txt", rw], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })).toBe("written\n");
  }, 120_000);
});

describe("MicroVm failures", () => {
  it("rejects pending calls with a typed error when QEMU is killed mid-exec", async () => {
    const doomed = await MicroVm.start({ mounts: [{ target: "/", fs: new PassthroughFs({ rootDir }) }] });
    const proc = doomed.agent.exec({ argv: ["sleep", "100"], env: [PATH] });
    await proc.pid;
    const list = doomed.agent.list("/").catch((e: unknown) => e);
    await doomed.kill();
    const error: unknown = await proc.exit.catch((e: unknown) => e);
    expect(VmmError.is(error) && error.code).toBe("ERR_VMM_GONE");
    expect(await list).toMatchObject({ code: "ERR_VMM_GONE" });
    await expect(doomed.agent.ping()).rejects.toMatchObject({ code: "ERR_VMM_GONE" });
    expect(await doomed.exited).toMatchObject({ signal: "SIGKILL" });
  }, 120_000);

  it("reports a missing root mount as invalid before starting QEMU", async () => {
    await expect(MicroVm.start({ mounts: [] })).rejects.toMatchObject({ code: "ERR_VMM_INVALID" });
  });
});
