// Helpers shared by the SDK's tests: scratch host directories and typed-error capture.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { SandboxError } from "./errors.js";

/** A factory of fresh empty host directories under one temp dir, removed after the file's tests. */
export function scratchDirs(prefix: string): () => string {
  const host = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(host, { recursive: true, force: true }));
  let count = 0;
  return () => {
    const dir = join(host, `scratch-${String(++count)}`);
    mkdirSync(dir);
    return dir;
  };
}

/** Runs `run` and returns the SandboxError it throws; anything else fails the test. */
export async function sandboxError(run: () => unknown): Promise<SandboxError> {
  try {
    await run();
  } catch (error) {
    if (SandboxError.isInstance(error)) return error;
    throw error;
  }
  throw new Error("expected a SandboxError");
}
