import type { IPty, IPtyForkOptions } from '@lydell/node-pty';
import { DevstreamsError } from '../../wire';

/**
 * The one place that loads the PTY addon. Everything else asks `loadPty()` for the node-pty API.
 *
 * We use `@lydell/node-pty` (node-pty 1.1.0's sources with N-API prebuilds shipped as npm packages
 * per platform: linux-x64, linux-arm64): installing it compiles nothing and needs no install
 * script, which this machine's npm does not run by default. The single executables (`make binary`)
 * bundle this same import and swap only @lydell/node-pty's `requireBinary` for the addon they carry
 * (node-pty 1.1.0 cross-compiled per architecture, armhf included): see ./embedded-addon.ts.
 *
 * Loaded lazily, so commands that never open a PTY (hub, connect) work where the addon is missing.
 */
export type { IPty, IPtyForkOptions };

export interface PtyApi {
  spawn(file: string, args: string[], options: IPtyForkOptions): IPty;
}

let loaded: Promise<PtyApi> | undefined;

export function loadPty(): Promise<PtyApi> {
  loaded ??= import('@lydell/node-pty').then(
    (m) => {
      // A CommonJS package: its exports arrive as named exports or as `default`, depending on the loader.
      const api = ((m as { default?: PtyApi }).default ?? m) as PtyApi;
      if (typeof api.spawn !== 'function') throw new Error('@lydell/node-pty has no spawn()');
      return api;
    },
    (err: unknown) => {
      loaded = undefined; // let a later session retry (for instance after the package was installed)
      throw new DevstreamsError('EPTY_UNAVAILABLE', `cannot load the PTY addon (@lydell/node-pty) for ${process.platform}-${process.arch}: ${(err as Error).message.split('\n')[0]}`, {
        cause: err,
      });
    },
  );
  return loaded;
}
