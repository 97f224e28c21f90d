// Real mounts through /dev/fuse, driven from child processes with real
// system calls (never from this process: a synchronous call into the mount
// would wait for the very thread that serves it).
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { FsBackend, type Context } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectingLogger, type LogLine } from "./harness.fixture.js";
import { mountFuse, type FuseMount } from "./mount.js";
import { USER, fuseUsable, mounted, ok, scratch, sh } from "./shell.fixture.js";

const skip = fuseUsable();
if (skip !== undefined) console.warn(`mount tests skipped: ${skip}`);

/** Counts destroy() calls of a MemFs. */
class Counted extends FsBackend {
  destroys = 0;
  override destroy() {
    this.destroys++;
    return super.destroy();
  }
}

describe.skipIf(skip !== undefined)("mountFuse", () => {
  let base: string;
  let mnt: string;
  let m: FuseMount;
  let backend: Counted;
  const logs: LogLine[] = [];

  beforeAll(async () => {
    ({ base, mnt } = scratch());
    backend = new Counted(new MemFs({ rootMode: 0o755, capacity: "512MiB" }));
    m = await mountFuse(backend, mnt, { allowOther: true, logger: collectingLogger(logs) });
  });

  afterAll(async () => {
    await m?.unmount();
    rmSync(base, { recursive: true, force: true });
  });

  it("negotiates with the running kernel", () => {
    expect(m.connection.minor).toBeGreaterThanOrEqual(31);
    expect(m.connection.flags).toEqual(expect.arrayContaining(["ASYNC_READ", "BIG_WRITES", "DO_READDIRPLUS", "PARALLEL_DIROPS", "MAX_PAGES"]));
    expect(mounted(mnt)).toBe(1);
    expect(readFileSync("/proc/self/mounts", "utf8")).toMatch(new RegExp(`^msb ${mnt} fuse.msb rw,nosuid,nodev,`, "m"));
  });

  it("runs the everyday shell tools", async () => {
    const out = await ok(`set -e; cd ${mnt}
      mkdir -p a/b/c
      echo hello > a/f
      cat a/f
      mv a/f a/g
      ln a/g a/h
      ln -s g a/s
      readlink a/s
      cat a/s
      stat -c '%n %s %h %F' a/g a/h a/s a/b
      truncate -s 100000 a/g
      stat -c '%s %b' a/g
      chmod 640 a/g
      chown 1000:1000 a/h
      touch -d '2001-02-03 04:05:06.7' a/g
      stat -c '%a %u %g %y' a/g
      ls -la a | awk 'NR>1 {print $1, $2, $9}'
      rm -r a
      ls -A
      echo done`);
    expect(out.split("\n")).toEqual([
      "hello",
      "g",
      "hello",
      "a/g 6 2 regular file",
      "a/h 6 2 regular file",
      "a/s 1 1 symbolic link",
      expect.stringMatching(/^a\/b \d+ 3 directory$/),
      expect.stringMatching(/^100000 \d+$/),
      "640 1000 1000 2001-02-03 04:05:06.700000000 +0000",
      "drwxr-xr-x 3 .",
      expect.stringMatching(/^drwxr-xr-x \d+ \.\.$/),
      "drwxr-xr-x 3 b",
      "-rw-r----- 2 g",
      "-rw-r----- 2 h",
      "lrwxrwxrwx 1 s",
      "done",
      "",
    ]);
  });

  it.skipIf(!existsSync("/usr/bin/setfattr"))("sets, lists, reads and removes xattrs with setfattr/getfattr", async () => {
    const out = await ok(`set -e; cd ${mnt}; touch x
      setfattr -n user.color -v blue x
      setfattr -n user.size -v 0x00ff x
      getfattr -d --absolute-names x | sort
      getfattr -n user.color --only-values x; echo
      setfattr -x user.color x
      getfattr -d x | grep -c user. || true
      getfattr -n user.none x 2>&1 || true
      rm x`);
    expect(out).toContain('user.color="blue"');
    expect(out).toContain("user.size=0sAP8=");
    expect(out).toContain("blue\n1\n");
    expect(out).toMatch(/user.none: No such attribute/);
  });

  it("stores large files intact through fsync, and serves concurrent readers and writers", async () => {
    const src = join(base, "src.bin");
    await ok(`dd if=/dev/urandom of=${src} bs=1M count=48 2>/dev/null`);
    const want = (await ok(`sha256sum < ${src}`)).split(" ")[0];
    await ok(`dd if=${src} of=${mnt}/big bs=1M conv=fsync 2>/dev/null`);
    const jobs = [
      ...[0, 1, 2, 3].map((i) => `dd if=${src} of=${mnt}/w${i} bs=${64 << i}k conv=fsync 2>/dev/null && sha256sum < ${mnt}/w${i}`),
      ...[0, 1, 2, 3].map(() => `for i in 1 2 3; do sha256sum < ${mnt}/big; done | sort -u`),
    ];
    const outputs = await Promise.all(jobs.map((job) => ok(job)));
    for (const out of outputs) expect(out.trim().split("\n").map((l) => l.split(" ")[0])).toEqual([want]);
    await ok(`cmp ${src} ${mnt}/big && rm ${mnt}/big ${mnt}/w*`);
  });

  it("lets the backend decide permissions and ownership for an unprivileged uid", async () => {
    await ok(`set -e; cd ${mnt}
      mkdir private shared group; chmod 700 private; chmod 1777 shared
      echo secret > private/file; chmod 600 private/file; echo open > public; chmod 644 public
      chgrp 2000 group; chmod 2775 group`);
    const denied = await sh(`cat ${mnt}/private/file`, USER);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Permission denied/);
    expect(await ok(`cat ${mnt}/public`, USER)).toBe("open\n");
    expect((await sh(`echo x >> ${mnt}/public`, USER)).stderr).toMatch(/Permission denied/);
    expect((await sh(`touch ${mnt}/new`, USER)).stderr).toMatch(/Permission denied/);
    expect((await sh(`chown 1000 ${mnt}/public`, USER)).stderr).toMatch(/Operation not permitted/);
    // Files the user creates are the user's.
    expect(await ok(`set -e; cd ${mnt}/shared; echo mine > f; mkdir d; stat -c '%u:%g %a %n' f d`, USER)).toBe("1000:1000 644 f\n1000:1000 755 d\n");
    // The sticky bit keeps root's own entries from the user.
    await ok(`touch ${mnt}/shared/roots`);
    expect((await sh(`rm -f ${mnt}/shared/roots`, USER)).stderr).toMatch(/Operation not permitted/);
    // Group 2000 is only a supplementary group of the caller: the kernel passes it in the
    // request's groups extension, which lets the backend allow creating in a group-writable dir.
    expect(await ok(`set -e; touch ${mnt}/group/x; stat -c '%u:%g' ${mnt}/group/x`, ["--reuid=1000", "--regid=1000", "--groups=1000,2000"])).toBe("1000:2000\n");
    expect((await sh(`touch ${mnt}/group/y`, USER)).stderr).toMatch(/Permission denied/);
    // An unprivileged write or truncation clears suid/sgid, and stat sees it at once (attributes are cached for a day here).
    await ok(`set -e; cd ${mnt}; echo a > s; echo a > t; chmod 6777 s t; stat -c %a s t`);
    await ok(`echo more >> ${mnt}/s; : > ${mnt}/t`, USER);
    expect(await ok(`stat -c %a ${mnt}/s ${mnt}/t`)).toBe("777\n777\n");
    await ok(`rm -rf ${mnt}/private ${mnt}/shared ${mnt}/group ${mnt}/public ${mnt}/s ${mnt}/t`);
  });

  it("enforces directory search permission on cached paths by default, and without default_permissions only with cache never", async () => {
    for (const [options, enforced] of [
      [{ cache: "always" as const, defaultPermissions: undefined }, true],
      [{ cache: "always" as const, defaultPermissions: false }, false],
      [{ cache: "never" as const, defaultPermissions: false }, true],
    ] as const) {
      const { base: b, mnt: dir } = scratch();
      const fs = new MemFs({ rootMode: 0o755, cache: options.cache });
      const other = await mountFuse(fs, dir, { allowOther: true, defaultPermissions: options.defaultPermissions });
      // Root walks the path first, so its dentries are in the kernel's cache.
      await ok(`mkdir ${dir}/private; echo readable > ${dir}/private/file; chmod 700 ${dir}/private; cat ${dir}/private/file`);
      const run = await sh(`cat ${dir}/private/file`, USER);
      expect(run.code === 0 ? "walked in" : run.stderr.trim(), JSON.stringify(options)).toMatch(enforced ? /Permission denied/ : /walked in/);
      await other.unmount();
      rmSync(b, { recursive: true, force: true });
    }
  });

  it("answers readdir of a large directory in full, in several READDIRPLUS rounds", async () => {
    const out = await ok(`set -e; mkdir ${mnt}/many; cd ${mnt}/many; i=0; while [ $i -lt 500 ]; do : > "file-$i-${"x".repeat(100)}"; i=$((i+1)); done; ls | wc -l; ls -l | tail -n +2 | wc -l; cd /; rm -r ${mnt}/many`);
    expect(out).toBe("500\n500\n");
  });

  it("unmount leaves no mount behind and destroys the backend once", async () => {
    await m.unmount();
    await m.closed;
    expect(mounted(mnt)).toBe(0);
    expect(backend.destroys).toBe(1);
    await m.unmount(); // idempotent
    expect(logs.filter((l) => l.level !== "debug")).toEqual([]);
  });
});

/** This process's descriptors open on /dev/fuse. */
const fuseFds = (): number => readdirSync("/proc/self/fd").filter((fd) => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === "/dev/fuse";
  } catch {
    return false; // closed meanwhile
  }
}).length;

describe.skipIf(skip !== undefined)("mountFuse reading several cloned descriptors", () => {
  it("reads from cloned descriptors, answers each request on its own, and closes them all on unmount", async () => {
    const { base, mnt } = scratch();
    const logs: LogLine[] = [];
    const before = fuseFds();
    const m = await mountFuse(new MemFs({ rootMode: 0o755, capacity: "256MiB" }), mnt, { readers: 3, logger: collectingLogger(logs) });
    try {
      expect(fuseFds() - before).toBe(3);
      const src = join(base, "src.bin");
      await ok(`dd if=/dev/urandom of=${src} bs=1M count=16 2>/dev/null`);
      const want = (await ok(`sha256sum < ${src}`)).split(" ")[0];
      // Concurrent writers, readers and namespace changes keep requests in flight on every descriptor.
      const jobs = [0, 1, 2, 3].map(
        (i) => `mkdir ${mnt}/d${i} && for j in 1 2 3; do cp ${src} ${mnt}/d${i}/f$j; done && sha256sum ${mnt}/d${i}/f* | cut -d' ' -f1 | sort -u && rm -r ${mnt}/d${i}`,
      );
      const outputs = await Promise.all(jobs.map((job) => ok(job)));
      for (const out of outputs) expect(out).toBe(`${want}\n`);
    } finally {
      await m.unmount();
      rmSync(base, { recursive: true, force: true });
    }
    expect(fuseFds()).toBe(before);
    expect(logs.filter((l) => l.level !== "debug")).toEqual([]);
  });

  it("serves the same with polling after a batch off and at its longest", async () => {
    for (const spinMicros of [0, 1000]) {
      const { base, mnt } = scratch();
      const m = await mountFuse(new MemFs({ rootMode: 0o755 }), mnt, { spinMicros });
      try {
        expect(await ok(`for i in 1 2 3 4 5 6 7 8; do echo $i > ${mnt}/f$i; done; cat ${mnt}/f*; ls ${mnt} | wc -l`)).toBe("1\n2\n3\n4\n5\n6\n7\n8\n8\n");
      } finally {
        await m.unmount();
        rmSync(base, { recursive: true, force: true });
      }
    }
  });

  it("refuses a reader count or spin time out of range before mounting", async () => {
    const { base, mnt } = scratch();
    try {
      for (const readers of [0, 17, 1.5]) {
        await expect(mountFuse(new MemFs(), mnt, { readers })).rejects.toThrow(`option readers must be an integer from 1 to 16, got ${readers}`);
      }
      for (const spinMicros of [-1, 1001, 2.5]) {
        await expect(mountFuse(new MemFs(), mnt, { spinMicros })).rejects.toThrow(`option spinMicros must be an integer from 0 to 1000, got ${spinMicros}`);
      }
      expect(mounted(mnt)).toBe(0);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skip !== undefined)("mountFuse lifecycle", () => {
  it("detaches a stale mount left by a server killed with SIGKILL, then mounts", async () => {
    const { base, mnt } = scratch();
    const require = createRequire(import.meta.url);
    const fixture = fileURLToPath(new URL("./child-server.fixture.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", pathToFileURL(require.resolve("tsx")).href, fixture, mnt], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
      child.once("exit", (code) => reject(new Error(`child server exited with ${code}`)));
    });
    await ok(`echo from-child > ${mnt}/f && cat ${mnt}/f`);
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    const stale = await sh(`stat ${mnt}`);
    expect(stale.stderr).toMatch(/Transport endpoint is not connected/);
    expect(mounted(mnt)).toBe(1);

    const logs: LogLine[] = [];
    const m = await mountFuse(new MemFs(), mnt, { logger: collectingLogger(logs) });
    expect(logs.map((l) => l.message).join()).toMatch(/stale FUSE mount/);
    expect(mounted(mnt)).toBe(1);
    expect(await ok(`ls -A ${mnt}; echo fresh > ${mnt}/g; cat ${mnt}/g`)).toBe("fresh\n");
    await m.unmount();
    expect(mounted(mnt)).toBe(0);
    rmSync(base, { recursive: true, force: true });
  });

  it("answers a request interrupted by a signal with EINTR and drops the late result", async () => {
    const { base, mnt } = scratch();
    let late = 0;
    class SlowRead extends FsBackend {
      override async read(ctx: Context, ino: number, fh: number, size: number, offset: number) {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        late++;
        return super.read(ctx, ino, fh, size, offset);
      }
    }
    const logs: LogLine[] = [];
    const m = await mountFuse(new SlowRead(new MemFs({ cache: "never" })), mnt, { debug: true, logger: collectingLogger(logs) });
    await ok(`echo data > ${mnt}/f`);
    // The SIGALRM handler raises, so the read is not restarted after EINTR.
    const script = `
import os, signal, time
class Alarm(Exception): pass
def alarm(*_): raise Alarm()
signal.signal(signal.SIGALRM, alarm)
fd = os.open("${mnt}/f", os.O_RDONLY)
signal.setitimer(signal.ITIMER_REAL, 0.2)
start = time.monotonic()
try:
    os.read(fd, 10)
    print("read completed")
except Alarm:
    print("interrupted after %.1f s" % (time.monotonic() - start))
`;
    const out = await new Promise<string>((resolve) => execFile("/usr/bin/python3", ["-c", script], { timeout: 10_000 }, (_e, stdout, stderr) => resolve(stdout + stderr)));
    expect(out).toMatch(/^interrupted after 0\.[0-9] s/);
    expect(logs.some((l) => /<- INTERRUPT/.test(l.message))).toBe(true);
    expect(logs.some((l) => /-> READ unique=\d+ errno 4/.test(l.message))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1600));
    expect(late).toBe(1);
    await m.unmount();
    rmSync(base, { recursive: true, force: true });
  });

  it("unmount aborts a connection still held open after the timeout", async () => {
    const { base, mnt } = scratch();
    const logs: LogLine[] = [];
    const m = await mountFuse(new MemFs(), mnt, { logger: collectingLogger(logs) });
    await ok(`echo x > ${mnt}/f`);
    const holder = spawn("/bin/sh", ["-c", `exec 3<${mnt}/f; echo held; exec sleep 30`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => holder.stdout.on("data", () => resolve()));
    const started = Date.now();
    await m.unmount({ timeoutMs: 300 });
    holder.kill("SIGKILL");
    await m.closed;
    expect(Date.now() - started).toBeLessThan(8000);
    expect(mounted(mnt)).toBe(0);
    expect(logs.map((l) => l.message).join()).toMatch(/still in use 300 ms after unmounting: aborting/);
    rmSync(base, { recursive: true, force: true });
  });

  it("refuses a missing mountpoint with a FuseError naming it", async () => {
    await expect(mountFuse(new MemFs(), "/tmp/msb-fuse-no-such-dir/mnt")).rejects.toMatchObject({ code: "ERR_FUSE_MOUNT", path: "/tmp/msb-fuse-no-such-dir/mnt" });
  });
});
