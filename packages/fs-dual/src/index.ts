/**
 * DualFs: two msb filesystems joined under one root, with a policy routing
 * each operation, copies across that are atomic, and whiteouts that hide the
 * other backend's entries.
 *
 * @packageDocumentation
 */
export { DualFs } from "./dual.js";
export { DUAL_WHITEOUT_PREFIX, type DualFsOptions } from "./options.js";
export { DUAL_POLICIES, type DualBackendId, type DualOperationKind, type DualPolicyFunction, type DualPolicyName } from "./policy.js";
