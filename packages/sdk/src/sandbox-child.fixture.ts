// Child process of the crash-recovery test (sandbox.test.ts): creates sandbox
// argv[2] under MSB_HOME, says "ready", then waits to be killed.
import { Sandbox } from "./sandbox.js";

const sandbox = await Sandbox.create({ name: process.argv[2] ?? "child" });
process.stdout.write(`ready ${(await sandbox.exec("echo", ["up"])).stdout}`);
setInterval(() => undefined, 1_000);
