// Inter-process locks: a file created with O_EXCL holding the owner's pid.
import { randomBytes } from "node:crypto";
import { link, open, readFile, rename, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { OciError } from "./errors.js";

/** A held lock; `release()` is idempotent. */
export interface Lock {
  release(): Promise<void>;
}

/** True when a process with this pid exists (EPERM: it exists, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

async function owner(path: string): Promise<{ pid: number; host: string } | undefined> {
  try {
    const [pid, host] = (await readFile(path, "utf8")).split("\n");
    return { pid: Number(pid), host: host ?? "" };
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock file `path` (`open(path, "wx")` writing `pid\nhost\ntoken`),
 * polling until `timeoutMs`. A lock whose owner process on this host is gone
 * is stale: it is renamed aside (only one waiter wins the rename) and retried.
 *
 * @throws {@link OciError} `ERR_OCI_LOCK` after the timeout.
 */
export async function acquireLock(path: string, timeoutMs = 600_000): Promise<Lock> {
  const token = randomBytes(8).toString("hex");
  const deadline = Date.now() + timeoutMs;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    try {
      const handle = await open(path, "wx", 0o644);
      try {
        await handle.writeFile(`${process.pid}\n${hostname()}\n${token}\n`);
      } finally {
        await handle.close();
      }
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          await unlink(path).catch(() => undefined);
        },
      };
    } catch (error) {
      if ((error as { code?: string }).code !== "EEXIST") throw error;
    }
    const held = await owner(path);
    if (held !== undefined && held.host === hostname() && Number.isInteger(held.pid) && held.pid > 0 && !processAlive(held.pid)) {
      const aside = `${path}.stale-${token}`;
      // Whoever renames it owns the cleanup; a fresh lock taken meanwhile has a live pid and stays.
      if (await rename(path, aside).then(() => true, () => false)) {
        const moved = await owner(aside);
        // Raced with a waiter that took a fresh lock: put it back unless yet another one exists.
        if (moved !== undefined && moved.pid !== held.pid) await link(aside, path).catch(() => undefined);
        await unlink(aside).catch(() => undefined);
      }
      continue;
    }
    if (Date.now() > deadline) throw new OciError("ERR_OCI_LOCK", path, `lock held by pid ${held?.pid ?? "?"} for too long`);
    await sleep(delay);
  }
}

/** Runs `fn` holding the lock file `path`. */
export async function withLock<T>(path: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
  const lock = await acquireLock(path, timeoutMs);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
