import { dlopenAddon, materializeAddon, nativeDir } from './pty/embedded-addon';

/**
 * glibc's malloc_trim(0), from the small addon the single executables and the armhf bundle carry
 * (scripts/binary/malloc-trim.cc, embedded like node-pty's). free() gives memory back to the system
 * only from the top of malloc's heap; after 500 streams closed, the agent's heap keeps tens of MB of
 * freed chunks below a live one. x64 executable: 104 -> 78 MB RSS, 50 -> 24 MB anonymous after the
 * idle collection (docs/benchmarks.md).
 */
declare const __DEVSTREAMS_TRIM_ADDON__: string | undefined;

let trim: (() => boolean) | undefined;
let failed: Error | undefined;

/** True when memory went back, false when there was none to give; undefined when this build has no addon. Throws once if it cannot load. */
export function mallocTrim(): boolean | undefined {
  if (typeof __DEVSTREAMS_TRIM_ADDON__ !== 'string' || failed) return undefined;
  if (!trim) {
    try {
      const addon = dlopenAddon(materializeAddon(Buffer.from(__DEVSTREAMS_TRIM_ADDON__, 'base64'), nativeDir(), 'malloc-trim')) as { trim: () => boolean };
      trim = addon.trim;
    } catch (err) {
      failed = err as Error;
      throw err;
    }
  }
  return trim();
}
