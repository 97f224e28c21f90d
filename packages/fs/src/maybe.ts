import type { MaybePromise } from "./types.js";

/** True when `value` is a thenable (a Promise or alike). */
export function isPromiseLike<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

/**
 * Applies `fn` to a value that may still be pending, staying synchronous when it
 * is not, so wrappers add no microtask to a synchronous backend's hot path.
 */
export function mapMaybe<T, U>(value: MaybePromise<T>, fn: (value: T) => MaybePromise<U>): MaybePromise<U> {
  return isPromiseLike(value) ? value.then(fn) : fn(value);
}
