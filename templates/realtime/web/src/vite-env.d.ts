/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The sync service the browser connects to, e.g. http://127.0.0.1:8080 (build time). */
  readonly VITE_POWERSYNC_URL?: string;
  /** Where the UI gets its sync token; same origin so the session cookie reaches it. */
  readonly VITE_POWERSYNC_TOKEN_ENDPOINT?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
