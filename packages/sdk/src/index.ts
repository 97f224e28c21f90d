/**
 * The msb SDK. This first part builds filesystem compositions from their
 * declarative JSON form ({@link fsFromSpec}), the same way `msb mount` does;
 * sandboxes follow.
 *
 * @packageDocumentation
 */
export { SpecError, fsFromSpec, fsFromSpecFile, parseSpec, type FsSpec, type MemFsSpec, type ImageSpec, type OverlaySpec, type PassthroughSpec } from "./spec.js";
