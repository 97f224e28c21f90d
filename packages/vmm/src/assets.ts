// Where the guest's kernel, initramfs and built-in image are: the directory
// scripts/build-guest-assets.mjs writes, described by its manifest.json.
import { readFile, stat } from "node:fs/promises";
import { isAbsolute, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { VmmError } from "./errors.js";

/** The guest assets msb boots: absolute paths plus what the build recorded about them. */
export interface GuestAssets {
  /** The assets directory (absolute). */
  readonly dir: string;
  /** The asset version: a sha256 (hex) over kernel, initramfs, busybox image and cmdline; VM snapshots are keyed by it. */
  readonly version: string;
  /** The uncompressed kernel (`vmlinux`, booted through its PVH entry). */
  readonly kernel: string;
  /** The initramfs (newc cpio): the agent as `/init` and the kernel modules it loads. */
  readonly initramfs: string;
  /** The kernel command line the assets were built and measured with. */
  readonly cmdline: string;
  /** The built-in busybox image, an OCI image layout directory (for `importOciLayout` of `@msb/oci`). */
  readonly busyboxLayout: string;
  /** The kernel release, e.g. `6.1.0-56-cloud-amd64`. */
  readonly kernelVersion: string;
  /** Kernel modules in the initramfs, in load order. */
  readonly modules: readonly string[];
}

/** Options of {@link findGuestAssets}. */
export interface FindGuestAssetsOptions {
  /** The assets directory; default `$MSB_GUEST_ASSETS`, else this package's own `assets/`. */
  readonly dir?: string;
  /** Environment to read `MSB_GUEST_ASSETS` from (default `process.env`). */
  readonly env?: NodeJS.ProcessEnv;
}

/** This package's `assets/`: from `src/assets.ts` and from the bundled `dist/index.js` alike, one level up. */
const PACKAGE_ASSETS = fileURLToPath(new URL("../assets", import.meta.url));

const HOW_TO_BUILD =
  'build them with "bash scripts/setup.sh" in the msb repository, or "node packages/vmm/scripts/build-guest-assets.mjs --agent <static msb-agent binary> [--out DIR]"' +
  " (MSB_GUEST_ASSETS may point at a directory holding them)";

function missing(dir: string, why: string, cause?: unknown): VmmError {
  return new VmmError("ERR_VMM_ASSETS_MISSING", dir, `guest assets missing or invalid: ${why}; ${HOW_TO_BUILD}`, cause === undefined ? {} : { cause });
}

/** A string field of the manifest; `name` says which, for the error. */
function field(manifest: Record<string, unknown>, name: string, dir: string): string {
  const value = manifest[name];
  if (typeof value !== "string" || value === "") throw missing(dir, `manifest.json has no "${name}"`);
  return value;
}

/** An asset named in the manifest: a plain relative path inside `dir` that exists with the expected type. */
async function assetPath(manifest: Record<string, unknown>, name: string, kind: "file" | "directory", dir: string): Promise<string> {
  const relative = field(manifest, name, dir);
  if (isAbsolute(relative) || normalize(relative).split("/").includes("..")) throw missing(dir, `manifest.json "${name}" (${relative}) is not a path inside the assets directory`);
  const path = join(dir, relative);
  const stats = await stat(path).catch((cause: unknown) => {
    throw missing(dir, `${path} (${name}) is not there`, cause);
  });
  if (kind === "file" ? !stats.isFile() || stats.size === 0 : !stats.isDirectory()) throw missing(dir, `${path} (${name}) is not a ${kind === "file" ? "non-empty file" : "directory"}`);
  return path;
}

/**
 * Finds the guest assets: reads `manifest.json` in `options.dir`, else
 * `$MSB_GUEST_ASSETS`, else this package's `assets/` (where
 * `bash scripts/setup.sh` builds them), and checks every asset it names is there.
 *
 * @throws {@link VmmError} `ERR_VMM_ASSETS_MISSING` naming the directory and
 *   saying how to build the assets, when the manifest or an asset is missing
 *   or invalid.
 */
export async function findGuestAssets(options: FindGuestAssetsOptions = {}): Promise<GuestAssets> {
  const fromEnv = (options.env ?? process.env).MSB_GUEST_ASSETS;
  const dir = resolve(options.dir ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : PACKAGE_ASSETS));
  const manifestPath = join(dir, "manifest.json");
  const text = await readFile(manifestPath, "utf8").catch((cause: unknown) => {
    throw missing(dir, `${manifestPath} cannot be read`, cause);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw missing(dir, `${manifestPath} is not JSON`, cause);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw missing(dir, `${manifestPath} is not a JSON object`);
  const manifest = parsed as Record<string, unknown>;
  const version = field(manifest, "version", dir);
  if (!/^[0-9a-f]{64}$/.test(version)) throw missing(dir, `manifest.json "version" is not a sha256 hex digest`);
  const modules = manifest.modules;
  if (!Array.isArray(modules) || !modules.every((m): m is string => typeof m === "string")) throw missing(dir, 'manifest.json "modules" is not a list of names');
  return {
    dir,
    version,
    kernel: await assetPath(manifest, "kernel", "file", dir),
    initramfs: await assetPath(manifest, "initramfs", "file", dir),
    cmdline: field(manifest, "cmdline", dir),
    busyboxLayout: await assetPath(manifest, "busyboxLayout", "directory", dir),
    kernelVersion: field(manifest, "kernelVersion", dir),
    modules,
  };
}
