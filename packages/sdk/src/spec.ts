// Declarative filesystem compositions: the JSON a user writes for `msb mount`
// and the SDK's volumes, checked field by field (every error names the JSON
// path of the bad field) and then built into one DynFileSystem.
import { readFile } from "node:fs/promises";
import { parseBytes, type CachePolicy, type DynFileSystem } from "@msb/fs";
import { DualFs, DUAL_POLICIES, type DualPolicyName } from "@msb/fs-dual";
import { MemFs } from "@msb/fs-memfs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { ImageStore, OciError } from "@msb/oci";

/** Options every spec may carry. */
interface CommonSpec {
  /** How much the kernel may cache; the backend's own default when absent. */
  readonly cache?: CachePolicy;
}

/** An in-memory filesystem (`MemFs` of `@msb/fs-memfs`). */
export interface MemFsSpec extends CommonSpec {
  readonly type: "memfs";
  /** Bytes, as a number or a string such as `"64MiB"`. */
  readonly capacity?: number | string;
  readonly maxInodes?: number;
}

/** A host directory (`PassthroughFs` of `@msb/fs-passthrough`). */
export interface PassthroughSpec extends CommonSpec {
  readonly type: "passthrough";
  /** The host directory to serve; it must exist. */
  readonly rootDir: string;
  /** Bytes, as a number or a string such as `"1GiB"`. */
  readonly quota?: number | string;
  readonly readOnly?: boolean;
}

/**
 * Read-only `lowers` (bottom first) under a writable `upper`
 * (`OverlayFs` of `@msb/fs-overlay`); each layer is itself a spec.
 */
export interface OverlaySpec extends CommonSpec {
  readonly type: "overlay";
  readonly lowers: readonly FsSpec[];
  readonly upper: FsSpec;
  /**
   * Name of the directory at the upper's root where copy-ups are assembled
   * (`.msb-staging` by default). It lives inside the upper, so every copy-up
   * is one rename within the upper whatever backend that is.
   */
  readonly staging?: string;
}

/**
 * A pulled OCI image as an overlay: its layers (read-only, from the store
 * under `MSB_HOME`) under a writable `upper`. Pull it first (`msb pull`).
 */
export interface ImageSpec extends CommonSpec {
  readonly type: "image";
  /** The image reference, as given to `msb pull`. */
  readonly ref: string;
  readonly upper: FsSpec;
  /** As {@link OverlaySpec.staging}. */
  readonly staging?: string;
}

/**
 * Two backends under one root (`DualFs` of `@msb/fs-dual`), with a built-in
 * policy routing reads and changes between them; each backend is itself a spec.
 */
export interface DualSpec extends CommonSpec {
  readonly type: "dual";
  readonly a: FsSpec;
  readonly b: FsSpec;
  /** `ReadBackendBWriteBackendA` by default. */
  readonly policy?: DualPolicyName;
  /** Name of the directory at a backend's root where copies across are assembled (`.msb-dual-staging` by default). */
  readonly staging?: string;
}

/** Any filesystem composition msb can build from JSON. */
export type FsSpec = MemFsSpec | PassthroughSpec | OverlaySpec | ImageSpec | DualSpec;

const SPEC_ERROR_BRAND = Symbol.for("msb.SpecError");

/**
 * A spec that cannot be built. `path` is the JSON path of the offending field
 * (`$.upper.capacity`), `code` is always `"ERR_MSB_INVALID_SPEC"`.
 */
export class SpecError extends Error {
  readonly code = "ERR_MSB_INVALID_SPEC";
  /** JSON path of the field at fault, `$` for the whole document. */
  readonly path: string;

  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`${path}: ${message}`, options);
    this.name = "SpecError";
    this.path = path;
  }

  /** True for any SpecError, also one made by another copy of this package. */
  static isInstance(value: unknown): value is SpecError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[SPEC_ERROR_BRAND] === true;
  }
}
Object.defineProperty(SpecError.prototype, SPEC_ERROR_BRAND, { value: true });

type Fields = Readonly<Record<string, unknown>>;

/** One spec type: which fields it has, how they are checked, how it is built. */
interface SpecType {
  readonly fields: readonly string[];
  check(fields: Fields, path: string): FsSpec;
  build(spec: FsSpec, path: string): DynFileSystem | Promise<DynFileSystem>;
}

function show(value: unknown): string {
  // JSON.stringify answers undefined only for undefined, functions and symbols: none come from JSON.
  return value === undefined ? "nothing" : (JSON.stringify(value) ?? typeof value);
}

function cache(fields: Fields, path: string): CachePolicy | undefined {
  const value = fields.cache;
  if (value === undefined || value === "never" || value === "auto" || value === "always") return value;
  throw new SpecError(`${path}.cache`, `expected "never", "auto" or "always", got ${show(value)}`);
}

function bytes(fields: Fields, key: string, path: string): number | undefined {
  const value = fields[key];
  if (value === undefined) return undefined;
  const parsed = typeof value === "string" ? parseBytes(value) : value;
  if (typeof parsed === "number" && Number.isSafeInteger(parsed) && parsed >= 0) return parsed;
  throw new SpecError(`${path}.${key}`, `expected a byte count such as 65536 or "64MiB", got ${show(value)}`);
}

function count(fields: Fields, key: string, path: string): number | undefined {
  const value = fields[key];
  if (value === undefined || (typeof value === "number" && Number.isSafeInteger(value) && value >= 1)) return value;
  throw new SpecError(`${path}.${key}`, `expected a whole number of at least 1, got ${show(value)}`);
}

function flag(fields: Fields, key: string, path: string): boolean | undefined {
  const value = fields[key];
  if (value === undefined || typeof value === "boolean") return value;
  throw new SpecError(`${path}.${key}`, `expected true or false, got ${show(value)}`);
}

function text(fields: Fields, key: string, path: string, what = "a non-empty path"): string {
  const value = fields[key];
  if (typeof value === "string" && value.length > 0 && !value.includes("\0")) return value;
  throw new SpecError(`${path}.${key}`, `expected ${what}, got ${show(value)}`);
}

/** Builds a backend, turning its constructor's complaint into a SpecError at `path`. */
function construct(path: string, make: () => DynFileSystem): DynFileSystem {
  try {
    return make();
  } catch (error) {
    throw new SpecError(path, error instanceof Error ? error.message : String(error), { cause: error });
  }
}

function specList(fields: Fields, key: string, path: string): FsSpec[] {
  const value = fields[key];
  if (!Array.isArray(value)) throw new SpecError(`${path}.${key}`, `expected an array of specs, got ${show(value)}`);
  return value.map((item, i) => parseSpec(item, `${path}.${key}[${i}]`));
}

function optionalName(fields: Fields, key: string, path: string): string | undefined {
  const value = fields[key];
  if (value === undefined || (typeof value === "string" && value.length > 0)) return value;
  throw new SpecError(`${path}.${key}`, `expected a directory name, got ${show(value)}`);
}

function dualPolicy(fields: Fields, path: string): DualPolicyName | undefined {
  const value = fields.policy;
  if (value === undefined || (typeof value === "string" && Object.hasOwn(DUAL_POLICIES, value))) return value as DualPolicyName | undefined;
  throw new SpecError(`${path}.policy`, `expected one of ${Object.keys(DUAL_POLICIES).map((p) => JSON.stringify(p)).join(", ")}, got ${show(value)}`);
}

const TYPES: Readonly<Record<string, SpecType>> = {
  memfs: {
    fields: ["capacity", "maxInodes"],
    check: (f, path) => ({ type: "memfs", cache: cache(f, path), capacity: bytes(f, "capacity", path), maxInodes: count(f, "maxInodes", path) }),
    build: (spec, path) => {
      const { capacity, maxInodes, cache: policy } = spec as MemFsSpec;
      return construct(path, () => new MemFs({ capacity, maxInodes, cache: policy }));
    },
  },
  passthrough: {
    fields: ["rootDir", "quota", "readOnly"],
    check: (f, path) => ({
      type: "passthrough",
      cache: cache(f, path),
      rootDir: text(f, "rootDir", path),
      quota: bytes(f, "quota", path),
      readOnly: flag(f, "readOnly", path),
    }),
    build: (spec, path) => {
      const { rootDir, quota, readOnly, cache: policy } = spec as PassthroughSpec;
      return construct(`${path}.rootDir`, () => new PassthroughFs({ rootDir, quota, readOnly, cache: policy }));
    },
  },
  overlay: {
    fields: ["lowers", "upper", "staging"],
    check: (f, path) => ({
      type: "overlay",
      cache: cache(f, path),
      lowers: specList(f, "lowers", path),
      upper: parseSpec(f.upper, `${path}.upper`),
      staging: optionalName(f, "staging", path),
    }),
    build: async (spec, path) => {
      const { lowers } = spec as OverlaySpec;
      const layers: DynFileSystem[] = [];
      for (const [i, lower] of lowers.entries()) layers.push(await build(lower, `${path}.lowers[${i}]`));
      return overlayOver(layers, spec as OverlaySpec, path);
    },
  },
  dual: {
    fields: ["a", "b", "policy", "staging"],
    check: (f, path) => ({
      type: "dual",
      cache: cache(f, path),
      a: parseSpec(f.a, `${path}.a`),
      b: parseSpec(f.b, `${path}.b`),
      policy: dualPolicy(f, path),
      staging: optionalName(f, "staging", path),
    }),
    build: async (spec, path) => {
      const { a, b, policy, staging, cache: policyCache } = spec as DualSpec;
      const backendA = await build(a, `${path}.a`);
      const backendB = await build(b, `${path}.b`);
      return construct(path, () => new DualFs({ backendA, backendB, policy, staging, cache: policyCache }));
    },
  },
  image: {
    fields: ["ref", "upper", "staging"],
    check: (f, path) => ({
      type: "image",
      cache: cache(f, path),
      ref: text(f, "ref", path, "an image reference such as \"busybox\""),
      upper: parseSpec(f.upper, `${path}.upper`),
      staging: optionalName(f, "staging", path),
    }),
    build: async (spec, path) => {
      const { ref, cache: policy } = spec as ImageSpec;
      let layerDirs: readonly string[];
      try {
        ({ layerDirs } = await new ImageStore().inspectImage(ref));
      } catch (error) {
        const detail = OciError.is(error) ? `${error.code}: ${error.message}` : String(error);
        throw new SpecError(`${path}.ref`, `image ${JSON.stringify(ref)} cannot be used: ${detail}`, { cause: error });
      }
      // Layers in the store never change once unpacked: the kernel may cache them for good.
      const lowers = layerDirs.map((rootDir) => construct(`${path}.ref`, () => new PassthroughFs({ rootDir, readOnly: true, cache: policy ?? "always" })));
      return overlayOver(lowers, spec as ImageSpec, path);
    },
  },
};

/** An OverlayFs of built `lowers` under the spec's upper, staging and cache. */
async function overlayOver(lowers: DynFileSystem[], spec: OverlaySpec | ImageSpec, path: string): Promise<DynFileSystem> {
  const upper = await build(spec.upper, `${path}.upper`);
  return construct(path, () => new OverlayFs({ lowers, upper, staging: spec.staging, cache: spec.cache }));
}

/** Builds an already checked spec. */
async function build(spec: FsSpec, path: string): Promise<DynFileSystem> {
  return TYPES[spec.type]!.build(spec, path);
}

/**
 * Checks a parsed JSON value as an {@link FsSpec}: known `type`, known
 * fields only, each of the right kind. Throws {@link SpecError} naming the
 * JSON path of the first bad field.
 */
export function parseSpec(value: unknown, path = "$"): FsSpec {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SpecError(path, `expected an object with a "type", got ${show(value)}`);
  }
  const fields = value as Fields;
  const type = typeof fields.type === "string" && Object.hasOwn(TYPES, fields.type) ? TYPES[fields.type] : undefined;
  if (type === undefined) {
    throw new SpecError(`${path}.type`, `expected one of ${Object.keys(TYPES).map((t) => JSON.stringify(t)).join(", ")}, got ${show(fields.type)}`);
  }
  const known = new Set(["type", "cache", ...type.fields]);
  for (const key of Object.keys(fields)) {
    if (!known.has(key)) throw new SpecError(`${path}.${key}`, `unknown field (a ${String(fields.type)} spec has ${[...known].join(", ")})`);
  }
  return type.check(fields, path);
}

/**
 * Builds the filesystem a spec describes. Accepts a checked {@link FsSpec}
 * or any parsed JSON value (checked first).
 *
 * @example
 * ```ts
 * const fs = await fsFromSpec({ type: "memfs", capacity: "64MiB", maxInodes: 10_000 });
 * await mountFuse(fs, "/mnt/scratch");
 * ```
 */
export async function fsFromSpec(spec: unknown, path = "$"): Promise<DynFileSystem> {
  return build(parseSpec(spec, path), path);
}

/** Reads a JSON spec file and builds it; a missing file or bad JSON is a {@link SpecError} at `$`. */
export async function fsFromSpecFile(file: string): Promise<DynFileSystem> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new SpecError("$", `cannot read spec file ${file}: ${(error as Error).message}`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SpecError("$", `${file} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  return fsFromSpec(json);
}
