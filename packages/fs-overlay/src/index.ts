/**
 * OverlayFs: read-only lower `DynFileSystem` layers merged under a writable
 * upper one, in the OCI layer format (whiteouts, opaque directories), with
 * atomic copy-up through a staging directory, so the upper is always a valid
 * OCI diff layer.
 *
 * @packageDocumentation
 */
export { OverlayFs } from "./overlay.js";
export type { OverlayFsOptions } from "./options.js";
