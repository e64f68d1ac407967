/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

const host = process.env.TAURI_DEV_HOST;

// https://v2.tauri.app/start/frontend/vite/
export default defineConfig(({ mode }) => ({
  plugins: [svelte()],
  // Relative base: the built files are served from the Tauri asset protocol.
  base: './',
  clearScreen: false,
  envPrefix: ['VITE_', 'TAURI_'],
  server: {
    port: 1420,
    strictPort: true,
    host: host || false,
    hmr: host ? { protocol: 'ws', host, port: 1421 } : undefined,
    watch: { ignored: ['**/src-tauri/**'] },
  },
  preview: { port: 4173, strictPort: false },
  build: {
    target: ['es2021', 'safari13', 'chrome105'],
    outDir: process.env.VITE_MOCK_IPC ? 'dist-mock' : 'dist',
    emptyOutDir: true,
    sourcemap: mode === 'development',
    chunkSizeWarningLimit: 1500,
  },
  resolve: process.env.VITEST ? { conditions: ['browser'] } : undefined,
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts'],
    setupFiles: ['src/test/setup.ts'],
    restoreMocks: true,
    // The screen tests mount whole views; on two busy cores one took 5.6 s.
    testTimeout: 20_000,
  },
}));
