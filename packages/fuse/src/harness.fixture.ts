// An in-process FUSE connection for tests: a FuseServer whose replies and
// log lines are collected, and helpers that send requests and read replies.
import type { DynFileSystem } from "@msb/fs";
import { Bytes, initRequest, joinReply, parseReply, request, type Reply, type RequestFields } from "./client.fixture.js";
import type { FuseLogger } from "./log.js";
import { FuseServer, type FuseServerOptions } from "./server.js";

export interface LogLine {
  readonly level: "debug" | "warn" | "error";
  readonly message: string;
}

export function collectingLogger(lines: LogLine[]): FuseLogger {
  return {
    debug: (message) => lines.push({ level: "debug", message }),
    warn: (message) => lines.push({ level: "warn", message }),
    error: (message) => lines.push({ level: "error", message }),
  };
}

/** Lets every queued microtask and one macrotask turn run. */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Harness {
  readonly replies: Uint8Array[] = [];
  readonly logs: LogLine[] = [];
  readonly server: FuseServer;
  private nextUnique = 100;

  constructor(fs: DynFileSystem, options: FuseServerOptions = {}) {
    this.server = new FuseServer(fs, (head, data) => this.replies.push(joinReply(head, data)), { logger: collectingLogger(this.logs), ...options });
  }

  /** Sends the kernel's INIT and returns its reply. */
  init(message = initRequest()): Reply {
    this.server.handle(message);
    return this.take();
  }

  /** Sends a request; returns its unique. */
  send(opcode: number, args: Bytes | Uint8Array = new Bytes(), fields: Partial<RequestFields> = {}): number {
    const unique = Number(fields.unique ?? (this.nextUnique += 2));
    this.server.handle(request(opcode, args, { ...fields, unique }));
    return unique;
  }

  /** Sends a request to a synchronous backend: its reply must be there when `handle` returns. */
  call(opcode: number, args: Bytes | Uint8Array = new Bytes(), fields: Partial<RequestFields> = {}): Reply {
    const unique = this.send(opcode, args, fields);
    const reply = this.take();
    if (reply.unique !== BigInt(unique)) throw new Error(`reply to ${reply.unique}, expected ${unique}`);
    return reply;
  }

  /** Sends a request and waits a turn for an asynchronous reply. */
  async callAsync(opcode: number, args: Bytes | Uint8Array = new Bytes(), fields: Partial<RequestFields> = {}): Promise<Reply> {
    const unique = this.send(opcode, args, fields);
    await tick();
    const index = this.replies.findIndex((r) => parseReply(r).unique === BigInt(unique));
    if (index < 0) throw new Error(`no reply to ${unique}`);
    return parseReply(this.replies.splice(index, 1)[0]!);
  }

  /** The one reply waiting; throws if there is none or more than one. */
  take(): Reply {
    if (this.replies.length !== 1) throw new Error(`expected one reply, have ${this.replies.length}`);
    return parseReply(this.replies.pop()!);
  }
}

/** The name of a directory entry as bytes with its NUL, for request arguments. */
export const cname = (name: string): Bytes => new Bytes().cstr(name);
