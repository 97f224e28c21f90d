// The image commands of `msb`: pull, images, rmi, prune, login. Kept apart from cli.ts (which
// runs on import) so the progress renderer and formatters are testable as
// pure functions.
import { accessSync, constants } from "node:fs";
import { parseArgs } from "node:util";
import {
  ImageStore,
  OciError,
  RegistryClient,
  defaultHome,
  formatReference,
  parsePlatform,
  parseReference,
  pull,
  saveDockerCredentials,
  type ImageDetails,
  type ImageRecord,
  type PullEvent,
} from "@msb/oci";

/** A failure the user caused: printed without a stack, exit code 2. */
export class UsageError extends Error {}

/** Writes to stdout; a parameter so tests can capture output. */
export type Write = (text: string) => void;

const stdoutWrite: Write = (text) => void process.stdout.write(text);

export type ParseOptions = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;

export function parse(command: string, args: string[], options: ParseOptions): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options });
    return { values, positionals };
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message}`);
  }
}

/** The canonical form of a reference typed by the user; a {@link UsageError} naming it when it does not parse. */
function canonicalReference(command: string, input: string): string {
  try {
    return formatReference(parseReference(input));
  } catch (error) {
    if (OciError.is(error)) throw new UsageError(`${command}: invalid image reference ${JSON.stringify(input)}: ${error.message}`);
    throw error;
  }
}

function onePositional(command: string, positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError(`${command} needs exactly one image REFERENCE, got ${positionals.length}`);
  return positionals[0]!;
}

// ---------------------------------------------------------------- formatting

/** `1536` → `"1.5 KiB"`: IEC units, one decimal from KiB up. */
export function humanSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** `sha256:0123456789ab…` → `0123456789ab` (12 hex digits, as Docker shows image ids). */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return digest.slice(colon + 1, colon + 13);
}

/** How long ago `iso` was, relative to `now`: `"just now"`, `"5 minutes ago"`, … or `""` when unknown. */
export function timeAgo(iso: string | undefined, now: number): string {
  const then = iso === undefined ? Number.NaN : Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 60) return "just now";
  const steps: [number, string][] = [
    [60, "minute"],
    [3600, "hour"],
    [86400, "day"],
    [86400 * 7, "week"],
    [86400 * 30, "month"],
    [86400 * 365, "year"],
  ];
  let chosen = steps[0]!;
  for (const step of steps) if (seconds >= step[0]) chosen = step;
  const n = Math.floor(seconds / chosen[0]);
  return `${n} ${chosen[1]}${n === 1 ? "" : "s"} ago`;
}

/** Compressed size of an image: config plus layers, as stored. */
export function imageSize(record: Pick<ImageRecord, "config" | "layers">): number {
  return record.layers.reduce((sum, l) => sum + l.size, record.config.size);
}

/** Left-aligned columns separated by three spaces, trailing spaces trimmed. */
export function formatTable(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("   ").trimEnd());
}

/** The `msb images` table: REFERENCE, DIGEST (short), PLATFORM, CREATED (`-` when the config does not say), SIZE, PULLED. */
export function imagesTable(records: readonly ImageRecord[], now: number): string[] {
  return formatTable([
    ["REFERENCE", "DIGEST", "PLATFORM", "CREATED", "SIZE", "PULLED"],
    ...records.map((r) => [r.reference, shortDigest(r.digest), r.platform, timeAgo(r.created, now) || "-", humanSize(imageSize(r)), timeAgo(r.pulledAt, now)]),
  ]);
}

/** The object `msb pull --json` prints. */
export function pullJson(image: ImageDetails): object {
  const c = image.imageConfig;
  return {
    reference: image.reference,
    digest: image.digest,
    indexDigest: image.indexDigest ?? null,
    platform: image.platform,
    created: image.created ?? null,
    layers: image.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, dir: image.layerDirs[i] })),
    config: {
      Env: c.env,
      Cmd: c.cmd ?? null,
      Entrypoint: c.entrypoint ?? null,
      WorkingDir: c.workingDir ?? null,
      User: c.user ?? null,
      ExposedPorts: Object.fromEntries(c.exposedPorts.map((p) => [p, {}])),
    },
  };
}

// ---------------------------------------------------------------- progress

interface LayerState {
  readonly digest: string;
  size: number;
  bytes: number;
  state: "waiting" | "downloading" | "done" | "cached";
}

/** Pull progress folded from {@link PullEvent}s: one entry per layer, in manifest order. */
export class PullProgress {
  readonly #layers = new Map<string, LayerState>();

  /** Folds one event in. */
  apply(event: PullEvent): void {
    switch (event.type) {
      case "manifest":
        for (const l of event.layers) if (!this.#layers.has(l.digest)) this.#layers.set(l.digest, { digest: l.digest, size: l.size, bytes: 0, state: "waiting" });
        break;
      case "layer-start":
        this.#layer(event.digest, event.size).state = "downloading";
        break;
      case "layer-progress": {
        const layer = this.#layer(event.digest, event.size);
        layer.bytes = event.bytes;
        layer.size = event.size;
        break;
      }
      case "layer-done": {
        const layer = this.#layer(event.digest, 0);
        layer.state = event.cached ? "cached" : "done";
        if (!event.cached) layer.bytes = layer.size;
        break;
      }
    }
  }

  #layer(digest: string, size: number): LayerState {
    let layer = this.#layers.get(digest);
    if (layer === undefined) {
      layer = { digest, size, bytes: 0, state: "waiting" };
      this.#layers.set(digest, layer);
    }
    return layer;
  }

  /** One line per layer: digest prefix, a bar, bytes done/total and percentage (or the final state). */
  lines(barWidth = 30): string[] {
    return [...this.#layers.values()].map((l) => {
      const name = shortDigest(l.digest);
      if (l.state === "cached") return `${name}: already in the store (${humanSize(l.size)})`;
      if (l.state === "waiting") return `${name}: waiting`;
      const fraction = l.state === "done" ? 1 : l.size > 0 ? Math.min(1, l.bytes / l.size) : 0;
      const filled = Math.round(fraction * barWidth);
      const bar = `[${"=".repeat(filled)}${filled < barWidth ? ">" : ""}${" ".repeat(Math.max(0, barWidth - filled - 1))}]`;
      const done = l.state === "done" ? "done" : `${Math.floor(fraction * 100)}%`;
      return `${name}: ${bar} ${humanSize(l.state === "done" ? l.size : l.bytes)} / ${humanSize(l.size)} ${done}`;
    });
  }
}

/** The lines the TTY shows after `events` (a pure function of them, for tests). */
export function renderProgress(events: readonly PullEvent[], barWidth?: number): string[] {
  const progress = new PullProgress();
  for (const event of events) progress.apply(event);
  return progress.lines(barWidth);
}

/**
 * The ANSI text that replaces `previous` drawn lines by `lines`: cursor up
 * over the old block, then each line cleared and rewritten.
 */
export function redraw(previous: number, lines: readonly string[]): string {
  const up = previous > 0 ? `\x1b[${previous}A` : "";
  return up + lines.map((line) => `\r\x1b[2K${line}\n`).join("");
}

/** Draws a {@link PullProgress} in place on a terminal, at most every `intervalMs`. */
export class TtyProgress {
  readonly #progress = new PullProgress();
  #drawn = 0;
  #last = 0;

  constructor(
    readonly write: Write,
    readonly intervalMs = 100,
  ) {}

  event(event: PullEvent): void {
    this.#progress.apply(event);
    const now = Date.now();
    if (event.type === "layer-progress" && now - this.#last < this.intervalMs) return;
    this.#last = now;
    this.flush();
  }

  flush(): void {
    const columns = process.stdout.columns > 0 ? process.stdout.columns : 80;
    const lines = this.#progress.lines().map((line) => line.slice(0, columns - 1));
    this.write(redraw(this.#drawn, lines));
    this.#drawn = lines.length;
  }
}

// ---------------------------------------------------------------- commands

/** `msb pull REF [--platform P] [--insecure] [--ca-cert FILE] [--json]`. */
export async function pullCommand(args: string[], write: Write = stdoutWrite, tty = process.stdout.isTTY): Promise<number> {
  const { values, positionals } = parse("pull", args, {
    platform: { type: "string" },
    insecure: { type: "boolean" },
    "ca-cert": { type: "string" },
    json: { type: "boolean" },
  });
  const input = onePositional("pull", positionals);
  const reference = canonicalReference("pull", input);
  const platform = values.platform as string | undefined;
  if (platform !== undefined) {
    try {
      parsePlatform(platform);
    } catch {
      throw new UsageError(`pull: invalid --platform ${JSON.stringify(platform)}: expected os/arch[/variant], e.g. linux/arm64`);
    }
  }
  const caFile = values["ca-cert"] as string | undefined;
  if (caFile !== undefined) {
    try {
      accessSync(caFile, constants.R_OK);
    } catch (error) {
      throw new UsageError(`pull: cannot read --ca-cert ${JSON.stringify(caFile)}: ${(error as Error).message}`);
    }
  }
  const json = values.json === true;
  let onProgress: ((event: PullEvent) => void) | undefined;
  let finish = (): void => {};
  if (!json) {
    write(`pulling ${reference}\n`);
    if (tty === true) {
      const bars = new TtyProgress(write);
      onProgress = (event) => bars.event(event);
      finish = () => bars.flush();
    } else {
      const sizes = new Map<string, number>();
      onProgress = (event) => {
        if (event.type === "layer-start") sizes.set(event.digest, event.size);
        if (event.type === "layer-done") {
          write(`layer ${event.digest} ${event.cached ? "already in the store" : "done"} (${humanSize(sizes.get(event.digest) ?? 0)})\n`);
        }
      };
    }
  }
  const image = await pull(input, {
    home: defaultHome(),
    ...(platform === undefined ? {} : { platform }),
    ...(values.insecure === true ? { insecure: true } : {}),
    ...(caFile === undefined ? {} : { caFile }),
    ...(onProgress === undefined ? {} : { onProgress }),
  }).finally(finish);
  if (json) write(`${JSON.stringify(pullJson(image), null, 2)}\n`);
  else write(`pulled ${image.reference} ${image.digest}\n`);
  return 0;
}

/** `msb images [--json]`. */
export async function imagesCommand(args: string[], write: Write = stdoutWrite): Promise<number> {
  const { values, positionals } = parse("images", args, { json: { type: "boolean" } });
  if (positionals.length > 0) throw new UsageError(`images takes no arguments, got ${JSON.stringify(positionals[0])}`);
  const records = await new ImageStore({ home: defaultHome() }).listImages();
  if (values.json === true) {
    const list = records.map((r) => ({
      reference: r.reference,
      digest: r.digest,
      indexDigest: r.indexDigest ?? null,
      platform: r.platform,
      size: imageSize(r),
      created: r.created ?? null,
      pulledAt: r.pulledAt,
      layers: r.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
    }));
    write(`${JSON.stringify(list, null, 2)}\n`);
  } else {
    write(imagesTable(records, Date.now()).map((line) => `${line}\n`).join(""));
  }
  return 0;
}

/** `msb rmi REF`: removes the image record; blobs and layers no other image uses go with it. */
export async function rmiCommand(args: string[], write: Write = stdoutWrite): Promise<number> {
  const { positionals } = parse("rmi", args, {});
  const input = onePositional("rmi", positionals);
  const reference = canonicalReference("rmi", input);
  const store = new ImageStore({ home: defaultHome() });
  let removed;
  try {
    removed = await store.removeImage(reference);
  } catch (error) {
    if (OciError.is(error) && error.code === "ERR_OCI_IMAGE_NOT_FOUND") {
      process.stderr.write(`msb: rmi: no image ${reference} in the store ${store.root} (ERR_OCI_IMAGE_NOT_FOUND)\n`);
      return 1;
    }
    throw error;
  }
  write(`removed ${reference} (${removed.layers.length} layer${removed.layers.length === 1 ? "" : "s"} and ${removed.blobs.length} blob${removed.blobs.length === 1 ? "" : "s"} freed)\n`);
  return 0;
}

/** "1 layer", "2 blobs". */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** `msb prune [--json]`: deletes blobs and layers no image uses, and what crashed pulls left. */
export async function pruneCommand(args: string[], write: Write = stdoutWrite): Promise<number> {
  const { values, positionals } = parse("prune", args, { json: { type: "boolean" } });
  if (positionals.length > 0) throw new UsageError(`prune takes no arguments, got ${JSON.stringify(positionals[0])}`);
  const removed = await new ImageStore({ home: defaultHome() }).prune();
  if (values.json === true) write(`${JSON.stringify({ layers: removed.layers, blobs: removed.blobs }, null, 2)}\n`);
  else write(`pruned ${count(removed.layers.length, "layer")} and ${count(removed.blobs.length, "blob")}\n`);
  return 0;
}

/** All of stdin as text, without the line end a shell or `echo` adds. */
async function readStdinSecret(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
}

/** The registry host[:port] a user typed (`docker.io` for Docker Hub's other names); a {@link UsageError} for anything else. */
function registryHost(input: string): string {
  let registry: string;
  try {
    registry = parseReference(`${input}/library/probe`).registry;
  } catch {
    registry = "";
  }
  const hub = input === "index.docker.io" || input === "registry-1.docker.io";
  if (registry !== (hub ? "docker.io" : input)) throw new UsageError(`login: ${JSON.stringify(input)} is not a registry host[:port]`);
  return registry;
}

/**
 * `msb login REGISTRY -u USER --password-stdin [--insecure] [--ca-cert FILE]`:
 * checks the credentials against the registry, then records them in Docker's
 * `config.json` (`$DOCKER_CONFIG`, else `~/.docker`), where every OCI tool reads them.
 */
export async function loginCommand(args: string[], write: Write = stdoutWrite): Promise<number> {
  const { values, positionals } = parse("login", args, {
    username: { type: "string", short: "u" },
    "password-stdin": { type: "boolean" },
    insecure: { type: "boolean" },
    "ca-cert": { type: "string" },
  });
  if (positionals.length !== 1) throw new UsageError(`login needs exactly one REGISTRY, got ${positionals.length}`);
  const registry = registryHost(positionals[0]!);
  const username = values.username as string | undefined;
  if (username === undefined || username === "" || username.includes(":")) throw new UsageError("login needs -u USER (non-empty, without ':')");
  // A password on the command line would show in ps and shell history.
  if (values["password-stdin"] !== true) throw new UsageError("login reads the password from stdin only: pass --password-stdin");
  const password = await readStdinSecret();
  if (password === "") throw new UsageError("login: the password read from stdin is empty");
  const caFile = values["ca-cert"] as string | undefined;
  const client = new RegistryClient(registry, {
    credentials: { username, password },
    ...(values.insecure === true ? { insecure: true } : {}),
    ...(caFile === undefined ? {} : { caFile }),
  });
  try {
    await client.ping();
  } finally {
    client.close();
  }
  const path = await saveDockerCredentials(registry, { username, password });
  write(`Login Succeeded: credentials for ${registry} saved in ${path}\n`);
  return 0;
}
