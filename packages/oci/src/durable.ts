// Files that must be whole on disk before they are renamed into place.
import { open } from "node:fs/promises";

/** Creates `path` (which must not exist) with `data`, `mode`, and fsyncs it before resolving. */
export async function writeNewFileSynced(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const handle = await open(path, "wx", mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
