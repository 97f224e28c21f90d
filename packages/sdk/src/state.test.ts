import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { sandboxError, scratchDirs } from "./scratch.fixture.js";
import { StateStore, processAlive } from "./state.js";

const scratch = scratchDirs("msb-sdk-state-");
const stores: StateStore[] = [];
const children: ChildProcessWithoutNullStreams[] = [];
afterEach(() => {
  for (const store of stores.splice(0)) store.close();
  for (const child of children.splice(0)) child.kill("SIGKILL");
});

function open(home = scratch()): StateStore {
  const store = new StateStore({ home });
  stores.push(store);
  return store;
}

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  return spawnSync(process.execPath, ["-e", "0"]).pid;
}

/** A live child that exits when its stdin closes. */
function sleeper(): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, ["-e", "process.stdin.resume(); process.stdin.on('end', () => process.exit(0))"]);
  children.push(child);
  return child;
}

function exited(child: ChildProcessWithoutNullStreams): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

const ownStartTime = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ")[19];

describe("the state database", () => {
  it("is created in WAL mode at schema version 1, and reopened with its data", async () => {
    const home = scratch();
    const store = open(home);
    expect(store.path).toBe(join(home, "msb.db"));
    store.createSandbox("kept", { image: "alpine" }, { labels: { a: "1" } });
    store.close();
    store.close();

    const raw = new Database(join(home, "msb.db"));
    expect(raw.pragma("user_version", { simple: true })).toBe(1);
    expect(raw.pragma("journal_mode", { simple: true })).toBe("wal");
    raw.close();

    const again = open(home);
    expect(again.getSandbox("kept")).toMatchObject({ name: "kept", config: { image: "alpine" }, labels: { a: "1" } });
    expect((await sandboxError(() => store.listSandboxes())).code).toBe("ERR_MSB_STATE");
  });

  it("refuses a database from a newer msb with ERR_MSB_STATE and leaves it alone", async () => {
    const home = scratch();
    open(home).close();
    const raw = new Database(join(home, "msb.db"));
    raw.pragma("user_version = 99");
    raw.close();
    const error = await sandboxError(() => new StateStore({ home }));
    expect(error).toMatchObject({ code: "ERR_MSB_STATE", input: join(home, "msb.db") });
    expect(String((error.cause as Error).message)).toContain("newer");
  });

  it("defaults the home to MSB_HOME", () => {
    const home = scratch();
    const saved = process.env.MSB_HOME;
    process.env.MSB_HOME = home;
    try {
      using store = new StateStore();
      expect(store.home).toBe(home);
    } finally {
      if (saved === undefined) delete process.env.MSB_HOME;
      else process.env.MSB_HOME = saved;
    }
    expect(existsSync(join(home, "msb.db"))).toBe(true);
  });
});

describe("sandbox records", () => {
  it("go through create, running, stopped and removal, with typed errors", async () => {
    const store = open();
    const { sandbox, previous } = store.createSandbox("web", { image: "nginx", cpus: 2 }, { labels: { team: "a" } });
    expect(previous).toBeUndefined();
    expect(sandbox).toMatchObject({
      name: "web",
      status: "creating",
      config: { image: "nginx", cpus: 2 },
      labels: { team: "a" },
      supervisorPid: process.pid,
      supervisorStartTime: ownStartTime,
      socketPath: null,
      volumes: [],
    });
    expect(new Date(sandbox.createdAt).toISOString()).toBe(sandbox.createdAt);
    expect(store.getSandbox("web")).toEqual(sandbox);
    expect(store.getSandbox("nope")).toBeUndefined();

    const running = store.markRunning("web", { supervisorPid: process.pid, socketPath: "/run/web.sock" });
    expect(running).toMatchObject({ status: "running", supervisorPid: process.pid, supervisorStartTime: ownStartTime, socketPath: "/run/web.sock" });
    expect(await sandboxError(() => store.createSandbox("web", {}))).toMatchObject({ code: "ERR_MSB_SANDBOX_EXISTS", input: "web" });

    expect(store.markStopped("web")).toBe(true);
    expect(store.getSandbox("web")).toMatchObject({ status: "stopped", supervisorPid: null, supervisorStartTime: null, socketPath: null });
    expect(store.markStopped("nope")).toBe(false);

    expect(store.removeSandbox("web").name).toBe("web");
    expect(store.getSandbox("web")).toBeUndefined();
    expect(await sandboxError(() => store.removeSandbox("web"))).toMatchObject({ code: "ERR_MSB_SANDBOX_NOT_FOUND", input: "web" });
    expect(await sandboxError(() => store.markRunning("web", { supervisorPid: process.pid, socketPath: "/s" }))).toMatchObject({
      code: "ERR_MSB_SANDBOX_NOT_FOUND",
      input: "web",
    });
  });

  it("refuses to mark a sandbox running under a process that does not exist", async () => {
    const store = open();
    store.createSandbox("ghost", {});
    expect(await sandboxError(() => store.markRunning("ghost", { supervisorPid: deadPid(), socketPath: "/s" }))).toMatchObject({ code: "ERR_MSB_STATE", input: "ghost" });
    expect(await sandboxError(() => store.markRunning("ghost", { supervisorPid: -1, socketPath: "/s" }))).toMatchObject({ code: "ERR_MSB_INVALID_CONFIG" });
  });

  it("validates names, labels and configs with ERR_MSB_INVALID_CONFIG", async () => {
    const store = open();
    for (const name of ["", "-web", ".web", "a/b", "../x", "a b", "x".repeat(64), "é"]) {
      expect(await sandboxError(() => store.createSandbox(name, {}))).toMatchObject({ code: "ERR_MSB_INVALID_CONFIG", input: name });
    }
    for (const name of ["a", "A1", "web-1.test_2", "x".repeat(63)]) expect(store.createSandbox(name, {}).sandbox.name).toBe(name);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const bad = await sandboxError(() => store.createSandbox("cyclic", cyclic));
    expect(bad).toMatchObject({ code: "ERR_MSB_INVALID_CONFIG", input: "cyclic" });
    expect(bad.cause).toBeInstanceOf(TypeError);
    expect((await sandboxError(() => store.createSandbox("arr", [1]))).code).toBe("ERR_MSB_INVALID_CONFIG");
    expect((await sandboxError(() => store.createSandbox("lbl", {}, { labels: { "": "x" } }))).code).toBe("ERR_MSB_INVALID_CONFIG");
    expect(store.getSandbox("cyclic")).toBeUndefined();
  });

  it("lists by name with label filters", () => {
    const store = open();
    store.createSandbox("b", {}, { labels: { team: "x", env: "prod" } });
    store.createSandbox("a", {}, { labels: { team: "y" } });
    store.createSandbox("c", {});
    expect(store.listSandboxes().map((s) => s.name)).toEqual(["a", "b", "c"]);
    expect(store.listSandboxes({ label: "team" }).map((s) => s.name)).toEqual(["a", "b"]);
    expect(store.listSandboxes({ label: "team=x" }).map((s) => s.name)).toEqual(["b"]);
    expect(store.listSandboxes({ label: "env=" })).toEqual([]);
  });

  it("replaces a live sandbox only when asked, handing back the old record", async () => {
    const store = open();
    const child = sleeper();
    store.createSandbox("svc", { v: 1 });
    store.markRunning("svc", { supervisorPid: child.pid!, socketPath: "/old.sock" });
    expect((await sandboxError(() => store.createSandbox("svc", { v: 2 }))).code).toBe("ERR_MSB_SANDBOX_EXISTS");
    const { sandbox, previous } = store.createSandbox("svc", { v: 2 }, { replace: true });
    expect(previous).toMatchObject({ status: "running", supervisorPid: child.pid, socketPath: "/old.sock", config: { v: 1 } });
    expect(sandbox).toMatchObject({ status: "creating", supervisorPid: process.pid, config: { v: 2 } });
    // The old supervisor, exiting late, cannot stop its replacement.
    expect(store.markStopped("svc", { supervisorPid: child.pid! })).toBe(false);
    expect(store.getSandbox("svc")?.status).toBe("creating");
    expect(store.markStopped("svc", { supervisorPid: process.pid })).toBe(true);
    // A stopped sandbox is replaced without `replace`.
    expect(store.createSandbox("svc", { v: 3 }).previous).toMatchObject({ status: "stopped", config: { v: 2 } });
  });

  it("marks crashed, and replaces silently, sandboxes whose supervisor exited or was SIGKILLed", async () => {
    const store = open();
    const killed = sleeper();
    const quitting = sleeper();
    for (const [name, child] of [
      ["killed", killed],
      ["exited", quitting],
    ] as const) {
      store.createSandbox(name, {});
      store.markRunning(name, { supervisorPid: child.pid!, socketPath: `/${name}.sock` });
    }
    store.createSandbox("mine", {});
    expect(store.reconcile()).toEqual([]);

    killed.kill("SIGKILL");
    quitting.stdin.end();
    await Promise.all([exited(killed), exited(quitting)]);
    expect(quitting.exitCode).toBe(0);

    expect(processAlive(killed.pid!, store.getSandbox("killed")!.supervisorStartTime)).toBe(false);
    expect(store.reconcile()).toEqual(["exited", "killed"]);
    expect(store.reconcile()).toEqual([]);
    expect(store.listSandboxes().map((s) => [s.name, s.status])).toEqual([
      ["exited", "crashed"],
      ["killed", "crashed"],
      ["mine", "creating"],
    ]);
    expect(store.getSandbox("killed")?.supervisorPid).toBe(killed.pid);

    // Stale before any reconcile: the replaced record comes back as crashed.
    const late = sleeper();
    store.createSandbox("late", {});
    store.markRunning("late", { supervisorPid: late.pid!, socketPath: "/late.sock" });
    late.kill("SIGKILL");
    await exited(late);
    const { previous } = store.createSandbox("late", { again: true });
    expect(previous).toMatchObject({ status: "crashed", supervisorPid: late.pid });
  });

  it("does not take a reused pid for the supervisor (start time differs)", () => {
    const home = scratch();
    const store = open(home);
    store.createSandbox("reused", {});
    store.markRunning("reused", { supervisorPid: process.pid, socketPath: "/s" });
    const raw = new Database(join(home, "msb.db"));
    raw.prepare("UPDATE sandboxes SET supervisor_start_time = '1' WHERE name = 'reused'").run();
    raw.close();
    expect(store.reconcile()).toEqual(["reused"]);
    expect(store.getSandbox("reused")?.status).toBe("crashed");
  });

  it("lets exactly one of 4 processes racing to create a name win", async () => {
    const home = scratch();
    const require = createRequire(import.meta.url);
    const fixture = fileURLToPath(new URL("./state-child.fixture.ts", import.meta.url));
    const racers = [0, 1, 2, 3].map(() => {
      const child = spawn(process.execPath, ["--import", pathToFileURL(require.resolve("tsx")).href, fixture, home, "contested"]);
      children.push(child);
      let output = "";
      child.stderr.pipe(process.stderr);
      const line = (count: number): Promise<string[]> =>
        new Promise((resolve, reject) => {
          const check = (): void => {
            const lines = output.split("\n").filter((l) => l !== "");
            if (lines.length >= count) resolve(lines);
          };
          child.stdout.on("data", (chunk: Buffer) => {
            output += chunk.toString();
            check();
          });
          child.once("exit", (code) => reject(new Error(`racer exited early with ${String(code)}: ${output}`)));
          check();
        });
      return { child, line };
    });
    // Every racer opened the (fresh) database, migrations racing too; then all go at once.
    await Promise.all(racers.map((racer) => racer.line(1)));
    for (const { child } of racers) child.stdin.write("go\n");
    const outcomes = (await Promise.all(racers.map((racer) => racer.line(2)))).map((lines) => lines[1]);
    expect(outcomes.filter((o) => o === "won")).toHaveLength(1);
    expect(outcomes.filter((o) => o === "ERR_MSB_SANDBOX_EXISTS")).toHaveLength(3);
    const winner = racers[outcomes.indexOf("won")]!.child.pid;
    const store = open(home);
    expect(store.getSandbox("contested")).toMatchObject({ status: "creating", supervisorPid: winner, config: { by: winner } });
    for (const { child } of racers) child.stdin.end();
    await Promise.all(racers.map(({ child }) => exited(child)));
    expect(racers.map(({ child }) => child.exitCode)).toEqual([0, 0, 0, 0]);
  });
});

describe("concurrent writers", () => {
  it("wait for another process's write lock instead of failing", async () => {
    const home = scratch();
    const store = open(home);
    const require = createRequire(import.meta.url);
    const holder = spawn(process.execPath, [
      "-e",
      `const db = new (require(${JSON.stringify(require.resolve("better-sqlite3"))}))(process.argv[1]);
       db.exec("BEGIN IMMEDIATE");
       process.stdout.write("locked\\n");
       setTimeout(() => { db.exec("COMMIT"); db.close(); }, 300);`,
      join(home, "msb.db"),
    ]);
    children.push(holder);
    await new Promise<void>((resolve) => holder.stdout.once("data", () => resolve()));
    expect(store.createSandbox("patient", {}).sandbox.status).toBe("creating");
    await exited(holder);
    expect(holder.exitCode).toBe(0);
  });
});

describe("processAlive", () => {
  it("checks existence, zombies aside, and the start time when given", () => {
    expect(processAlive(process.pid, null)).toBe(true);
    expect(processAlive(process.pid, ownStartTime!)).toBe(true);
    expect(processAlive(process.pid, "1")).toBe(false);
    expect(processAlive(deadPid(), null)).toBe(false);
    expect(processAlive(null, null)).toBe(false);
    expect(processAlive(0, null)).toBe(false);
    expect(processAlive(1.5, null)).toBe(false);
  });
});

describe("volumes", () => {
  it("are created with a 0700 directory, listed, ensured and removed", async () => {
    const store = open();
    const cache = store.createVolume("cache", { quota: 1 << 20, labels: { team: "a" } });
    expect(cache).toMatchObject({ name: "cache", path: join(store.volumesDir, "cache"), quota: 1 << 20, labels: { team: "a" } });
    expect(statSync(cache.path).isDirectory()).toBe(true);
    expect(statSync(cache.path).mode & 0o777).toBe(0o700);
    expect(await sandboxError(() => store.createVolume("cache"))).toMatchObject({ code: "ERR_MSB_VOLUME", input: "cache" });

    expect(store.ensureVolume("cache", { quota: 5 })).toEqual(cache);
    rmSync(cache.path, { recursive: true });
    expect(store.ensureVolume("cache")).toEqual(cache);
    expect(statSync(cache.path).mode & 0o777).toBe(0o700);
    const data = store.ensureVolume("data");
    expect(data).toMatchObject({ name: "data", quota: null, labels: {} });
    expect(statSync(data.path).mode & 0o777).toBe(0o700);
    expect(store.getVolume("data")).toEqual(data);
    expect(store.getVolume("nope")).toBeUndefined();
    expect(store.listVolumes().map((v) => v.name)).toEqual(["cache", "data"]);
    expect(store.listVolumes({ label: "team=a" }).map((v) => v.name)).toEqual(["cache"]);

    writeFileSync(join(cache.path, "f"), "x");
    mkdirSync(join(cache.path, "locked", "deep"), { recursive: true });
    chmodSync(join(cache.path, "locked"), 0);
    store.removeVolume("cache");
    expect(existsSync(cache.path)).toBe(false);
    expect(store.getVolume("cache")).toBeUndefined();
    expect(store.listVolumes().map((v) => v.name)).toEqual(["data"]);
    expect(await sandboxError(() => store.removeVolume("cache"))).toMatchObject({ code: "ERR_MSB_VOLUME", input: "cache" });
  });

  it("validate names and quotas", async () => {
    const store = open();
    for (const name of ["", "../x", ".trash-a-1-aaaaaaaaaaaa", "a/b"]) {
      expect(await sandboxError(() => store.createVolume(name))).toMatchObject({ code: "ERR_MSB_INVALID_CONFIG", input: name });
    }
    for (const quota of [0, -1, 1.5, Number.NaN]) expect((await sandboxError(() => store.createVolume("q", { quota }))).code).toBe("ERR_MSB_INVALID_CONFIG");
    expect(store.createVolume("x".repeat(128)).name).toHaveLength(128);
  });

  it("are refused removal while a live sandbox uses them, unless forced", async () => {
    const store = open();
    store.createVolume("shared");
    expect(await sandboxError(() => store.createSandbox("user", {}, { volumes: ["missing"] }))).toMatchObject({ code: "ERR_MSB_VOLUME", input: "missing" });
    expect(store.getSandbox("user")).toBeUndefined();

    expect(store.createSandbox("user", {}, { volumes: ["shared", "shared"] }).sandbox.volumes).toEqual(["shared"]);
    const refused = await sandboxError(() => store.removeVolume("shared"));
    expect(refused).toMatchObject({ code: "ERR_MSB_VOLUME", input: "shared" });
    expect(refused.message).toContain("user");
    expect(existsSync(join(store.volumesDir, "shared"))).toBe(true);

    // Stopped (or crashed) sandboxes do not hold a volume.
    store.markStopped("user");
    store.removeVolume("shared");
    expect(existsSync(join(store.volumesDir, "shared"))).toBe(false);
    expect(store.getSandbox("user")?.volumes).toEqual([]);

    store.createVolume("pinned");
    store.createSandbox("user2", {}, { volumes: ["pinned"] });
    store.removeVolume("pinned", { force: true });
    expect(store.getVolume("pinned")).toBeUndefined();
    expect(existsSync(join(store.volumesDir, "pinned"))).toBe(false);
  });

  it("are made whole on open after a process died mid-removal", () => {
    const home = scratch();
    const store = open(home);
    const kept = store.createVolume("kept");
    writeFileSync(join(kept.path, "data"), "precious");
    store.close();
    const dead = deadPid();
    // Died between the rename and the commit: the record is back (rolled back), the directory is trash.
    renameSync(kept.path, join(home, "volumes", `.trash-kept-${String(dead)}-0123456789ab`));
    // Died after the commit: only trash.
    const garbage = join(home, "volumes", `.trash-gone-${String(dead)}-ba9876543210`);
    mkdirSync(join(garbage, "sub"), { recursive: true });
    // A live process's trash is its own business.
    const busy = join(home, "volumes", `.trash-busy-${String(process.pid)}-aaaaaaaaaaaa`);
    mkdirSync(busy);

    open(home);
    expect(readFileSync(join(kept.path, "data"), "utf8")).toBe("precious");
    expect(existsSync(garbage)).toBe(false);
    expect(existsSync(busy)).toBe(true);
  });

  it("adopt a directory left by a create that never committed", () => {
    const home = scratch();
    mkdirSync(join(home, "volumes", "orphan"), { recursive: true, mode: 0o755 });
    const store = open(home);
    const orphan = store.createVolume("orphan");
    expect(statSync(orphan.path).mode & 0o777).toBe(0o700);
  });
});
