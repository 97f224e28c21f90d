import { resolveCachePolicy, resolveStagingName, toBytes, type CachePolicy, type DynFileSystem } from "@msb/fs";
import { DUAL_POLICIES, type DualPolicyFunction, type DualPolicyName } from "./policy.js";

/**
 * The prefix of DualFs's whiteouts: `.msb-wh.<name>` in a directory of one
 * backend hides `<name>` of the other. Not the OCI `.wh.`, so a backend may
 * itself be an OverlayFs (which reserves `.wh.` names) or an OCI layer
 * directory (whose `.wh.` files mean something else).
 */
export const DUAL_WHITEOUT_PREFIX = toBytes(".msb-wh.");

/** Options of a {@link DualFs}. */
export interface DualFsOptions {
  /** The first backend; every built-in policy writes here. */
  readonly backendA: DynFileSystem;
  /** The second backend; the built-in policies only read it. */
  readonly backendB: DynFileSystem;
  /** A built-in policy's name or a policy function; `ReadBackendBWriteBackendA` by default. */
  readonly policy?: DualPolicyName | DualPolicyFunction;
  /**
   * Name of the directory at a backend's root where copies across are
   * assembled before they are renamed into place; `.msb-dual-staging` by
   * default. It is made on first use in the backend that receives a copy,
   * and the guest never sees it.
   */
  readonly staging?: string;
  /** How much the kernel may cache; `auto` by default, since the backends may be shared. */
  readonly cache?: CachePolicy;
}

/** The checked options. */
export interface ResolvedDualOptions {
  readonly backends: readonly [DynFileSystem, DynFileSystem];
  readonly policy: DualPolicyFunction;
  readonly staging: Uint8Array;
  readonly cache: CachePolicy;
}

const KNOWN = new Set(["backendA", "backendB", "policy", "staging", "cache"]);
const isFs = (value: unknown): value is DynFileSystem =>
  typeof value === "object" && value !== null && typeof (value as DynFileSystem).lookup === "function";

/** Checks the options, throwing a `TypeError` that names the bad one. */
export function resolveDualOptions(options: DualFsOptions): ResolvedDualOptions {
  if (typeof options !== "object" || (options as unknown) === null) throw new TypeError("DualFs: options must be an object");
  for (const key of Object.keys(options)) if (!KNOWN.has(key)) throw new TypeError(`DualFs: unknown option ${key}`);
  if (!isFs(options.backendA)) throw new TypeError("DualFs: backendA must be a DynFileSystem");
  if (!isFs(options.backendB)) throw new TypeError("DualFs: backendB must be a DynFileSystem");
  if (options.backendA === options.backendB) throw new TypeError("DualFs: backendA and backendB must be different filesystems");
  const policyOption = options.policy ?? "ReadBackendBWriteBackendA";
  let policy: DualPolicyFunction;
  if (typeof policyOption === "function") policy = policyOption;
  else if (typeof policyOption === "string" && Object.hasOwn(DUAL_POLICIES, policyOption)) policy = DUAL_POLICIES[policyOption];
  else throw new TypeError(`DualFs: policy must be a function or one of ${Object.keys(DUAL_POLICIES).join(", ")}, got ${String(policyOption)}`);
  const staging = resolveStagingName("DualFs", options.staging, ".msb-dual-staging", DUAL_WHITEOUT_PREFIX);
  const cache = resolveCachePolicy("DualFs", options.cache);
  return { backends: [options.backendA, options.backendB], policy, staging, cache };
}
