// The engine build's bookkeeping: the CPU fingerprint (the script that builds and the server that loads must
// compute the same one), LORI_ENGINE parsing, and when a build on disk may be used.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { cpuFingerprint, ENGINE_CMAKE_OPTIONS, engineChoiceFromEnv, findBuiltEngine } from "../../src/engine/engine-build.js";
import { errorKindOf } from "../../src/errors/error-kinds.js";
import { useTempDir } from "../support/temp-dir.js";

// The build script is plain JavaScript run by node (no build step); it exports what the server must agree on.
// (imported by URL: it has no type declarations, the cast below states what the test uses)
const scriptUrl = new URL("../../scripts/build-engine.mjs", import.meta.url).href;
const script = (await import(scriptUrl)) as {
  cpuFingerprint: (cpuinfo?: string) => string;
  ENGINE_CMAKE_OPTIONS: Record<string, string>;
  effectiveCmakeOptions: (env: NodeJS.ProcessEnv) => Record<string, string>;
  BUILD_METADATA_NAME: string;
  findExistingBuild: (
    nlc: string,
    localBuilds: string,
    inputs: { llama_cpp_commit: string; cmake_options: Record<string, string> },
  ) => string | undefined;
};

const cpuinfo = (flags: string) =>
  ["processor\t: 0", "vendor_id\t: GenuineIntel", `flags\t\t: ${flags}`, "", "processor\t: 1", `flags\t\t: ${flags}`].join("\n");

describe("engine build bookkeeping", () => {
  const dir = useTempDir();

  it("the build script and the server fingerprint a CPU alike, by its instruction-set flags only", () => {
    const a = cpuinfo("fpu sse sse2 avx avx2 fma");
    expect(cpuFingerprint(a)).toBe(script.cpuFingerprint(a));
    // this machine's own /proc/cpuinfo (or "" where there is none)
    expect(cpuFingerprint()).toBe(script.cpuFingerprint());
    // order does not matter, a missing flag does (a build with AVX-512 must not run without it)
    expect(cpuFingerprint(cpuinfo("avx2 fma fpu sse sse2 avx"))).toBe(cpuFingerprint(a));
    expect(cpuFingerprint(cpuinfo("fpu sse sse2 avx avx2"))).not.toBe(cpuFingerprint(a));
    expect(cpuFingerprint(a).length).toBe(16);
  });

  it("the script builds with the cmake options the server asks node-llama-cpp for, plus any from the environment", () => {
    expect(script.ENGINE_CMAKE_OPTIONS).toEqual(ENGINE_CMAKE_OPTIONS);
    expect(ENGINE_CMAKE_OPTIONS.GGML_OPENMP).toBe("ON");
    expect(script.effectiveCmakeOptions({ NODE_LLAMA_CPP_CMAKE_OPTION_GGML_AVX512: "OFF", PATH: "/bin" })).toEqual({
      GGML_AVX512: "OFF",
      GGML_OPENMP: "ON",
    });
  });

  it("LORI_ENGINE is auto, source or prebuilt; anything else is a clear invalid_request", () => {
    expect(engineChoiceFromEnv({})).toBe("auto");
    expect(engineChoiceFromEnv({ LORI_ENGINE: "" })).toBe("auto");
    for (const choice of ["auto", "source", "prebuilt"]) expect(engineChoiceFromEnv({ LORI_ENGINE: choice })).toBe(choice);
    let error: unknown;
    try {
      engineChoiceFromEnv({ LORI_ENGINE: "openmp" });
    } catch (e) {
      error = e;
    }
    expect(errorKindOf(error)).toBe("invalid_request");
    expect((error as Error).message).toBe('LORI_ENGINE must be one of auto, source, prebuilt (got "openmp")');
  });

  it("a build is used only when its manifest, its finished folder and this CPU all match", async () => {
    const manifestPath = join(dir.path, "lori-engine.json");
    expect(findBuiltEngine(manifestPath)).toEqual({ reason: "no engine build (npm run build:engine)" });

    const manifest = {
      build: "source-openmp",
      key: "k",
      folder: "linux-x64-abc",
      cpu: cpuFingerprint(),
      llama_cpp_commit: "c",
      cmake_options: {},
    };
    await writeFile(manifestPath, JSON.stringify(manifest));
    expect(findBuiltEngine(manifestPath)).toEqual({
      reason: "the engine build folder linux-x64-abc is missing or unfinished (npm run build:engine)",
    });
    // node-llama-cpp writes buildDone.status last: a folder without it is an interrupted build
    await mkdir(join(dir.path, "linux-x64-abc"));
    expect("reason" in findBuiltEngine(manifestPath)).toBe(true);
    await writeFile(join(dir.path, "linux-x64-abc", "buildDone.status"), "");
    expect(findBuiltEngine(manifestPath)).toEqual({ manifest });

    await writeFile(manifestPath, JSON.stringify({ ...manifest, cpu: "0000000000000000" }));
    expect(findBuiltEngine(manifestPath)).toEqual({ reason: "the engine was built for another CPU (npm run build:engine to rebuild)" });
    await writeFile(manifestPath, "{not json");
    expect((findBuiltEngine(manifestPath) as { reason: string }).reason).toMatch(/^unreadable .*lori-engine\.json: /);
  });
});

describe("adopting a build node-llama-cpp already made", () => {
  const dir = useTempDir();

  it("node-llama-cpp records build options under the name the script reads (its prebuilt binaries carry one)", () => {
    const prebuilt = dirname(dirname(createRequire(import.meta.url).resolve(`@node-llama-cpp/${process.platform}-${process.arch}`)));
    expect(existsSync(join(prebuilt, "bins", `${process.platform}-${process.arch}`, script.BUILD_METADATA_NAME))).toBe(true);
  });

  it("adopts only a finished CPU build of the bundled commit with exactly the engine's cmake options", async () => {
    const nlc = dir.path;
    const clone = join(nlc, "llama", "llama.cpp");
    await mkdir(clone, { recursive: true });
    const git = (...args: string[]) => execFileSync("git", ["-C", clone, ...args], { encoding: "utf8" }).trim();
    git("init", "-q");
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "bundle");
    const commit = git("rev-parse", "HEAD");
    const localBuilds = join(nlc, "llama", "localBuilds");
    const inputs = { llama_cpp_commit: commit, cmake_options: { ...ENGINE_CMAKE_OPTIONS } };
    const addBuild = async (folder: string, buildOptions: object, done = true) => {
      await mkdir(join(localBuilds, folder, "Release"), { recursive: true });
      await writeFile(join(localBuilds, folder, "Release", script.BUILD_METADATA_NAME), JSON.stringify({ buildOptions }));
      if (done) await writeFile(join(localBuilds, folder, "buildDone.status"), "");
    };
    const cpu = { platform: "linux", arch: process.arch, gpu: false };
    await addBuild("a-cuda", { ...cpu, gpu: "cuda", customCmakeOptions: { ...ENGINE_CMAKE_OPTIONS } });
    await addBuild("b-plain", { ...cpu, customCmakeOptions: {} });
    await addBuild("c-more", { ...cpu, customCmakeOptions: { ...ENGINE_CMAKE_OPTIONS, GGML_AVX512: "OFF" } });
    await addBuild("d-unfinished", { ...cpu, customCmakeOptions: { ...ENGINE_CMAKE_OPTIONS } }, false);
    expect(script.findExistingBuild(nlc, localBuilds, inputs)).toBeUndefined();
    await addBuild("e-engine", { ...cpu, customCmakeOptions: { ...ENGINE_CMAKE_OPTIONS } });
    expect(script.findExistingBuild(nlc, localBuilds, inputs)).toBe("e-engine");
    // sources of another commit: compiled from something else, so not adopted
    expect(script.findExistingBuild(nlc, localBuilds, { ...inputs, llama_cpp_commit: "0".repeat(40) })).toBeUndefined();
  });
});
