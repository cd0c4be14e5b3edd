import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "passes/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    // The package entry registers the built-in passes, as for a user; tests that import src/pipeline
    // directly get the same default list.
    setupFiles: ["./src/index.ts"],
  },
});
