// Detached sandboxes: a supervisor process holds the VM and serves the agent
// protocol on a unix socket, so the sandbox outlives the process that created
// it and any process can reconnect (`Sandbox.get`, `msb exec NAME`). Clients
// speak the agent protocol itself (PROTOCOL.md) plus a few `sandbox.*`
// messages; each client stream is relayed to the agent on a stream of its own.
import { spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { randomBytes } from "node:crypto";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { defaultHome } from "@msb/oci";
import { AgentClient, FLAG_CANCEL, FLAG_END, FrameReader, VmmError, encodeFrame, isCborMap, type CborMap, type CborValue } from "@msb/vmm";
import { SandboxError, type SandboxErrorCode } from "./errors.js";
import type { ExecDefaults, Sandbox, SandboxHost, SandboxMetrics, SandboxOptions } from "./sandbox.js";

/** The options a detached sandbox can take: everything that survives JSON (no backend instances, no hooks). */
export function checkDetachable(options: SandboxOptions): void {
  for (const volume of options.volumes ?? []) {
    const hooks = "hooks" in volume && volume.hooks !== undefined;
    if (volume.kind === "backend" || hooks) {
      throw new SandboxError("ERR_MSB_INVALID_CONFIG", volume.guestPath, "a detached sandbox runs in its own process: backend volumes and onRead/onWrite hooks cannot go there");
    }
  }
}

/** Sends a frame to a client; a client that went away is simply dropped. */
function reply(client: Socket, id: number, flags: number, body: CborValue | undefined): void {
  if (!client.destroyed) client.write(encodeFrame(id, flags, body));
}

const errorBody = (code: string, message: string): CborMap => ({ t: "error", code, errno: 0, message });

/**
 * Serves `sandbox` to clients on `socketPath` until it stops. Resolves when
 * the sandbox has been stopped (by a client's `shutdown`, or `stop`).
 */
export function serveSandbox(sandbox: Sandbox, agent: AgentClient, socketPath: string, onStop: () => Promise<void>): Promise<void> {
  let stopping: Promise<void> | undefined;
  const clients = new Set<Socket>();
  const server = createServer((client) => {
    clients.add(client);
    client.once("close", () => clients.delete(client));
    const reader = new FrameReader();
    /** Client stream id → the relay stream to the agent. */
    const relays = new Map<number, { send(flags: number, body: CborValue | undefined): Promise<void> }>();
    // Clients open streams with ids counting up (PROTOCOL.md §1): a frame on an
    // id at or below the highest seen belongs to a stream that has ended (a
    // late ack or stdin) and is dropped, as the agent drops such frames.
    let highestId = 0;
    const local = async (id: number, flags: number, body: CborMap): Promise<void> => {
      switch (body.t) {
        case "hello":
          return reply(client, id, FLAG_END, { t: "hello", version: 1, agent: `${agent.agentName} (msb supervisor ${String(process.pid)})` });
        case "sandbox.info": {
          const defaults = sandbox.execDefaults;
          return reply(client, id, FLAG_END, {
            t: "info",
            name: sandbox.name,
            env: [...defaults.env],
            cwd: defaults.cwd ?? null,
            user: defaults.user ?? null,
            imageConfig: sandbox.imageConfig === undefined ? null : JSON.stringify(sandbox.imageConfig),
            labels: JSON.stringify(sandbox.labels),
          });
        }
        case "sandbox.metrics": {
          const metrics = await sandbox.metrics();
          return reply(client, id, FLAG_END, { t: "metrics", json: JSON.stringify(metrics) });
        }
        case "sandbox.logs":
          return reply(client, id, FLAG_END, { t: "logs", text: await sandbox.logs() });
        case "shutdown":
        case "sandbox.kill":
          stopping ??= (body.t === "shutdown" ? sandbox.stop() : sandbox.kill()).finally(() => onStop());
          await stopping;
          return reply(client, id, FLAG_END, { t: "ok" });
        case "setup":
          return reply(client, id, FLAG_END, errorBody("EBUSY", "the supervisor has set the sandbox up already"));
        default: {
          const relay = agent.relay(
            (flags, guestBody) => {
              if ((flags & FLAG_END) !== 0) relays.delete(id);
              reply(client, id, flags, guestBody);
            },
            (error) => {
              if (relays.delete(id)) reply(client, id, FLAG_END, errorBody("EIO", error.message));
            },
          );
          relays.set(id, relay);
          return relay.send(flags, body);
        }
      }
    };
    client.on("data", (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch {
        client.destroy();
        return;
      }
      for (const frame of frames) {
        const relay = relays.get(frame.id);
        if (relay !== undefined) {
          if ((frame.flags & FLAG_CANCEL) !== 0) relays.delete(frame.id);
          void relay.send(frame.flags, frame.body).catch(() => undefined);
        } else if (frame.id > highestId && isCborMap(frame.body) && typeof frame.body.t === "string") {
          highestId = frame.id;
          // A new stream: answered here, or relayed to the agent with its flags.
          void local(frame.id, frame.flags, frame.body).catch((error: unknown) => reply(client, frame.id, FLAG_END, errorBody("EIO", error instanceof Error ? error.message : String(error))));
        }
      }
    });
    // A client that goes away abandons its streams: cancel them in the guest.
    client.on("close", () => {
      for (const relay of relays.values()) void relay.send(FLAG_CANCEL, undefined).catch(() => undefined);
      relays.clear();
    });
    client.on("error", () => undefined);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      void agent.closed.then(async () => {
        server.close();
        await (stopping ?? onStop());
        // Let the last replies (the `ok` of a shutdown) reach their clients before the process goes.
        await Promise.race([
          Promise.all([...clients].map((client) => new Promise((closed) => client.once("close", closed).end()))),
          new Promise((timeout) => setTimeout(timeout, 1000).unref()),
        ]);
        resolve();
      });
    });
  });
}

/** The supervisor's control socket: in the temp dir, since unix socket paths are short. */
export function supervisorSocketPath(name: string): string {
  return join(tmpdir(), `msb-${name.slice(0, 40)}-${randomBytes(4).toString("hex")}.sock`);
}

/** Where a detached sandbox's supervisor writes its stderr: `MSB_HOME/sandboxes/NAME/supervisor.log`. */
export function supervisorLogPath(name: string): string {
  return join(defaultHome(), "sandboxes", name, "supervisor.log");
}

/**
 * Starts a supervisor process for a detached sandbox and waits until it
 * serves; the supervisor reports a failure as the SandboxError it met.
 */
export function spawnSupervisor(options: SandboxOptions & { readonly name: string }, restart: boolean): Promise<string> {
  // Built: dist/supervisor-main.js beside this module; from source (tests): the .ts through tsx.
  const built = fileURLToPath(new URL("./supervisor-main.js", import.meta.url));
  const args = existsSync(built) ? [built] : ["--import", pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href, fileURLToPath(new URL("./supervisor-main.ts", import.meta.url))];
  // What the supervisor writes to stderr (a crash, a FUSE server's log lines) outlives it, beside the sandbox's root.
  const log = supervisorLogPath(options.name);
  mkdirSync(dirname(log), { recursive: true, mode: 0o700 });
  const logFd = openSync(log, "a", 0o600);
  const child = (() => {
    try {
      return spawn(process.execPath, args, { detached: true, stdio: ["pipe", "pipe", logFd], env: process.env });
    } finally {
      closeSync(logFd);
    }
  })();
  // Typed nullable since stderr is a file descriptor; both are pipes as asked.
  const { stdin, stdout } = child as { stdin: Writable; stdout: Readable };
  stdin.end(JSON.stringify({ options, restart }));
  return new Promise((resolve, reject) => {
    let out = "";
    let reported = false;
    stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      const line = out.split("\n")[0];
      if (!out.includes("\n") || line === undefined) return;
      stdout.destroy();
      reported = true;
      child.unref();
      if (line.startsWith("ready ")) resolve(line.slice("ready ".length));
      else {
        const failure = JSON.parse(line.slice("error ".length)) as { code?: SandboxErrorCode; input?: string; message?: string };
        reject(new SandboxError(failure.code ?? "ERR_MSB_STATE", failure.input ?? options.name, failure.message ?? "the supervisor failed"));
      }
    });
    // "close", not "exit": a report written just before exiting is read first.
    child.once("close", (code) => {
      // After a report the promise is settled and the supervisor lives on.
      if (reported) return;
      let lastLogLine = "";
      try {
        lastLogLine = readFileSync(log, "utf8").trimEnd().split("\n").at(-1) ?? "";
      } catch {
        // The log went with its directory.
      }
      reject(new SandboxError("ERR_MSB_STATE", options.name, `the supervisor exited with ${String(code)} before serving; its log (${log}) ends: ${lastLogLine}`));
    });
  });
}

/** A sandbox a supervisor holds, reached over its socket. */
export async function remoteHost(name: string, socketPath: string): Promise<{ host: SandboxHost; info: CborMap }> {
  const socket = createConnection(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", (cause) => reject(new SandboxError("ERR_MSB_STATE", name, `cannot reach the sandbox's supervisor at ${socketPath}`, { cause })));
  });
  const agent = await AgentClient.connect(socket);
  const info = await agent.call({ t: "sandbox.info" }, "info");
  const strings = (value: CborValue | undefined): string[] => (Array.isArray(value) ? (value as readonly CborValue[]).filter((v): v is string => typeof v === "string") : []);
  const defaults: ExecDefaults = { env: strings(info.env), cwd: typeof info.cwd === "string" ? info.cwd : undefined, user: typeof info.user === "string" ? info.user : undefined };
  const ask = async (t: string, expect: string): Promise<CborMap> => {
    try {
      return await agent.call({ t }, expect);
    } catch (error) {
      throw new SandboxError("ERR_MSB_STATE", name, `the supervisor did not answer ${t}`, { cause: error });
    }
  };
  const end = async (t: string): Promise<void> => {
    await ask(t, "ok").catch((error: unknown) => {
      // The supervisor may exit right after answering, or have gone already.
      if (!(SandboxError.isInstance(error) && VmmError.is(error.cause) && error.cause.code === "ERR_VMM_GONE")) throw error;
    });
    agent.close();
  };
  return {
    info,
    host: {
      agent,
      defaults,
      stop: () => end("shutdown"),
      kill: () => end("sandbox.kill"),
      logs: async () => {
        const text = (await ask("sandbox.logs", "logs")).text;
        return typeof text === "string" ? text : "";
      },
      metrics: async () => {
        const json = (await ask("sandbox.metrics", "metrics")).json;
        return JSON.parse(typeof json === "string" ? json : "{}") as SandboxMetrics;
      },
    },
  };
}
