import { defineConfig } from 'vitest/config';

// One `vitest run` runs both projects:
//  * unit: src/**/*.test.ts, beside the code, in parallel.
//  * e2e:  test/e2e/**/*.test.ts, one file at a time (network namespaces, 2 cores, 256 MiB
//          transfers), after the unit tests, with generous timeouts.
// Choose the stack under test with SLIPWAY_E2E_STACK=slipway|slirp4netns (default slipway).
export default defineConfig({
  test: {
    // A global option (per project it is not read): the e2e labs' teardown may take a while.
    teardownTimeout: 30_000,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          environment: 'node',
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          maxWorkers: 1,
          testTimeout: 180_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
