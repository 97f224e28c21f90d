// Child process of the createSandbox race (state.test.ts): opens the store in home argv[2], says
// "ready", creates sandbox argv[3] on the "go" line, prints the outcome and stays alive (a dead
// winner's record would be stale and rightly replaced) until its stdin closes.
import { createInterface } from "node:readline";
import { SandboxError } from "./errors.js";
import { StateStore } from "./state.js";

const store = new StateStore({ home: process.argv[2]! });
const lines = createInterface({ input: process.stdin });
process.stdout.write("ready\n");
for await (const line of lines) {
  if (line !== "go") continue;
  try {
    store.createSandbox(process.argv[3]!, { by: process.pid });
    process.stdout.write("won\n");
  } catch (error) {
    process.stdout.write(`${SandboxError.isInstance(error) ? error.code : String(error)}\n`);
  }
}
store.close();
