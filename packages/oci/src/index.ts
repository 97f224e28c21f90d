/**
 * @msb/oci: OCI images for msb. Parses references the way Docker does,
 * pulls from Distribution registries (anonymous, Basic, Bearer; private CAs;
 * plain HTTP only on opt-in), verifies every manifest and blob, and unpacks
 * each layer once, unprivileged and confined, into a shared content store;
 * imports OCI image layouts (msb's built-in image is one) the same way.
 *
 * @packageDocumentation
 */
export { OciError, type OciErrorCode } from "./errors.js";
export { DOCKER_HUB, formatReference, parseReference, type Reference } from "./reference.js";
export { dockerConfigDir, dockerCredentials, parseChallenges, saveDockerCredentials, type Challenge, type Credentials } from "./auth.js";
export { digestHex, sha256Digest, type Descriptor } from "./digest.js";
export { MANIFEST_MEDIA_TYPES, RegistryClient, type FetchedManifest, type RegistryOptions } from "./registry.js";
export {
  LAYER_MEDIA_TYPES,
  formatPlatform,
  parseImageConfig,
  parseManifest,
  parsePlatform,
  selectPlatform,
  type ImageConfig,
  type ImageManifest,
  type IndexEntry,
  type ParsedManifest,
  type Platform,
} from "./manifest.js";
export { unpackLayer, type Compression, type UnpackOptions } from "./unpack.js";
export { ImageStore, defaultHome, type ImageDetails, type ImageRecord, type RemoveResult, type StoreOptions } from "./store.js";
export { pull, type PullEvent, type PullOptions } from "./pull.js";
export { importOciLayout, type ImportLayoutOptions } from "./layout.js";
