// A child process of the bench: creates, stats and unlinks COUNT empty files
// in DIR with synchronous system calls (the server under test lives in
// another process), and prints the three rates as JSON.
//   usage: files.workload.ts DIR COUNT
import { closeSync, constants, openSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";

const [dir, countText] = process.argv.slice(2);
if (dir === undefined || countText === undefined) throw new Error("usage: files.workload.ts DIR COUNT");
const count = Number(countText);
const names = Array.from({ length: count }, (_, i) => join(dir, `f${i}`));

/** Runs `op` on every name; returns operations per second. */
function rate(op: (name: string) => void): number {
  const t0 = performance.now();
  for (const name of names) op(name);
  return count / ((performance.now() - t0) / 1000);
}

const create = rate((name) => closeSync(openSync(name, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644)));
const stat = rate((name) => statSync(name));
const unlink = rate((name) => unlinkSync(name));
process.stdout.write(`${JSON.stringify({ create, stat, unlink })}\n`);
