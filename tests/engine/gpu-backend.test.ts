// An explicitly requested GPU backend either loads for real or fails with device_unavailable naming what is
// missing: never node-llama-cpp's bare NoBinaryFoundError, never a silent CPU fallback.
import { describe, expect, it } from "vitest";
import { explainUnloadableBackend, parseLddNotFound } from "../../src/engine/gpu-diagnosis.js";
import { loadLlama } from "../../src/engine/llama-runtime.js";
import { ERROR_KINDS, errorKindOf } from "../../src/errors/error-kinds.js";

describe("GPU backend selection", () => {
  it("parses ldd's not-found lines", () => {
    const ldd = [
      "\tlinux-vdso.so.1 (0x00007ffd)",
      "\tlibggml-base.so => /x/libggml-base.so (0x00007f)",
      "\tlibcublas.so.13 => not found",
      "\tlibcuda.so.1 => not found",
      "\tlibcublas.so.13 => not found",
      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)",
    ].join("\n");
    expect(parseLddNotFound(ldd)).toEqual(["libcublas.so.13", "libcuda.so.1"]);
    expect(parseLddNotFound("\tstatically linked\n")).toEqual([]);
  });

  it("--gpu metal off macOS is device_unavailable (node-llama-cpp alone would serve on CPU)", async () => {
    const error = await loadLlama("metal", undefined, "linux").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(errorKindOf(error)).toBe("device_unavailable");
    expect(ERROR_KINDS.device_unavailable.exitCode).toBe(4);
    expect((error as Error).message).toMatch(/^--gpu metal cannot be used: Metal exists only on macOS/);
  });

  for (const gpu of ["cuda", "vulkan"] as const) {
    it(`--gpu ${gpu} loads ${gpu} for real, or names what is missing`, async () => {
      let loaded: Awaited<ReturnType<typeof loadLlama>> | undefined;
      let failure: unknown;
      try {
        loaded = await loadLlama(gpu);
      } catch (error) {
        failure = error;
      }
      if (loaded) {
        expect(loaded.gpu).toBe(gpu);
        await loaded.dispose();
        return;
      }
      expect(errorKindOf(failure)).toBe("device_unavailable");
      const message = (failure as Error).message;
      expect(message).not.toMatch(/NoBinaryFoundError/);
      expect(message).toContain(await explainUnloadableBackend(gpu));
      // Either the package is named, or the libraries that were not found are, each as a soname.
      expect(message).toMatch(/@node-llama-cpp\/|(lib[\w.+-]+\.so[\w.]*(, )?)+ not found|libraries were found/);
    });
  }
});
