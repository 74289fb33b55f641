// Paths and settings shared by all tests.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..');
export const RIPTIDE_BIN = process.env.RIPTIDE_BIN ?? path.join(REPO_ROOT, 'target', 'debug', 'riptide');
/** Scratch space for configs and client SQLite files; gitignored (`/e2e/.tmp/`). */
export const TMP_DIR = path.join(E2E_DIR, '.tmp');

/** Admin URL of the private Postgres cluster of this test run (trust auth, wal_level=logical). */
export function pgAdminUrl() {
  const url = process.env.RIPTIDE_TEST_PG_URL;
  if (!url) {
    throw new Error(
      'RIPTIDE_TEST_PG_URL is not set. Start a private cluster, e.g. ' +
        '`cargo run -q -p riptide-testkit --bin riptide-test-postgres -- start /tmp/e2e-pg`, ' +
        'and export the URL it prints.',
    );
  }
  return url;
}

/** A fresh scratch directory for one test (removed first if it exists). */
export function scratchDir(name) {
  const dir = path.join(TMP_DIR, `${name}-${process.pid}-${Date.now().toString(36)}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Unique, Postgres-safe suffix for database names. */
export function uniqueSuffix() {
  return `${process.pid}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}`;
}
