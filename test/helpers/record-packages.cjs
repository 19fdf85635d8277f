// Preloaded with `node --require`: when the process exits, writes the npm packages it loaded (from
// require.cache) as a JSON array to $DEVSTREAMS_RECORD_PACKAGES. Used with a build of the CLI whose
// packages stay external (test/cli-lazy-load.test.ts), so every package load goes through require.
const { writeFileSync } = require('node:fs');

const out = process.env.DEVSTREAMS_RECORD_PACKAGES;
if (out) {
  process.on('exit', () => {
    const packages = new Set();
    for (const file of Object.keys(require.cache)) {
      const m = /.*node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file);
      if (m) packages.add(m[1]);
    }
    writeFileSync(out, JSON.stringify([...packages].sort()));
  });
}
