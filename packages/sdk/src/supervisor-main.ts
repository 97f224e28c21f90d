// The supervisor process of a detached sandbox (see supervisor.ts): reads the
// sandbox's options as JSON on stdin, creates (or restarts) it, serves it, and says
// "ready SOCKET" (or "error {code, input, message}") on stdout.
import { rm } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { SandboxError } from "./errors.js";
import { createHere, type SandboxOptions } from "./sandbox.js";
import { serveSandbox, supervisorSocketPath } from "./supervisor.js";

const { options, restart } = JSON.parse(await text(process.stdin)) as { options: SandboxOptions & { name: string }; restart: boolean };
try {
  // Its record and root outlive a stop, so `msb start` can bring it back.
  const sandbox = await createHere({ ...options, detached: false }, { persist: true, restart });
  const socketPath = supervisorSocketPath(options.name);
  const serving = serveSandbox(sandbox, sandbox.agentClient, socketPath, () => rm(socketPath, { force: true }));
  sandbox.recordSupervisor(socketPath);
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.once(signal, () => void sandbox.stop());
  process.stdout.write(`ready ${socketPath}\n`);
  await serving;
  process.exit(0);
} catch (error) {
  const failure = SandboxError.isInstance(error) ? { code: error.code, input: error.input, message: error.message } : { code: "ERR_MSB_STATE", input: options.name, message: error instanceof Error ? error.message : String(error) };
  process.stdout.write(`error ${JSON.stringify(failure)}\n`);
  process.exit(1);
}
