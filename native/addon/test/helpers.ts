import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect } from "vitest";
import type { NativeError } from "../index.js";

/** A fresh directory under os.tmpdir() per test, removed afterwards. */
export function useTmpDir(): { readonly dir: string; join(...parts: string[]): string } {
  let current = "";
  beforeEach(() => {
    current = fs.mkdtempSync(path.join(os.tmpdir(), "msb-native-"));
  });
  afterEach(() => {
    // `rm -rf` copes with non-UTF-8 names, device nodes and FIFOs.
    execFileSync("rm", ["-rf", "--", current]);
  });
  return {
    get dir() {
      return current;
    },
    join: (...parts: string[]) => path.join(current, ...parts),
  };
}

/** Runs `fn`, which must throw, and returns what it threw. */
export function thrown(fn: () => unknown): NativeError {
  try {
    fn();
  } catch (e) {
    return e as NativeError;
  }
  throw new Error("expected the call to throw");
}

/** Awaits `p`, which must reject, and returns the reason. */
export async function rejected(p: Promise<unknown>): Promise<NativeError> {
  try {
    await p;
  } catch (e) {
    return e as NativeError;
  }
  throw new Error("expected the promise to reject");
}

/** Asserts `fn` throws a Node-style fs error with this code (and syscall). */
export function expectErrno(fn: () => unknown, code: string, syscall?: string): NativeError {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(Error);
  expect(err.code).toBe(code);
  expect(typeof err.errno).toBe("number");
  expect(err.errno).toBeLessThan(0);
  if (syscall !== undefined) expect(err.syscall).toBe(syscall);
  expect(err.message.startsWith(`${code}: `)).toBe(true);
  return err;
}

/** Owner-only, for tests that need a fixed umask-independent mode. */
export function modeOf(p: string): number {
  return fs.lstatSync(p).mode & 0o7777;
}
