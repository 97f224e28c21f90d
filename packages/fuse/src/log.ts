/** Where a FUSE server writes its log lines. */
export interface FuseLogger {
  /** Every request and reply, when `debug` is on. */
  debug(message: string): void;
  /** A malformed request, a reply the kernel refused, a transport problem. */
  warn(message: string): void;
  /** A backend failure that is not an FsError (answered as EIO). */
  error(message: string): void;
}

/** The default logger: warnings and errors to the console, debug lines only when asked for. */
export function consoleLogger(debug = false): FuseLogger {
  return {
    debug: debug ? (message) => console.debug(`[msb/fuse] ${message}`) : () => {},
    warn: (message) => console.warn(`[msb/fuse] ${message}`),
    error: (message) => console.error(`[msb/fuse] ${message}`),
  };
}

/**
 * A logger that lets through the first `burst` lines of a kind and then one
 * in `every`, with the count skipped, so a hostile peer flooding malformed
 * requests cannot flood the log.
 */
export class LogLimiter {
  private seen = 0;

  constructor(
    private readonly write: (message: string) => void,
    private readonly burst = 100,
    private readonly every = 1000,
  ) {}

  log(message: string): void {
    const n = ++this.seen;
    if (n <= this.burst) this.write(message);
    else if ((n - this.burst) % this.every === 0) this.write(`${message} (${this.every - 1} similar lines skipped)`);
  }
}

/** The message of anything thrown, for one log line. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.stack?.split("\n", 2).join(" ") ?? `${error.name}: ${error.message}`;
  return String(error);
}
