// The supervisor process of a detached sandbox (see supervisor.ts): reads the
// sandbox's options as JSON on stdin, creates (or restarts) it, serves it, and says
// "ready SOCKET" (or "error {code, input, message}") on stdout. Its stderr is
// the sandbox's supervisor.log: one line per life event, and whatever else fails.
import { rm } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { SandboxError } from "./errors.js";
import { createHere, type SandboxOptions } from "./sandbox.js";
import { serveSandbox, supervisorSocketPath } from "./supervisor.js";

const { options, restart } = JSON.parse(await text(process.stdin)) as { options: SandboxOptions & { name: string }; restart: boolean };
const note = (event: string): void => void process.stderr.write(`${new Date().toISOString()} supervisor ${String(process.pid)} of ${options.name}: ${event}\n`);
try {
  // Its record and root outlive a stop, so `msb start` can bring it back.
  const sandbox = await createHere({ ...options, detached: false }, { persist: true, restart });
  const socketPath = supervisorSocketPath(options.name);
  const serving = serveSandbox(sandbox, sandbox.agentClient, socketPath, () => rm(socketPath, { force: true }));
  sandbox.recordSupervisor(socketPath);
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.once(signal, () => void sandbox.stop());
  process.stdout.write(`ready ${socketPath}\n`);
  note(`${restart ? "restarted" : "started"}, serving ${socketPath}`);
  await serving;
  note("stopped");
  process.exit(0);
} catch (error) {
  const failure = SandboxError.isInstance(error) ? { code: error.code, input: error.input, message: error.message } : { code: "ERR_MSB_STATE", input: options.name, message: error instanceof Error ? error.message : String(error) };
  note(`failed: ${failure.code}: ${failure.message}`);
  process.stdout.write(`error ${JSON.stringify(failure)}\n`);
  process.exit(1);
}
