import { defineConfig } from "vitest/config";

// Model-loading tests share two CPU cores: run files one at a time in forked processes
// (node-llama-cpp's own suite does the same) so timings and thread counts stay sane.
// In CI a JSON report is also written, so .ci/run can print a plain "N passed, N failed" line.
export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    pool: "forks",
    fileParallelism: false,
    // CI's machine may be slower or busier than ours: 3x the slowest test's time seen on a loaded box here.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    reporters: process.env.CI ? ["default", ["json", { outputFile: "node_modules/.cache/vitest-results.json" }]] : ["default"],
  },
});
