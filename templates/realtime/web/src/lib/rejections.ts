// Changes the server refused for good (a 4xx answer to POST /api/sync). The connector records them
// here and drops them from the upload queue; the UI shows them until the user dismisses them. The
// local copy of the refused rows goes back to the server's version with the next sync.
import { useSyncExternalStore } from 'react';

export interface Rejection {
  id: number;
  /** What was refused, in words: "add todo “milk”, complete todo". */
  what: string;
  /** Why, as the server put it. */
  reason: string;
  at: Date;
}

let rejections: readonly Rejection[] = [];
let nextId = 1;
const listeners = new Set<() => void>();

function emit() {
  for (const l of listeners) l();
}

export function recordRejection(what: string, reason: string) {
  rejections = [...rejections, { id: nextId++, what, reason, at: new Date() }];
  emit();
}

export function dismissRejection(id: number) {
  rejections = rejections.filter((r) => r.id !== id);
  emit();
}

export function clearRejections() {
  rejections = [];
  emit();
}

function subscribe(listener: () => void) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useRejections(): readonly Rejection[] {
  return useSyncExternalStore(subscribe, () => rejections);
}
