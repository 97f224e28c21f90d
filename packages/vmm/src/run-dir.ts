// Private per-VM directories in the temp dir (sockets, console log). A VM's
// owner removes its own when the VM stops; one SIGKILLed cannot, so each
// directory carries its owner's pid and the next owner of that kind sweeps
// the directories of processes that are gone.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** True while process `pid` exists (signal 0 checks without signalling). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, owned by someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes `<tmp>/<kind>-<pid>-*` directories whose process is gone; never fails the caller. */
export async function sweepStaleRunDirs(kind: string, base = tmpdir()): Promise<string[]> {
  const pattern = new RegExp(`^${kind}-(\\d+)-[A-Za-z0-9]{6}$`);
  const swept: string[] = [];
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return swept;
  }
  for (const name of names) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || processExists(pid)) continue;
    const dir = join(base, name);
    await rm(dir, { recursive: true, force: true }).then(
      () => swept.push(dir),
      () => undefined,
    );
  }
  return swept;
}

/** A new private directory `<tmp>/<kind>-<pid>-XXXXXX`, after sweeping those of dead owners. */
export async function makeRunDir(kind: string, base = tmpdir()): Promise<string> {
  await sweepStaleRunDirs(kind, base);
  return mkdtemp(join(base, `${kind}-${String(process.pid)}-`));
}
