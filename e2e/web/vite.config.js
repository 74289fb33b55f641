// Builds the test page (`vite build`; the e2e web test builds into a temporary directory).
// Settings from shared/docs/official-clients.md: wa-sqlite and @powersync/web are not
// pre-bundled, workers are ES modules.
import { fileURLToPath } from 'node:url';

export default {
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  logLevel: 'warn',
  optimizeDeps: { exclude: ['@journeyapps/wa-sqlite', '@powersync/web'] },
  worker: { format: 'es' },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: false, chunkSizeWarningLimit: 10_000 },
};
