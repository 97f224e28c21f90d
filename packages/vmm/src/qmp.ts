// A minimal QMP (QEMU Machine Protocol) client: JSON lines over a unix
// socket; commands answered in order, events delivered to listeners.
import { createConnection, type Socket } from "node:net";
import { VmmError } from "./errors.js";

/** A QMP event, e.g. `VSERPORT_CHANGE` or `MIGRATION`. */
export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
}

/** A QMP connection after capabilities negotiation. */
export class QmpClient {
  private buffer = "";
  private readonly pending: { resolve: (value: unknown) => void; reject: (error: Error) => void; command: string }[] = [];
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private closedError: VmmError | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    const gone = (): void => this.fail(new VmmError("ERR_VMM_GONE", "qmp", "the QMP connection closed"));
    socket.once("close", gone);
    socket.once("error", gone);
  }

  /** Connects to QEMU's QMP socket and negotiates capabilities. */
  static async connect(path: string): Promise<QmpClient> {
    const socket = createConnection(path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", (error) => {
        socket.destroy();
        reject(error);
      });
    });
    const client = new QmpClient(socket);
    // The greeting arrives first and is consumed as the reply to an implicit "command".
    await new Promise((resolve, reject) => client.pending.push({ resolve, reject, command: "greeting" }));
    await client.execute("qmp_capabilities");
    return client;
  }

  /** Runs a command; resolves with its `return` value, rejects with its `error`. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, command });
      this.socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    });
  }

  /** Resolves with the first event named `name` that `match` accepts. */
  waitForEvent(name: string, match: (event: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      if (this.closedError !== undefined) return reject(this.closedError);
      const listener = (event: QmpEvent): void => {
        if (event.event === name && match(event)) {
          this.listeners.delete(listener);
          resolve(event);
        } else if (event.event === "__closed") {
          this.listeners.delete(listener);
          reject(this.closedError ?? new VmmError("ERR_VMM_GONE", "qmp", "the QMP connection closed"));
        }
      };
      this.listeners.add(listener);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private fail(error: VmmError): void {
    if (this.closedError !== undefined) return;
    this.closedError = error;
    for (const waiter of this.pending.splice(0)) waiter.reject(error);
    for (const listener of [...this.listeners]) listener({ event: "__closed" });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line === "") continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch (cause) {
        this.fail(new VmmError("ERR_VMM_QEMU", "qmp", `QEMU sent a line that is not JSON: ${line.slice(0, 200)}`, { cause }));
        this.socket.destroy();
        return;
      }
      if (typeof message.event === "string") {
        for (const listener of [...this.listeners]) listener(message as unknown as QmpEvent);
        continue;
      }
      const waiter = this.pending.shift();
      if (waiter === undefined) continue;
      if ("QMP" in message) waiter.resolve(message.QMP);
      else if ("error" in message) {
        const error = message.error as { class?: string; desc?: string };
        waiter.reject(new VmmError("ERR_VMM_QEMU", waiter.command, `QMP ${waiter.command} failed: ${error.class ?? "Error"}: ${error.desc ?? ""}`));
      } else waiter.resolve(message.return);
    }
  }
}
