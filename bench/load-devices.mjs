#!/usr/bin/env node
// Fleet load tool (docs/scaling.md): bundles bench/load-devices.ts into dist/load-devices.cjs and
// runs it. Needs the CLI bundle (make build) and Debian's mosquitto.
//   node bench/load-devices.mjs --devices 1000 --requests 2000 --concurrency 50
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';

await build({
  entryPoints: ['bench/load-devices.ts'],
  outfile: 'dist/load-devices.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
  external: ['bufferutil', 'utf-8-validate'],
});
const r = spawnSync(process.execPath, ['dist/load-devices.cjs', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
