import { resolveCachePolicy, resolveStagingName, type CachePolicy, type DynFileSystem } from "@msb/fs";

/** Options of an {@link OverlayFs}. */
export interface OverlayFsOptions {
  /** Read-only layers, bottom first; may be empty. The overlay never writes to them. */
  readonly lowers: readonly DynFileSystem[];
  /** The writable layer: every change lands here, as an OCI diff layer. */
  readonly upper: DynFileSystem;
  /**
   * Name of the directory at the root of the upper where copy-ups are
   * assembled before they are renamed into place; `.msb-staging` by default.
   * The guest never sees it.
   */
  readonly staging?: string;
  /** How much the kernel may cache; `auto` by default, since the layers may be shared. */
  readonly cache?: CachePolicy;
}

/** The checked options. */
export interface ResolvedOptions {
  /** Layer 0 is the upper, then the lowers from the top one down. */
  readonly layers: readonly DynFileSystem[];
  readonly staging: Uint8Array;
  readonly cache: CachePolicy;
}

const KNOWN = new Set(["lowers", "upper", "staging", "cache"]);
const isFs = (value: unknown): value is DynFileSystem =>
  typeof value === "object" && value !== null && typeof (value as DynFileSystem).lookup === "function";

/** Checks the options, throwing a `TypeError` that names the bad one. */
export function resolveOptions(options: OverlayFsOptions): ResolvedOptions {
  if (typeof options !== "object" || (options as unknown) === null) throw new TypeError("OverlayFs: options must be an object");
  for (const key of Object.keys(options)) if (!KNOWN.has(key)) throw new TypeError(`OverlayFs: unknown option ${key}`);
  if (!isFs(options.upper)) throw new TypeError("OverlayFs: upper must be a DynFileSystem");
  if (!Array.isArray(options.lowers) || !options.lowers.every(isFs)) {
    throw new TypeError("OverlayFs: lowers must be an array of DynFileSystem (bottom first)");
  }
  const staging = resolveStagingName("OverlayFs", options.staging, ".msb-staging");
  const cache = resolveCachePolicy("OverlayFs", options.cache);
  return { layers: [options.upper, ...[...options.lowers].reverse()], staging, cache };
}
