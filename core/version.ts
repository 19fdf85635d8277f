// Filled in by the bundler (scripts/build.mjs); running from source says "dev".
declare const __DEVSTREAMS_VERSION__: string | undefined;
declare const __DEVSTREAMS_COMMIT__: string | undefined;

/** This build's version and commit: every program reports them (the agent in its telemetry, `--version`). */
export const VERSION = typeof __DEVSTREAMS_VERSION__ === 'string' ? __DEVSTREAMS_VERSION__ : '0.0.0-dev';
export const COMMIT = typeof __DEVSTREAMS_COMMIT__ === 'string' ? __DEVSTREAMS_COMMIT__ : 'dev';
