import { defineConfig } from 'vitest/config'

// Files whose assertions are about time (a combined rate across two server processes sharing
// Redis): they run after the rest, alone, so that another file's load cannot starve them.
const ALONE = ['test/limits/redis.test.ts']

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Files and the tests in each run in a random order, so that no test leans on another's state.
    // The seed is printed at the start ("Running tests with seed …"); replay an order with
    // `npx vitest run --sequence.seed=<seed>`.
    sequence: { shuffle: { files: true, tests: true } },
    // Most files wait on servers, sockets and child processes: two at a time on two cores (the
    // default is one fewer worker than cores).
    maxWorkers: 2,
    projects: [
      // The build (global setup) runs once, with the first group: the second uses its dist/.
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: ALONE, globalSetup: ['test/helpers/global-setup.ts'], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'timing', include: ALONE, sequence: { groupOrder: 1 } } },
    ],
  },
})
