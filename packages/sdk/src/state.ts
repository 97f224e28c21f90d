// The state database: sandboxes and named volumes under the msb home, shared by every CLI and SDK process.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { defaultHome } from "@msb/oci";
import { processExists } from "@msb/vmm";
import { SandboxError, type SandboxErrorCode } from "./errors.js";

/** Where a sandbox is in its life. `crashed`: it was creating or running and its process died. */
export type SandboxStatus = "creating" | "running" | "stopped" | "crashed";

/** One sandbox as the state database knows it. */
export interface SandboxRecord {
  readonly name: string;
  readonly status: SandboxStatus;
  /** The configuration the sandbox was created with; the store keeps it as JSON and never looks inside. */
  readonly config: Record<string, unknown>;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * The process answerable for the sandbox: while `creating`, the process that
   * called {@link StateStore.createSandbox}; once `running`, the supervisor;
   * `null` once stopped.
   */
  readonly supervisorPid: number | null;
  /** Field 22 of `/proc/PID/stat` of that process (its start time), so a reused pid is not taken for it. */
  readonly supervisorStartTime: string | null;
  /** The supervisor's unix socket while running. */
  readonly socketPath: string | null;
  /** Named volumes the sandbox uses (see {@link StateStore.removeVolume}). */
  readonly volumes: readonly string[];
  /** ISO 8601. */
  readonly createdAt: string;
  /** ISO 8601. */
  readonly updatedAt: string;
}

/** One named volume: a directory `<home>/volumes/<name>`. */
export interface VolumeRecord {
  readonly name: string;
  /** Absolute path of the volume's directory. */
  readonly path: string;
  /** Bytes the volume may hold; `null` for no limit. */
  readonly quota: number | null;
  readonly labels: Readonly<Record<string, string>>;
  /** ISO 8601. */
  readonly createdAt: string;
}

/** Options of {@link StateStore}. */
export interface StateStoreOptions {
  /** The msb home; defaults to `$MSB_HOME`, else `~/.msb`. The database is `<home>/msb.db`. */
  readonly home?: string;
}

/** Options of {@link StateStore.createSandbox}. */
export interface CreateSandboxOptions {
  readonly labels?: Readonly<Record<string, string>>;
  /** Replace a live sandbox of the same name (its record comes back as `previous` so the caller can stop it). */
  readonly replace?: boolean;
  /** Named volumes the sandbox uses; each must exist. */
  readonly volumes?: readonly string[];
}

/** What {@link StateStore.createSandbox} did. */
export interface CreateSandboxResult {
  /** The new record, status `creating`, owned by the calling process. */
  readonly sandbox: SandboxRecord;
  /**
   * The record it replaced, if any. Its status tells the truth: `creating` or
   * `running` only when its process was alive (the caller should stop it), else
   * `stopped` or `crashed` (the caller may clean up after it).
   */
  readonly previous: SandboxRecord | undefined;
}

/** Options of {@link StateStore.createVolume} and {@link StateStore.ensureVolume}. */
export interface CreateVolumeOptions {
  /** Bytes the volume may hold; a positive integer. */
  readonly quota?: number;
  readonly labels?: Readonly<Record<string, string>>;
}

/** A label filter: `"key"` matches records that have the label, `"key=value"` those where it has that value. */
export interface LabelFilter {
  readonly label?: string;
}

const SANDBOX_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
// As `parseVolumeFlag` accepts named volumes (volume.ts), so every volume a sandbox can name can be recorded.
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
// A removed volume's directory is renamed to `.trash-<name>-<pid>-<hex>` before it is deleted; names never start with a dot.
const TRASH = /^\.trash-(.+)-(\d+)-[0-9a-f]{12}$/;
// Concurrent CLI and SDK processes wait this long for the write lock instead of failing with SQLITE_BUSY.
const BUSY_TIMEOUT_MS = 10_000;

/** Schema migrations: entry `i` takes `PRAGMA user_version` from `i` to `i + 1`. Append, never edit. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE sandboxes (
     name TEXT PRIMARY KEY,
     status TEXT NOT NULL CHECK (status IN ('creating', 'running', 'stopped', 'crashed')),
     config TEXT NOT NULL,
     labels TEXT NOT NULL,
     supervisor_pid INTEGER,
     supervisor_start_time TEXT,
     socket_path TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE volumes (
     name TEXT PRIMARY KEY,
     quota INTEGER,
     labels TEXT NOT NULL,
     created_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE sandbox_volumes (
     sandbox TEXT NOT NULL REFERENCES sandboxes (name) ON DELETE CASCADE,
     volume TEXT NOT NULL,
     PRIMARY KEY (sandbox, volume)
   ) STRICT;
   CREATE INDEX sandbox_volumes_by_volume ON sandbox_volumes (volume);`,
];

interface SandboxRow {
  name: string;
  status: SandboxStatus;
  config: string;
  labels: string;
  supervisor_pid: number | null;
  supervisor_start_time: string | null;
  socket_path: string | null;
  created_at: string;
  updated_at: string;
  volumes: string | null;
}

interface VolumeRow {
  name: string;
  quota: number | null;
  labels: string;
  created_at: string;
}

const SELECT_SANDBOX = `SELECT s.*, (SELECT json_group_array(volume) FROM sandbox_volumes WHERE sandbox = s.name) AS volumes FROM sandboxes s`;

function fail(code: SandboxErrorCode, input: string, message: string, cause?: unknown): never {
  throw new SandboxError(code, input, message, cause === undefined ? {} : { cause });
}

/** A SandboxError passes through; anything else (SQLite, I/O) becomes `ERR_MSB_STATE` about `input`. */
function stateError(input: string, error: unknown): SandboxError {
  if (SandboxError.isInstance(error)) return error;
  return new SandboxError("ERR_MSB_STATE", input, "the state database failed", { cause: error });
}

function checkName(pattern: RegExp, name: string, what: string): void {
  if (typeof name !== "string" || !pattern.test(name)) fail("ERR_MSB_INVALID_CONFIG", String(name), `invalid ${what} name: ${pattern.source}`);
}

function labelsJson(input: string, labels: Readonly<Record<string, string>> | undefined): string {
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (key === "" || typeof value !== "string") fail("ERR_MSB_INVALID_CONFIG", input, `label ${JSON.stringify(key)} must be a non-empty key with a string value`);
  }
  return JSON.stringify(labels ?? {});
}

function matches(labels: Readonly<Record<string, string>>, filter: LabelFilter): boolean {
  if (filter.label === undefined) return true;
  const eq = filter.label.indexOf("=");
  if (eq === -1) return Object.hasOwn(labels, filter.label);
  const key = filter.label.slice(0, eq);
  return Object.hasOwn(labels, key) && labels[key] === filter.label.slice(eq + 1);
}

/** `[state, start time]` (fields 3 and 22) of `/proc/PID/stat`; undefined when it cannot be read. */
function procStat(pid: number): [string, string] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 2 (comm) is parenthesised and may hold spaces and parentheses: count from the last `)`.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const start = fields[19];
  return state === undefined || start === undefined ? undefined : [state, start];
}

/**
 * True when process `pid` exists, is not a zombie and, where `startTime` is
 * given and `/proc` is there to check it, started at that time (field 22 of
 * `/proc/PID/stat`), so a pid the kernel reused for another process is not
 * taken for the one recorded. A null `pid` is never alive.
 *
 * @example
 * ```ts
 * const record = store.getSandbox("web");
 * if (record !== undefined && !processAlive(record.supervisorPid, record.supervisorStartTime)) console.log("its supervisor is gone");
 * ```
 */
export function processAlive(pid: number | null, startTime: string | null): boolean {
  if (pid === null || !Number.isSafeInteger(pid) || pid <= 0 || !processExists(pid)) return false;
  const stat = procStat(pid);
  // Without /proc (not Linux) the signal check is all there is; with it, a pid that has no stat just exited.
  if (stat === undefined) return !existsSync("/proc/self/stat");
  const [state, start] = stat;
  if (state === "Z" || state === "X") return false;
  return startTime === null || start === startTime;
}

function ownStartTime(): string | null {
  return procStat(process.pid)?.[1] ?? null;
}

function isLive(row: SandboxRow): boolean {
  return (row.status === "creating" || row.status === "running") && processAlive(row.supervisor_pid, row.supervisor_start_time);
}

/** Removes a tree; a second pass first makes every directory writable (a guest may leave mode-0 directories in a volume). */
function removeTree(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    const unlock = (dir: string): void => {
      chmodSync(dir, 0o700);
      for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) unlock(join(dir, entry.name));
    };
    unlock(path);
    rmSync(path, { recursive: true, force: true });
  }
}

/**
 * The state database `<home>/msb.db` (SQLite in WAL mode): sandboxes, named
 * volumes and which sandbox uses which volume. Any number of CLI and SDK
 * processes may have it open; a writer waits for the write lock (busy timeout)
 * rather than failing, and every check-then-write runs in one `IMMEDIATE`
 * transaction, so two processes creating the same sandbox cannot both win.
 * The schema is versioned with `PRAGMA user_version` and migrated on open.
 *
 * A record's process is checked against `/proc` (pid and start time) wherever
 * liveness matters, and {@link StateStore.reconcile} marks `crashed` the
 * sandboxes whose process died without saying so.
 *
 * Failures are {@link SandboxError}s: `ERR_MSB_INVALID_CONFIG` for a bad name
 * or option, `ERR_MSB_SANDBOX_EXISTS`, `ERR_MSB_SANDBOX_NOT_FOUND`,
 * `ERR_MSB_VOLUME`, and `ERR_MSB_STATE` when the database itself fails (the
 * SQLite error is the cause).
 *
 * @example
 * ```ts
 * using store = new StateStore();
 * store.reconcile();
 * const { sandbox } = store.createSandbox("web", { image: "nginx" }, { labels: { team: "a" } });
 * // ... start the supervisor, then:
 * store.markRunning(sandbox.name, { supervisorPid: supervisor.pid, socketPath });
 * for (const record of store.listSandboxes({ label: "team=a" })) console.log(record.name, record.status);
 * ```
 */
export class StateStore {
  /** The msb home. */
  readonly home: string;
  /** `<home>/msb.db`. */
  readonly path: string;
  /** `<home>/volumes`. */
  readonly volumesDir: string;
  readonly #db: Database.Database;

  constructor(options: StateStoreOptions = {}) {
    this.home = options.home ?? defaultHome();
    this.path = join(this.home, "msb.db");
    this.volumesDir = join(this.home, "volumes");
    let db: Database.Database | undefined;
    try {
      mkdirSync(this.home, { recursive: true, mode: 0o700 });
      db = new Database(this.path, { timeout: BUSY_TIMEOUT_MS });
      db.pragma("journal_mode = WAL");
      // WAL with NORMAL: a commit is atomic and consistent without an fsync
      // (only the last commits can be lost to a power cut); FULL cost every
      // sandbox start two fsyncs.
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
      migrate(db);
    } catch (error) {
      db?.close();
      throw stateError(this.path, error);
    }
    this.#db = db;
    this.#sweepTrash();
  }

  /** Closes the database; idempotent. */
  close(): void {
    if (this.#db.open) this.#db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // ---- sandboxes ----

  /**
   * Records a new sandbox with status `creating`, owned by this process until
   * {@link StateStore.markRunning}. A live sandbox of that name (creating or
   * running, its process alive) is `ERR_MSB_SANDBOX_EXISTS` unless `replace`;
   * any other (stopped, crashed, or its process dead) is replaced silently.
   * Each of `volumes` must exist (`ERR_MSB_VOLUME`).
   *
   * @example
   * ```ts
   * const { sandbox, previous } = store.createSandbox("web", config, { replace: true, volumes: ["cache"] });
   * if (previous?.status === "running") await stopSupervisor(previous);
   * ```
   */
  createSandbox(name: string, config: object, options: CreateSandboxOptions = {}): CreateSandboxResult {
    checkName(SANDBOX_NAME, name, "sandbox");
    const volumes = [...new Set(options.volumes ?? [])];
    for (const volume of volumes) checkName(VOLUME_NAME, volume, "volume");
    const labels = labelsJson(name, options.labels);
    if (typeof config !== "object" || config === null || Array.isArray(config)) fail("ERR_MSB_INVALID_CONFIG", name, "the sandbox config must be a JSON object");
    let json: string;
    try {
      json = JSON.stringify(config);
    } catch (error) {
      fail("ERR_MSB_INVALID_CONFIG", name, "the sandbox config must be JSON-serialisable", error);
    }
    return this.#write(name, () => {
      const old = this.#sandboxRow(name);
      let previous: SandboxRecord | undefined;
      if (old !== undefined) {
        const live = isLive(old);
        if (live && options.replace !== true) fail("ERR_MSB_SANDBOX_EXISTS", name, "a sandbox of this name is running");
        previous = toSandbox(!live && (old.status === "creating" || old.status === "running") ? { ...old, status: "crashed" } : old);
        this.#db.prepare("DELETE FROM sandboxes WHERE name = ?").run(name);
      }
      for (const volume of volumes) {
        if (this.#volumeRow(volume) === undefined) fail("ERR_MSB_VOLUME", volume, `no such volume (sandbox ${name})`);
      }
      const now = new Date().toISOString();
      this.#db
        .prepare(
          `INSERT INTO sandboxes (name, status, config, labels, supervisor_pid, supervisor_start_time, socket_path, created_at, updated_at)
           VALUES (?, 'creating', ?, ?, ?, ?, NULL, ?, ?)`,
        )
        .run(name, json, labels, process.pid, ownStartTime(), now, now);
      const link = this.#db.prepare("INSERT INTO sandbox_volumes (sandbox, volume) VALUES (?, ?)");
      for (const volume of volumes) link.run(name, volume);
      return { sandbox: this.#mustSandbox(name), previous };
    });
  }

  /**
   * Marks a sandbox running under supervisor `supervisorPid` (its start time
   * is read from `/proc`) listening on `socketPath`. `ERR_MSB_SANDBOX_NOT_FOUND`
   * without a record, `ERR_MSB_STATE` when that process does not exist.
   *
   * @example
   * ```ts
   * store.markRunning("web", { supervisorPid: child.pid!, socketPath: "/home/me/.msb/sandboxes/web/supervisor.sock" });
   * ```
   */
  markRunning(name: string, options: { readonly supervisorPid: number; readonly socketPath: string }): SandboxRecord {
    const { supervisorPid, socketPath } = options;
    if (!Number.isSafeInteger(supervisorPid) || supervisorPid <= 0) fail("ERR_MSB_INVALID_CONFIG", name, `supervisorPid must be a positive integer, not ${String(supervisorPid)}`);
    if (!processExists(supervisorPid)) fail("ERR_MSB_STATE", name, `supervisor process ${String(supervisorPid)} is not running`);
    const startTime = procStat(supervisorPid)?.[1] ?? null;
    return this.#write(name, () => {
      const changed = this.#db
        .prepare(`UPDATE sandboxes SET status = 'running', supervisor_pid = ?, supervisor_start_time = ?, socket_path = ?, updated_at = ? WHERE name = ?`)
        .run(supervisorPid, startTime, socketPath, new Date().toISOString(), name).changes;
      if (changed === 0) fail("ERR_MSB_SANDBOX_NOT_FOUND", name, "no such sandbox");
      return this.#mustSandbox(name);
    });
  }

  /**
   * Marks a sandbox stopped and forgets its process and socket. With
   * `supervisorPid`, only while the record still belongs to that supervisor,
   * so a supervisor exiting late cannot stop the sandbox that replaced it.
   * Returns whether a record changed (false when absent or owned by another).
   *
   * @example
   * ```ts
   * process.on("exit", () => store.markStopped("web", { supervisorPid: process.pid }));
   * ```
   */
  markStopped(name: string, options: { readonly supervisorPid?: number } = {}): boolean {
    return this.#write(name, () => {
      const now = new Date().toISOString();
      const sql = `UPDATE sandboxes SET status = 'stopped', supervisor_pid = NULL, supervisor_start_time = NULL, socket_path = NULL, updated_at = ? WHERE name = ?`;
      const result =
        options.supervisorPid === undefined
          ? this.#db.prepare(sql).run(now, name)
          : this.#db.prepare(`${sql} AND supervisor_pid = ?`).run(now, name, options.supervisorPid);
      return result.changes > 0;
    });
  }

  /**
   * Deletes a sandbox's record (and its volume links) and returns it;
   * `ERR_MSB_SANDBOX_NOT_FOUND` when there is none. Stopping it first is the
   * caller's business.
   *
   * @example
   * ```ts
   * const removed = store.removeSandbox("web");
   * ```
   */
  removeSandbox(name: string): SandboxRecord {
    return this.#write(name, () => {
      const record = this.getSandbox(name) ?? fail("ERR_MSB_SANDBOX_NOT_FOUND", name, "no such sandbox");
      this.#db.prepare("DELETE FROM sandboxes WHERE name = ?").run(name);
      return record;
    });
  }

  /**
   * The sandbox's record as stored, or undefined. Call {@link StateStore.reconcile}
   * first for statuses that account for dead supervisors.
   *
   * @example
   * ```ts
   * const status = store.getSandbox("web")?.status ?? "absent";
   * ```
   */
  getSandbox(name: string): SandboxRecord | undefined {
    return this.#read(name, () => {
      const row = this.#sandboxRow(name);
      return row === undefined ? undefined : toSandbox(row);
    });
  }

  /**
   * Every sandbox, by name, optionally only those matching a label filter.
   *
   * @example
   * ```ts
   * const mine = store.listSandboxes({ label: "owner=ci" });
   * ```
   */
  listSandboxes(filter: LabelFilter = {}): SandboxRecord[] {
    return this.#read("", () =>
      (this.#db.prepare(`${SELECT_SANDBOX} ORDER BY s.name`).all() as SandboxRow[]).map(toSandbox).filter((record) => matches(record.labels, filter)),
    );
  }

  /**
   * Marks `crashed` every sandbox that is creating or running but whose
   * process is gone (or whose pid now belongs to another process); returns
   * their names. Run it before reporting statuses.
   *
   * @example
   * ```ts
   * for (const name of store.reconcile()) console.warn(`sandbox ${name} crashed`);
   * ```
   */
  reconcile(): string[] {
    const dead = (): string[] =>
      (this.#db.prepare(`${SELECT_SANDBOX} WHERE s.status IN ('creating', 'running') ORDER BY s.name`).all() as SandboxRow[])
        .filter((row) => !isLive(row))
        .map((row) => row.name);
    // The usual answer, nothing, needs no write lock; otherwise look again under it.
    if (this.#read("", dead).length === 0) return [];
    return this.#write("", () => {
      const names = dead();
      const mark = this.#db.prepare(`UPDATE sandboxes SET status = 'crashed', updated_at = ? WHERE name = ?`);
      const now = new Date().toISOString();
      for (const name of names) mark.run(now, name);
      return names;
    });
  }

  // ---- volumes ----

  /**
   * Creates named volume `name`: its directory `<home>/volumes/<name>` (mode
   * `0o700`) and its record. `ERR_MSB_VOLUME` when it exists.
   *
   * @example
   * ```ts
   * const volume = store.createVolume("cache", { quota: 1 << 30, labels: { team: "a" } });
   * console.log(volume.path);
   * ```
   */
  createVolume(name: string, options: CreateVolumeOptions = {}): VolumeRecord {
    checkName(VOLUME_NAME, name, "volume");
    const labels = labelsJson(name, options.labels);
    const quota = options.quota ?? null;
    if (quota !== null && (!Number.isSafeInteger(quota) || quota <= 0)) fail("ERR_MSB_INVALID_CONFIG", name, `quota must be a positive integer of bytes, not ${String(quota)}`);
    return this.#write(name, () => {
      if (this.#volumeRow(name) !== undefined) fail("ERR_MSB_VOLUME", name, "a volume of this name exists");
      // The directory first: if the commit never happens, an empty directory is left, which the next create adopts.
      const dir = join(this.volumesDir, name);
      try {
        mkdirSync(this.volumesDir, { recursive: true, mode: 0o700 });
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        chmodSync(dir, 0o700);
      } catch (error) {
        fail("ERR_MSB_VOLUME", name, `cannot create the volume's directory ${dir}`, error);
      }
      this.#db.prepare("INSERT INTO volumes (name, quota, labels, created_at) VALUES (?, ?, ?, ?)").run(name, quota, labels, new Date().toISOString());
      return this.#mustVolume(name);
    });
  }

  /**
   * The volume's record, creating the volume first if there is none (`options`
   * apply only then) and its directory again if it went missing. Safe against
   * concurrent callers.
   *
   * @example
   * ```ts
   * const { path } = store.ensureVolume("cache");
   * ```
   */
  ensureVolume(name: string, options: CreateVolumeOptions = {}): VolumeRecord {
    checkName(VOLUME_NAME, name, "volume");
    return this.#write(name, () => {
      const volume = this.getVolume(name);
      if (volume === undefined) return this.createVolume(name, options);
      try {
        mkdirSync(volume.path, { recursive: true, mode: 0o700 });
      } catch (error) {
        fail("ERR_MSB_VOLUME", name, `cannot create the volume's directory ${volume.path}`, error);
      }
      return volume;
    });
  }

  /**
   * The volume's record, or undefined.
   *
   * @example
   * ```ts
   * if (store.getVolume("cache") === undefined) console.log("no cache volume yet");
   * ```
   */
  getVolume(name: string): VolumeRecord | undefined {
    return this.#read(name, () => {
      const row = this.#volumeRow(name);
      return row === undefined ? undefined : this.#toVolume(row);
    });
  }

  /**
   * Every volume, by name, optionally only those matching a label filter.
   *
   * @example
   * ```ts
   * for (const volume of store.listVolumes()) console.log(volume.name, volume.path);
   * ```
   */
  listVolumes(filter: LabelFilter = {}): VolumeRecord[] {
    return this.#read("", () =>
      (this.#db.prepare("SELECT * FROM volumes ORDER BY name").all() as VolumeRow[]).map((row) => this.#toVolume(row)).filter((volume) => matches(volume.labels, filter)),
    );
  }

  /**
   * Removes volume `name`, record and directory. `ERR_MSB_VOLUME` when it does
   * not exist or, unless `force`, while a live sandbox (creating or running,
   * its process alive) uses it. The record goes and the directory is renamed to
   * a trash name in one transaction; the trash is deleted after the commit
   * (and by the next open if this process dies first), so neither a record
   * without its directory nor a half-deleted directory under the volume's name
   * is ever left.
   *
   * @example
   * ```ts
   * store.removeVolume("cache");
   * ```
   */
  removeVolume(name: string, options: { readonly force?: boolean } = {}): void {
    checkName(VOLUME_NAME, name, "volume");
    const trash = this.#write(name, () => {
      if (this.#volumeRow(name) === undefined) fail("ERR_MSB_VOLUME", name, "no such volume");
      if (options.force !== true) {
        const users = (
          this.#db
            .prepare(`SELECT s.*, NULL AS volumes FROM sandboxes s JOIN sandbox_volumes v ON v.sandbox = s.name WHERE v.volume = ? ORDER BY s.name`)
            .all(name) as SandboxRow[]
        )
          .filter(isLive)
          .map((row) => row.name);
        if (users.length > 0) fail("ERR_MSB_VOLUME", name, `the volume is in use by sandbox ${users.join(", ")}`);
      }
      this.#db.prepare("DELETE FROM sandbox_volumes WHERE volume = ?").run(name);
      this.#db.prepare("DELETE FROM volumes WHERE name = ?").run(name);
      const dir = join(this.volumesDir, name);
      const trash = join(this.volumesDir, `.trash-${name}-${String(process.pid)}-${randomBytes(6).toString("hex")}`);
      try {
        renameSync(dir, trash);
      } catch (error) {
        // Already gone (removed by hand): the record goes all the same.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        fail("ERR_MSB_VOLUME", name, `cannot move the volume's directory ${dir} aside`, error);
      }
      return trash;
    });
    if (trash === undefined) return;
    try {
      removeTree(trash);
    } catch (error) {
      fail("ERR_MSB_VOLUME", name, `the volume is removed but its directory ${trash} could not be deleted (the next open retries)`, error);
    }
  }

  // ---- internals ----

  #read<T>(input: string, run: () => T): T {
    try {
      return run();
    } catch (error) {
      throw stateError(input, error);
    }
  }

  /** Runs `run` in one IMMEDIATE transaction (nested calls join it); errors roll back. */
  #write<T>(input: string, run: () => T): T {
    try {
      return this.#db.inTransaction ? run() : this.#db.transaction(run).immediate();
    } catch (error) {
      throw stateError(input, error);
    }
  }

  #sandboxRow(name: string): SandboxRow | undefined {
    return this.#db.prepare(`${SELECT_SANDBOX} WHERE s.name = ?`).get(name) as SandboxRow | undefined;
  }

  #mustSandbox(name: string): SandboxRecord {
    const row = this.#sandboxRow(name);
    if (row === undefined) fail("ERR_MSB_STATE", name, "the sandbox record vanished inside its transaction");
    return toSandbox(row);
  }

  #volumeRow(name: string): VolumeRow | undefined {
    return this.#db.prepare("SELECT * FROM volumes WHERE name = ?").get(name) as VolumeRow | undefined;
  }

  #mustVolume(name: string): VolumeRecord {
    const row = this.#volumeRow(name);
    if (row === undefined) fail("ERR_MSB_STATE", name, "the volume record vanished inside its transaction");
    return this.#toVolume(row);
  }

  #toVolume(row: VolumeRow): VolumeRecord {
    return { name: row.name, path: join(this.volumesDir, row.name), quota: row.quota, labels: JSON.parse(row.labels) as Record<string, string>, createdAt: row.created_at };
  }

  /**
   * Finishes what dead processes left in `volumes/`: a trash directory whose
   * volume still has a record but no directory (the process died between the
   * rename and the commit, which rolled back) is renamed back; any other is
   * deleted. Best effort: what cannot be done now is retried on the next open.
   */
  #sweepTrash(): void {
    let entries: string[];
    try {
      entries = readdirSync(this.volumesDir);
    } catch {
      return;
    }
    for (const entry of entries) {
      const match = TRASH.exec(entry);
      if (match === null || processAlive(Number(match[2]), null)) continue;
      const name = match[1]!;
      const trash = join(this.volumesDir, entry);
      try {
        // Decide and claim under the write lock: a concurrent sweeper's rename then finds nothing.
        const claimed = this.#write(name, () => {
          const dir = join(this.volumesDir, name);
          if (this.#volumeRow(name) !== undefined && !existsSync(dir)) {
            renameSync(trash, dir);
            return undefined;
          }
          const mine = join(this.volumesDir, `.trash-${name}-${String(process.pid)}-${randomBytes(6).toString("hex")}`);
          renameSync(trash, mine);
          return mine;
        });
        if (claimed !== undefined) removeTree(claimed);
      } catch {
        // Left for the next open.
      }
    }
  }
}

function toSandbox(row: SandboxRow): SandboxRecord {
  return {
    name: row.name,
    status: row.status,
    config: JSON.parse(row.config) as Record<string, unknown>,
    labels: JSON.parse(row.labels) as Record<string, string>,
    supervisorPid: row.supervisor_pid,
    supervisorStartTime: row.supervisor_start_time,
    socketPath: row.socket_path,
    volumes: row.volumes === null ? [] : (JSON.parse(row.volumes) as string[]).sort(),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Brings the schema to the newest version; a database from a newer msb is refused untouched. */
function migrate(db: Database.Database): void {
  const version = (): number => db.pragma("user_version", { simple: true }) as number;
  if (version() > MIGRATIONS.length) throw new Error(`schema version ${String(version())} is newer than this msb knows (${String(MIGRATIONS.length)})`);
  if (version() === MIGRATIONS.length) return;
  db.transaction(() => {
    // Re-read under the write lock: another process may have migrated meanwhile.
    for (let v = version(); v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`user_version = ${String(MIGRATIONS.length)}`);
  }).immediate();
}
