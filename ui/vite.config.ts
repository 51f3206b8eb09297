import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The playground is built into dist/ui, which the server serves at / and /ui/ (src/routes/ui.ts).
// No plugin is needed: vite's own transformer compiles Preact's JSX.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/ui/",
  logLevel: "warn",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("../dist/ui", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // Every asset is a file of our own origin: nothing inlined as a data: URL, no inline preload script.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
