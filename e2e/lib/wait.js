// Deadline-bounded polling. Tests never sleep for a fixed time to wait for correctness: they poll a
// condition until it holds or the deadline passes, and the failure message says what was awaited and
// what was last seen.
import { setTimeout as delay } from 'node:timers/promises';

/** Thrown from a probe to stop waiting at once (the awaited condition can no longer happen). */
export class GiveUp extends Error {}

/**
 * Polls `probe` until it returns a truthy value (which is returned) or `timeoutMs` passes.
 * `describe(lastValue)` builds the failure message. Errors thrown by `probe` are kept and reported
 * if the deadline passes, but polling continues (the service may not be up yet), except for {@link GiveUp}.
 */
export async function waitFor(probe, { timeoutMs = 10_000, intervalMs = 25, what = 'condition', describe } = {}) {
  const start = performance.now();
  const deadline = start + timeoutMs;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await probe();
      lastError = undefined;
      if (last) return { value: last, elapsedMs: performance.now() - start };
    } catch (e) {
      if (e instanceof GiveUp) throw e;
      lastError = e;
    }
    if (performance.now() >= deadline) {
      const seen = describe ? describe(last) : JSON.stringify(last)?.slice(0, 2000);
      const err = new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${seen}` +
          (lastError ? `; last error: ${lastError.stack ?? lastError}` : ''),
      );
      throw err;
    }
    await delay(intervalMs);
  }
}

/** Runs `fn` with a deadline; rejects with a message naming `what` if it does not settle in time. */
export async function withDeadline(promise, timeoutMs, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
