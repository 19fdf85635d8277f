import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Files run in parallel processes; each test starts its own hub on port 0.
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
