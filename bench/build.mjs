// Bundles the benchmark runner (bench/main.ts) into dist/bench.cjs. It spawns the real CLI bundle,
// dist/devstreams.cjs, and never imports the product code itself.
import { build } from 'esbuild';

await build({
  entryPoints: ['bench/main.ts'],
  outfile: 'dist/bench.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
});
