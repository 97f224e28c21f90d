/** One of the two backends of a DualFs. */
export type DualBackendId = "a" | "b";

/**
 * What a DualFs asks its policy about, for one path:
 * - `lookup`: which backends a name is looked up in, in order of precedence
 *   (the first that has it wins; a backend left out is never asked).
 * - `readdir`: which backends a directory listing shows, in order of precedence.
 * - `create`: the backend a new name is made in (create, mkdir, mknod,
 *   symlink, link, and a rename's destination).
 * - `write`: the backend a change to an existing object goes to (data,
 *   attributes, xattrs, removal). An object living on the other backend is
 *   copied across first.
 */
export type DualOperationKind = "lookup" | "readdir" | "create" | "write";

/**
 * A policy: for an operation kind and the path it concerns (from the DualFs
 * root, `/`-separated; bytes that are not UTF-8 are replaced), the backend to
 * use, or for `lookup` and `readdir` the backends in order of precedence.
 * It must be fast and must not throw: it runs on every lookup.
 */
export type DualPolicyFunction = (kind: DualOperationKind, path: string) => DualBackendId | readonly DualBackendId[];

/** The built-in policies, by name. */
export type DualPolicyName = "ReadBackendBWriteBackendA" | "BackendAOnly" | "BackendAFallbackToBackendBRead" | "MergeReadsBackendAPrecedence";

const A_THEN_B: readonly DualBackendId[] = Object.freeze(["a", "b"]);
const B_THEN_A: readonly DualBackendId[] = Object.freeze(["b", "a"]);
const A_ONLY: readonly DualBackendId[] = Object.freeze(["a"]);

/**
 * The built-in policies. In all of them changes go to backend A and backend B
 * is never written; they differ in what reads see:
 * - `ReadBackendBWriteBackendA`: a name both have is read from B (until
 *   DualFs changes it, which copies it to A); listings merge both.
 * - `BackendAOnly`: backend B is never asked.
 * - `BackendAFallbackToBackendBRead`: A first, B for names A lacks; listings show only A.
 * - `MergeReadsBackendAPrecedence`: A first, B for names A lacks; listings merge both.
 */
export const DUAL_POLICIES: Readonly<Record<DualPolicyName, DualPolicyFunction>> = Object.freeze({
  ReadBackendBWriteBackendA: (kind) => (kind === "lookup" || kind === "readdir" ? B_THEN_A : "a"),
  BackendAOnly: (kind) => (kind === "lookup" || kind === "readdir" ? A_ONLY : "a"),
  BackendAFallbackToBackendBRead: (kind) => (kind === "lookup" ? A_THEN_B : kind === "readdir" ? A_ONLY : "a"),
  MergeReadsBackendAPrecedence: (kind) => (kind === "lookup" || kind === "readdir" ? A_THEN_B : "a"),
});
