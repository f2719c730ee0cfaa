import react from '@vitejs/plugin-react';
import { defaultClientConditions, defineConfig } from 'vite';

// Built into static files that `countersign serve` serves at `/` under a strict CSP: no inline
// script (so no module-preload polyfill), and no source maps shipped.
export default defineConfig({
  plugins: [react()],
  base: '/',
  // @countersign/core from its sources (the export condition each package lists first), not a build.
  resolve: { conditions: ['countersign-source', ...defaultClientConditions] },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
  server: {
    // `npm run dev -w @countersign/dashboard` proxies the API to a local `countersign serve`.
    proxy: { '/v1': 'http://127.0.0.1:8080', '/healthz': 'http://127.0.0.1:8080' },
  },
});
