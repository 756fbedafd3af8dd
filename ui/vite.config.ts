import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// The server to proxy to during `npm run dev` (a `hearth serve` on this machine).
const apiTarget = process.env.HEARTH_API ?? 'http://127.0.0.1:4327';

export default defineConfig({
  plugins: [svelte()],
  // Component tests mount Svelte's browser build in jsdom.
  resolve: process.env.VITEST ? { conditions: ['browser'] } : {},
  // Served by `hearth serve` at `/` with assets under `/assets/*`.
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    // The strict CSP allows no inline script; keep every asset a file of its own.
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
    chunkSizeWarningLimit: 800,
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    proxy: {
      '/api': { target: apiTarget, changeOrigin: true },
      '/v1': { target: apiTarget, changeOrigin: true },
      '/health': { target: apiTarget, changeOrigin: true },
    },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts'],
  },
});
