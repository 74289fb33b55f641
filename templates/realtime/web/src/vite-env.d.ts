/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The sync service the browser connects to, e.g. http://127.0.0.1:8080 (build time). */
  readonly VITE_POWERSYNC_URL?: string;
  /** Where the UI gets its sync token; same origin so the session cookie reaches it. */
  readonly VITE_POWERSYNC_TOKEN_ENDPOINT?: string;
  /**
   * `true`: the open database is `window.powersyncDb` (for benchmarks and debugging in the
   * browser console; build time, left out of the bundle otherwise).
   */
  readonly VITE_POWERSYNC_EXPOSE_DB?: string;
}

interface Window {
  powersyncDb?: import('@powersync/web').PowerSyncDatabase;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
