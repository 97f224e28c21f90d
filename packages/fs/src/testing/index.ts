/**
 * The conformance kit: one call registers the whole DynFileSystem test suite
 * (hundreds of cases, each answered as the Linux kernel would) for a backend.
 *
 * @example
 * ```ts
 * // packages/fs-memfs/src/conformance.test.ts
 * import { describeConformance } from "@msb/fs/testing";
 * import { MemFs } from "./index.js";
 *
 * describeConformance({ name: "MemFs", create: () => ({ fs: new MemFs() }) });
 * ```
 *
 * @packageDocumentation
 */
import { afterEach, beforeEach, describe } from "vitest";
import type { DynFileSystem, MaybePromise } from "../types.js";
import { Harness, createScratchDir, type ScratchDir } from "./harness.js";
import { attributeSuite } from "./suites/attributes.js";
import { directorySuite } from "./suites/directories.js";
import { errorSuite } from "./suites/errors.js";
import { fileSuite } from "./suites/files.js";
import { namespaceSuite } from "./suites/namespace.js";
import { permissionSuite } from "./suites/permissions.js";
import { xattrSuite } from "./suites/xattrs.js";

export { ALICE, BOB, ROOT, Harness, createScratchDir, expectErrno, killMidCopy, populate, stagedFileSizes, withSlowReads, type ScratchDir } from "./harness.js";

/**
 * What a backend can do. Every capability defaults to `true`; turn one off
 * only when the backend truly lacks it, and the kit then checks that the
 * backend says so with the errno Linux uses (`EOPNOTSUPP`, `EPERM`, ...)
 * instead of skipping silently where it can.
 */
export interface ConformanceCapabilities {
  /** `mknod` of FIFOs, sockets, character and block devices. */
  readonly specialFiles: boolean;
  /** `link`. */
  readonly hardLinks: boolean;
  /** Extended attributes in `user.*` (and `trusted.*` for root). */
  readonly xattrs: boolean;
  /** Xattr values up to 64 KiB (`XATTR_SIZE_MAX`); ext4 keeps about 4 KiB per inode and answers `ENOSPC` beyond. */
  readonly largeXattrValues: boolean;
  /** `fallocate` modes 0, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE. */
  readonly fallocate: boolean;
  /** `lseek` reports holes precisely (`SEEK_DATA` / `SEEK_HOLE`). */
  readonly sparseFiles: boolean;
  /** `copyFileRange`. */
  readonly copyFileRange: boolean;
  /** `rename` with `RENAME_EXCHANGE`. */
  readonly renameExchange: boolean;
  /** `rename` with `RENAME_WHITEOUT` (root only). */
  readonly renameWhiteout: boolean;
  /** `readdirplus`. */
  readonly readdirplus: boolean;
  /** Checks permissions for non-root contexts (uid/gid/mode, sticky, setgid). */
  readonly permissions: boolean;
}

/** What a factory returns: the filesystem under test and how to dispose of it. */
export interface ConformanceFixture {
  readonly fs: DynFileSystem;
  readonly cleanup?: () => MaybePromise<void>;
}

/** Options of {@link describeConformance}. */
export interface ConformanceOptions {
  /** Shown in the test names. */
  readonly name: string;
  /** A fresh, empty filesystem for each test; `scratch` is a temp dir removed afterwards. */
  readonly create: (scratch: ScratchDir) => MaybePromise<ConformanceFixture>;
  /** What the backend lacks; everything is assumed present by default. */
  readonly capabilities?: Partial<ConformanceCapabilities>;
}

/** The state a suite's tests reach through `env()`. */
export interface SuiteEnv {
  /** Harness acting as root on the fresh filesystem. */
  readonly h: Harness;
  readonly fs: DynFileSystem;
  readonly caps: ConformanceCapabilities;
}

/** A group of cases: registers tests that call `env()` for the current test's filesystem. */
export type Suite = (env: () => SuiteEnv, caps: ConformanceCapabilities) => void;

const ALL_CAPABILITIES: ConformanceCapabilities = {
  specialFiles: true,
  hardLinks: true,
  xattrs: true,
  largeXattrValues: true,
  fallocate: true,
  sparseFiles: true,
  copyFileRange: true,
  renameExchange: true,
  renameWhiteout: true,
  readdirplus: true,
  permissions: true,
};

/** The suites in the order they run. */
const SUITES: readonly (readonly [string, Suite])[] = [
  ["namespace", namespaceSuite],
  ["files", fileSuite],
  ["directories", directorySuite],
  ["attributes", attributeSuite],
  ["xattrs", xattrSuite],
  ["permissions", permissionSuite],
  ["error matrix", errorSuite],
];

/**
 * Registers the conformance suite for one backend with vitest. Call it at the
 * top level of a `*.test.ts` file.
 */
export function describeConformance(options: ConformanceOptions): void {
  const caps: ConformanceCapabilities = { ...ALL_CAPABILITIES, ...options.capabilities };
  describe(`${options.name} conformance`, () => {
    let current: { env: SuiteEnv; fixture: ConformanceFixture; scratch: ScratchDir } | undefined;
    beforeEach(async () => {
      const scratch = await createScratchDir();
      const fixture = await options.create(scratch);
      await fixture.fs.init();
      current = { env: { h: new Harness(fixture.fs), fs: fixture.fs, caps }, fixture, scratch };
    });
    afterEach(async () => {
      if (current === undefined) return;
      const { fixture, scratch } = current;
      current = undefined;
      await fixture.fs.destroy();
      await fixture.cleanup?.();
      await scratch.cleanup();
    });
    const env = (): SuiteEnv => {
      if (current === undefined) throw new Error("conformance: no filesystem (called outside a test?)");
      return current.env;
    };
    for (const [name, suite] of SUITES) describe(name, () => suite(env, caps));
  });
}
