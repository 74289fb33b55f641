// `npm run dev`: the UI with hot reload; `/api` goes to the app's process (PORT, default 3001).
// `npm run build`: the production UI in dist/, served by the process.
//
// Settings come from the app's .env (one folder up, written by `riptide connect`). Only the
// variables the UI needs reach the page: `envPrefix` exposes VITE_POWERSYNC_* (the service URL
// and the token endpoint) and nothing else, in the dev server's `import.meta.env` as in a build.
// VITE_DATABASE_URL stays in .env for tools (its name is one the platform must write) and never
// reaches a page. Add a prefix here only for settings that are public.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import react from '@vitejs/plugin-react';
import { defineConfig, loadEnv, type Plugin } from 'vite';

const appRoot = path.resolve(import.meta.dirname, '..');

export default defineConfig(({ mode }) => ({
  envDir: appRoot,
  envPrefix: ['VITE_POWERSYNC_'],
  plugins: [react(), serviceWorker()],
  server: {
    // Object form, not the string shorthand: the shorthand rewrites Host to the target, and the
    // process's CSRF check (Origin must match the host the browser used) would refuse every write.
    proxy: {
      '/api': {
        target: `http://127.0.0.1:${process.env.PORT ?? loadEnv(mode, appRoot, '').PORT ?? '3001'}`,
        xfwd: true,
      },
    },
  },
  // The SQLite engine (wasm) and the PowerSync web workers must not be pre-bundled.
  optimizeDeps: { exclude: ['@journeyapps/wa-sqlite', '@powersync/web'] },
  worker: { format: 'es' },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
}));

/**
 * Writes dist/sw.js after the build: a service worker that keeps every file of this build in the
 * browser's cache, so the app (and the local data it shows) opens with no network at all. The
 * file list (and so the cache name) changes with every build; old caches are deleted.
 */
function serviceWorker(): Plugin {
  let outDir = 'dist';
  return {
    name: 'realtime-app-service-worker',
    apply: 'build',
    configResolved(config) {
      outDir = path.resolve(config.root, config.build.outDir);
    },
    closeBundle() {
      const files: string[] = [];
      const walk = (dir: string) => {
        for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
          const full = path.join(dir, entry.name);
          if (entry.isDirectory()) walk(full);
          else if (entry.name !== 'sw.js') files.push(path.relative(outDir, full).split(path.sep).join('/'));
        }
      };
      walk(outDir);
      files.sort();
      const version = createHash('sha256').update(files.join('\n')).digest('hex').slice(0, 12);
      const template = fs.readFileSync(path.resolve(import.meta.dirname, 'src/sw-template.js'), 'utf8');
      // Everything but index.html (cached as '/') and the SQLite builds with encryption (mc-*), which
      // this app does not use.
      const urls = ['/', ...files.filter((f) => f !== 'index.html' && !/(^|\/)mc-/.test(f)).map((f) => `/${f}`)];
      fs.writeFileSync(
        path.join(outDir, 'sw.js'),
        template.replace('__CACHE_NAME__', `realtime-app-${version}`).replace('__PRECACHE__', JSON.stringify(urls)),
      );
    },
  };
}
