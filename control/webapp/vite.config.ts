import { defineConfig } from "vite";

// The bundle teletip-control embeds (control/build.rs lists dist/) and serves under a strict
// Content-Security-Policy: no inline script or style, nothing from elsewhere. So: no
// modulepreload polyfill (Vite would add it to the entry, harmless, but it is not needed by the
// browsers we support), no inlined assets, one CSS file, hashed names under /assets/.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
    chunkSizeWarningLimit: 600,
  },
});
