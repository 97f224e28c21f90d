// The Sandbox API on real microVMs (TCG where the host has no hardware KVM):
// the seeds' examples as tests: scripts, patches, the fs API with 3 MiB
// streams, volumes (named kept across sandboxes, bind, memfs, tmpfs, an
// encrypting backend), timeouts and aborts, streams with stdin.
import { execFileSync, spawn } from "node:child_process";
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createConnection } from "node:net";
import { FsBackend, type Context } from "@msb/fs";
import { FLAG_END, FrameReader, encodeFrame, type Frame } from "@msb/vmm";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SandboxError } from "./errors.js";
import { Sandbox } from "./sandbox.js";
import { sandboxError } from "./scratch.fixture.js";

const home = mkdtempSync(join(tmpdir(), "msb-sandbox-home-"));
process.env.MSB_HOME = home;
afterAll(() => rmSync(home, { recursive: true, force: true }));

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.builder("main")
    .env("GREETING", "hello")
    .script("greet", '#!/bin/sh\necho "$GREETING from $(basename "$0") $*"\n')
    .patch((p) => p.text("/etc/motd", "patched motd\n").mkdir("/work", 0o777).text("/etc/hostname", "replaced\n", { replace: true }))
    .volume("/mem", (v) => v.memfs("16MiB"))
    .volume("/scratch", (v) => v.tmpfs("32MiB"))
    .create();
}, 120_000);
afterAll(async () => {
  await sandbox?.stop();
});

describe("Sandbox exec", () => {
  it("runs commands and shells, with exit codes and both streams", async () => {
    expect(await sandbox.exec("echo", ["hi"])).toMatchObject({ exitCode: 0, success: true, stdout: "hi\n", stderr: "" });
    const failed = await sandbox.shell("echo out; echo err >&2; exit 4");
    expect(failed).toMatchObject({ exitCode: 4, success: false, stdout: "out\n", stderr: "err\n" });
    expect(Buffer.from(failed.stdoutBytes).toString()).toBe("out\n");
  });

  it("applies the sandbox env and per-exec cwd, env and user", async () => {
    const out = await sandbox.shell('echo "$GREETING $EXTRA"; pwd; id -u', { cwd: "/tmp", env: { EXTRA: "there" }, user: "nobody" });
    expect(out.stdout).toBe("hello there\n/tmp\n65534\n");
  });

  it("feeds stdin bytes", async () => {
    expect((await sandbox.exec("wc", ["-c"], { stdin: "12345" })).stdout.trim()).toBe("5");
  });

  it("kills on timeout and on abort with typed errors", async () => {
    const timeout = await sandboxError(() => sandbox.exec("sleep", ["30"], { timeoutMs: 300 }));
    expect(timeout.code).toBe("ERR_MSB_EXEC_TIMEOUT");
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const aborted = await sandboxError(() => sandbox.exec("sleep", ["30"], { signal: controller.signal }));
    expect(aborted.code).toBe("ERR_MSB_EXEC_ABORTED");
    expect(SandboxError.isInstance(aborted)).toBe(true);
  });

  it("rejects a command that cannot start with ERR_MSB_EXEC_FAILED", async () => {
    const error = await sandboxError(() => sandbox.exec("no-such-tool"));
    expect(error).toMatchObject({ code: "ERR_MSB_EXEC_FAILED", errno: "ENOENT" });
  });

  it("streams events with stdin, and kills", async () => {
    const proc = await sandbox.execStream("sh", ["-c", "read line; echo got $line; echo warn >&2; sleep 30"], { stdin: true });
    await proc.write("ping\n");
    expect(() => proc.signal("SIGNOPE")).toThrow(/unknown signal/);
    await proc.signal("SIGCONT");
    const seen: string[] = [];
    for await (const event of proc) {
      if (event.type === "started") seen.push("started");
      if (event.type === "stdout") seen.push(Buffer.from(event.data).toString());
      if (event.type === "stderr") {
        seen.push(`err:${Buffer.from(event.data).toString()}`);
        proc.kill();
      }
      if (event.type === "exited") seen.push(`exited ${String(event.exitCode)}`);
    }
    expect(seen).toEqual(["started", "got ping\n", "err:warn\n", "exited 137"]);
    expect(await proc.wait()).toEqual({ exitCode: 137, signal: 9 });
  });

  it("puts scripts on PATH with mode 0755", async () => {
    expect((await sandbox.shell("greet a b")).stdout).toBe("hello from greet a b\n");
    expect((await sandbox.fs.stat("/.msb/scripts/greet")).mode).toBe(0o755);
  });

  it("applied the patches before boot", async () => {
    expect(await sandbox.fs.readToString("/etc/motd")).toBe("patched motd\n");
    expect(await sandbox.fs.readToString("/etc/hostname")).toBe("replaced\n");
    expect((await sandbox.fs.stat("/work")).mode).toBe(0o777);
  });
});

describe("Sandbox fs", () => {
  it("writes, reads, lists, stats, renames, copies and removes", async () => {
    await sandbox.fs.mkdir("/work/a/b", { recursive: true });
    await sandbox.fs.write("/work/a/b/f.txt", "content", { mode: 0o600 });
    expect(await sandbox.fs.readToString("/work/a/b/f.txt")).toBe("content");
    expect(await sandbox.fs.stat("/work/a/b/f.txt")).toMatchObject({ type: "file", size: 7, mode: 0o600 });
    expect(await sandbox.fs.exists("/work/a/b/f.txt")).toBe(true);
    expect(await sandbox.fs.exists("/work/nope")).toBe(false);
    await sandbox.fs.copy("/work/a", "/work/c", { recursive: true });
    await sandbox.fs.rename("/work/c/b/f.txt", "/work/c/b/g.txt");
    expect((await sandbox.fs.list("/work/c/b")).map((e) => e.name)).toEqual(["g.txt"]);
    await sandbox.fs.remove("/work/a", { recursive: true });
    await sandbox.fs.remove("/work/c", { recursive: true });
    const missing = await sandboxError(() => sandbox.fs.read("/work/a/b/f.txt"));
    expect(missing).toMatchObject({ code: "ERR_MSB_FS_OP", errno: "ENOENT" });
  });

  it("streams 10 MiB in chunks of at most 3 MiB, and copies to and from the host", async () => {
    const data = randomBytes(10 * 1024 * 1024);
    const host = mkdtempSync(join(tmpdir(), "msb-sandbox-copy-"));
    try {
      writeFileSync(join(host, "in.bin"), data);
      expect(await sandbox.fs.copyFromHost(join(host, "in.bin"), "/work/big.bin")).toBe(data.length);
      const sizes: number[] = [];
      const hash = createHash("sha256");
      for await (const chunk of sandbox.fs.readStream("/work/big.bin")) {
        sizes.push(chunk.length);
        hash.update(chunk);
      }
      expect(Math.max(...sizes)).toBeLessThanOrEqual(3 * 1024 * 1024);
      expect(hash.digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
      await sandbox.fs.copyToHost("/work/big.bin", join(host, "out.bin"));
      expect(readFileSync(join(host, "out.bin")).equals(data)).toBe(true);
      expect((await sandbox.shell("sha256sum /work/big.bin")).stdout.split(" ")[0]).toBe(createHash("sha256").update(data).digest("hex"));
    } finally {
      rmSync(host, { recursive: true, force: true });
    }
  }, 60_000);

  it("serves memfs and tmpfs volumes", async () => {
    await sandbox.shell("echo m > /mem/x; echo t > /scratch/y");
    expect(await sandbox.fs.readToString("/mem/x")).toBe("m\n");
    expect((await sandbox.shell("awk '$2 == \"/scratch\" { print $3 }' /proc/mounts")).stdout).toBe("tmpfs\n");
  });
});

/**
 * The seeds' encrypted volume: a backend that delegates to PassthroughFs and
 * encrypts what is written (AES-256-CTR, keyed by the byte offset, so any
 * range can be read or written on its own).
 */
class EncryptedFs extends FsBackend {
  constructor(
    inner: PassthroughFs,
    private readonly key: Buffer,
  ) {
    super(inner);
  }
  private crypt(data: Uint8Array, offset: number): Uint8Array {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64BE(BigInt(Math.floor(offset / 16)), 8);
    const skip = offset % 16;
    const cipher = createCipheriv("aes-256-ctr", this.key, iv);
    return cipher.update(Buffer.concat([Buffer.alloc(skip), data])).subarray(skip);
  }
  override async read(ctx: Context, ino: number, fh: number, size: number, offset: number): Promise<Uint8Array> {
    return this.crypt(await super.read(ctx, ino, fh, size, offset), offset);
  }
  override async write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): Promise<number> {
    return super.write(ctx, ino, fh, this.crypt(data, offset), offset, flags);
  }
}

describe("Sandbox volumes and lifecycle", () => {
  it("keeps a named volume from one sandbox to the next", async () => {
    {
      await using first = await Sandbox.builder("writer").volume("/data", (v) => v.named("shared-data")).create();
      await first.shell("echo kept > /data/note");
    }
    await using second = await Sandbox.builder("reader").volume("/data", (v) => v.named("shared-data")).create();
    expect(await second.fs.readToString("/data/note")).toBe("kept\n");
    expect(readFileSync(join(home, "volumes", "shared-data", "note"), "utf8")).toBe("kept\n");
  }, 120_000);

  it("encrypts a volume on the host and shows plaintext in the guest", async () => {
    const hostDir = mkdtempSync(join(tmpdir(), "msb-encrypted-"));
    try {
      const fs = new EncryptedFs(new PassthroughFs({ rootDir: hostDir }), randomBytes(32));
      await using box = await Sandbox.builder("vault").volume("/secret", (v) => v.backend(fs)).create();
      await box.shell("echo 'the plaintext secret' > /secret/s.txt; echo more >> /secret/s.txt");
      expect(await box.fs.readToString("/secret/s.txt")).toBe("the plaintext secret\nmore\n");
      const onHost = readFileSync(join(hostDir, "s.txt"));
      expect(onHost.length).toBe("the plaintext secret\nmore\n".length);
      expect(onHost.toString("latin1")).not.toContain("plaintext");
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  }, 120_000);

  it("mounts a read-only bind volume", async () => {
    const hostDir = mkdtempSync(join(tmpdir(), "msb-bind-"));
    try {
      writeFileSync(join(hostDir, "given.txt"), "from host\n");
      await using box = await Sandbox.builder("binder").volume("/in", (v) => v.bind(hostDir).readonly()).create();
      expect(await box.fs.readToString("/in/given.txt")).toBe("from host\n");
      const denied = await box.shell("echo x > /in/new.txt");
      expect(denied.exitCode).not.toBe(0);
      expect(denied.stderr).toMatch(/Read-only/i);
      expect(existsSync(join(hostDir, "new.txt"))).toBe(false);
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  }, 120_000);

  it("attaches a disk-image volume", async () => {
    const image = join(mkdtempSync(join(tmpdir(), "msb-disk-")), "disk.img");
    execFileSync("truncate", ["-s", "16M", image]);
    execFileSync("mkfs.ext4", ["-q", "-F", image]);
    {
      await using box = await Sandbox.builder("disky").volume("/disk", (v) => v.disk(image, "ext4")).create();
      await box.shell("echo on-disk > /disk/note && sync");
      expect(await box.fs.readToString("/disk/note")).toBe("on-disk\n");
    }
    expect(execFileSync("debugfs", ["-R", "cat /note", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })).toBe("on-disk\n");
    rmSync(join(image, ".."), { recursive: true, force: true });
  }, 120_000);

  it("refuses a duplicate name unless replace, and cleans up after a failed patch", async () => {
    const duplicate = await sandboxError(() => Sandbox.create({ name: "main" }));
    expect(duplicate.code).toBe("ERR_MSB_SANDBOX_EXISTS");
    const patch = await sandboxError(() => Sandbox.builder("badpatch").patch((p) => p.text("/etc/passwd", "x")).create());
    expect(patch).toMatchObject({ code: "ERR_MSB_PATCH_FAILED", input: "/etc/passwd" });
    expect(readdirSync(join(home, "sandboxes"))).not.toContain("badpatch");
    const replaced = await Sandbox.builder("twice").create();
    const again = await Sandbox.builder("twice").replace().create();
    expect((await replaced.exec("true").catch((e: unknown) => e)) as SandboxError).toMatchObject({ code: "ERR_MSB_SANDBOX_NOT_FOUND" });
    expect((await again.exec("true")).success).toBe(true);
    await again.stop();
    expect(readdirSync(join(home, "sandboxes"))).not.toContain("twice");
  }, 120_000);

  it("reports metrics and logs", async () => {
    const metrics = await sandbox.metrics();
    expect(["kvm", "tcg"]).toContain(metrics.accel);
    expect(metrics.hostRssBytes).toBeGreaterThan(0);
    expect(metrics.hostPssBytes).toBeGreaterThan(0);
    expect(metrics.hostPssBytes).toBeLessThanOrEqual(metrics.hostRssBytes ?? 0);
    expect(typeof (await sandbox.logs())).toBe("string");
  });
});

describe("Sandbox state", () => {
  it("is recorded while it runs and gone after stop", async () => {
    expect(Sandbox.list().find((r) => r.name === "main")).toMatchObject({ status: "running", supervisorPid: process.pid });
    const temp = await Sandbox.create({ name: "short-lived", labels: { team: "qa" } });
    expect(Sandbox.list({ label: "team=qa" }).map((r) => r.name)).toEqual(["short-lived"]);
    await temp.stop();
    expect(Sandbox.list().map((r) => r.name)).not.toContain("short-lived");
  }, 120_000);

  it("marks the sandbox of a SIGKILLed process crashed, refuses its name while alive, and removes it", async () => {
    const require = createRequire(import.meta.url);
    const fixture = fileURLToPath(new URL("./sandbox-child.fixture.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", pathToFileURL(require.resolve("tsx")).href, fixture, "doomed"], { env: process.env, stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => (chunk.toString().includes("ready up") ? resolve() : undefined));
      child.once("exit", (code) => reject(new Error(`child exited with ${String(code)}`)));
    });
    expect(Sandbox.list().find((r) => r.name === "doomed")?.status).toBe("running");
    expect((await sandboxError(() => Sandbox.create({ name: "doomed" }))).code).toBe("ERR_MSB_SANDBOX_EXISTS");
    expect((await sandboxError(() => Sandbox.remove("doomed"))).code).toBe("ERR_MSB_SANDBOX_EXISTS");
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    expect(Sandbox.list().find((r) => r.name === "doomed")?.status).toBe("crashed");
    await Sandbox.remove("doomed");
    expect(Sandbox.list().map((r) => r.name)).not.toContain("doomed");
    expect(existsSync(join(home, "sandboxes", "doomed"))).toBe(false);
    // The name is free again.
    await (await Sandbox.create({ name: "doomed" })).stop();
  }, 120_000);
});

describe("detached sandboxes", () => {
  it("outlive their creator's handle, are reached from another process, stop, start again and are removed by name", async () => {
    const created = await Sandbox.builder("bg").detached().env("ROLE", "daemon").create();
    expect((await created.shell("echo $ROLE; hostname")).stdout).toBe("daemon\nbg\n");
    const record = Sandbox.list().find((r) => r.name === "bg");
    expect(record?.status).toBe("running");
    expect(record?.supervisorPid).not.toBe(process.pid);
    // Another process reconnects by name and sees what this one wrote.
    await created.fs.write("/tmp/shared.txt", "from the creator");
    const require = createRequire(import.meta.url);
    const script = `import { Sandbox } from ${JSON.stringify(fileURLToPath(new URL("./sandbox.ts", import.meta.url)))};
const s = await Sandbox.get("bg");
process.stdout.write((await s.exec("cat", ["/tmp/shared.txt"])).stdout);
process.exit(0);`;
    const child = spawn(process.execPath, ["--import", pathToFileURL(require.resolve("tsx")).href, "--input-type=module", "-e", script], { env: process.env, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    expect(await new Promise((resolve) => child.once("exit", resolve))).toBe(0);
    expect(out).toBe("from the creator");
    // A late frame on a stream that ended (an ack after exited) is dropped by the supervisor, not taken for a new request.
    const raw = createConnection(record?.socketPath ?? "");
    const reader = new FrameReader();
    const frames: Frame[] = [];
    raw.on("data", (chunk: Buffer) => frames.push(...reader.push(chunk)));
    raw.write(encodeFrame(1, FLAG_END, { t: "hello", versions: [1] }));
    raw.write(encodeFrame(1, 0, { t: "ack", bytes: 1 }));
    raw.write(encodeFrame(2, FLAG_END, { t: "ping" }));
    for (let i = 0; i < 100 && frames.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(frames.map((f) => [f.id, (f.body as { t?: string } | undefined)?.t])).toEqual([
      [1, "hello"],
      [2, "pong"],
    ]);
    raw.destroy();
    // A second handle in this process works too; removing by name stops it through its supervisor.
    const again = await Sandbox.get("bg");
    expect((await again.exec("true")).success).toBe(true);
    // Stopped, it keeps its root; started again, what it wrote is there.
    await again.stop();
    expect(Sandbox.list().find((r) => r.name === "bg")?.status).toBe("stopped");
    const restarted = await Sandbox.start("bg");
    expect(await restarted.fs.readToString("/tmp/shared.txt")).toBe("from the creator");
    expect((await restarted.shell("echo $ROLE")).stdout).toBe("daemon\n");
    await Sandbox.remove("bg");
    expect(Sandbox.list().map((r) => r.name)).not.toContain("bg");
    expect((await sandboxError(() => Sandbox.get("bg"))).code).toBe("ERR_MSB_SANDBOX_NOT_FOUND");
  }, 120_000);

  it("whose supervisor is SIGKILLed are detected as crashed, take their VM with them, and are cleaned up", async () => {
    const doomed = await Sandbox.builder("bg-doomed").detached().create();
    expect((await doomed.exec("true")).success).toBe(true);
    const pid = Sandbox.list().find((r) => r.name === "bg-doomed")?.supervisorPid;
    expect(pid).toBeGreaterThan(0);
    const children = (): number[] =>
      readdirSync("/proc")
        .filter((entry) => /^\d+$/.test(entry))
        .filter((entry) => {
          try {
            return readFileSync(`/proc/${entry}/status`, "utf8").includes(`\nPPid:\t${String(pid)}\n`);
          } catch {
            return false;
          }
        })
        .map(Number);
    const vms = children();
    expect(vms.length).toBeGreaterThan(0);
    process.kill(pid ?? 0, "SIGKILL");
    const gone = await doomed.exec("true").catch((error: unknown) => error);
    expect(SandboxError.isInstance(gone) && gone.code).toBe("ERR_MSB_STATE");
    for (let i = 0; i < 100 && Sandbox.list().find((r) => r.name === "bg-doomed")?.status !== "crashed"; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(Sandbox.list().find((r) => r.name === "bg-doomed")?.status).toBe("crashed");
    // QEMU runs under a parent-death signal: it went with its supervisor.
    for (let i = 0; i < 100 && vms.some((vm) => existsSync(`/proc/${String(vm)}`)); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(vms.filter((vm) => existsSync(`/proc/${String(vm)}`))).toEqual([]);
    expect((await sandboxError(() => Sandbox.get("bg-doomed"))).code).toBe("ERR_MSB_SANDBOX_NOT_FOUND");
    // Its log outlives it; its VM's run directory stays until the next VM start sweeps it.
    expect(readFileSync(join(home, "sandboxes", "bg-doomed", "supervisor.log"), "utf8")).toMatch(new RegExp(`supervisor ${String(pid)} of bg-doomed: started, serving `));
    const runDirs = (): string[] => readdirSync(tmpdir()).filter((entry) => entry.startsWith(`msb-vm-${String(pid)}-`));
    expect(runDirs()).toHaveLength(1);
    await (await Sandbox.create({ name: "sweeper" })).stop();
    expect(runDirs()).toEqual([]);
    await Sandbox.remove("bg-doomed");
    expect(Sandbox.list().map((r) => r.name)).not.toContain("bg-doomed");
    expect(existsSync(join(home, "sandboxes", "bg-doomed"))).toBe(false);
  }, 120_000);

  it("refuse backend volumes, which cannot cross into the supervisor", async () => {
    const options = Sandbox.builder("bad-bg").volume("/x", (v) => v.backend(new PassthroughFs({ rootDir: home }))).build();
    const error = await sandboxError(() => Sandbox.create({ ...options, detached: true }));
    expect(error).toMatchObject({ code: "ERR_MSB_INVALID_CONFIG", input: "/x" });
  });
});
